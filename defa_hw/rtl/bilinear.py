"""Bilinear interpolation unit in DEFA's 3-multiplier / 7-adder form.

``bil = (v00 << F) + t1*(v01 - v00) + t0*(v10 - v00) + t01*((v11 - v10) - (v01 - v00))``
exactly as :func:`golden.bilinear.bilinear`.  The arithmetic is split into two
helpers, :func:`bilinear_diffs` (the 4 subtractors) and :func:`bilinear_sum`
(the 3 adders), which the PE array's BA mode reuses around the multipliers it
borrows from its PEs, so both datapaths have one source.

The unit is pure arithmetic: out-of-map neighbours must already be zero when
they arrive (the feature-buffer read / PE-array feed gates them), and there is
no rounding or requantisation here.
"""

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Bilinear", "bilinear_diffs", "bilinear_sum"]


def bilinear_diffs(m, v00, v01, v10, v11, *, name="bi"):
    """The subtract stage: exactly 4 subtractors, added to ``m.d.comb``.

    Returns the signals ``(d_x, d_y, d_xy)`` = ``(v01 - v00, v10 - v00,
    (v11 - v10) - (v01 - v00))``, ``+1``, ``+1`` and ``+2`` bits wider than the
    values.  ``d_x`` is a named signal because it is used twice: as an
    expression, the backend would emit its subtractor twice (5 instead of 4).
    """
    w = max(len(v) for v in (v00, v01, v10, v11))
    d_x = Signal(signed(w + 1), name=f"{name}_dx")
    d_y = Signal(signed(w + 1), name=f"{name}_dy")
    d_v = Signal(signed(w + 1), name=f"{name}_dv")
    d_xy = Signal(signed(w + 2), name=f"{name}_dxy")
    m.d.comb += [
        d_x.eq(v01 - v00),
        d_y.eq(v10 - v00),
        d_v.eq(v11 - v10),
        d_xy.eq(d_v - d_x),
    ]
    return d_x, d_y, d_xy


def bilinear_sum(v00, p_x, p_y, p_xy, frac_bits):
    """The sum stage: 3 adders, ``(v00 << F) + p_x + p_y + p_xy``.

    ``<< F`` is a constant shift, i.e. wiring.  The two inner additions are
    independent, so the adder depth is 2, not 3.
    """
    return (v00.shift_left(frac_bits) + p_x) + (p_y + p_xy)


class Bilinear(wiring.Component):
    """One bilinear interpolation per clock, fully pipelined.

    Parameters
    ----------
    cfg : DefaConfig
        Widths: ``data_bits`` values, ``coord_frac_bits`` (F) weights,
        ``bilinear_bits`` result.

    Attributes
    ----------
    LATENCY : int
        3: a vector presented with ``valid`` in cycle n appears on ``bil`` with
        ``out_valid`` in cycle n + 3 (registers after the subtract, multiply and
        sum stages).  Throughput one vector per cycle; it never stalls.
    valid : In(1)
    v00, v01, v10, v11 : In(signed(data_bits))
        Neighbours (y0,x0), (y0,x0+1), (y0+1,x0), (y0+1,x0+1); 0 when out of map.
    t0, t1, t01 : In(unsigned(F))
        Fractions y - y0, x - x0 and round_shift(t0*t1, F), UQ0.F.
    out_valid : Out(1)
    bil : Out(signed(bilinear_bits))
        Exact result with F fraction bits at the value's scale.
    """

    LATENCY = 3

    def __init__(self, cfg):
        self.cfg = cfg
        d, f = cfg.data_bits, cfg.coord_frac_bits
        super().__init__({
            "valid": In(1),
            "v00": In(signed(d)), "v01": In(signed(d)),
            "v10": In(signed(d)), "v11": In(signed(d)),
            "t0": In(unsigned(f)), "t1": In(unsigned(f)), "t01": In(unsigned(f)),
            "out_valid": Out(1),
            "bil": Out(signed(cfg.bilinear_bits)),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        d, f = cfg.data_bits, cfg.coord_frac_bits
        m = Module()

        # Only the valid bits are reset; data registers need no reset (they are
        # qualified by valid) and a reset mux per data bit would be wasted logic.
        s1_valid = Signal()
        s2_valid = Signal()
        s3_valid = Signal()
        m.d.sync += [s1_valid.eq(self.valid), s2_valid.eq(s1_valid), s3_valid.eq(s2_valid)]

        # s1: subtract stage (4 subtractors).
        s1_v00 = Signal(signed(d), reset_less=True)
        s1_dx = Signal(signed(d + 1), reset_less=True)
        s1_dy = Signal(signed(d + 1), reset_less=True)
        s1_dxy = Signal(signed(d + 2), reset_less=True)
        s1_t0 = Signal(unsigned(f), reset_less=True)
        s1_t1 = Signal(unsigned(f), reset_less=True)
        s1_t01 = Signal(unsigned(f), reset_less=True)
        d_x, d_y, d_xy = bilinear_diffs(m, self.v00, self.v01, self.v10, self.v11, name="s0")
        m.d.sync += [
            s1_v00.eq(self.v00), s1_dx.eq(d_x), s1_dy.eq(d_y), s1_dxy.eq(d_xy),
            s1_t0.eq(self.t0), s1_t1.eq(self.t1), s1_t01.eq(self.t01),
        ]

        # s2: multiply stage (3 multipliers, unsigned fraction x signed difference).
        s2_v00 = Signal(signed(d), reset_less=True)
        s2_px = Signal(signed(d + 1 + f + 1), reset_less=True)
        s2_py = Signal(signed(d + 1 + f + 1), reset_less=True)
        s2_pxy = Signal(signed(d + 2 + f + 1), reset_less=True)
        m.d.sync += [
            s2_v00.eq(s1_v00),
            s2_px.eq(s1_t1 * s1_dx),
            s2_py.eq(s1_t0 * s1_dy),
            s2_pxy.eq(s1_t01 * s1_dxy),
        ]

        # s3: sum stage (3 adders).  bilinear_bits holds every result of in-range
        # inputs, even for a t01 inconsistent with t0*t1: the worst case t0 = t1 = 0,
        # t01 = 2^F - 1 gives |bil| <= (5 * 2^F - 4) * 2^(d-1) < 2^(d+F+2), so the
        # truncation to the output width is exact.
        s3_bil = Signal(signed(cfg.bilinear_bits), reset_less=True)
        m.d.sync += s3_bil.eq(bilinear_sum(s2_v00, s2_px, s2_py, s2_pxy, f))

        m.d.comb += [self.bil.eq(s3_bil), self.out_valid.eq(s3_valid)]
        return m

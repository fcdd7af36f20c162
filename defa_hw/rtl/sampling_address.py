"""Sampling-address unit: reference point + offset -> neighbours, fractions, banks.

Golden model: :func:`golden.sampling_address.sampling_address` (``docs/numerics.md``,
sampling address and bank mapping).  Interface and timing: ``docs/units.md``.
"""

from amaranth import *
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from defa_hw.rtl.levels import BankMap, level_shape, shapes_layout

# shapes_layout is defined in levels.py; it stays importable from here for the core.
__all__ = ["SamplingAddress", "point_layout", "shapes_layout", "address_layout"]


def point_layout(cfg):
    """One sampling point: reference (UQ0.R), raw offset (Q.F, pixels), level index."""
    return data.StructLayout({
        "ref_x": unsigned(cfg.ref_frac_bits),
        "ref_y": unsigned(cfg.ref_frac_bits),
        "off_x": signed(cfg.data_bits),
        "off_y": signed(cfg.data_bits),
        "level": level_shape(cfg),
    })


def address_layout(cfg):
    """Result of one point; neighbour arrays are in the order 00, 01, 10, 11.

    ``bank`` and ``addr`` are the (windowed) :class:`~defa_hw.rtl.levels.BankMap`'s.
    """
    F = cfg.coord_frac_bits
    bm = BankMap(cfg)
    return data.StructLayout({
        "x0": signed(cfg.coord_int_bits),
        "y0": signed(cfg.coord_int_bits),
        "t0": unsigned(F),
        "t1": unsigned(F),
        "t01": unsigned(F),
        "clamped": 1,
        "inb": data.ArrayLayout(1, 4),
        "bank": data.ArrayLayout(unsigned(bm.bank_bits), 4),
        "addr": data.ArrayLayout(unsigned(bm.word_bits), 4),
    })


class SamplingAddress(wiring.Component):
    """Fixed-point sampling address of one point per cycle (fully pipelined).

    Parameters
    ----------
    cfg : DefaConfig

    Attributes
    ----------
    in_valid : In(1)
        ``in_point`` holds a point this cycle.
    in_point : In(:func:`point_layout`)
    shapes : In(:func:`shapes_layout`)
        Runtime level shapes (core configuration registers); hold them constant
        while points are in flight.  Only ``1 <= H, W <= max_shapes`` are legal.
    out_valid : Out(1)
    out_addr : Out(:func:`address_layout`)
        ``x0, y0, t0, t1, t01``, ``clamped``, and per neighbour ``inb``, ``bank``,
        ``addr`` (0 for out-of-map neighbours), as the golden function.
    LATENCY : int
        Cycles from a point on the inputs to its result on the outputs (5).
        Throughput: one point per cycle, no stalls.
    """

    LATENCY = 5

    def __init__(self, cfg):
        self.cfg = cfg
        super().__init__({
            "in_valid": In(1),
            "in_point": In(point_layout(cfg)),
            "shapes": In(shapes_layout(cfg)),
            "out_valid": Out(1),
            "out_addr": Out(address_layout(cfg)),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        F, R = cfg.coord_frac_bits, cfg.ref_frac_bits
        L = cfg.n_levels
        cb = cfg.coord_bits
        shp = shapes_layout(cfg).elem_shape
        lvl_shape = level_shape(cfg)
        bm = BankMap(cfg)
        m = Module()
        pt = self.in_point

        # s0: register the point; look up its level's runtime shape and offset bound
        # here so that s1 is only the multiplier and the clamp comparators.
        s0_valid = Signal()
        s0_pt = Signal(point_layout(cfg))
        s0_shape = Signal(shp)
        s0_bound = Signal(range((max(cfg.offset_bound) << F) + 1))
        m.d.sync += [s0_valid.eq(self.in_valid), s0_pt.eq(pt)]
        with m.Switch(pt.level):
            for l in range(L):
                with m.Case(l):
                    m.d.sync += [s0_shape.eq(self.shapes[l]),
                                 s0_bound.eq(cfg.offset_bound[l] << F)]

        # s1: ref * (W, H) products (R x log2(W) bits); level-wise offset clamp.
        s1_valid = Signal()
        s1_level = Signal(lvl_shape)
        s1_shape = Signal(shp)
        s1_px = Signal(R + len(s0_shape.w))
        s1_py = Signal(R + len(s0_shape.h))
        s1_off_x = Signal(signed(cfg.data_bits))
        s1_off_y = Signal(signed(cfg.data_bits))
        s1_clamped = Signal()

        def clamp(v, b):
            return Mux(v > b, b, Mux(v < -b, -b, v))

        m.d.sync += [
            s1_valid.eq(s0_valid), s1_level.eq(s0_pt.level), s1_shape.eq(s0_shape),
            s1_px.eq(s0_pt.ref_x * s0_shape.w),
            s1_py.eq(s0_pt.ref_y * s0_shape.h),
            s1_off_x.eq(clamp(s0_pt.off_x, s0_bound)),
            s1_off_y.eq(clamp(s0_pt.off_y, s0_bound)),
            s1_clamped.eq((s0_pt.off_x > s0_bound) | (s0_pt.off_x < -s0_bound) |
                          (s0_pt.off_y > s0_bound) | (s0_pt.off_y < -s0_bound)),
        ]

        # s2: pixel coordinate x = round_shift(ref * W, R - F) - 1/2 + offset (Q.F).
        # Legal shapes keep it inside coord_bits (config.coord_int_bits covers the reach).
        def ref_to_coord(p):
            sh = R - F
            if sh > 0:
                return (p + (1 << (sh - 1))) >> sh
            return p << -sh

        half = 1 << (F - 1)
        s2_valid = Signal()
        s2_level = Signal(lvl_shape)
        s2_shape = Signal(shp)
        s2_x = Signal(signed(cb))
        s2_y = Signal(signed(cb))
        s2_clamped = Signal()
        m.d.sync += [
            s2_valid.eq(s1_valid), s2_level.eq(s1_level), s2_shape.eq(s1_shape),
            s2_clamped.eq(s1_clamped),
            s2_x.eq(ref_to_coord(s1_px) - half + s1_off_x),
            s2_y.eq(ref_to_coord(s1_py) - half + s1_off_y),
        ]

        # s3: split into integer pixel and fraction (wiring), start t0 * t1, bounds
        # checks of the two rows / two columns, row-pair index within the level's
        # on-chip row window.
        x0 = s2_x >> F                                   # arithmetic: floor
        y0 = s2_y >> F
        x1, y1 = x0 + 1, y0 + 1
        t1, t0 = s2_x[:F], s2_y[:F]

        s3_valid = Signal()
        s3_level = Signal(lvl_shape)
        s3_x0 = Signal(signed(cfg.coord_int_bits))
        s3_y0 = Signal(signed(cfg.coord_int_bits))
        s3_t0 = Signal(F)
        s3_t1 = Signal(F)
        s3_t01_full = Signal(2 * F)
        s3_clamped = Signal()
        s3_in_x = Signal(2)                              # columns x0, x0 + 1 inside the map
        s3_in_y = Signal(2)                              # rows y0, y0 + 1 inside the map
        s3_rp = [Signal(range(max(bm.pairs)), name=f"s3_rp{i}") for i in range(2)]
        s3_cx = [Signal(range(max(bm.pitch)), name=f"s3_cx{i}") for i in range(2)]
        m.d.sync += [
            s3_valid.eq(s2_valid), s3_level.eq(s2_level), s3_clamped.eq(s2_clamped),
            s3_x0.eq(x0), s3_y0.eq(y0), s3_t0.eq(t0), s3_t1.eq(t1),
            s3_t01_full.eq(t0 * t1),
            s3_in_x.eq(Cat((x0 >= 0) & (x0 < s2_shape.w), (x1 >= 0) & (x1 < s2_shape.w))),
            s3_in_y.eq(Cat((y0 >= 0) & (y0 < s2_shape.h), (y1 >= 0) & (y1 < s2_shape.h))),
            # Only in-map columns reach the address, and an in-map column of any level
            # is the widest level's column, so it needs no level select.
            s3_cx[0].eq(bm.column(None, x0)), s3_cx[1].eq(bm.column(None, x1)),
        ]
        with m.Switch(s2_level):
            for l in range(L):
                with m.Case(l):
                    m.d.sync += [s3_rp[i].eq(bm.row_pair(l, yy)) for i, yy in enumerate((y0, y1))]

        # s4 (outputs): round t0 * t1; the bank map's word (row pair * the level's
        # constant pitch + column; 0 out of map) and bank of every neighbour.
        out = self.out_addr
        m.d.sync += [
            self.out_valid.eq(s3_valid),
            out.x0.eq(s3_x0), out.y0.eq(s3_y0), out.t0.eq(s3_t0), out.t1.eq(s3_t1),
            out.t01.eq((s3_t01_full + half) >> F),
            out.clamped.eq(s3_clamped),
        ]
        ys = (s3_y0, s3_y0 + 1)
        xs = (s3_x0, s3_x0 + 1)
        for k, (iy, ix) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
            inb = s3_in_y[iy] & s3_in_x[ix]
            m.d.sync += [
                out.inb[k].eq(inb),
                out.bank[k].eq(bm.bank(s3_level, ys[iy], xs[ix])),
            ]
            with m.Switch(s3_level):
                for l in range(L):
                    with m.Case(l):
                        m.d.sync += out.addr[k].eq(
                            Mux(inb, bm.word_at(l, s3_rp[iy], s3_cx[ix]), 0))
        return m

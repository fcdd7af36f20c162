"""Requantiser: round-half-up right shift by a runtime amount, then saturation.

Golden model: :func:`golden.requant.requant` (the rule is ``golden.quant.requant``,
``docs/numerics.md``).  Interface and timing: ``docs/units.md``.
"""

from amaranth import *
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Requant"]


class Requant(wiring.Component):
    """``saturate(round_shift(acc, shift), data_bits)`` on ``lanes`` accumulators per cycle.

    Fully pipelined, one vector per cycle.

    Parameters
    ----------
    cfg : DefaConfig
    acc_bits : int, keyword-only
        Accumulator width; default ``cfg.mm_acc_bits``.
    lanes : int, keyword-only
        Accumulators requantised together (e.g. ``cfg.pe_cols``); default 1.

    Attributes
    ----------
    in_valid : In(1)
    acc : In(ArrayLayout(signed(acc_bits), lanes))
    shift : In(unsigned)
        Right-shift amount, sampled with ``acc`` (may change every cycle).  Every
        value of the port is exact; amounts ``>= acc_bits`` give 0.  Width holds
        ``0 .. acc_bits - 1``.
    out_valid : Out(1)
    q : Out(ArrayLayout(signed(data_bits), lanes))
    LATENCY : int
        Cycles from ``acc`` to ``q`` (2): barrel shift, then round and saturate.
    """

    LATENCY = 2

    def __init__(self, cfg, *, acc_bits=None, lanes=1):
        self.cfg = cfg
        self.acc_bits = cfg.mm_acc_bits if acc_bits is None else acc_bits
        self.lanes = lanes
        if self.acc_bits < 2 or lanes < 1:
            raise ValueError(f"Requant needs acc_bits >= 2 and lanes >= 1, got "
                             f"acc_bits={self.acc_bits}, lanes={lanes}")
        super().__init__({
            "in_valid": In(1),
            "acc": In(data.ArrayLayout(signed(self.acc_bits), lanes)),
            "shift": In(range(self.acc_bits)),
            "out_valid": Out(1),
            "q": Out(data.ArrayLayout(signed(cfg.data_bits), lanes)),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        lo, hi = cfg.data_min, cfg.data_max

        # s0: t = (2 acc) >> shift, so that t >> 1 = floor(acc / 2^shift) and t[0] is the
        # first discarded bit (0 for shift 0): round half up = floor + that bit, with one
        # shared barrel shifter and no variable-position rounding constant.
        s0_valid = Signal()
        s0_t = [Signal(signed(self.acc_bits + 1), name=f"s0_t{i}") for i in range(self.lanes)]
        m.d.sync += s0_valid.eq(self.in_valid)
        for i in range(self.lanes):
            m.d.sync += s0_t[i].eq((self.acc[i] << 1) >> self.shift)

        # s1 (outputs): round, then saturate (never wrap).
        m.d.sync += self.out_valid.eq(s0_valid)
        for i in range(self.lanes):
            r = (s0_t[i] >> 1) + s0_t[i][0]
            m.d.sync += self.q[i].eq(Mux(r > hi, hi, Mux(r < lo, lo, r)))
        return m

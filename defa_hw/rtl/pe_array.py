"""Reconfigurable PE array: matrix multiply (MM) and bilinear aggregation (BA) modes.

``pe_rows x pe_cols`` :class:`~defa_hw.pe.ProcessingElement` s, each an
output-stationary MAC.  See ``docs/pe_array.md`` for the channel mapping per
mode, the timing rules and the peak throughput.

MM mode, one operation per cycle: ``x`` (``pe_rows`` activations) times the
``pe_rows x pe_cols`` weight tile ``w``; PE (i, j) accumulates ``x[i] * w[i][j]``
and a tile's result is ``mm_acc[j] = bias[j] + sum over ops and i``, read out
through a pipelined adder tree per column when the tile's ``last`` operation has
landed.

BA mode, one operation per cycle: one sampling point per lane (``ba_lanes =
n_levels * ba_heads``: one per level and head sampled at once, lane ``j * n_levels +
l``), ``ba_channels`` channels (at most ``head_dim``; the PEs beyond the groups then
only do MM).  The PEs form ``ba_channels * ba_lanes`` groups of 4 (channel-major,
group ``g = c * ba_lanes + l`` owns flat PEs ``4g .. 4g+3``, flat index
``p = j * pe_rows + i``): PEs 0..2 lend their multipliers to the group's
bilinear datapath (:func:`~defa_hw.bilinear.bilinear_diffs`, 4 subtractors
before them, :func:`~defa_hw.bilinear.bilinear_sum`, 3 adders after them) and
PE 3 multiplies the bilinear value by the (PAP-gated) probability and
accumulates.  Every lane runs its own tiles (``pt[l].first`` / ``pt[l].last``), so
the lanes may work on different heads: ``ba_acc[l][c]`` is lane l's accumulator
of channel c, read out when that lane's tile ends (``ba_valid[l]``); the BA pipeline
adds the levels of a head after the array.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from defa_hw.rtl.bilinear import bilinear_diffs, bilinear_sum
from defa_hw.rtl.pe import PEMode, ProcessingElement

__all__ = ["ArrayMode", "PEArray", "ba_point_layout", "ba_group_pe"]


class ArrayMode(enum.Enum, shape=1):
    """Operating mode of one PE-array operation."""
    MM = 0
    BA = 1


def ba_point_layout(cfg):
    """Per-lane BA point parameters: fractions (UQ0.F), probability (UQ0.prob_bits), PAP
    keep, and the start / end of the lane's tile (``first`` clears its accumulators,
    ``last`` reads them out)."""
    f = cfg.coord_frac_bits
    return data.StructLayout({
        "t0": unsigned(f), "t1": unsigned(f), "t01": unsigned(f),
        "prob": unsigned(cfg.prob_bits), "keep": unsigned(1),
        "first": unsigned(1), "last": unsigned(1),
    })


def ba_group_pe(cfg, c, l, r):
    """``(row, col)`` of PE ``r`` (0: t1*dx, 1: t0*dy, 2: t01*dxy, 3: prob MAC) of the BA
    group for channel ``c`` of the slice and lane ``l``."""
    p = 4 * (c * cfg.ba_lanes + l) + r
    return p % cfg.pe_rows, p // cfg.pe_rows


class PEArray(wiring.Component):
    """The reconfigurable PE array.

    A fixed-latency pipeline that accepts one operation per cycle and never
    stalls, so it has no ready: the issuer only obeys the two timing rules of
    ``docs/pe_array.md`` (a tile's operations are not interleaved with the other
    mode's; no MM operation in the ``BA_TO_MM_GAP`` cycles after a BA operation).

    Parameters
    ----------
    cfg : DefaConfig

    Attributes
    ----------
    LATENCY : int
        An operation with ``last`` presented in cycle n gives ``out_valid`` with
        its tile's result in cycle n + LATENCY (same for both modes; the shorter
        readout is padded): ``max(3 + clog2(pe_rows), 6)``.
    MM_ACC_STAGE, BA_ACC_STAGE : int
        Pipeline stage (3, 5) at which an operation reaches the accumulators.
    BA_TO_MM_GAP : int
        Idle cycles needed between a BA operation and a following MM operation (2).
    valid, mode, first, last : In
        Operation strobe, :class:`ArrayMode`, start of an MM tile (accumulators load
        the bias) and end of a tile (``out_valid``; in BA mode the lanes' own
        ``pt[l].first`` / ``pt[l].last`` delimit their tiles).
    x : In(pe_rows x signed(data_bits))
        MM input vector.
    w : In(pe_rows x pe_cols x signed(data_bits))
        MM weight tile, ``w[i][j]`` multiplies ``x[i]`` into output column ``j``.
    bias : In(pe_cols x signed(mm_acc_bits))
        MM accumulator preload, sampled with a ``first`` operation.
    pix : In(ba_lanes x 4 x ba_channels x signed(data_bits))
        BA neighbours ``pix[l][k][c]``, k = 00, 01, 10, 11; out-of-map ones must be 0.
    pt : In(ba_lanes x :func:`ba_point_layout`)
        BA point of each lane: t0, t1, t01, prob, keep, first, last.
    out_valid : Out(1)
        An MM tile ended LATENCY cycles ago: ``mm_acc`` holds its result.
    mm_acc : Out(pe_cols x signed(mm_acc_bits))
        Exact MM tile result (``golden.linear.linear_acc``).
    ba_valid : Out(ba_lanes)
        Level l's BA tile ended LATENCY cycles ago: ``ba_acc[l]`` holds its result.
    ba_acc : Out(ba_lanes x ba_channels x signed(agg_acc_bits))
        Exact per-lane BA tile results (``golden.pe_array.pe_array_ba``).
    """

    MM_ACC_STAGE = ProcessingElement.LATENCY
    BA_ACC_STAGE = ProcessingElement.PROD_LATENCY + ProcessingElement.LATENCY
    BA_TO_MM_GAP = BA_ACC_STAGE - MM_ACC_STAGE

    @classmethod
    def latency(cls, cfg):
        """``LATENCY`` of the array for ``cfg``, without building it (for cycle models)."""
        return max(cls.MM_ACC_STAGE + ceil_log2(cfg.pe_rows), cls.BA_ACC_STAGE + 1)

    def __init__(self, cfg):
        self.cfg = cfg
        d = cfg.data_bits
        self.mm_tree_depth = ceil_log2(cfg.pe_rows)
        self.LATENCY = self.latency(cfg)
        super().__init__({
            "valid": In(1),
            "mode": In(ArrayMode),
            "first": In(1),
            "last": In(1),
            "x": In(data.ArrayLayout(signed(d), cfg.pe_rows)),
            "w": In(data.ArrayLayout(data.ArrayLayout(signed(d), cfg.pe_cols), cfg.pe_rows)),
            "bias": In(data.ArrayLayout(signed(cfg.mm_acc_bits), cfg.pe_cols)),
            "pix": In(data.ArrayLayout(data.ArrayLayout(
                data.ArrayLayout(signed(d), cfg.ba_channels), 4), cfg.ba_lanes)),
            "pt": In(data.ArrayLayout(ba_point_layout(cfg), cfg.ba_lanes)),
            "out_valid": Out(1),
            "mm_acc": Out(data.ArrayLayout(signed(cfg.mm_acc_bits), cfg.pe_cols)),
            "ba_valid": Out(cfg.ba_lanes),
            "ba_acc": Out(data.ArrayLayout(data.ArrayLayout(signed(cfg.agg_acc_bits),
                                                            cfg.ba_channels), cfg.ba_lanes)),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        d, f = cfg.data_bits, cfg.coord_frac_bits
        R, C, L, CH = cfg.pe_rows, cfg.pe_cols, cfg.ba_lanes, cfg.ba_channels
        LAT = self.LATENCY
        m = Module()

        is_ba = self.mode == ArrayMode.BA

        # Control pipeline: stage k holds the operation that entered k cycles ago.
        ctl_valid, ctl_ba, ctl_last = [None], [None], [None]
        prev = (self.valid, is_ba, self.last)
        for k in range(1, LAT + 1):
            v = Signal(name=f"s{k}_valid")
            ba = Signal(name=f"s{k}_ba", reset_less=True)
            la = Signal(name=f"s{k}_last", reset_less=True)
            m.d.sync += [v.eq(prev[0]), ba.eq(prev[1]), la.eq(prev[2])]
            for lst, sig in zip((ctl_valid, ctl_ba, ctl_last), (v, ba, la)):
                lst.append(sig)
            prev = (v, ba, la)

        # BA side band: v00 and the gated probability travel to the sum stage (s2),
        # lane-shared values once per lane, v00 once per group.
        # Each lane's first / last travel along (last up to the accumulator stage).
        s2_pb, s2_first, lvl_last = [], [], []
        for l in range(L):
            pt = self.pt[l]
            s1_pb = Signal(unsigned(cfg.prob_bits), name=f"s1_pb{l}", reset_less=True)
            s2 = Signal(unsigned(cfg.prob_bits), name=f"s2_pb{l}", reset_less=True)
            s1_fi = Signal(name=f"s1_first{l}", reset_less=True)
            s2_fi = Signal(name=f"s2_first{l}", reset_less=True)
            with m.If(self.valid & is_ba):
                # PAP: a pruned point multiplies by 0 (a `first` op must still clear).
                m.d.sync += [s1_pb.eq(pt.prob & pt.keep.replicate(cfg.prob_bits)),
                             s1_fi.eq(pt.first)]
            with m.If(ctl_valid[1] & ctl_ba[1]):
                m.d.sync += [s2.eq(s1_pb), s2_fi.eq(s1_fi)]
            s2_pb.append(s2)
            s2_first.append(s2_fi)
            la = self.valid & is_ba & pt.last
            stages = [la]
            for k in range(1, LAT + 1):
                r = Signal(name=f"s{k}_last{l}")
                m.d.sync += r.eq(stages[-1])
                stages.append(r)
            lvl_last.append(stages)

        s2_ba_op = ctl_valid[2] & ctl_ba[2]
        pes = {}
        for c in range(CH):
            for l in range(L):
                g = c * L + l
                pt = self.pt[l]
                v = [self.pix[l][k][c] for k in range(4)]
                diffs = bilinear_diffs(m, *v, name=f"s0_g{g}")
                ts = (pt.t1, pt.t0, pt.t01)
                lent = []
                for r in range(3):
                    i, j = ba_group_pe(cfg, c, l, r)
                    pe = pes[i, j] = ProcessingElement(cfg, role="interp")
                    m.submodules[f"pe_{i}_{j}"] = pe
                    # Operand muxes are expressions, not comb `m.If` blocks: they become
                    # continuous assigns, which Icarus in -g2012 mode evaluates at time 0
                    # (an `always @*` whose inputs never change would stay X there).
                    m.d.comb += [
                        pe.valid.eq(self.valid),
                        pe.mode.eq(Mux(is_ba, PEMode.LEND, PEMode.MAC)),
                        pe.first.eq(self.first),
                        pe.a.eq(Mux(is_ba, diffs[r], self.x[i])),
                        pe.b.eq(Mux(is_ba, ts[r], self.w[i][j])),
                        pe.preload.eq(self.bias[j] if i == 0 else 0),
                    ]
                    lent.append(pe)

                s1_v00 = Signal(signed(d), name=f"s1_v00_g{g}", reset_less=True)
                s2_v00 = Signal(signed(d), name=f"s2_v00_g{g}", reset_less=True)
                with m.If(self.valid & is_ba):
                    m.d.sync += s1_v00.eq(v[0])
                with m.If(ctl_valid[1] & ctl_ba[1]):
                    m.d.sync += s2_v00.eq(s1_v00)
                s2_bil = Signal(signed(cfg.bilinear_bits), name=f"s2_bil_g{g}")
                # bilinear_bits holds every in-range result (see bilinear.py): exact.
                m.d.comb += s2_bil.eq(bilinear_sum(s2_v00, lent[0].prod, lent[1].prod,
                                                   lent[2].prod, f))

                # The probability PE takes BA work from stage 2; in the cycles it does
                # it cannot take an MM operation (hence BA_TO_MM_GAP).
                i, j = ba_group_pe(cfg, c, l, 3)
                pe = pes[i, j] = ProcessingElement(cfg, role="full")
                m.submodules[f"pe_{i}_{j}"] = pe
                m.d.comb += [
                    pe.mode.eq(PEMode.MAC),
                    pe.valid.eq(s2_ba_op | (self.valid & ~is_ba)),
                    pe.first.eq(Mux(s2_ba_op, s2_first[l], self.first)),
                    pe.a.eq(Mux(s2_ba_op, s2_bil, self.x[i])),
                    pe.b.eq(Mux(s2_ba_op, s2_pb[l], self.w[i][j])),
                    pe.preload.eq(Mux(s2_ba_op, 0, self.bias[j]) if i == 0 else 0),
                ]

        # PEs outside the BA groups (ba_channels capped at head_dim) only do MM.
        for i in range(R):
            for j in range(C):
                if (i, j) in pes:
                    continue
                pe = pes[i, j] = ProcessingElement(cfg, role="mm")
                m.submodules[f"pe_{i}_{j}"] = pe
                m.d.comb += [
                    pe.valid.eq(self.valid & ~is_ba), pe.mode.eq(PEMode.MAC),
                    pe.first.eq(self.first), pe.a.eq(self.x[i]), pe.b.eq(self.w[i][j]),
                    pe.preload.eq(self.bias[j] if i == 0 else 0),
                ]

        # Read-out: pipelined adder trees, registers load only when a tile's last
        # operation passes (the accumulators hold its result for exactly that cycle
        # before the next tile's first operation may overwrite them).
        def readout(name, values, width, start):
            level = [v[:width].as_signed() for v in values]
            for s in range(start + 1, LAT + 1):
                en = ctl_valid[s - 1] & ctl_last[s - 1] & ~ctl_ba[s - 1]
                nxt = []
                for k in range(0, len(level), 2):
                    reg = Signal(signed(width), name=f"s{s}_{name}_{k // 2}", reset_less=True)
                    with m.If(en):
                        m.d.sync += reg.eq(level[k] + level[k + 1] if k + 1 < len(level)
                                           else level[k])
                    nxt.append(reg)
                level = nxt
            assert len(level) == 1
            return level[0]

        for j in range(C):
            col = [pes[i, j].acc for i in range(R)]
            m.d.comb += self.mm_acc[j].eq(
                readout(f"mm{j}", col, cfg.mm_acc_bits, self.MM_ACC_STAGE))
        # BA: each lane's accumulators, registered as its tile's last op lands, then
        # padded to LATENCY (the levels are added per head behind the array).
        S = self.BA_ACC_STAGE
        for l in range(L):
            word = Cat(*[pes[ba_group_pe(cfg, c, l, 3)].acc[:cfg.agg_acc_bits]
                         for c in range(CH)])
            for k in range(S + 1, LAT + 1):
                r = Signal(len(word), name=f"s{k}_ba{l}", reset_less=True)
                with m.If(lvl_last[l][k - 1]):
                    m.d.sync += r.eq(word)
                word = r
            m.d.comb += [self.ba_acc[l].eq(word), self.ba_valid[l].eq(lvl_last[l][LAT])]

        m.d.comb += [
            self.out_valid.eq(ctl_valid[LAT] & ctl_last[LAT] & ~ctl_ba[LAT]),
        ]
        return m

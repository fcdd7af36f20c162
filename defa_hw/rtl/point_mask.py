"""PAP: probability-aware point pruning (``docs/numerics.md``, PAP point mask).

Golden model: :func:`golden.point_mask.point_mask`.  Interface and timing:
``docs/masks.md``.
"""

from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

__all__ = ["PointMask", "survivor_layout", "mask_layout", "count_bits_for"]


def survivor_layout(cfg):
    """One surviving point on the compacted output stream.

    ``index`` is the point's position ``l * P + p`` inside its (query, head) group,
    ``first``/``last`` mark the first and last *surviving* point of the group.
    """
    return data.StructLayout({
        "prob": unsigned(cfg.prob_bits),
        "index": unsigned(bits_for(cfg.n_lp - 1)),
        "first": 1,
        "last": 1,
    })


def mask_layout(cfg):
    """The keep mask of one (query, head): bit ``i`` = point ``i`` kept; ``count`` = popcount."""
    return data.StructLayout({
        "keep": unsigned(cfg.n_lp),
        "count": unsigned(bits_for(cfg.n_lp)),
    })


def count_bits_for(cfg):
    """Statistics counter width: every point of one encoder block (``Lq = S = max_pixels``)."""
    return bits_for(cfg.max_pixels * cfg.n_heads * cfg.n_lp)


class PointMask(wiring.Component):
    """PAP point mask: keep a point iff ``prob >= threshold`` (or always when disabled).

    Parameters
    ----------
    cfg : DefaConfig
    count_bits : int, keyword-only
        Width of the saturating statistics counters; default :func:`count_bits_for`.

    Attributes
    ----------
    prob : In(stream)
        Probability codes UQ0.``prob_bits``, ``n_lp`` consecutive beats per
        (query, head) in point order ``l * P + p``.
    point : Out(stream of :func:`survivor_layout`)
        Surviving points only (probability passed through, point index, first/last
        surviving point of the group).  A group with no survivor emits nothing here.
    mask : Out(stream of :func:`mask_layout`)
        One beat per (query, head), one cycle after its last point was accepted.
    enable : In(1)
        PAP on; 0 keeps every point (``--no-prune``).  Change only between groups.
    threshold, threshold_we : In
        Runtime threshold register (``prob_bits + 1`` bits, reset value
        ``cfg.pap_threshold_code``), written when ``threshold_we`` is high.
        ``2**prob_bits`` prunes every point.  Write only between groups.
    stat_clear : In(1)
        Restarts both statistics counters (the point accepted in the same cycle counts).
    points_total, points_pruned : Out(count_bits)
        Saturating counts of accepted and of pruned points.
    """

    def __init__(self, cfg, *, count_bits=None):
        self.cfg = cfg
        self.count_bits = count_bits_for(cfg) if count_bits is None else count_bits
        super().__init__({
            "prob": In(stream.Signature(unsigned(cfg.prob_bits))),
            "point": Out(stream.Signature(survivor_layout(cfg))),
            "mask": Out(stream.Signature(mask_layout(cfg))),
            "enable": In(1, init=1),
            "threshold": In(cfg.prob_bits + 1),
            "threshold_we": In(1),
            "stat_clear": In(1),
            "points_total": Out(self.count_bits),
            "points_pruned": Out(self.count_bits),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        n_lp = cfg.n_lp
        m = Module()

        thr = Signal(cfg.prob_bits + 1, init=cfg.pap_threshold_code)
        with m.If(self.threshold_we):
            m.d.sync += thr.eq(self.threshold)

        # s0: the group being received (point index, kept bits and count so far).
        s0_idx = Signal(range(n_lp))
        s0_keep = Signal(n_lp)
        s0_count = Signal(range(n_lp + 1))

        # s1: the most recent surviving point, held back until we know whether it is the
        # last survivor of its group (next survivor arrives, or the group ends).
        # s1_final: the group has ended, so it is the last survivor.
        s1_valid = Signal()
        s1_final = Signal()
        s1_prob = Signal(cfg.prob_bits)
        s1_index = Signal(range(n_lp))
        s1_first = Signal()

        point_free = ~self.point.valid | self.point.ready
        mask_free = ~self.mask.valid | self.mask.ready
        s0_end = s0_idx == n_lp - 1

        # Ready depends only on state and downstream ready, never on our input's valid.
        # A held point needs a free output slot before a new point may arrive (the new
        # point may push it out); the group's last point needs a free mask slot.
        m.d.comb += self.prob.ready.eq((~s0_end | mask_free) & (~s1_valid | point_free))
        accept = self.prob.valid & self.prob.ready
        keep = ~self.enable | (self.prob.payload >= thr)

        # Move the held point to the output register: its group has ended, or a new
        # survivor / the group's end tells whether it is the last one.
        move = s1_valid & point_free & (s1_final | (accept & (keep | s0_end)))
        move_last = s1_final | (accept & ~keep & s0_end)
        with m.If(point_free):
            m.d.sync += self.point.valid.eq(move)
        with m.If(move):
            m.d.sync += [
                self.point.payload.prob.eq(s1_prob),
                self.point.payload.index.eq(s1_index),
                self.point.payload.first.eq(s1_first),
                self.point.payload.last.eq(move_last),
            ]

        with m.If(accept & keep):
            m.d.sync += [
                s1_valid.eq(1),
                s1_final.eq(s0_end),
                s1_prob.eq(self.prob.payload),
                s1_index.eq(s0_idx),
                s1_first.eq(s0_count == 0),
            ]
        with m.Elif(move):
            m.d.sync += s1_valid.eq(0)

        # Mask word of the group; loaded when its last point is accepted.
        new_keep = s0_keep | (keep << s0_idx)[:n_lp]
        new_count = s0_count + keep
        with m.If(self.mask.ready):
            m.d.sync += self.mask.valid.eq(0)
        with m.If(accept):
            with m.If(s0_end):
                m.d.sync += [
                    self.mask.valid.eq(1),
                    self.mask.payload.keep.eq(new_keep),
                    self.mask.payload.count.eq(new_count),
                    s0_idx.eq(0),
                    s0_keep.eq(0),
                    s0_count.eq(0),
                ]
            with m.Else():
                m.d.sync += [
                    s0_idx.eq(s0_idx + 1),
                    s0_keep.eq(new_keep),
                    s0_count.eq(new_count),
                ]

        # Saturating statistics: a counter stuck at its maximum means "at least".
        top = (1 << self.count_bits) - 1
        for cnt, inc in ((self.points_total, accept), (self.points_pruned, accept & ~keep)):
            base = Mux(self.stat_clear, 0, cnt)
            m.d.sync += cnt.eq(Mux(base == top, top, base + inc))

        return m

"""Weight store of ``defa_core``: the weight and bias memories, loaded from ``weights``."""

from amaranth import Array, C, Module, Mux
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from defa_hw.rtl.core.common import check_geometry, add_memory, divmod_const, lend_read_port, read_signature
from defa_hw.rtl.core.interface import WeightTarget, weight_beat_layout

__all__ = ["WeightStore"]


class WeightStore(wiring.Component):
    """Wv / Wa / Wo tile memories, their biases, and the skewed offset-weight banks.

    MM weights: one memory per K chunk ``k`` (word = the ``pe_rows x pe_cols`` tile of
    output-column tile ``jt``, lane-major: lane ``j`` = output row ``jt * pe_cols + j``),
    so a whole weight row is written in one beat; MM reads memory ``k`` at word
    ``tile_base(target) + jt``.  Wv, Wa and Wo share the ``kc`` memories, so the array
    input needs one ``kc``:1 tile multiplexer, not one per matrix.

    Offset weights, skewed for the conflict-free gather: chunk ``k`` of point ``pt``
    (its x and y rows) lives in bank ``(pt + k) mod Bg``, sub-memory ``k // Bg``, word
    ``pt``, in each of the ``n_groups`` copies (one per gather lane group).

    Signal prefix: ``w_`` the load stage (one beat per cycle, no back-pressure).

    Parameters
    ----------
    geom : CoreGeometry

    Attributes
    ----------
    weights : In(stream of :func:`~defa_hw.rtl.core.interface.weight_beat_layout`)
        Taken only while ``busy`` is low.
    busy : In(1)
        A block is running.
    tile_rd : Out(read port) x kc
        MM weight tiles, one port per K chunk.
    value_bias_rd, attn_bias_rd, out_bias_rd : Out(read port)
        MM biases, one word (``pe_cols`` lanes) per output tile.
    offset_rd : Out(read port) x n_groups x Bg x (kc / Bg)
        Offset-weight banks (copy, bank, sub-memory); word ``pt`` holds the x and y rows'
        chunk.
    offset_bias_rd : Out(read port) x n_groups
        Offset biases (x, y) of point ``pt`` (one copy per group).
    idle, drained : Out(1)
        No beat offered / writes take effect in the cycle they are accepted.
    """

    def __init__(self, geom):
        self.geom = g = check_geometry(geom)
        d = g.cfg.data_bits
        tile_w = g.Cc * g.R * d
        super().__init__({
            "weights": In(stream.Signature(weight_beat_layout(g.cfg))),
            "busy": In(1),
            "tile_rd": Out(read_signature(tile_w, 2 * g.t_c + g.t_att)).array(g.kc),
            "value_bias_rd": Out(read_signature(g.Cc * g.acc, g.t_c)),
            "attn_bias_rd": Out(read_signature(g.Cc * g.acc, g.t_att)),
            "out_bias_rd": Out(read_signature(g.Cc * g.acc, g.t_c)),
            "offset_rd": Out(read_signature(2 * g.R * d, g.n_att)).array(
                g.n_groups, g.Bg, g.kc // g.Bg),
            "offset_bias_rd": Out(read_signature(2 * g.acc, g.n_att)).array(g.n_groups),
            "idle": Out(1), "drained": Out(1),
        })

    @staticmethod
    def tile_base(geom):
        """First word of each MM matrix in the shared tile memories."""
        return {WeightTarget.VALUE: 0, WeightTarget.ATTN: geom.t_c,
                WeightTarget.OUT: geom.t_c + geom.t_att}

    def elaborate(self, platform):
        g = self.geom
        d, R, Cc, KC, B, ACC = g.cfg.data_bits, g.R, g.Cc, g.kc, g.Bg, g.acc
        W_BASE = self.tile_base(g)
        m = Module()

        def memory(name, width, depth, gran, port):
            mem = add_memory(m, name, width, depth)
            lend_read_port(m, mem, port)
            return mem.write_port(granularity=gran)

        wmm = [memory(f"w_mm_k{k}", Cc * R * d, 2 * g.t_c + g.t_att, R * d, self.tile_rd[k])
               for k in range(KC)]
        bv_w = memory("b_value", Cc * ACC, g.t_c, ACC, self.value_bias_rd)
        ba_w = memory("b_attn", Cc * ACC, g.t_att, ACC, self.attn_bias_rd)
        bo_w = memory("b_out", Cc * ACC, g.t_c, ACC, self.out_bias_rd)
        ws = [[[memory(f"w_offset_g{gi}_b{b}_s{s_}", 2 * R * d, g.n_att, R * d,
                       self.offset_rd[gi][b][s_])
                for s_ in range(KC // B)] for b in range(B)] for gi in range(g.n_groups)]
        bs_w = [memory(f"b_offset_g{gi}", 2 * ACC, g.n_att, ACC, self.offset_bias_rd[gi])
                for gi in range(g.n_groups)]

        wbeat = self.weights.payload
        m.d.comb += self.weights.ready.eq(~self.busy)
        w_acc = self.weights.valid & self.weights.ready
        m.d.comb += [self.idle.eq(~self.weights.valid), self.drained.eq(1)]
        tgt = wbeat.target
        w_jt, w_j = divmod_const(wbeat.row, Cc)
        w_row = wbeat.weights.as_value()
        w_lane = (C(1, Cc) << w_j)[:Cc]
        w_mm = w_acc & ((tgt == WeightTarget.VALUE) | (tgt == WeightTarget.ATTN) |
                        (tgt == WeightTarget.OUT))
        w_base = Mux(tgt == WeightTarget.ATTN, W_BASE[WeightTarget.ATTN],
                     Mux(tgt == WeightTarget.OUT, W_BASE[WeightTarget.OUT], 0))
        for k, w_ in enumerate(wmm):
            m.d.comb += [w_.addr.eq(w_base + w_jt),
                         w_.data.eq(w_row[k * R * d:(k + 1) * R * d].replicate(Cc)),
                         w_.en.eq(Mux(w_mm, w_lane, 0))]
        for bmem, wt in ((bv_w, WeightTarget.VALUE), (ba_w, WeightTarget.ATTN),
                         (bo_w, WeightTarget.OUT)):
            hit = w_acc & (tgt == wt)
            m.d.comb += [bmem.addr.eq(w_jt), bmem.data.eq(wbeat.bias.as_unsigned().replicate(Cc)),
                         bmem.en.eq(Mux(hit, w_lane, 0))]
        w_pt = wbeat.row >> 1
        w_xy = Mux(wbeat.row[0], 0b10, 0b01)
        w_off = w_acc & (tgt == WeightTarget.OFFSET)
        w_rot = divmod_const(B - divmod_const(w_pt, B)[1], B)[1]     # (-pt) mod B
        for b in range(B):
            # chunk k = s * Bg + (b - pt) mod Bg, the same in every copy
            r_ = divmod_const(b + w_rot, B)[1]
            for s_ in range(KC // B):
                chunk = Array(w_row[(s_ * B + r) * R * d:(s_ * B + r + 1) * R * d]
                              for r in range(B))[r_]
                for copy in ws:
                    w_ = copy[b][s_]
                    m.d.comb += [w_.addr.eq(w_pt), w_.data.eq(chunk.replicate(2)),
                                 w_.en.eq(Mux(w_off, w_xy, 0))]
        for bw in bs_w:
            m.d.comb += [bw.addr.eq(w_pt), bw.data.eq(wbeat.bias.as_unsigned().replicate(2)),
                         bw.en.eq(Mux(w_off, w_xy, 0))]
        return m

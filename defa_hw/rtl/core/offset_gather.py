"""Offset gather of ``defa_core``: the OFFSET pipeline F -> G -> M and the offset write-back.

Only the points that survive PAP get their sampling offsets computed.  F picks the
kept points of the pass, ``B = pe_cols / 2`` to a batch (a batch never spans two
queries); G copies the batch's offset-weight rows from the skewed banks into a
staging buffer without bank conflicts; M hands the batch to the MM issuer, one K chunk
per cycle; the write-back stores the batch's offsets in the per-level offset memories.
"""

from amaranth import Array, C, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from defa_hw.rtl.core.common import (check_geometry, MMKind, add_memory, divmod_const, keep_word_layout,
                                     popcount, read_signature, rng)
from defa_hw.rtl.core.controller import Phase
from defa_hw.rtl.core.mm_issue import mm_result_signature, offset_op_layout

__all__ = ["OffsetGather"]


class OffsetGather(wiring.Component):
    """Kept points -> conflict-free weight gather -> OFFSET MM operations -> offsets.

    Stages (signal prefixes):

    * ``kr_`` keep reader: reads the pass's keep words in order into a 4-word FIFO,
      once the attention path has written all of them (``keep_done``).
    * ``f_`` F: one step per cycle takes a head's remaining kept points, as many as the
      batch has room for (one step per head, plus one per batch it fills); emits a batch
      ``fg_`` of up to ``B`` points at B points or at the end of a query.
    * ``g_`` / ``g1_`` G: ``kc`` cycles per batch; lane ``i = gi * Bg + j`` reads its
      group's copy of the banks: in cycle ``c`` chunk ``k_i = (c + j - pt_i) mod kc``
      from bank ``(pt_i + k_i) mod Bg = (c + j) mod Bg``, so the lanes of a group never
      share a bank; ``g1_`` writes the staging buffer a cycle later.
      Three staging buffers (G writing, one batch queued, M reading) let G run one batch
      ahead of M, so M issues back to back.
    * ``gm_`` the gathered-batch queue, ``mo_`` M: offers chunk ``k`` of the batch on
      ``op`` each cycle; ``tile`` / ``bias`` are the operands one cycle after.
    * ``wb_`` write-back: a result's B offsets in one cycle (one memory per level and
      head, a word per query, written per point).
    * ``bids``: queries whose batches are in flight (BA may start once it is empty).

    Parameters
    ----------
    geom : CoreGeometry

    Attributes
    ----------
    phase : In(Phase)
    pass_start : In(1)
    nq_pass : In
        Queries in the pass.
    keep_done : In(1)
        Every keep word of the pass is written.
    keep_rd : In(read port)
        The keep memory (word ``query * n_heads + head``).
    offset_rd : In(read port) x n_groups x Bg x (kc / Bg), offset_bias_rd : In(read port) x n_groups
        The weight store's skewed offset-weight banks and offset biases (a copy per group).
    res : In(MM results)
        OFFSET tiles (other kinds are ignored).
    op : Out(stream of :func:`~defa_hw.rtl.core.mm_issue.offset_op_layout`)
        OFFSET operations, in order (``first`` marks chunk 0 of a batch).
    tile : Out(B x 2 x pe_rows x data_bits), bias : Out(B x (x, y) biases)
        Operands of the operation accepted in the previous cycle.
    offs_rd : Out(read port) x ba_lanes
        Offsets (x, y codes) of lane ``j * n_levels + l``'s level ``l`` at ``(query *
        n_heads + head) * n_points + p``.
    keep_seen : Out(:func:`keep_word_layout`)
        The keep word F's reader got this cycle (the BA sequencer keeps a copy).
    done : Out(1)
        F has walked the pass and every batch has been handed to the MM issuer.
    pending : Out(1)
        A batch's offsets are not written yet.
    idle, drained : Out(1)
        Nothing gathering or issuing / ``done`` and nothing ``pending``.

    Constants
    ---------
    KEEP_READ : int
        A keep-word read -> F can use it (read port 1, the keep FIFO 2).
    GATHER_START : int
        F emitting a batch -> G's first bank read (``fg_`` register).
    GATHER_QUEUE : int
        G's last read -> M may take the batch (the gather queue's SyncFIFOBuffered).
    FILL : int
        OFFSET's fixed fill besides F's steps and G's ``kc`` reads (F emits in the cycle
        of its last step, hence -1).
    WRITE_BACK : int
        MM result of a batch -> its offsets written (the write-back register).
    """

    KEEP_FIFO_DEPTH = 4
    KEEP_READ = 3
    GATHER_START = 1
    GATHER_QUEUE = 2
    FILL = KEEP_READ + GATHER_START + GATHER_QUEUE - 1
    WRITE_BACK = 1

    def __init__(self, geom):
        self.geom = g = check_geometry(geom)
        d = g.cfg.data_bits
        super().__init__({
            "phase": In(Phase), "pass_start": In(1), "nq_pass": In(rng(g.mq + 1)),
            "keep_done": In(1),
            "keep_rd": In(read_signature(g.L * g.P, g.mq * g.M)),
            "offset_rd": In(read_signature(2 * g.R * d, g.n_att)).array(
                g.n_groups, g.Bg, g.kc // g.Bg),
            "offset_bias_rd": In(read_signature(2 * g.acc, g.n_att)).array(g.n_groups),
            "res": In(mm_result_signature(g)),
            "op": Out(stream.Signature(offset_op_layout(g))),
            "tile": Out(g.B * 2 * g.R * d),
            "bias": Out(data.ArrayLayout(unsigned(2 * g.acc), g.B)),
            "offs_rd": Out(read_signature(2 * d, g.mq * g.M * g.P)).array(g.cfg.ba_lanes),
            "keep_seen": Out(keep_word_layout(g)),
            "done": Out(1), "pending": Out(1), "idle": Out(1), "drained": Out(1),
        })

    def elaborate(self, platform):
        g = self.geom
        d = g.cfg.data_bits
        R, KC, B, MQ, M, L, P = g.R, g.kc, g.B, g.mq, g.M, g.L, g.P
        LP = L * P
        LAT = g.mm_result_latency
        ACC = g.acc
        nq_pass = self.nq_pass
        in_offset = self.phase == Phase.OFFSET
        m = Module()
        pts_layout = data.ArrayLayout(range(g.n_att), B)
        bias_layout = data.ArrayLayout(unsigned(2 * ACC), B)
        tms = []
        for i in range(B):
            tm = add_memory(m, f"stage{i}", 2 * R * d, 3 * KC)
            tms.append((tm.read_port(), tm.write_port()))
        # Offsets: one memory per (level, head), word = query, P points per word (written
        # per point), so the write-back stores a whole batch in one cycle.
        oms = {}
        J = g.cfg.ba_heads
        for l in range(L):
            for mm in range(M):
                om = Memory(shape=unsigned(P * 2 * d), depth=max(2, MQ), init=[])
                m.submodules[f"offs{l}_m{mm}"] = om
                oms[l, mm] = om
        for ln in range(L * J):
            # lane set j reads only its heads (m mod ba_heads = j): one port per memory
            l, j = ln % L, ln // L
            rd = self.offs_rd[ln]
            r_q, r_mp = divmod_const(rd.addr, M * P)
            r_m, r_p = divmod_const(r_mp, P)
            r_sel = Signal(rng(M * P), name=f"offs{ln}_sel")
            with m.If(rd.en):
                m.d.sync += r_sel.eq(r_mp)
            words = []
            for mm in range(M):
                if mm % J != j:
                    words += [C(0, 2 * d)] * P
                    continue
                rp = oms[l, mm].read_port()
                m.d.comb += [rp.addr.eq(r_q), rp.en.eq(rd.en)]
                words += [rp.data[p * 2 * d:(p + 1) * 2 * d] for p in range(P)]
            m.d.comb += rd.data.eq(Array(words)[r_sel])
        oms = {k: om.write_port(granularity=2 * d) for k, om in oms.items()}

        # ---- keep reader: the keep words of the pass, in order, through a FIFO ------------
        kr_head = Signal(rng(MQ * M + 1))            # next keep word to read
        kr_inflight = Signal()
        m.submodules.keep_fifo = kfifo = SyncFIFOBuffered(width=LP,
                                                          depth=self.KEEP_FIFO_DEPTH)
        total_heads = nq_pass * M
        kr_issue = Signal()
        m.d.comb += kr_issue.eq(in_offset & (kr_head < total_heads) & self.keep_done &
                                (kfifo.level + kr_inflight < self.KEEP_FIFO_DEPTH))
        m.d.sync += kr_inflight.eq(kr_issue)
        with m.If(kr_issue):
            m.d.sync += [kr_head.eq(kr_head + 1), self.keep_seen.head.eq(kr_head)]
        m.d.comb += [self.keep_seen.valid.eq(kr_inflight),
                     self.keep_seen.word.eq(self.keep_rd.data)]
        m.d.comb += [self.keep_rd.addr.eq(kr_head), self.keep_rd.en.eq(kr_issue),
                     kfifo.w_data.eq(self.keep_rd.data), kfifo.w_en.eq(kr_inflight)]

        # ---- F: pick the kept points, B to a batch -----------------------------------------
        f_q = Signal(rng(MQ + 1))
        f_m = Signal(rng(M))
        f_used = Signal(LP)
        f_cnt = Signal(rng(B + 1))
        f_pts = Signal(pts_layout)
        f_done = Signal()
        fg_valid = Signal()
        fg_q = Signal(rng(MQ))
        fg_cnt = Signal(rng(B + 1))
        fg_pts = Signal(pts_layout)
        # Queries of the pass whose batches are still in flight (pushed at F, popped when
        # their offsets are written): BA may start a query once F has passed it and no
        # batch of it (or of an earlier query) is pending.
        m.submodules.batch_ids = bids = SyncFIFOBuffered(
            width=bits_for(MQ), depth=8 + -(-(LAT + 2) // KC))

        # One step takes the head's remaining kept points, as many as the batch has room
        # for (the lowest first): a point's slot is f_cnt + its rank among them.
        cur_bits = kfifo.r_data & ~f_used
        room = B - f_cnt
        ranks = [popcount(cur_bits, b) if b else C(0, 1) for b in range(LP)]
        take = Cat(*[cur_bits[b] & (ranks[b] < room) for b in range(LP)])
        n_cur = popcount(cur_bits, LP)
        n_take = Mux(n_cur < room, n_cur, room)
        rest = cur_bits & ~take
        head_end = ~rest.any()                          # this step finishes the word
        q_end = head_end & (f_m == M - 1)
        cnt_next = f_cnt + n_take
        f_emit = (cnt_next == B) | (q_end & (cnt_next != 0))
        f_step = (in_offset & kfifo.r_rdy & ~f_done &
                  (~f_emit | (~fg_valid & bids.w_rdy)))
        slot_hit = []
        slot_pt = []
        for i in range(B):
            hit, pt = C(0, 1), C(0, 1)
            for b in reversed(range(LP)):
                here = take[b] & (f_cnt + ranks[b] == i)
                hit = hit | here
                pt = Mux(here, b, pt)
            hs = Signal(name=f"f_hit{i}")
            ps = Signal(range(g.n_att), name=f"f_pt{i}")
            m.d.comb += [hs.eq(hit), ps.eq(f_m * LP + pt)]
            slot_hit.append(hs)
            slot_pt.append(ps)
        m.d.comb += kfifo.r_en.eq(f_step & head_end)
        with m.If(f_step):
            for i in range(B):
                with m.If(slot_hit[i]):
                    m.d.sync += f_pts[i].eq(slot_pt[i])
            m.d.sync += [f_used.eq(Mux(head_end, 0, f_used | take)),
                         f_cnt.eq(Mux(f_emit, 0, cnt_next))]
            with m.If(head_end):
                with m.If(f_m == M - 1):
                    m.d.sync += [f_m.eq(0), f_q.eq(f_q + 1)]
                    with m.If(f_q == nq_pass - 1):
                        m.d.sync += f_done.eq(1)
                with m.Else():
                    m.d.sync += f_m.eq(f_m + 1)
            with m.If(f_emit):
                m.d.sync += [fg_valid.eq(1), fg_q.eq(f_q), fg_cnt.eq(cnt_next)]
                for i in range(B):
                    m.d.sync += fg_pts[i].eq(Mux(slot_hit[i], slot_pt[i], f_pts[i]))
        m.d.comb += [bids.w_data.eq(f_q), bids.w_en.eq(f_step & f_emit)]

        # ---- G: gather the batch's weight rows into a staging buffer ------------------------
        # Lane i = group gi * Bg + j; group gi reads its own copy of the banks.
        BG, NG = g.Bg, g.n_groups
        g_active = Signal()
        g_c = Signal(rng(KC))
        g_rot = Signal(rng(BG))
        g_buf = Signal(rng(3))
        g_q = Signal(rng(MQ))
        g_cnt = Signal(rng(B + 1))
        g_pts = Signal(pts_layout)
        g_k = [Signal(rng(KC), name=f"g_k{i}") for i in range(B)]
        g_bias = Signal(bias_layout)
        g1_valid = Signal()
        g1_rot = Signal(rng(BG))
        g1_buf = Signal(rng(3))
        g1_k = [Signal(rng(KC), name=f"g1_k{i}") for i in range(B)]
        g1_bias_slot = Signal(rng(BG + 1))
        buf_busy = Signal(3)
        free_idx = Mux(~buf_busy[0], 0, Mux(~buf_busy[1], 1, 2))
        any_free = ~buf_busy.all()
        g_last = g_active & (g_c == KC - 1)
        g_start = fg_valid & (~g_active | g_last) & any_free
        with m.If(g_start):
            m.d.sync += [g_active.eq(1), g_c.eq(0), g_rot.eq(0), g_q.eq(fg_q), g_buf.eq(free_idx),
                         g_cnt.eq(fg_cnt), g_pts.eq(fg_pts), fg_valid.eq(0)]
            for i in range(B):
                # k_i(0) = (j - pt_i) mod Kc, j = i mod Bg
                m.d.sync += g_k[i].eq(divmod_const(i % BG + KC * g.n_att - fg_pts[i], KC)[1])
        with m.Elif(g_last):
            m.d.sync += g_active.eq(0)
        for gi in range(NG):
            lane_pt = Array(g_pts[gi * BG + j] for j in range(BG))
            for b in range(BG):
                lane = divmod_const(b + BG - g_rot, BG)[1]
                for rp in self.offset_rd[gi][b]:
                    m.d.comb += [rp.addr.eq(lane_pt[lane]), rp.en.eq(g_active)]
            m.d.comb += self.offset_bias_rd[gi].addr.eq(
                lane_pt[g_c[:bits_for(BG - 1)] if BG > 1 else 0])
        m.d.sync += [g1_valid.eq(g_active), g1_rot.eq(g_rot), g1_buf.eq(g_buf)]
        m.d.sync += [g1_k[i].eq(g_k[i]) for i in range(B)]
        m.d.sync += g1_bias_slot.eq(Mux(g_active & (g_c < BG), g_c, BG))
        with m.If(g_active & ~g_last):
            m.d.sync += [g_c.eq(g_c + 1), g_rot.eq(Mux(g_rot == BG - 1, 0, g_rot + 1))]
            for i in range(B):
                m.d.sync += g_k[i].eq(Mux(g_k[i] == KC - 1, 0, g_k[i] + 1))
        for i in range(B):
            gi, j = divmod(i, BG)
            bank_data = Array(Array(rp.data for rp in self.offset_rd[gi][b]) for b in range(BG))
            tw = tms[i][1]
            src_b = divmod_const(j + g1_rot, BG)[1]
            src_s = divmod_const(g1_k[i], BG)[0]
            m.d.comb += [tw.addr.eq(g1_buf * KC + g1_k[i]), tw.data.eq(bank_data[src_b][src_s]),
                         tw.en.eq(g1_valid)]
        # Bias of a group's slot c arrives in cycle c + 1 (c < Bg < Kc): bypass it into
        # the copy.
        g_bias_now = Signal.like(g_bias)
        m.d.comb += g_bias_now.eq(g_bias)
        with m.If(g1_bias_slot < BG):
            for gi in range(NG):
                m.d.comb += Array(g_bias_now[gi * BG + j] for j in range(BG))[g1_bias_slot].eq(
                    self.offset_bias_rd[gi].data)
        m.d.sync += g_bias.eq(g_bias_now)
        # Gathered batches queue for M; the SyncFIFOBuffered's 2-cycle latency covers the
        # last chunk, written one cycle after G's last read.
        gq_layout = data.StructLayout({
            "buf": range(3), "q": range(MQ), "cnt": range(B + 1),
            "pts": pts_layout, "bias": bias_layout})
        m.submodules.gather_q = gq = SyncFIFOBuffered(width=gq_layout.size, depth=3)
        m.d.comb += [gq.w_en.eq(g_last),
                     gq.w_data.eq(Cat(g_buf, g_q, g_cnt, g_pts, g_bias_now))]
        gm = data.View(gq_layout, gq.r_data)
        gm_valid = gq.r_rdy

        # ---- M: one K chunk of the batch per accepted operation -----------------------------
        mo_valid = Signal()                            # a batch is being issued
        mo_k = Signal(rng(KC))
        mo_buf = Signal(rng(3))
        mo_q = Signal(rng(MQ))
        mo_cnt = Signal(rng(B + 1))
        mo_pts = Signal(pts_layout)
        mo_take = ~mo_valid & gm_valid                 # op 0 of the next batch
        mo_kk = Mux(mo_take, 0, mo_k)                  # chunk of this op
        off_issue = self.op.valid & self.op.ready
        op = self.op.payload
        m.d.comb += [
            self.op.valid.eq(mo_valid | gm_valid),
            op.first.eq(mo_take), op.k.eq(mo_kk), op.q.eq(Mux(mo_take, gm.q, mo_q)),
            op.pts.eq(Mux(mo_take, gm.pts, mo_pts)), op.cnt.eq(Mux(mo_take, gm.cnt, mo_cnt)),
            gq.r_en.eq(off_issue & mo_take),
            self.tile.eq(Cat(*[tms[i][0].data for i in range(B)])),   # lane 2i + xy
        ]
        for i in range(B):
            m.d.comb += tms[i][0].addr.eq(Mux(mo_take, gm.buf, mo_buf) * KC + mo_kk)
        with m.If(off_issue):
            with m.If(mo_take):
                m.d.sync += [mo_valid.eq(KC != 1), mo_k.eq(1), mo_buf.eq(gm.buf),
                             mo_q.eq(gm.q), mo_cnt.eq(gm.cnt), mo_pts.eq(gm.pts),
                             self.bias.eq(gm.bias)]
            with m.Else():
                m.d.sync += mo_k.eq(mo_k + 1)
                with m.If(mo_k == KC - 1):
                    m.d.sync += mo_valid.eq(0)
        # Staging buffers: taken at G start, freed after M's last read of the batch.
        buf_set = Mux(g_start, C(1, 3) << free_idx, 0)[:3]
        buf_clr = Mux(off_issue & (mo_kk == KC - 1),
                      C(1, 3) << Mux(mo_take, gm.buf, mo_buf), 0)[:3]
        m.d.sync += buf_busy.eq((buf_busy | buf_set) & ~buf_clr)

        # ---- write-back: the whole batch in one cycle (one word per level and head) --------
        res = self.res
        wb_pend = Signal(B)
        wb_q = Signal(rng(MQ))
        wb_pts = Signal(pts_layout)
        wb_codes = Signal(g.Cc * d)
        wb_new = res.valid & (res.tag.kind == MMKind.OFFSET)
        for (l, mm), ow in oms.items():
            en, word = [], []
            for p in range(P):
                pt = (mm * L + l) * P + p
                hit, code = C(0, 1), C(0, 2 * d)
                for i in reversed(range(B)):
                    here = wb_pend[i] & (wb_pts[i] == pt)
                    hit = hit | here
                    code = Mux(here, wb_codes[2 * i * d:(2 * i + 2) * d], code)
                en.append(hit)
                word.append(code)
            m.d.comb += [ow.addr.eq(wb_q), ow.data.eq(Cat(*word)), ow.en.eq(Cat(*en))]
        # Results of two batches are >= Kc >= 2 cycles apart: the previous one is written.
        with m.If(wb_new):
            m.d.sync += [wb_pend.eq(((C(1, B + 1) << res.tag.cnt) - 1)[:B]),
                         wb_q.eq(res.tag.q), wb_pts.eq(res.tag.pts),
                         wb_codes.eq(res.codes)]
        with m.Else():
            m.d.sync += wb_pend.eq(0)
        m.d.comb += bids.r_en.eq(wb_pend != 0)

        # ---- exits ------------------------------------------------------------------------
        m.d.comb += [
            self.done.eq(f_done & ~fg_valid & ~g_active & (gq.level == 0) &
                         ~(mo_valid & ~(off_issue & (mo_k == KC - 1)))),
            self.pending.eq(bids.level != 0),
            self.idle.eq(~fg_valid & ~g_active & ~gm_valid & ~mo_valid),
            self.drained.eq(self.done & (bids.level == 0)),
        ]
        with m.If(self.pass_start):
            m.d.sync += [f_q.eq(0), f_m.eq(0), f_used.eq(0), f_cnt.eq(0), f_done.eq(0),
                         kr_head.eq(0)]
        return m

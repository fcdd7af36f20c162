"""Attention path of ``defa_core``: logit tiles -> serializer -> softmax -> PAP point mask,
and the probability and keep-mask memories of the pass."""

from amaranth import Array, C, Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from defa_hw.rtl.core.common import check_geometry, MMKind, add_memory, divmod_const, lend_read_port, read_signature, rng
from defa_hw.rtl.core.mm_issue import mm_result_signature
from defa_hw.rtl.point_mask import PointMask
from defa_hw.rtl.softmax import Softmax

__all__ = ["AttentionPath"]


class AttentionPath(wiring.Component):
    """Turns the ATTN tiles of a pass into probabilities and keep masks.

    The logit FIFO holds ``attn_cap`` tiles (the MM issuer's credit, returned on
    ``tile_taken``); the serializer feeds the softmax one logit per cycle; every
    probability is written to the per-level probability memory of its head and fed to
    the point mask, whose keep word (one per query and head) goes to the keep memory.

    The keep memory has one reader, the offset gather's F stage (``keep_rd_f``, in
    OFFSET); the BA sequencer keeps a copy of what F reads.

    Signal prefixes: ``ser_`` the serializer, ``pr_`` the probability writer,
    ``groups_done`` the keep words written.

    Parameters
    ----------
    geom : CoreGeometry
    count_bits : int, keyword-only
        Width of the point mask's statistics counters.

    Attributes
    ----------
    pass_start, start : In(1)
        A pass starts (clears the writers); START (clears the statistics).
    nq_pass : In
        Queries in the pass.
    res : In(MM results)
        ATTN tiles (other kinds are ignored).
    logit_frac : In(6)
        Fraction bits of the logits (``Reg.LOGIT_FRAC``).
    enable, threshold, threshold_we : In
        Point mask: pruning on, and its threshold register write.
    tile_taken : Out(1)
        A tile left the logit FIFO (returns the ATTN issue credit).
    keep_done : Out(1)
        Every keep word of the pass is written.
    keep_rd_f : Out(read port)
        Keep words (``n_levels * n_points`` bits) at ``query * n_heads + head``.
    prob_rd : Out(read port) x ba_lanes
        Probability codes of lane ``j * n_levels + l``'s level ``l`` at ``(query *
        n_heads + head) * n_points + p``.
    points_total, points_pruned : Out(count_bits)
        Point mask statistics since START.
    idle, drained : Out(1)
        No logit waiting to be serialised / that, and every keep word of the pass written.

    Constants
    ---------
    LOGIT_FILL : int
        The serializer's load cycle (a tile leaves the logit FIFO into ``ser_codes``).
    KEEP_WRITE : int
        A head's last probability -> its keep word written (point mask) and counted.
    """

    LOGIT_FILL = 1
    KEEP_WRITE = 2

    def __init__(self, geom, *, count_bits):
        if not isinstance(count_bits, int) or not 1 <= count_bits <= 64:
            raise ValueError(f"count_bits = {count_bits!r} is invalid: allowed 1..64")
        self.geom = g = check_geometry(geom)
        self.count_bits = count_bits
        cfg = g.cfg
        LP = g.L * g.P
        super().__init__({
            "pass_start": In(1), "start": In(1),
            "nq_pass": In(rng(g.mq + 1)),
            "res": In(mm_result_signature(g)),
            "logit_frac": In(6),
            "enable": In(1), "threshold": In(32), "threshold_we": In(1),
            "tile_taken": Out(1), "keep_done": Out(1),
            "keep_rd_f": Out(read_signature(LP, g.mq * g.M)),
            "prob_rd": Out(read_signature(cfg.prob_bits, g.mq * g.M * g.P)).array(
                cfg.ba_lanes),
            "points_total": Out(count_bits), "points_pruned": Out(count_bits),
            "idle": Out(1), "drained": Out(1),
        })

    def elaborate(self, platform):
        if self.geom.att_lanes > 1:
            return self._elaborate_lanes()
        g = self.geom
        cfg, d = g.cfg, g.cfg.data_bits
        Cc, M, L, P, MQ = g.Cc, g.M, g.L, g.P, g.mq
        LP = L * P
        m = Module()
        m.submodules.softmax = smax = Softmax(cfg)
        m.submodules.pmask = pmask = PointMask(cfg, count_bits=self.count_bits)
        m.d.comb += [
            pmask.threshold.eq(self.threshold), pmask.threshold_we.eq(self.threshold_we),
            pmask.enable.eq(self.enable), pmask.stat_clear.eq(self.start),
            self.points_total.eq(pmask.points_total),
            self.points_pruned.eq(pmask.points_pruned),
        ]

        km = add_memory(m, "keep", LP, MQ * M)
        km_r = km.read_port()
        km_w = km.write_port()
        pms = []
        for l in range(L):
            pm = add_memory(m, f"prob{l}", cfg.prob_bits, MQ * M * P)
            for ln in range(l, cfg.ba_lanes, L):           # a read port per BA lane
                lend_read_port(m, pm, self.prob_rd[ln])
            pms.append(pm.write_port())
        m.d.comb += [km_r.addr.eq(self.keep_rd_f.addr), km_r.en.eq(self.keep_rd_f.en),
                     self.keep_rd_f.data.eq(km_r.data)]

        # ---- logit tiles -> serializer -> softmax --------------------------------------
        m.submodules.logit_fifo = lfifo = SyncFIFOBuffered(
            width=Cc * d + bits_for(g.t_att), depth=g.attn_cap)
        res = self.res
        m.d.comb += [
            lfifo.w_data.eq(Cat(res.codes, res.tag.jt)),
            lfifo.w_en.eq(res.valid & (res.tag.kind == MMKind.ATTN)),
        ]
        ser_codes = Signal(Cc * d)
        ser_idx = Signal(rng(Cc))
        ser_n = Signal(rng(Cc + 1))                  # valid logits in the tile
        ser_valid = Signal()
        ser_take = lfifo.r_rdy & (~ser_valid | (smax.logits.ready & (ser_idx == ser_n - 1)))
        m.d.comb += [lfifo.r_en.eq(ser_take), self.tile_taken.eq(ser_take)]
        f_jt = lfifo.r_data[Cc * d:]
        n_last = g.n_att - (g.t_att - 1) * Cc
        with m.If(ser_take):
            m.d.sync += [ser_valid.eq(1), ser_idx.eq(0), ser_codes.eq(lfifo.r_data[:Cc * d]),
                         ser_n.eq(Mux(f_jt == g.t_att - 1, n_last, Cc))]
        with m.Elif(ser_valid & smax.logits.ready):
            with m.If(ser_idx == ser_n - 1):
                m.d.sync += ser_valid.eq(0)
            with m.Else():
                m.d.sync += ser_idx.eq(ser_idx + 1)
        m.d.comb += [
            smax.logits.valid.eq(ser_valid),
            smax.logits.payload.eq(ser_codes.word_select(ser_idx, d)),
            smax.logit_frac_bits.eq(self.logit_frac),
        ]

        # ---- probabilities: tee into the per-level memories and the point mask ----------
        pr_i = Signal(rng(LP))
        pr_head = Signal(rng(MQ * M + 1))
        pr_lvl, pr_p = divmod_const(pr_i, P)
        m.d.comb += [
            pmask.prob.valid.eq(smax.probs.valid),
            pmask.prob.payload.eq(smax.probs.payload),
            smax.probs.ready.eq(pmask.prob.ready),
            pmask.point.ready.eq(1),
            pmask.mask.ready.eq(1),
        ]
        pr_acc = smax.probs.valid & smax.probs.ready
        for l in range(L):
            pw = pms[l]
            m.d.comb += [pw.addr.eq(pr_head * P + pr_p), pw.data.eq(smax.probs.payload),
                         pw.en.eq(pr_acc & (pr_lvl == l))]
        with m.If(pr_acc):
            with m.If(pr_i == LP - 1):
                m.d.sync += [pr_i.eq(0), pr_head.eq(pr_head + 1)]
            with m.Else():
                m.d.sync += pr_i.eq(pr_i + 1)
        groups_done = Signal(rng(MQ * M + 1))        # keep words written in this pass
        m.d.comb += [km_w.addr.eq(groups_done), km_w.data.eq(pmask.mask.payload.keep),
                     km_w.en.eq(pmask.mask.valid)]
        with m.If(pmask.mask.valid):
            m.d.sync += groups_done.eq(groups_done + 1)
        m.d.comb += [
            self.keep_done.eq(groups_done == self.nq_pass * M),
            self.idle.eq(~lfifo.r_rdy & ~ser_valid),
            self.drained.eq(~lfifo.r_rdy & ~ser_valid & self.keep_done),
        ]
        with m.If(self.pass_start):
            m.d.sync += [groups_done.eq(0), pr_i.eq(0), pr_head.eq(0)]
        return m

    def _elaborate_lanes(self):
        """``att_lanes`` softmax lanes: head ``m`` of query ``q`` goes to lane
        ``(q mod att_rq) * n_heads + m``, so a lane gets a head every ``att_rq`` queries,
        no sooner than its softmax has taken the previous one's L*P logits.  Each lane
        has its own probability memories (per level) and keep memory, word ``q div
        att_rq``; the read ports lent out decode the usual addresses into lane and word."""
        g = self.geom
        cfg, d = g.cfg, g.cfg.data_bits
        Cc, M, L, P, MQ = g.Cc, g.M, g.L, g.P, g.mq
        K, RQ = g.att_lanes, g.att_rq
        LP = L * P
        HPT = Cc // LP                                # heads per full logit tile
        WORDS = -(-MQ // RQ)                          # heads per lane and pass
        m = Module()

        # ---- logit tiles (with their query) -> the lanes' head slots --------------------
        jtb = bits_for(g.t_att)
        m.submodules.logit_fifo = lfifo = SyncFIFOBuffered(
            width=Cc * d + jtb + bits_for(MQ), depth=g.attn_cap)
        res = self.res
        w_jt = Signal(jtb)                             # the tag's jt may have no bits
        m.d.comb += w_jt.eq(res.tag.jt)
        m.d.comb += [lfifo.w_data.eq(Cat(res.codes, w_jt, res.tag.q)),
                     lfifo.w_en.eq(res.valid & (res.tag.kind == MMKind.ATTN))]
        f_codes = lfifo.r_data[:Cc * d]
        f_jt = lfifo.r_data[Cc * d:Cc * d + jtb]
        f_q = lfifo.r_data[Cc * d + jtb:]
        n_last = g.n_att - (g.t_att - 1) * Cc
        f_n = Mux(f_jt == g.t_att - 1, n_last // LP, HPT)    # heads in the tile
        f_set = divmod_const(f_q, RQ)[1] * M + f_jt * HPT     # lane of its first head

        lanes = []
        for k in range(K):
            smax = Softmax(cfg)
            pmask = PointMask(cfg, count_bits=self.count_bits)
            m.submodules[f"softmax{k}"] = smax
            m.submodules[f"pmask{k}"] = pmask
            m.d.comb += [
                pmask.threshold.eq(self.threshold), pmask.threshold_we.eq(self.threshold_we),
                pmask.enable.eq(self.enable), pmask.stat_clear.eq(self.start),
                smax.logit_frac_bits.eq(self.logit_frac),
                pmask.prob.valid.eq(smax.probs.valid),
                pmask.prob.payload.eq(smax.probs.payload),
                smax.probs.ready.eq(pmask.prob.ready),
                pmask.point.ready.eq(1), pmask.mask.ready.eq(1),
            ]
            want, codes = C(0, 1), C(0, LP * d)
            for i in reversed(range(HPT)):
                hit = (i < f_n) & (f_set + i == k)
                want = want | hit
                codes = Mux(hit, f_codes[i * LP * d:(i + 1) * LP * d], codes)
            lanes.append({"smax": smax, "pmask": pmask, "want": want, "codes": codes,
                          "valid": Signal(name=f"ser{k}_valid"),
                          "buf": Signal(LP * d, name=f"ser{k}_codes"),
                          "idx": Signal(rng(LP), name=f"ser{k}_idx")})
        # A slot is free when empty or giving its last logit this cycle (back to back).
        for ln in lanes:
            ln["last"] = ln["valid"] & ln["smax"].logits.ready & (ln["idx"] == LP - 1)
        take = lfifo.r_rdy
        for ln in lanes:
            take = take & (~ln["want"] | ~ln["valid"] | ln["last"])
        m.d.comb += [lfifo.r_en.eq(take), self.tile_taken.eq(take)]
        for ln in lanes:
            smax = ln["smax"]
            m.d.comb += [smax.logits.valid.eq(ln["valid"]),
                         smax.logits.payload.eq(ln["buf"].word_select(ln["idx"], d))]
            with m.If(take & ln["want"]):
                m.d.sync += [ln["valid"].eq(1), ln["buf"].eq(ln["codes"]), ln["idx"].eq(0)]
            with m.Elif(ln["last"]):
                m.d.sync += ln["valid"].eq(0)
            with m.Elif(ln["valid"] & smax.logits.ready):
                m.d.sync += ln["idx"].eq(ln["idx"] + 1)

        # ---- per lane: probabilities and keep words into the lane's memories ------------
        probs = [[None] * K for _ in range(L)]
        keeps = []
        written = 0
        for k, ln in enumerate(lanes):
            smax, pmask = ln["smax"], ln["pmask"]
            pr_i = Signal(rng(LP), name=f"pr{k}_i")
            pr_h = Signal(rng(WORDS + 1), name=f"pr{k}_h")
            pr_lvl, pr_p = divmod_const(pr_i, P)
            pr_acc = smax.probs.valid & smax.probs.ready
            for l in range(L):
                pm = add_memory(m, f"prob{l}_lane{k}", cfg.prob_bits, WORDS * P)
                pw = pm.write_port()
                m.d.comb += [pw.addr.eq(pr_h * P + pr_p), pw.data.eq(smax.probs.payload),
                             pw.en.eq(pr_acc & (pr_lvl == l))]
                probs[l][k] = pm
            with m.If(pr_acc):
                with m.If(pr_i == LP - 1):
                    m.d.sync += [pr_i.eq(0), pr_h.eq(pr_h + 1)]
                with m.Else():
                    m.d.sync += pr_i.eq(pr_i + 1)
            kw_h = Signal(rng(WORDS + 1), name=f"keep{k}_h")
            km = add_memory(m, f"keep_lane{k}", LP, WORDS)
            kw = km.write_port()
            m.d.comb += [kw.addr.eq(kw_h), kw.data.eq(pmask.mask.payload.keep),
                         kw.en.eq(pmask.mask.valid)]
            with m.If(pmask.mask.valid):
                m.d.sync += kw_h.eq(kw_h + 1)
            keeps.append(km)
            written = written + pmask.mask.valid
            with m.If(self.pass_start):
                m.d.sync += [pr_i.eq(0), pr_h.eq(0), kw_h.eq(0)]
        groups_done = Signal(rng(MQ * M + 1))        # keep words written in this pass
        m.d.sync += groups_done.eq(groups_done + written)
        with m.If(self.pass_start):
            m.d.sync += groups_done.eq(0)

        def lane_word(q, mm):
            qd, qr = divmod_const(q, RQ)
            return qr * M + mm, qd

        # ---- lent read ports: (query, head[, point]) -> lane, word ---------------------
        for ln in range(cfg.ba_lanes):
            l = ln % L
            rd = self.prob_rd[ln]
            qm, p = divmod_const(rd.addr, P)
            q, mm = divmod_const(qm, M)
            lane, word = lane_word(q, mm)
            sel = Signal(rng(K), name=f"prob{ln}_sel")
            with m.If(rd.en):
                m.d.sync += sel.eq(lane)
            datas = []
            for k in range(K):
                rp = probs[l][k].read_port()
                m.d.comb += [rp.addr.eq(word * P + p), rp.en.eq(rd.en)]
                datas.append(rp.data)
            m.d.comb += rd.data.eq(Array(datas)[sel])
        # one keep read port per lane, F's
        rd, rd_en = self.keep_rd_f.addr, self.keep_rd_f.en
        q, mm = divmod_const(rd, M)
        lane, word = lane_word(q, mm)
        ksel = Signal(rng(K))
        with m.If(rd_en):
            m.d.sync += ksel.eq(lane)
        kdatas = []
        for km in keeps:
            rp = km.read_port()
            m.d.comb += [rp.addr.eq(word), rp.en.eq(rd_en)]
            kdatas.append(rp.data)
        kdata = Array(kdatas)[ksel]
        m.d.comb += self.keep_rd_f.data.eq(kdata)

        total = sum(ln["pmask"].points_total for ln in lanes)
        pruned = sum(ln["pmask"].points_pruned for ln in lanes)
        busy = Cat(*[ln["valid"] for ln in lanes]).any()
        m.d.comb += [
            self.points_total.eq(total), self.points_pruned.eq(pruned),
            self.keep_done.eq(groups_done == self.nq_pass * M),
            self.idle.eq(~lfifo.r_rdy & ~busy),
            self.drained.eq(~lfifo.r_rdy & ~busy & self.keep_done),
        ]
        return m

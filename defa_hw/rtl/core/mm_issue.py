"""MM issue of ``defa_core``: the four MM issuers, the I0 / I1 stages, the array operand
mux (MM tiles and BA operations share one PE array) and the MM result tag line."""

from amaranth import Array, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from defa_hw.rtl.core.common import check_geometry, MMKind, mm_tag_layout, pixel_layout, read_signature, rng
from defa_hw.rtl.core.controller import Phase
from defa_hw.rtl.core.interface import WeightTarget
from defa_hw.rtl.core.weights import WeightStore
from defa_hw.rtl.pe_array import ArrayMode, PEArray, ba_point_layout
from defa_hw.rtl.requant import Requant

__all__ = ["MMIssue", "offset_op_layout", "ba_operand_signature", "mm_result_signature"]


def offset_op_layout(geom):
    """One OFFSET MM operation: chunk ``k`` of a batch of ``cnt`` points of query ``q``."""
    return data.StructLayout({
        "first": 1, "k": rng(geom.kc), "q": range(geom.mq), "cnt": range(geom.B + 1),
        "pts": data.ArrayLayout(range(geom.n_att), geom.B)})


def ba_operand_signature(cfg):
    """A BA operation for the PE array (driven by the BA pipeline's c8 stage).

    ``busy``: a BA operation is in the BA pipeline (MM must not issue).  The levels'
    tiles are delimited by ``pt[l].first`` / ``pt[l].last``, per BA lane."""
    d = cfg.data_bits
    return wiring.Signature({
        "valid": Out(1), "busy": Out(1),
        "pix": Out(data.ArrayLayout(data.ArrayLayout(
            data.ArrayLayout(signed(d), cfg.ba_channels), 4), cfg.ba_lanes)),
        "pt": Out(data.ArrayLayout(ba_point_layout(cfg), cfg.ba_lanes)),
    })


def mm_result_signature(geom):
    """A requantised MM tile: ``pe_cols`` codes and the tag it was issued with."""
    return wiring.Signature({
        "valid": Out(1), "tag": Out(mm_tag_layout(geom)),
        "codes": Out(geom.Cc * geom.cfg.data_bits)})


class MMIssue(wiring.Component):
    """Issues the MM phases' operations into the PE array, one K chunk per cycle.

    ATTN and OUT walk (query, output tile, K chunk) of the pass; VALUE walks the
    unmasked pixels it is handed; OFFSET issues the batches the offset gather hands it.
    Stages: ``I0`` reads the operand memories, ``I1`` presents the operands to the
    array (or the BA pipeline's operation, which wins), then the tag line follows each
    tile through the array and the MM requant to ``res``.

    Signal prefixes: ``a_`` ATTN, ``o_`` OUT, ``v_`` VALUE issuer; ``i0_`` / ``i1_`` the
    issue stages; ``mm_`` the tag line; ``ba_quiet`` the MM/BA mode guard (no MM
    operation within ``PEArray.BA_TO_MM_GAP`` cycles of a BA operation).

    Parameters
    ----------
    geom : CoreGeometry

    Attributes
    ----------
    phase : In(Phase)
    start, pass_start : In(1)
        START (clears the credits); a pass starts (clears the issuers).
    half : In(1)
        Query-memory half of the pass.
    pass_base : In(16), nq_pass : In, last_pass : In(1)
        First query, queries and last-ness of the pass.
    q_loaded : In(16)
        Queries stored (ATTN waits for its query).
    agg_done : In(1)
        Every aggregated sample of the pass is written (OUT may start).
    pix_done : In(1)
        Every fmap beat of the block has been taken (stall accounting).
    tile_taken, out_pop : In(1)
        A logit tile / an output beat left its FIFO (returns an issue credit).
    pix : In(stream of :func:`~defa_hw.rtl.core.common.pixel_layout`)
        VALUE: unmasked pixels.
    off : In(stream of :func:`offset_op_layout`)
        OFFSET operations; ``off_tile`` / ``off_bias`` are their operands one cycle after
        the handshake (the staging-buffer word and the batch's biases).
    ba : In(:func:`ba_operand_signature`)
    tile_rd, attn_bias_rd, value_bias_rd, out_bias_rd : In(read port)
        The weight store's MM memories.
    query_rd, agg_rd : In(read port)
        Queries (ATTN, OFFSET) and aggregated samples (OUT).
    shift_logit, shift_offset, shift_value, shift_out : In(6)
        Requant shifts of the four kinds.
    pe_valid, pe_mode, pe_first, pe_last, pe_x, pe_w, pe_bias, pe_pix, pe_pt : Out
        The PE array's inputs.
    pe_out_valid, pe_mm_acc : In
        The PE array's MM result.
    res : Out(:func:`mm_result_signature`)
        Requantised MM tiles, every kind (consumers filter on ``tag.kind``).
    attn_done, out_done : Out(1)
        The pass's last ATTN / OUT operation has been issued.
    value_idle : Out(1)
        No VALUE pixel left half issued (VALUE exit, with the value ingest's drain).
    value_busy : Out(1)
        A VALUE tile is at I1 or in the tag line (BA waits for the value buffers).
    stall : Out(1)
        An issuer with work waits for a stream or a credit.
    op : Out(1)
        An MM operation enters the array (counts ``Reg.MM_OPS``).
    idle, drained : Out(1)
        Nothing issuing / no MM tile at I1 or in the tag line.
    """

    def __init__(self, geom):
        self.geom = g = check_geometry(geom)
        cfg, d = g.cfg, g.cfg.data_bits
        tile_w = g.Cc * g.R * d
        bias_w = g.Cc * g.acc
        ba = ba_operand_signature(cfg).members
        super().__init__({
            "phase": In(Phase), "start": In(1), "pass_start": In(1), "half": In(1),
            "pass_base": In(16), "nq_pass": In(rng(g.mq + 1)), "last_pass": In(1),
            "q_loaded": In(16), "agg_done": In(1), "pix_done": In(1),
            "tile_taken": In(1), "out_pop": In(1),
            "pix": In(stream.Signature(pixel_layout(g))),
            "off": In(stream.Signature(offset_op_layout(g))),
            "off_tile": In(g.B * 2 * g.R * d),
            "off_bias": In(data.ArrayLayout(unsigned(2 * g.acc), g.B)),
            "ba": In(ba_operand_signature(cfg)),
            "tile_rd": In(read_signature(tile_w, 2 * g.t_c + g.t_att)).array(g.kc),
            "attn_bias_rd": In(read_signature(bias_w, g.t_att)),
            "value_bias_rd": In(read_signature(bias_w, g.t_c)),
            "out_bias_rd": In(read_signature(bias_w, g.t_c)),
            "query_rd": In(read_signature(g.C * d, 2 * g.mq)),
            "agg_rd": In(read_signature(g.C * d, g.mq)),
            "shift_logit": In(6), "shift_offset": In(6), "shift_value": In(6),
            "shift_out": In(6),
            "pe_valid": Out(1), "pe_mode": Out(ArrayMode), "pe_first": Out(1),
            "pe_last": Out(1), "pe_x": Out(g.R * d), "pe_w": Out(tile_w),
            "pe_bias": Out(bias_w), "pe_pix": Out(ba["pix"].shape),
            "pe_pt": Out(ba["pt"].shape),
            "pe_out_valid": In(1),
            "pe_mm_acc": In(data.ArrayLayout(signed(g.cfg.mm_acc_bits), g.Cc)),
            "res": Out(mm_result_signature(g)),
            "attn_done": Out(1), "out_done": Out(1), "value_idle": Out(1),
            "value_busy": Out(1), "stall": Out(1), "op": Out(1),
            "idle": Out(1), "drained": Out(1),
        })

    @staticmethod
    def _count_tiles(m, issue, k, jt, q, done, *, kc, n_jt, nq):
        """Step an MM phase's operation counters on ``issue``: K chunk ``k`` (``kc`` per
        tile), output tile ``jt`` (``n_jt`` per query), query ``q``; ``done`` after the
        ``nq``-th query."""
        with m.If(issue):
            m.d.sync += k.eq(k + 1)
            with m.If(k == kc - 1):
                m.d.sync += k.eq(0)
                with m.If(jt == n_jt - 1):
                    m.d.sync += [jt.eq(0), q.eq(q + 1)]
                    with m.If(q == nq - 1):
                        m.d.sync += done.eq(1)
                with m.Else():
                    m.d.sync += jt.eq(jt + 1)

    def elaborate(self, platform):
        g = self.geom
        cfg, d = g.cfg, g.cfg.data_bits
        R, Cc, KC, MQ = g.R, g.Cc, g.kc, g.mq
        LAT, RQ, GAP = g.pe_latency, Requant.LATENCY, PEArray.BA_TO_MM_GAP
        W_BASE = WeightStore.tile_base(g)
        phase, nq_pass = self.phase, self.nq_pass
        m = Module()
        m.submodules.rq_mm = rq_mm = Requant(cfg, acc_bits=cfg.mm_acc_bits, lanes=Cc)
        tag_layout = mm_tag_layout(g)

        # the operation at I0 (memory reads issued) and at I1 (operands at the array)
        stage = data.StructLayout({"valid": 1, "first": 1, "last": 1, "k": rng(KC),
                                   "kind": MMKind, "tag": tag_layout})
        i0 = Signal(stage, name="i0")
        i1 = Signal(stage, name="i1")
        m.d.sync += i1.eq(i0)
        i0_valid, i0_first, i0_last, i0_k, i0_kind, i0_tag = (
            i0.valid, i0.first, i0.last, i0.k, i0.kind, i0.tag)
        i1_valid, i1_first, i1_last, i1_k, i1_kind, i1_tag = (
            i1.valid, i1.first, i1.last, i1.k, i1.kind, i1.tag)
        m.d.comb += self.op.eq(i1_valid)

        # Mode guard: an MM op must not reach the array within GAP cycles of a BA op.
        ba_quiet = Signal(rng(GAP + 2), init=GAP + 1)  # cycles since a BA op, minus one
        mm_ok = Signal()
        m.d.comb += mm_ok.eq(~self.ba.busy & (ba_quiet + 1 >= GAP))
        with m.If(self.ba.valid):
            m.d.sync += ba_quiet.eq(0)
        with m.Elif(ba_quiet < GAP + 1):
            m.d.sync += ba_quiet.eq(ba_quiet + 1)

        # ---- ATTN issue ----------------------------------------------------------------
        a_q = Signal(rng(MQ + 1))
        a_jt = Signal(rng(g.t_att))
        a_k = Signal(rng(KC))
        a_done = self.attn_done
        a_res = Signal(rng(16))                      # tiles issued, not yet serialised
        a_loaded = self.q_loaded > self.pass_base + a_q
        a_credit = (a_k != 0) | (a_res < g.attn_cap)
        a_issue = (phase == Phase.ATTN) & ~a_done & a_loaded & a_credit & mm_ok

        # ---- OUT issue -----------------------------------------------------------------
        o_q = Signal(rng(MQ + 1))
        o_jt = Signal(rng(g.t_c))
        o_k = Signal(rng(KC))
        o_done = self.out_done
        o_res = Signal(rng(32))                      # result beats reserved (flight + FIFO)
        o_credit = (o_k != 0) | (o_res < g.out_cap)
        # OUT starts once every aggregated sample of the pass is written (a fixed BA drain).
        o_issue = (phase == Phase.OUT) & ~o_done & self.agg_done & o_credit & mm_ok

        # ---- VALUE issue ---------------------------------------------------------------
        pix_head = self.pix.payload
        cur_pix = Signal(pixel_layout(g))
        v_active = Signal()                            # a pixel is being processed
        v_jt = Signal(rng(g.t_c))
        v_k = Signal(rng(KC))
        v_new = ~v_active & self.pix.valid
        v_issue = (phase == Phase.VALUE) & (v_active | self.pix.valid) & mm_ok

        # ---- OFFSET issue: the offset gather's M stage offers the operations -----------
        off = self.off.payload
        m.d.comb += self.off.ready.eq((phase == Phase.OFFSET) & mm_ok)
        off_issue = self.off.valid & self.off.ready

        # Shared read ports: addresses by phase (ATTN, OUT and VALUE issue only in their
        # own phase; a read at I0 is used at I1 by the op's kind).
        r_jt = Mux(phase == Phase.ATTN, W_BASE[WeightTarget.ATTN] + a_jt,
                   Mux(phase == Phase.OUT, W_BASE[WeightTarget.OUT] + o_jt, v_jt))
        r_k = Mux(phase == Phase.ATTN, a_k, Mux(phase == Phase.OUT, o_k, v_k))
        for k, r_ in enumerate(self.tile_rd):
            m.d.comb += [r_.addr.eq(r_jt), r_.en.eq(r_k == k)]
        m.d.comb += [self.attn_bias_rd.addr.eq(a_jt), self.out_bias_rd.addr.eq(o_jt),
                     self.value_bias_rd.addr.eq(v_jt), self.agg_rd.addr.eq(o_q)]

        with m.Switch(phase):
            with m.Case(Phase.ATTN):
                m.d.comb += [
                    self.query_rd.addr.eq(self.half * MQ + a_q),
                    i0_valid.eq(a_issue), i0_first.eq(a_k == 0), i0_last.eq(a_k == KC - 1),
                    i0_k.eq(a_k), i0_kind.eq(MMKind.ATTN),
                    i0_tag.kind.eq(MMKind.ATTN), i0_tag.q.eq(a_q), i0_tag.jt.eq(a_jt),
                ]
            with m.Case(Phase.OUT):
                m.d.comb += [
                    i0_valid.eq(o_issue), i0_first.eq(o_k == 0), i0_last.eq(o_k == KC - 1),
                    i0_k.eq(o_k), i0_kind.eq(MMKind.OUT),
                    i0_tag.kind.eq(MMKind.OUT), i0_tag.q.eq(o_q), i0_tag.jt.eq(o_jt),
                    i0_tag.last.eq(self.last_pass & (o_q == nq_pass - 1) &
                                   (o_jt == g.t_c - 1)),
                ]
            with m.Case(Phase.VALUE):
                src = data.View(pixel_layout(g), Mux(v_active, cur_pix.as_value(),
                                                     pix_head.as_value()))
                m.d.comb += [
                    i0_valid.eq(v_issue), i0_first.eq(v_k == 0), i0_last.eq(v_k == KC - 1),
                    i0_k.eq(v_k), i0_kind.eq(MMKind.VALUE),
                    i0_tag.kind.eq(MMKind.VALUE), i0_tag.jt.eq(v_jt),
                    i0_tag.level.eq(src.level), i0_tag.y.eq(src.y), i0_tag.x.eq(src.x),
                ]
            with m.Case(Phase.OFFSET):
                m.d.comb += [
                    self.query_rd.addr.eq(self.half * MQ + off.q),
                    i0_valid.eq(off_issue), i0_first.eq(off.first),
                    i0_last.eq(off.k == KC - 1),
                    i0_k.eq(off.k), i0_kind.eq(MMKind.OFFSET),
                    i0_tag.kind.eq(MMKind.OFFSET), i0_tag.q.eq(off.q),
                    i0_tag.pts.eq(off.pts), i0_tag.cnt.eq(off.cnt),
                ]

        # ATTN and OUT counters: chunk k, output tile jt, query q of the pass
        self._count_tiles(m, a_issue, a_k, a_jt, a_q, a_done, kc=KC, n_jt=g.t_att, nq=nq_pass)
        self._count_tiles(m, o_issue, o_k, o_jt, o_q, o_done, kc=KC, n_jt=g.t_c, nq=nq_pass)
        # VALUE counters: the pixel is latched at its first op (I1 reads cur_pix).
        m.d.comb += self.pix.ready.eq(v_issue & v_new)
        with m.If(v_issue):
            with m.If(v_new):
                m.d.sync += [cur_pix.eq(pix_head), v_active.eq(1)]
            m.d.sync += v_k.eq(v_k + 1)
            with m.If(v_k == KC - 1):
                m.d.sync += v_k.eq(0)
                with m.If(v_jt == g.t_c - 1):
                    m.d.sync += [v_jt.eq(0), v_active.eq(0)]
                with m.Else():
                    m.d.sync += v_jt.eq(v_jt + 1)
        # Issue credits: a tile takes one at its first chunk, its FIFO's reader returns it.
        with m.If(self.start):
            m.d.sync += [a_res.eq(0), o_res.eq(0)]
        with m.Else():
            m.d.sync += [a_res.eq(a_res + (a_issue & (a_k == 0)) - self.tile_taken),
                         o_res.eq(o_res + (o_issue & (o_k == 0)) - self.out_pop)]

        # ---- I1: operands into the PE array ------------------------------------------
        i1_xword = Signal(g.C * d)
        with m.Switch(i1_kind):
            with m.Case(MMKind.VALUE):
                m.d.comb += i1_xword.eq(cur_pix.pixel)
            with m.Case(MMKind.OUT):
                m.d.comb += i1_xword.eq(self.agg_rd.data)
            with m.Default():
                m.d.comb += i1_xword.eq(self.query_rd.data)
        x_chunk = i1_xword.word_select(i1_k, R * d)
        tile = Signal(Cc * R * d)                      # lane-major: lane j, element i
        bias = Signal(Cc * g.acc)
        mm_tile = Array(r_.data for r_ in self.tile_rd)[i1_k]
        with m.Switch(i1_kind):
            with m.Case(MMKind.ATTN):
                m.d.comb += [tile.eq(mm_tile), bias.eq(self.attn_bias_rd.data)]
            with m.Case(MMKind.VALUE):
                m.d.comb += [tile.eq(mm_tile), bias.eq(self.value_bias_rd.data)]
            with m.Case(MMKind.OUT):
                m.d.comb += [tile.eq(mm_tile), bias.eq(self.out_bias_rd.data)]
            with m.Case(MMKind.OFFSET):
                m.d.comb += [tile.eq(self.off_tile), bias.eq(self.off_bias.as_value())]
        w_ij = Cat(*[tile[(j * R + i) * d:(j * R + i + 1) * d]
                     for i in range(R) for j in range(Cc)])
        ba = self.ba
        m.d.comb += [
            self.pe_valid.eq(i1_valid | ba.valid),
            self.pe_mode.eq(Mux(ba.valid, ArrayMode.BA, ArrayMode.MM)),
            self.pe_first.eq(i1_first), self.pe_last.eq(i1_last),   # MM only
            self.pe_x.eq(x_chunk), self.pe_w.eq(w_ij), self.pe_bias.eq(bias),
            self.pe_pix.eq(ba.pix), self.pe_pt.eq(ba.pt),
        ]

        # ---- MM results: tag line, requant -------------------------------------------
        mm_tags = [Signal(tag_layout, name=f"mm_tag{s}") for s in range(LAT + RQ + 1)]
        mm_tv = [Signal(name=f"mm_tv{s}") for s in range(LAT + RQ + 1)]
        m.d.comb += [mm_tags[0].eq(i1_tag), mm_tv[0].eq(i1_valid & i1_last)]
        for s in range(1, LAT + RQ + 1):
            m.d.sync += [mm_tags[s].eq(mm_tags[s - 1]), mm_tv[s].eq(mm_tv[s - 1])]
        t_out = mm_tags[LAT]
        mm_shift = Signal(6)
        with m.Switch(t_out.kind):
            with m.Case(MMKind.ATTN):
                m.d.comb += mm_shift.eq(self.shift_logit)
            with m.Case(MMKind.OFFSET):
                m.d.comb += mm_shift.eq(self.shift_offset)
            with m.Case(MMKind.VALUE):
                m.d.comb += mm_shift.eq(self.shift_value)
            with m.Case(MMKind.OUT):
                m.d.comb += mm_shift.eq(self.shift_out)
        mm_big = mm_shift >= cfg.mm_acc_bits            # the exact result is 0
        m.d.comb += [
            rq_mm.in_valid.eq(self.pe_out_valid),
            rq_mm.acc.eq(Mux(mm_big, 0, self.pe_mm_acc.as_value())),
            rq_mm.shift.eq(Mux(mm_big, 0, mm_shift)),
            self.res.valid.eq(rq_mm.out_valid), self.res.tag.eq(mm_tags[LAT + RQ]),
            self.res.codes.eq(rq_mm.q.as_value()),
        ]

        # ---- phase exits, drains and stalls ------------------------------------------
        m.d.comb += [
            self.value_idle.eq(~(v_active & ~(v_issue & (v_k == KC - 1) &
                                              (v_jt == g.t_c - 1)))),
            self.value_busy.eq(
                Cat(*[mm_tv[s] & (mm_tags[s].kind == MMKind.VALUE)
                      for s in range(1, LAT + RQ + 1)]).any() |
                (i1_valid & (i1_kind == MMKind.VALUE))),
            self.drained.eq(~(Cat(*mm_tv[1:]).any() | i1_valid)),
            self.idle.eq(~i0_valid),
        ]
        with m.Switch(phase):
            with m.Case(Phase.ATTN):
                m.d.comb += self.stall.eq(~a_done & (~a_loaded | ~a_credit))
            with m.Case(Phase.VALUE):
                m.d.comb += self.stall.eq(~v_active & ~self.pix.valid & ~self.pix_done)
            with m.Case(Phase.OUT):
                m.d.comb += self.stall.eq(~o_done & self.agg_done & ~o_credit)
        with m.If(self.pass_start):
            m.d.sync += [a_q.eq(0), a_jt.eq(0), a_k.eq(0), a_done.eq(0),
                         o_q.eq(0), o_jt.eq(0), o_k.eq(0), o_done.eq(0)]
        return m

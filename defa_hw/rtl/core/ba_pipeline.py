"""BA pipeline of ``defa_core``: bilinear sampling and aggregation of the kept points.

c0 sequencer -> c1 memories (probabilities, offsets, reference points) -> sampling
address (``SamplingAddress.LATENCY``) -> c6 value-buffer and mask-bank reads, FWP
bundle (``FmapBuffer.LATENCY``) -> c8 bilinear operands into the PE array; the array's
BA result is requantised into the aggregated-sample memory that OUT reads.
"""

from amaranth import Array, C, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from defa_hw.rtl.core.common import check_geometry, add_memory, lend_read_port, lowest_one, popcount, read_signature, rng
from defa_hw.rtl.core.controller import Phase
from defa_hw.rtl.core.mm_issue import ba_operand_signature
from defa_hw.rtl.core.value_ingest import mask_read_signature
from defa_hw.rtl.fmap_buffer import FmapBuffer, FmapGeometry
from defa_hw.rtl.fmap_mask import bundle_layout
from defa_hw.rtl.pe_array import ArrayMode
from defa_hw.rtl.requant import Requant
from defa_hw.rtl.sampling_address import SamplingAddress, shapes_layout

__all__ = ["BASequencer", "BAPipeline", "ba_op_layout"]


def ba_op_layout(geom):
    """One BA operation as it moves down the pipeline (stages ``c0`` ... ``c8``)."""
    return data.StructLayout({
        "valid": 1, "first": 1, "last": 1, "fwp": 1, "q": range(geom.mq), "m": range(geom.M),
        "s": range(geom.n_slices), "keep": geom.L, "endq": 1})


class BASequencer(wiring.Component):
    """c0: walks (query, head, slice) of the pass; per head slice it issues
    ``G = max(1, max_l kept_l)`` operations, operation ``g`` taking the ``g``-th kept
    point of every level (``keep`` marks the levels that still have one).

    Signal prefix: ``b_``.  The head's keep word is read one operation ahead.

    Parameters
    ----------
    geom : CoreGeometry

    Attributes
    ----------
    phase : In(Phase)
    pass_start : In(1)
    nq_pass : In
    start_ok : In(1)
        Everything BA reads is written (the sequencer starts on the first such BA cycle,
        and starts a query only then).
    win_q, win_ok : In
        The value windows hold every row query ``win_q`` reaches (a query starts only then).
    keep_rd : In(read port)
        The keep memory.
    op : Out(:func:`ba_op_layout`)
        The c0 operation (``op.valid``: issued this cycle).
    pts : Out(n_levels x point index)
        Point of each level that the operation samples (valid where ``op.keep``).
    take : Out(1)
        The first operation of a query is issued.
    done : Out(1)
        The pass's last operation has been issued.
    idle, drained : Out(1)
        Not issuing.

    Constants
    ---------
    START : int
        Cycles from ``start_ok`` to the first operation (the head-0 keep-word read).
    """

    START = 1

    def __init__(self, geom):
        self.geom = g = check_geometry(geom)
        super().__init__({
            "phase": In(Phase), "pass_start": In(1), "nq_pass": In(rng(g.mq + 1)),
            "start_ok": In(1), "win_q": In(rng(g.mq)), "win_ok": In(1),
            "keep_rd": In(read_signature(g.L * g.P, g.mq * g.M)),
            "op": Out(ba_op_layout(g)),
            "pts": Out(data.ArrayLayout(bits_for(g.P - 1), g.L)),
            "take": Out(1), "done": Out(1), "idle": Out(1), "drained": Out(1),
        })

    def elaborate(self, platform):
        g = self.geom
        MQ, M, L, P, NS = g.mq, g.M, g.L, g.P, g.n_slices
        LP = L * P
        in_ba = self.phase == Phase.BA
        m = Module()
        b_init = Signal()                               # head 0's keep word requested
        b_q = Signal(rng(MQ + 1))
        b_m = Signal(rng(M))
        b_s = Signal(rng(NS))
        b_g = Signal(rng(P + 1))
        b_fresh = Signal()                              # next op is a head's first
        b_kw = Signal(LP)
        b_G = Signal(rng(P + 1))
        b_rem = [Signal(P, name=f"b_rem{l}") for l in range(L)]
        b_done = self.done
        kw = Mux(b_fresh, self.keep_rd.data, b_kw)
        bits = [kw[l * P:(l + 1) * P] for l in range(L)]
        cnts = [popcount(bits[l], P) for l in range(L)]
        gmax = Const(1, range(P + 1))
        for c_ in cnts:
            gmax = Mux(c_ > gmax, c_, gmax)
        G_cur = Mux(b_fresh, gmax, b_G)
        rem = [Mux(b_g == 0, bits[l], b_rem[l]) for l in range(L)]
        p_sel = [lowest_one(rem[l], P) for l in range(L)]
        k_sel = [rem[l].any() for l in range(L)]
        # A query starts once its value rows are resident and the buffers written.
        q_first = b_fresh & (b_m == 0)
        q_gate = ~q_first | (self.win_ok & (self.win_q == b_q) & self.start_ok)
        b_issue = in_ba & b_init & ~b_done & q_gate
        m.d.comb += self.take.eq(b_issue & q_first)
        b_head = b_q * M + b_m
        m.d.comb += [self.keep_rd.addr.eq(Mux(b_init, b_head + 1, 0)),
                     self.keep_rd.en.eq(Mux(b_init, b_issue & b_fresh, in_ba))]
        with m.If(in_ba & ~b_init & self.start_ok):
            m.d.sync += [b_init.eq(1), b_fresh.eq(1)]
        b_last_op = (b_g == G_cur - 1)
        with m.If(b_issue):
            m.d.sync += [b_fresh.eq(0)]
            with m.If(b_fresh):
                m.d.sync += [b_kw.eq(kw), b_G.eq(gmax)]
            for l in range(L):
                m.d.sync += b_rem[l].eq(rem[l] & (rem[l] - 1))
            with m.If(b_last_op):
                m.d.sync += b_g.eq(0)
                with m.If(b_s == NS - 1):
                    m.d.sync += [b_s.eq(0), b_fresh.eq(1)]
                    with m.If(b_m == M - 1):
                        m.d.sync += [b_m.eq(0), b_q.eq(b_q + 1)]
                        with m.If(b_q == self.nq_pass - 1):
                            m.d.sync += b_done.eq(1)
                    with m.Else():
                        m.d.sync += b_m.eq(b_m + 1)
                with m.Else():
                    m.d.sync += b_s.eq(b_s + 1)
            with m.Else():
                m.d.sync += b_g.eq(b_g + 1)
        op = self.op
        m.d.comb += [
            op.valid.eq(b_issue), op.first.eq(b_g == 0), op.last.eq(b_last_op),
            op.fwp.eq(b_s == 0), op.q.eq(b_q), op.m.eq(b_m), op.s.eq(b_s),
            op.keep.eq(Cat(*k_sel)),
            op.endq.eq((b_m == M - 1) & (b_s == NS - 1)),
            self.idle.eq(~b_issue), self.drained.eq(~b_issue),
        ]
        m.d.comb += [self.pts[l].eq(p_sel[l]) for l in range(L)]
        with m.If(self.pass_start):
            m.d.sync += [b_init.eq(0), b_q.eq(0), b_m.eq(0), b_s.eq(0), b_g.eq(0),
                         b_done.eq(0)]
        return m


class BAPipeline(wiring.Component):
    """Samples and aggregates the kept points of a pass (see the module docstring).

    Stage prefixes: ``c0`` ... ``c8`` the operation (``ba_c<s>``; "c8" names the operand
    stage, ``C8`` = 9 with the 3-cycle buffer read), ``ba_prob<l>_c<s>`` its
    probabilities, ``t_c<s>`` the bilinear weights, ``mpar`` the mask-bank parities at c7, ``ba_tag<s>`` the tag line behind the PE array, ``fin_`` the FWP finish.

    Parameters
    ----------
    geom : CoreGeometry

    Attributes
    ----------
    phase : In(Phase)
    start, pass_start : In(1)
    nq_pass : In, half : In(1), last_pass : In(1)
        Queries, query-memory half and last-ness of the pass.
    shapes : In(shapes layout)
    shift_agg : In(6)
        Requant shift of the aggregated samples.
    fwp_busy, value_busy, value_wr_busy, offsets_pending : In(1)
        BA waits until the FWP counters are cleared, no VALUE tile is in flight or being
        written, and every offset of the pass is written.
    win_q, win_ok : In
        The value windows hold the rows of query ``win_q`` (:class:`ValueWindow`).
    take : Out(1)
        A query's first operation is issued (the windows check the next one).
    keep_rd, prob_rd x n_levels, offs_rd x n_levels, ref_rd, mask_rd : In(read ports)
    rsp : In(value-buffer responses) x n_heads
    pe_out_valid, pe_out_mode, pe_ba_acc : In
        The PE array's BA result.
    rd : Out(stream of value-buffer reads) x n_heads
        c6: the 4 neighbours of every level's point, to the buffer of head ``m``.
    points : Out(stream of FWP bundles), finish : Out(stream of shapes)
        To the FWP generator: one bundle per head (slice 0); finish after the block's
        last BA operation.
    ba : Out(:func:`~defa_hw.rtl.core.mm_issue.ba_operand_signature`)
        c8 operation for the PE array; ``busy``: an operation in c0 ... c8.
    agg_rd : Out(read port)
        Aggregated samples (``d_model`` codes) of query ``q`` of the pass.
    agg_done : Out(1)
        Every aggregated sample of the pass is written.
    done : Out(1)
        The sequencer has issued the pass's last operation.
    op : Out(1)
        A BA operation enters the array (counts ``Reg.BA_OPS``).
    clamped : Out(range(n_levels + 1))
        Kept points clamped to the map in this cycle's FWP bundle (``Reg.POINTS_CLAMPED``).
    idle, drained : Out(1)
        No operation in c0 ... c8 / that, no sample behind the array and FWP finish sent.

    Constants
    ---------
    C8 : int
        Stage of the operands at the PE array (c0 = the sequencer's issue).
    C6 : int
        Stage of the value-buffer reads and the FWP bundle.
    DRAIN : int
        The last operation's trip to the PE array as OUT sees it: ``C8`` less the cycle
        in which the sequencer's ``done`` and the sample count overlap (OUT's wait is
        ``DRAIN`` + the PE array + requant).
    """

    C6 = 1 + SamplingAddress.LATENCY
    C8 = C6 + FmapBuffer.LATENCY
    DRAIN = C8 - 1

    def __init__(self, geom):
        self.geom = g = check_geometry(geom)
        cfg, d = g.cfg, g.cfg.data_bits
        geo = FmapGeometry(cfg)
        self.buffer_geometry = geo
        rsp = wiring.Signature({"valid": Out(1), "payload": Out(geo.response_layout)})
        super().__init__({
            "phase": In(Phase), "start": In(1), "pass_start": In(1),
            "nq_pass": In(rng(g.mq + 1)), "half": In(1), "last_pass": In(1),
            "shapes": In(shapes_layout(cfg)), "shift_agg": In(6),
            "fwp_busy": In(1), "value_busy": In(1), "value_wr_busy": In(1),
            "offsets_pending": In(1), "win_q": In(rng(g.mq)), "win_ok": In(1),
            "keep_rd": In(read_signature(g.L * g.P, g.mq * g.M)),
            "prob_rd": In(read_signature(cfg.prob_bits, g.mq * g.M * g.P)).array(g.L),
            "offs_rd": In(read_signature(2 * d, g.mq * g.M * g.P)).array(g.L),
            "ref_rd": In(read_signature(g.L * 2 * cfg.ref_frac_bits, 2 * g.mq)),
            "mask_rd": In(mask_read_signature(cfg)),
            "rsp": In(rsp).array(g.M),
            "pe_out_valid": In(1), "pe_out_mode": In(ArrayMode),
            "pe_ba_acc": In(data.ArrayLayout(signed(cfg.agg_acc_bits), cfg.ba_channels)),
            "rd": Out(stream.Signature(geo.read_layout)).array(g.M),
            "points": Out(stream.Signature(bundle_layout(cfg))),
            "finish": Out(stream.Signature(shapes_layout(cfg))),
            "ba": Out(ba_operand_signature(cfg)),
            "agg_rd": Out(read_signature(g.C * d, g.mq)),
            "agg_done": Out(1), "done": Out(1), "op": Out(1), "take": Out(1),
            "clamped": Out(range(g.L + 1)),
            "idle": Out(1), "drained": Out(1),
        })

    def elaborate(self, platform):
        g = self.geom
        cfg, d, geo = g.cfg, g.cfg.data_bits, self.buffer_geometry
        C_, M, L, P, MQ, NS = g.C, g.M, g.L, g.P, g.mq, g.n_slices
        CH = cfg.ba_channels
        LAT, RQ = g.pe_latency, Requant.LATENCY
        rb = cfg.ref_frac_bits
        C1, C6, C8 = 1, self.C6, self.C8
        m = Module()
        m.submodules.rq_ba = rq_ba = Requant(cfg, acc_bits=cfg.agg_acc_bits, lanes=CH)
        sas = []
        for l in range(L):
            sa = SamplingAddress(cfg)
            m.submodules[f"sa{l}"] = sa
            sas.append(sa)
            m.d.comb += sa.shapes.eq(self.shapes)
        sm = add_memory(m, "sampled", C_ * d, MQ)
        lend_read_port(m, sm, self.agg_rd)
        sm_w = sm.write_port(granularity=CH * d)

        # ---- c0: sequencer -------------------------------------------------------------
        m.submodules.seq = seq = BASequencer(g)
        m.d.comb += [
            seq.phase.eq(self.phase), seq.pass_start.eq(self.pass_start),
            seq.nq_pass.eq(self.nq_pass),
            # BA starts once the value buffers and every offset of the pass are written
            # and the FWP counters are cleared (a fixed drain: simple to model).
            seq.start_ok.eq(~self.fwp_busy & ~self.value_busy & ~self.value_wr_busy &
                            ~self.offsets_pending),
            seq.win_q.eq(self.win_q), seq.win_ok.eq(self.win_ok), self.take.eq(seq.take),
            self.keep_rd.addr.eq(seq.keep_rd.addr), self.keep_rd.en.eq(seq.keep_rd.en),
            seq.keep_rd.data.eq(self.keep_rd.data), self.done.eq(seq.done),
        ]
        b_head = seq.op.q * M + seq.op.m
        for l in range(L):
            maddr = b_head * P + seq.pts[l]
            m.d.comb += [self.prob_rd[l].addr.eq(maddr), self.offs_rd[l].addr.eq(maddr)]
        m.d.comb += self.ref_rd.addr.eq(self.half * MQ + seq.op.q)

        ba_ctl = ba_op_layout(g)
        c = [Signal(ba_ctl, name=f"ba_c{s}") for s in range(C8 + 1)]
        m.d.comb += c[0].eq(seq.op)
        for s in range(1, len(c)):
            m.d.sync += c[s].eq(c[s - 1])

        # ---- c1: memory data -> sampling-address units -----------------------------------
        ref_word = self.ref_rd.data
        probs_c = []
        for l in range(L):
            sa = sas[l]
            ow = self.offs_rd[l].data
            m.d.comb += [
                sa.in_valid.eq(c[C1].valid),
                sa.in_point.ref_x.eq(ref_word[(2 * l) * rb:(2 * l + 1) * rb]),
                sa.in_point.ref_y.eq(ref_word[(2 * l + 1) * rb:(2 * l + 2) * rb]),
                sa.in_point.off_x.eq(ow[:d]), sa.in_point.off_y.eq(ow[d:2 * d]),
                sa.in_point.level.eq(l),
            ]
            pl = [Signal(cfg.prob_bits, name=f"ba_prob{l}_c{s}") for s in range(C1, C8 + 1)]
            m.d.comb += pl[0].eq(self.prob_rd[l].data)
            for s in range(1, len(pl)):
                m.d.sync += pl[s].eq(pl[s - 1])
            probs_c.append(pl)

        def prob_at(l, stage):
            return probs_c[l][stage - C1]

        # ---- c6: addresses -> value buffer of head m, incoming-mask banks, FWP bundle -----
        c6 = c[C6]
        bundle = self.points.payload
        clamped_now = 0
        fb_req = []
        for l in range(L):
            a = sas[l].out_addr
            keep_l = c6.keep[l]
            reqs = []
            for k in range(4):
                yy = a.y0 + (k >> 1)
                xx = a.x0 + (k & 1)
                reqs.append((yy, xx, a.inb[k] & keep_l))
                m.d.comb += [bundle[l].nb[k].y.eq(yy), bundle[l].nb[k].x.eq(xx),
                             bundle[l].nb[k].inb.eq(a.inb[k])]
            m.d.comb += [bundle[l].keep.eq(keep_l), bundle[l].prob.eq(prob_at(l, C6))]
            clamped_now = clamped_now + (keep_l & a.clamped)
            fb_req.append(reqs)
        m.d.comb += self.points.valid.eq(c6.valid & c6.fwp)
        m.d.comb += self.clamped.eq(Mux(c6.valid & c6.fwp, clamped_now, 0))
        for h, rd in enumerate(self.rd):
            m.d.comb += rd.valid.eq(c6.valid & (c6.m == h))
            for l in range(L):
                for k in range(4):
                    r = rd.payload.req[4 * l + k]
                    yy, xx, en = fb_req[l][k]
                    m.d.comb += [r.y.eq(yy), r.x.eq(xx), r.inb.eq(en)]
                    if "slice" in geo.request_layout.members:
                        m.d.comb += r.slice.eq(c6.s)
        # incoming-mask bits, read alongside (bank per 2x2 parity, like the buffer); their
        # one-cycle read, then registers up to c8 with the buffer's response
        mb_c7 = []
        for l in range(L):
            yys = [fb_req[l][k][0] for k in range(4)]
            xxs = [fb_req[l][k][1] for k in range(4)]
            for j, (_, word) in enumerate(geo.bank_map.route(l, yys, xxs)):
                m.d.comb += getattr(self.mask_rd, f"b{4 * l + j}").addr.eq(word)
            for k in range(4):
                par_c7 = Signal(2, name=f"mpar{l}_{k}")
                m.d.sync += par_c7.eq(geo.bank_map.group_bank(yys[k], xxs[k]))
                bit = Array(getattr(self.mask_rd, f"b{4 * l + j}").data
                            for j in range(4))[par_c7]
                mb_c7.append(bit)
        mbits_c8 = Cat(*mb_c7)
        for s_ in range(C6 + 2, C8 + 1):
            r = Signal(4 * L, name=f"mbits_c{s_}")
            m.d.sync += r.eq(mbits_c8)
            mbits_c8 = r

        # ---- c8: bilinear operands into the PE array --------------------------------------
        ba = self.ba
        F = cfg.coord_frac_bits
        for l in range(L):
            a = sas[l].out_addr
            t8 = Cat(a.t0, a.t1, a.t01)                 # c6 -> c8, beside the buffer read
            for s_ in range(C6 + 1, C8 + 1):
                r = Signal(3 * F, name=f"t_c{s_}_{l}")
                m.d.sync += r.eq(t8)
                t8 = r
            m.d.comb += [ba.pt[l].t0.eq(t8[:F]), ba.pt[l].t1.eq(t8[F:2 * F]),
                         ba.pt[l].t01.eq(t8[2 * F:]),
                         ba.pt[l].prob.eq(prob_at(l, C8)), ba.pt[l].keep.eq(c[C8].keep[l])]
        c8 = c[C8]
        rsp = Array(r.payload.as_value() for r in self.rsp)[c8.m]
        wbits = CH * d
        pix_words = [Mux(mbits_c8[r], 0, rsp[r * wbits:(r + 1) * wbits]) for r in range(4 * L)]
        m.d.comb += [ba.valid.eq(c8.valid), ba.first.eq(c8.first), ba.last.eq(c8.last),
                     ba.pix.eq(Cat(*pix_words)), self.op.eq(c8.valid),
                     ba.busy.eq(Cat(*[c[s].valid for s in range(1, len(c))]).any() |
                                seq.op.valid)]

        # ---- BA results: requant, then the aggregated-sample memory -------------------------
        ba_tags = [Signal(ba_ctl, name=f"ba_tag{s}") for s in range(LAT + RQ + 1)]
        m.d.comb += [ba_tags[0].eq(c8), ba_tags[0].valid.eq(c8.valid & c8.last)]
        for s in range(1, LAT + RQ + 1):
            m.d.sync += ba_tags[s].eq(ba_tags[s - 1])
        ba_big = self.shift_agg >= cfg.agg_acc_bits
        m.d.comb += [
            rq_ba.in_valid.eq(self.pe_out_valid & (self.pe_out_mode == ArrayMode.BA)),
            rq_ba.acc.eq(Mux(ba_big, 0, self.pe_ba_acc.as_value())),
            rq_ba.shift.eq(Mux(ba_big, 0, self.shift_agg)),
        ]
        bt = ba_tags[LAT + RQ]
        lane = bt.m * NS + bt.s
        m.d.comb += [sm_w.addr.eq(bt.q), sm_w.data.eq(rq_ba.q.as_value().replicate(C_ // CH)),
                     sm_w.en.eq(Mux(rq_ba.out_valid, (C(1, C_ // CH) << lane)[:C_ // CH], 0))]
        ba_done_q = Signal(rng(MQ + 1))
        with m.If(rq_ba.out_valid & bt.endq):
            m.d.sync += ba_done_q.eq(ba_done_q + 1)
        m.d.comb += self.agg_done.eq(ba_done_q == self.nq_pass)
        ba_tags_busy = Cat(*[ba_tags[s].valid for s in range(1, LAT + RQ + 1)]).any()

        # ---- FWP finish: after the last BA operation of the block ---------------------------
        fin_sent = Signal()
        m.d.comb += [self.finish.payload.eq(self.shapes),
                     self.finish.valid.eq((self.phase == Phase.OUT) & self.last_pass &
                                          ~fin_sent & ~ba.busy)]
        with m.If(self.finish.valid & self.finish.ready):
            m.d.sync += fin_sent.eq(1)
        m.d.comb += [self.idle.eq(~ba.busy), self.drained.eq(fin_sent & ~ba_tags_busy)]
        with m.If(self.start):
            m.d.sync += fin_sent.eq(0)
        with m.If(self.pass_start):
            m.d.sync += ba_done_q.eq(0)
        return m

"""BA pipeline of ``defa_core``: bilinear sampling and aggregation of the kept points.

c0 sequencer (one lane per level, each on the kept points of its own level) -> c1
memories (probabilities, offsets, reference points) -> sampling address
(``SamplingAddress.LATENCY``) -> c6 value-buffer and mask-bank reads, FWP bundle
(``FmapBuffer.LATENCY``) -> c8 bilinear operands into the PE array; the array's per-level
results go to partial-sum memories, and the level sum adds a head's levels, requantises
them and writes the aggregated-sample memory that OUT reads.
"""

from amaranth import Array, C, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from defa_hw.rtl.core.common import (check_geometry, add_memory, divmod_const, keep_word_layout,
                                     lend_read_port, lowest_one, read_signature, rng)
from defa_hw.rtl.core.controller import Phase
from defa_hw.rtl.core.mm_issue import ba_operand_signature
from defa_hw.rtl.core.value_ingest import mask_read_signature
from defa_hw.rtl.fmap_buffer import FmapBuffer, FmapGeometry
from defa_hw.rtl.fmap_mask import bundle_layout
from defa_hw.rtl.requant import Requant
from defa_hw.rtl.sampling_address import SamplingAddress, shapes_layout

__all__ = ["BASequencer", "BAPipeline", "ba_op_layout", "ba_lane_layout"]


def ba_lane_layout(geom):
    """What one BA lane does in an operation: its head (``i``-th of its lane set's, head
    ``i * ba_heads + j`` of set j), slice and point, whether it samples (``keep``) and
    whether the operation starts / ends its (head, slice) tile."""
    return data.StructLayout({"keep": 1, "first": 1, "last": 1, "i": rng(geom.M // geom.J),
                              "s": rng(geom.n_slices), "p": rng(geom.P)})


def ba_op_layout(geom):
    """One BA operation as it moves down the pipeline (stages ``c0`` ... ``c8`` and on
    behind the PE array): the query, its partial-sum slot, whether it is the query's last
    operation, and every lane (lane ``j * n_levels + l``: set j, level l)."""
    return data.StructLayout({
        "valid": 1, "endq": 1, "q": rng(geom.mq), "slot": range(BASequencer.SLOTS),
        "lane": data.ArrayLayout(ba_lane_layout(geom), geom.cfg.ba_lanes)})


class BASequencer(wiring.Component):
    """c0: walks the queries of the pass; in a query every lane takes the kept points of
    its level in its lane set's heads (set j: heads ``m`` with ``m mod ba_heads = j``),
    head by head and slice by slice, one per cycle, so a query takes ``T_q = max(1,
    n_slices * max_(j,l) kept_jl)`` operations (``kept_jl``: the query's kept points of
    level l in set j's heads) where one head at a time would take ``n_slices * sum_m
    max(1, max_l kept_lm)``.

    Signal prefix: ``b_``.  The keep words come from the offset gather's reader
    (``keep_seen``, in OFFSET, before BA), copied into a memory with a word per query.

    Parameters
    ----------
    geom : CoreGeometry

    Attributes
    ----------
    phase : In(Phase)
    pass_start : In(1)
    nq_pass : In
    start_ok : In(1)
        Everything BA reads is written (a query starts only then).
    win_q, win_ok : In
        The value windows hold every row query ``win_q`` reaches (a query starts only then).
    summed : In
        Queries of the pass whose partial sums have been read (frees their slot).
    keep_seen : In(:func:`~defa_hw.rtl.core.common.keep_word_layout`)
        The keep words of the pass as F reads them.
    op : Out(:func:`ba_op_layout`)
        The c0 operation (``op.valid``: issued this cycle).
    take : Out(1)
        The first operation of a query is issued.
    done : Out(1)
        The pass's last operation has been issued.
    idle : Out(1)
        Not issuing.

    Constants
    ---------
    SLOTS : int
        Queries whose partial sums may be held at once (a query starts when the one
        ``SLOTS`` before it has been summed; a power of two).
    START : int
        Cycles from ``start_ok`` to the first operation (0: the gate is combinational).
    """

    SLOTS = 8
    START = 0

    def __init__(self, geom):
        self.geom = g = check_geometry(geom)
        super().__init__({
            "phase": In(Phase), "pass_start": In(1), "nq_pass": In(rng(g.mq + 1)),
            "start_ok": In(1), "win_q": In(rng(g.mq)), "win_ok": In(1),
            "summed": In(rng(g.mq + 1)), "keep_seen": In(keep_word_layout(g)),
            "op": Out(ba_op_layout(g)),
            "take": Out(1), "done": Out(1), "idle": Out(1),
        })

    def elaborate(self, platform):
        g = self.geom
        MQ, M, L, P, NS, J = g.mq, g.M, g.L, g.P, g.n_slices, g.J
        LP, N, MJ = L * P, self.SLOTS, g.M // g.J
        in_ba = self.phase == Phase.BA
        m = Module()

        # ---- the pass's keep words, a word per query (copied as F reads them) ------------
        qk = add_memory(m, "query_keep", M * LP, MQ)
        qk_w = qk.write_port(granularity=LP)
        qk_r = qk.read_port()
        ks = self.keep_seen
        ks_q, ks_m = divmod_const(ks.head, M)
        loaded = Signal(rng(MQ + 1))                    # queries whose word is complete
        m.d.comb += [qk_w.addr.eq(ks_q), qk_w.data.eq(ks.word.replicate(M)),
                     qk_w.en.eq(Mux(ks.valid, (C(1, M) << ks_m)[:M], 0))]
        with m.If(ks.valid & (ks_m == M - 1)):
            m.d.sync += loaded.eq(ks_q + 1)

        # ---- b_: the lanes ---------------------------------------------------------------
        b_q = Signal(rng(MQ + 1))
        b_slot = Signal(range(N))
        b_have = Signal()                               # qk_r.data is query b_q's word
        b_fresh = Signal()                              # next op is the query's first
        b_done = self.done
        b_kw = Signal(M * LP)
        # Named intermediates: an Array index inside a wider expression would repeat
        # the whole array at every use (a large netlist and slow elaboration).
        kw = Signal(M * LP)
        m.d.comb += kw.eq(Mux(b_fresh, qk_r.data, b_kw))
        q_first = b_fresh
        q_gate = (~q_first | (self.win_ok & (self.win_q == b_q) & self.start_ok &
                              (self.summed + N > b_q)))
        b_issue = in_ba & b_have & ~b_done & q_gate
        lane_end = []
        op = self.op
        for ln in range(L * J):
            l, j = ln % L, ln // L
            heads = [i * J + j for i in range(MJ)]      # the lane set's heads
            bits = Array(kw[h * LP + l * P:h * LP + (l + 1) * P] for h in heads)
            has = Signal(MJ, name=f"b_has{ln}")
            m.d.comb += has.eq(Cat(*[kw[h * LP + l * P:h * LP + (l + 1) * P].any()
                                     for h in heads]))
            r_hr = Signal(MJ, name=f"b_heads{ln}")      # heads still to do (current one too)
            r_i = Signal(rng(MJ), name=f"b_i{ln}")
            r_s = Signal(rng(NS), name=f"b_s{ln}")
            r_rem = Signal(P, name=f"b_rem{ln}")        # points still to do in (head, s)
            r_st = Signal(name=f"b_start{ln}")          # next op starts a (head, s) tile
            hr = Signal(MJ, name=f"b_hr{ln}")
            i_first = Signal(rng(MJ), name=f"b_ifirst{ln}")
            i_cur = Signal(rng(MJ), name=f"b_icur{ln}")
            s_cur = Signal(rng(NS), name=f"b_scur{ln}")
            rem = Signal(P, name=f"b_remcur{ln}")
            rem_n = Signal(P, name=f"b_remnext{ln}")
            hr_n = Signal(MJ, name=f"b_hrnext{ln}")
            i_n = Signal(rng(MJ), name=f"b_inext{ln}")
            bits_cur = Signal(P, name=f"b_bitscur{ln}")
            bits_n = Signal(P, name=f"b_bitsnext{ln}")
            m.d.comb += [
                i_first.eq(lowest_one(has, MJ)),
                hr.eq(Mux(b_fresh, has, r_hr)), i_cur.eq(Mux(b_fresh, i_first, r_i)),
                s_cur.eq(Mux(b_fresh, 0, r_s)),
                rem.eq(Mux(b_fresh, bits[i_first], r_rem)),
                rem_n.eq(rem & (rem - 1)),
                hr_n.eq(hr & ~(C(1, MJ) << i_cur)[:MJ]), i_n.eq(lowest_one(hr_n, MJ)),
                bits_cur.eq(bits[i_cur]), bits_n.eq(bits[i_n]),
            ]
            st = b_fresh | r_st
            act = hr.any()
            tile_end = rem_n == 0
            lane_end.append(~act | (tile_end & (s_cur == NS - 1) & ~hr_n.any()))
            with m.If(b_issue):
                with m.If(~tile_end):
                    m.d.sync += [r_hr.eq(hr), r_i.eq(i_cur), r_s.eq(s_cur), r_rem.eq(rem_n),
                                 r_st.eq(0)]
                with m.Elif(s_cur != NS - 1):
                    m.d.sync += [r_hr.eq(hr), r_i.eq(i_cur), r_s.eq(s_cur + 1),
                                 r_rem.eq(bits_cur), r_st.eq(1)]
                with m.Else():
                    m.d.sync += [r_hr.eq(hr_n), r_i.eq(i_n), r_s.eq(0), r_rem.eq(bits_n),
                                 r_st.eq(1)]
            lo = op.lane[ln]
            m.d.comb += [lo.keep.eq(act), lo.first.eq(act & st), lo.last.eq(act & tile_end),
                         lo.i.eq(i_cur), lo.s.eq(s_cur), lo.p.eq(lowest_one(rem, P))]
        endq = Cat(*lane_end).all()
        m.d.comb += [op.valid.eq(b_issue), op.endq.eq(endq), op.q.eq(b_q),
                     op.slot.eq(b_slot), self.take.eq(b_issue & q_first),
                     self.idle.eq(~b_issue)]
        # the query word: read once it is complete, the next one with a query's end
        nxt = b_issue & endq
        m.d.comb += [qk_r.addr.eq(Mux(nxt, b_q + 1, b_q)),
                     qk_r.en.eq(Mux(b_have, nxt & (loaded > b_q + 1), loaded > b_q))]
        with m.If(qk_r.en):
            m.d.sync += b_have.eq(1)
        with m.Elif(nxt):
            m.d.sync += b_have.eq(0)
        with m.If(b_issue):
            m.d.sync += b_fresh.eq(0)
            with m.If(b_fresh):
                m.d.sync += b_kw.eq(qk_r.data)
            with m.If(endq):
                m.d.sync += [b_fresh.eq(1), b_q.eq(b_q + 1), b_slot.eq(b_slot + 1)]
                with m.If(b_q == self.nq_pass - 1):
                    m.d.sync += b_done.eq(1)
        with m.If(self.pass_start):
            m.d.sync += [loaded.eq(0), b_q.eq(0), b_slot.eq(0), b_have.eq(0), b_fresh.eq(1),
                         b_done.eq(0)]
        return m


class BAPipeline(wiring.Component):
    """Samples and aggregates the kept points of a pass (see the module docstring).

    Stage prefixes: ``c0`` ... ``c8`` the operation (``ba_c<s>``; "c8" names the operand
    stage, ``C8`` = 9 with the 3-cycle buffer read), ``ba_prob<l>_c<s>`` its
    probabilities, ``t_c<s>`` the bilinear weights, ``mpar`` the mask-bank parities at c7,
    ``ba_tag<s>`` the tag line behind the PE array, ``u_`` the level sum, ``fin_`` the
    FWP finish.

    Every lane may be on another head: lane (j, l)'s reads go to the value buffer of its
    own head, one of set j's (the sets own disjoint buffers, the levels disjoint banks,
    so no buffer sees a conflict), and the array returns each lane's tile separately into
    a partial-sum memory per lane (``SLOTS`` queries x ``n_heads / ba_heads`` words of
    ``head_dim`` accumulators).  Once a query's last operation is through, the level sum
    reads one head of every set per cycle, adds the levels that had points, requantises
    the heads and writes them to the aggregated-sample memory.

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
    keep_seen : In(:func:`~defa_hw.rtl.core.common.keep_word_layout`)
        The keep words of the pass as the offset gather's F reads them.
    prob_rd x ba_lanes, offs_rd x ba_lanes, ref_rd, mask_rd x ba_heads : In(read ports)
    rsp : In(value-buffer responses) x n_heads
    pe_ba_valid, pe_ba_acc : In
        The PE array's per-lane BA results.
    rd : Out(stream of value-buffer reads) x n_heads
        c6: the 4 neighbours of the points of the lanes on head ``h``.
    points : Out(stream of FWP bundles), finish : Out(stream of shapes)
        To the FWP generator: the kept points of slice 0; finish after the block's last
        BA operation.
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
    clamped : Out(range(ba_lanes + 1))
        Kept points clamped to the map in this cycle's FWP bundle (``Reg.POINTS_CLAMPED``).
    idle, drained : Out(1)
        No operation in c0 ... c8 / that, nothing behind the array or in the level sum,
        and FWP finish sent.

    Constants
    ---------
    C8 : int
        Stage of the operands at the PE array (c0 = the sequencer's issue).
    C6 : int
        Stage of the value-buffer reads and the FWP bundle.
    SUM : int
        Cycles from a query's last operation at c0 to the level sum's first read of it:
        ``C8 + PE array latency + 1``.  The sum then takes ``n_heads / ba_heads`` cycles.
    SUM_OUT : int
        Level sum read -> aggregated sample written: memory read, sum, requant (2 + RQ).
    DRAIN : int
        The last operation's trip to the PE array as the FWP finish sees it (``C8 - 1``).
    """

    C6 = 1 + SamplingAddress.LATENCY
    C8 = C6 + FmapBuffer.LATENCY
    DRAIN = C8 - 1
    SUM_OUT = 2 + Requant.LATENCY

    @classmethod
    def sum_delay(cls, geom):
        """``SUM`` for ``geom``."""
        return cls.C8 + geom.pe_latency + 1

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
            "keep_seen": In(keep_word_layout(g)),
            "prob_rd": In(read_signature(cfg.prob_bits, g.mq * g.M * g.P)).array(cfg.ba_lanes),
            "offs_rd": In(read_signature(2 * d, g.mq * g.M * g.P)).array(cfg.ba_lanes),
            "ref_rd": In(read_signature(g.L * 2 * cfg.ref_frac_bits, 2 * g.mq)),
            "mask_rd": In(mask_read_signature(cfg)).array(g.J),
            "rsp": In(rsp).array(g.M),
            "pe_ba_valid": In(cfg.ba_lanes),
            "pe_ba_acc": In(data.ArrayLayout(data.ArrayLayout(
                signed(cfg.agg_acc_bits), cfg.ba_channels), cfg.ba_lanes)),
            "rd": Out(stream.Signature(geo.read_layout)).array(g.M),
            "points": Out(stream.Signature(bundle_layout(cfg))),
            "finish": Out(stream.Signature(shapes_layout(cfg))),
            "ba": Out(ba_operand_signature(cfg)),
            "agg_rd": Out(read_signature(g.C * d, g.mq)),
            "agg_done": Out(1), "done": Out(1), "op": Out(1), "take": Out(1),
            "clamped": Out(range(g.cfg.ba_lanes + 1)),
            "idle": Out(1), "drained": Out(1),
        })

    def elaborate(self, platform):
        g = self.geom
        cfg, d, geo = g.cfg, g.cfg.data_bits, self.buffer_geometry
        C_, M, L, P, MQ, NS, D, J = g.C, g.M, g.L, g.P, g.mq, g.n_slices, g.D, g.J
        CH, A, N, NL, MJ = cfg.ba_channels, cfg.agg_acc_bits, BASequencer.SLOTS, L * g.J, M // g.J
        LAT, RQ = g.pe_latency, Requant.LATENCY
        rb = cfg.ref_frac_bits
        C1, C6, C8 = 1, self.C6, self.C8
        m = Module()
        sas = []
        for ln in range(NL):
            sa = SamplingAddress(cfg)
            m.submodules[f"sa{ln}"] = sa
            sas.append(sa)
            m.d.comb += sa.shapes.eq(self.shapes)

        # ---- c0: sequencer -------------------------------------------------------------
        m.submodules.seq = seq = BASequencer(g)
        summed = Signal(rng(MQ + 1))                    # queries the level sum has read
        m.d.comb += [
            seq.phase.eq(self.phase), seq.pass_start.eq(self.pass_start),
            seq.nq_pass.eq(self.nq_pass), seq.summed.eq(summed),
            # BA starts once the value buffers and every offset of the pass are written
            # and the FWP counters are cleared (a fixed drain: simple to model).
            seq.start_ok.eq(~self.fwp_busy & ~self.value_busy & ~self.value_wr_busy &
                            ~self.offsets_pending),
            seq.win_q.eq(self.win_q), seq.win_ok.eq(self.win_ok), self.take.eq(seq.take),
            seq.keep_seen.eq(self.keep_seen), self.done.eq(seq.done),
        ]

        def head(ln, lane):
            """Head of lane ``ln`` (set ``ln // L``) in an operation."""
            return lane.i * J + ln // L

        for ln in range(NL):
            lo = seq.op.lane[ln]
            maddr = (seq.op.q * M + head(ln, lo)) * P + lo.p
            m.d.comb += [self.prob_rd[ln].addr.eq(maddr), self.offs_rd[ln].addr.eq(maddr)]
        m.d.comb += self.ref_rd.addr.eq(self.half * MQ + seq.op.q)

        ba_ctl = ba_op_layout(g)
        c = [Signal(ba_ctl, name=f"ba_c{s}") for s in range(C8 + 1)]
        m.d.comb += c[0].eq(seq.op)
        for s in range(1, len(c)):
            m.d.sync += c[s].eq(c[s - 1])

        # ---- c1: memory data -> sampling-address units -----------------------------------
        ref_word = self.ref_rd.data
        probs_c = []
        for ln in range(NL):
            l = ln % L
            sa = sas[ln]
            ow = self.offs_rd[ln].data
            m.d.comb += [
                sa.in_valid.eq(c[C1].valid),
                sa.in_point.ref_x.eq(ref_word[(2 * l) * rb:(2 * l + 1) * rb]),
                sa.in_point.ref_y.eq(ref_word[(2 * l + 1) * rb:(2 * l + 2) * rb]),
                sa.in_point.off_x.eq(ow[:d]), sa.in_point.off_y.eq(ow[d:2 * d]),
                sa.in_point.level.eq(l),
            ]
            pl = [Signal(cfg.prob_bits, name=f"ba_prob{ln}_c{s}") for s in range(C1, C8 + 1)]
            m.d.comb += pl[0].eq(self.prob_rd[ln].data)
            for s in range(1, len(pl)):
                m.d.sync += pl[s].eq(pl[s - 1])
            probs_c.append(pl)

        def prob_at(l, stage):
            return probs_c[l][stage - C1]

        # ---- c6: addresses -> value buffer of each lane's head, mask banks, FWP bundle ----
        c6 = c[C6]
        bundle = self.points.payload
        clamped_now = 0
        fb_req = []
        fwp_any = 0
        for l in range(NL):
            a = sas[l].out_addr
            lo = c6.lane[l]
            keep_l = lo.keep
            fwp_l = keep_l & (lo.s == 0)                # a point's slice 0 goes to the FWP
            reqs = []
            for k in range(4):
                yy = a.y0 + (k >> 1)
                xx = a.x0 + (k & 1)
                reqs.append((yy, xx, a.inb[k] & keep_l))
                m.d.comb += [bundle[l].nb[k].y.eq(yy), bundle[l].nb[k].x.eq(xx),
                             bundle[l].nb[k].inb.eq(a.inb[k])]
            m.d.comb += [bundle[l].keep.eq(fwp_l), bundle[l].prob.eq(prob_at(l, C6))]
            clamped_now = clamped_now + (fwp_l & a.clamped)
            fwp_any = fwp_any | fwp_l
            fb_req.append(reqs)
        m.d.comb += self.points.valid.eq(c6.valid & fwp_any)
        m.d.comb += self.clamped.eq(Mux(c6.valid, clamped_now, 0))
        for h, rd in enumerate(self.rd):
            # head h is lane set h mod J's: its level l reads come from lane (h mod J, l)
            lanes = [(h % J) * L + l for l in range(L)]
            on_h = [c6.lane[ln].keep & (c6.lane[ln].i == h // J) for ln in lanes]
            m.d.comb += rd.valid.eq(c6.valid & Cat(*on_h).any())
            for l, ln in enumerate(lanes):
                for k in range(4):
                    r = rd.payload.req[4 * l + k]
                    yy, xx, en = fb_req[ln][k]
                    m.d.comb += [r.y.eq(yy), r.x.eq(xx), r.inb.eq(en & on_h[l])]
                    if "slice" in geo.request_layout.members:
                        m.d.comb += r.slice.eq(c6.lane[ln].s)
        # incoming-mask bits, read alongside (bank per 2x2 parity, like the buffer); their
        # one-cycle read, then registers up to c8 with the buffer's response
        mb_c7 = []
        for ln in range(NL):
            l, mrd = ln % L, self.mask_rd[ln // L]      # the lane set's mask read ports
            yys = [fb_req[ln][k][0] for k in range(4)]
            xxs = [fb_req[ln][k][1] for k in range(4)]
            for j, (_, word) in enumerate(geo.bank_map.route(l, yys, xxs)):
                m.d.comb += getattr(mrd, f"b{4 * l + j}").addr.eq(word)
            for k in range(4):
                par_c7 = Signal(2, name=f"mpar{ln}_{k}")
                m.d.sync += par_c7.eq(geo.bank_map.group_bank(yys[k], xxs[k]))
                bit = Array(getattr(mrd, f"b{4 * l + j}").data for j in range(4))[par_c7]
                mb_c7.append(bit)
        mbits_c8 = Cat(*mb_c7)
        for s_ in range(C6 + 2, C8 + 1):
            r = Signal(4 * NL, name=f"mbits_c{s_}")
            m.d.sync += r.eq(mbits_c8)
            mbits_c8 = r

        # ---- c8: bilinear operands into the PE array --------------------------------------
        ba = self.ba
        F = cfg.coord_frac_bits
        c8 = c[C8]
        wbits = CH * d
        rsps_all = [r.payload.as_value() for r in self.rsp]
        pix_words = []
        for l in range(NL):
            a = sas[l].out_addr
            t8 = Cat(a.t0, a.t1, a.t01)                 # c6 -> c8, beside the buffer read
            for s_ in range(C6 + 1, C8 + 1):
                r = Signal(3 * F, name=f"t_c{s_}_{l}")
                m.d.sync += r.eq(t8)
                t8 = r
            lo = c8.lane[l]
            m.d.comb += [ba.pt[l].t0.eq(t8[:F]), ba.pt[l].t1.eq(t8[F:2 * F]),
                         ba.pt[l].t01.eq(t8[2 * F:]),
                         ba.pt[l].prob.eq(prob_at(l, C8)), ba.pt[l].keep.eq(lo.keep),
                         ba.pt[l].first.eq(lo.first), ba.pt[l].last.eq(lo.last)]
            # the lane's head's buffer (one of its set's), the words of its level
            rsp = Signal(len(rsps_all[0]), name=f"ba_rsp{l}_c8")
            m.d.comb += rsp.eq(Array(rsps_all[i * J + l // L] for i in range(MJ))[lo.i])
            for k in range(4):
                r_ = 4 * (l % L) + k
                pix_words.append(Mux(mbits_c8[4 * l + k], 0, rsp[r_ * wbits:(r_ + 1) * wbits]))
        m.d.comb += [ba.valid.eq(c8.valid), ba.pix.eq(Cat(*pix_words)), self.op.eq(c8.valid),
                     ba.busy.eq(Cat(*[c[s].valid for s in range(1, len(c))]).any() |
                                seq.op.valid)]

        # ---- behind the array: each lane's tile into its partial-sum memory ----------------
        ba_tags = [Signal(ba_ctl, name=f"ba_tag{s}") for s in range(LAT + 1)]
        m.d.comb += ba_tags[0].eq(c8)
        for s in range(1, LAT + 1):
            m.d.sync += ba_tags[s].eq(ba_tags[s - 1])
        bt = ba_tags[LAT]
        W = N * MJ * NS                                   # valid bits per lane
        pv = [Signal(W, name=f"u_pv{ln}") for ln in range(NL)]   # partial written
        parts_r = []
        for ln in range(NL):
            pm = add_memory(m, f"partial{ln}", D * A, N * MJ)
            pw = pm.write_port(granularity=CH * A)
            lo = bt.lane[ln]
            m.d.comb += [pw.addr.eq(bt.slot * MJ + lo.i),
                         pw.data.eq(self.pe_ba_acc[ln].as_value().replicate(NS)),
                         pw.en.eq(Mux(self.pe_ba_valid[ln], (C(1, NS) << lo.s)[:NS], 0))]
            parts_r.append(pm.read_port())
        ready = Signal(rng(MQ + 1))                     # queries with every partial written
        with m.If(bt.valid & bt.endq):
            m.d.sync += ready.eq(ready + 1)

        # ---- u_: the level sum, one head of every lane set per cycle -------------------------
        u_i = Signal(rng(MJ))
        u_slot = Signal(range(N))
        u_go = summed < ready
        u1_valid, u1_q, u1_i = Signal(), Signal(rng(MQ)), Signal(rng(MJ))
        u1_pv = [Signal(NS, name=f"u1_pv{ln}") for ln in range(NL)]
        pv_at = (u_slot * MJ + u_i) * NS
        for ln in range(NL):
            m.d.comb += [parts_r[ln].addr.eq(u_slot * MJ + u_i), parts_r[ln].en.eq(u_go)]
            lo = bt.lane[ln]
            setb = Mux(self.pe_ba_valid[ln], C(1, W) << ((bt.slot * MJ + lo.i) * NS + lo.s), 0)
            clrb = Mux(u_go, C((1 << NS) - 1, W) << pv_at, 0)
            # set and clear never meet: a slot is rewritten only after it was summed
            m.d.sync += [pv[ln].eq((pv[ln] & ~clrb) | setb), u1_pv[ln].eq(pv[ln] >> pv_at)]
        m.d.sync += [u1_valid.eq(u_go), u1_q.eq(summed), u1_i.eq(u_i)]
        with m.If(u_go):
            with m.If(u_i == MJ - 1):
                m.d.sync += [u_i.eq(0), u_slot.eq(u_slot + 1), summed.eq(summed + 1)]
            with m.Else():
                m.d.sync += u_i.eq(u_i + 1)
        # u1: per set, the levels that had points in (head, slice), added; u2: the sums
        u2_valid, u2_q, u2_i = Signal(), Signal(rng(MQ)), Signal(rng(MJ))
        u2_sum = Signal(data.ArrayLayout(signed(A), J * D))
        for j in range(J):
            for ch in range(D):
                s_ = ch // CH
                terms = [Mux(u1_pv[ln][s_],
                             parts_r[ln].data[ch * A:(ch + 1) * A].as_signed(), 0)
                         for ln in range(j * L, (j + 1) * L)]
                m.d.sync += u2_sum[j * D + ch].eq(sum(terms))
        m.d.sync += [u2_valid.eq(u1_valid), u2_q.eq(u1_q), u2_i.eq(u1_i)]
        m.submodules.rq_ba = rq_ba = Requant(cfg, acc_bits=A, lanes=J * D)
        ba_big = self.shift_agg >= A
        m.d.comb += [rq_ba.in_valid.eq(u2_valid),
                     rq_ba.acc.eq(Mux(ba_big, 0, u2_sum.as_value())),
                     rq_ba.shift.eq(Mux(ba_big, 0, self.shift_agg))]
        u_tags = [(u2_valid, u2_q, u2_i)]
        for s in range(1, RQ + 1):
            t = (Signal(name=f"u_rq{s}_valid"), Signal(rng(MQ), name=f"u_rq{s}_q"),
                 Signal(rng(MJ), name=f"u_rq{s}_i"))
            m.d.sync += [t[k].eq(u_tags[-1][k]) for k in range(3)]
            u_tags.append(t)
        w_valid, w_q, w_i = u_tags[-1]
        sm = add_memory(m, "sampled", C_ * d, MQ)
        lend_read_port(m, sm, self.agg_rd)
        sm_w = sm.write_port(granularity=D * d)
        # heads i * J + j (j < J) at once: granule h takes set h mod J's codes
        qs = rq_ba.q.as_value()
        m.d.comb += [sm_w.addr.eq(w_q),
                     sm_w.data.eq(Cat(*[qs[(h % J) * D * d:(h % J + 1) * D * d]
                                        for h in range(M)])),
                     sm_w.en.eq(Mux(rq_ba.out_valid,
                                    (C((1 << J) - 1, M) << (w_i * J))[:M], 0))]
        ba_done_q = Signal(rng(MQ + 1))
        with m.If(rq_ba.out_valid & (w_i == MJ - 1)):
            m.d.sync += ba_done_q.eq(ba_done_q + 1)
        m.d.comb += self.agg_done.eq(ba_done_q == self.nq_pass)
        behind = Cat(*[ba_tags[s].valid for s in range(1, LAT + 1)], u_go, u1_valid,
                     *[t[0] for t in u_tags]).any()

        # ---- FWP finish: after the last BA operation of the block ---------------------------
        fin_sent = Signal()
        m.d.comb += [self.finish.payload.eq(self.shapes),
                     self.finish.valid.eq((self.phase == Phase.OUT) & self.last_pass &
                                          ~fin_sent & ~ba.busy)]
        with m.If(self.finish.valid & self.finish.ready):
            m.d.sync += fin_sent.eq(1)
        m.d.comb += [self.idle.eq(~ba.busy), self.drained.eq(fin_sent & ~behind)]
        with m.If(self.start):
            m.d.sync += fin_sent.eq(0)
        with m.If(self.pass_start):
            m.d.sync += [ba_done_q.eq(0), ready.eq(0), summed.eq(0), u_i.eq(0),
                         u_slot.eq(0)]
        return m

"""DefaCore (Verilog module ``defa_core``): one whole MSDeformAttn block in RTL.

The block diagram, dataflow phases, packet formats, register map and the places
where cycles are lost are documented in ``docs/architecture.md`` (core sections);
the cycle model that mirrors this controller is :mod:`defa_hw.model.perf`.

One shared :class:`~defa_hw.pe_array.PEArray` runs DEFA's dataflow, per pass of at
most ``max_queries`` queries:

1. ATTN   (MM) attention logits -> requant -> softmax -> PAP point mask
2. OFFSET (MM) sampling offsets of the *kept* points only, packed ``pe_cols / 2``
   points per output tile (skewed weight banks + gather: the F / G / M stages below)
3. VALUE  (MM) value projection of the unmasked pixels into the feature buffers
   (first pass only; masked pixels cost no array cycle and read as zero)
4. BA     (BA) sampling address -> 16-bank buffers -> bilinear + aggregation,
   FWP counting alongside
5. OUT    (MM) output projection -> results stream

after the last pass the FWP generator streams the next fmap mask.  Everything is
bit-exact with :func:`golden.model.defa_block`.
"""

import re

from amaranth import Array, C, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from defa_hw.host.registers import CTRL, REG_ADDR_BITS, REG_BITS, Reg
from defa_hw.rtl.core.interface import ResultKind, WeightTarget, check_core_config, fmap_beat_layout, offset_banks, query_beat_layout, result_beat_layout, weight_beat_layout
from defa_hw.rtl.fmap_buffer import FmapBuffer
from defa_hw.rtl.fmap_mask import FmapMaskGenerator
from defa_hw.rtl.pe_array import ArrayMode, PEArray, ba_point_layout
from defa_hw.rtl.point_mask import PointMask
from defa_hw.rtl.requant import Requant
from defa_hw.rtl.sampling_address import SamplingAddress, shapes_layout
from defa_hw.rtl.softmax import Softmax

__all__ = ["DefaCore", "Phase", "CoreGeometry", "DEFAULT_MAX_QUERIES", "core_verilog",
           "compact_memory_init"]

#: Default queries per pass (sizes the per-query state memories).
DEFAULT_MAX_QUERIES = 64


def _clog2(n):
    return max(0, (n - 1).bit_length())


def _bits(n):
    return max(1, int(n).bit_length())


def _rng(n):
    """``range(n)`` for a counter, at least 1 bit wide (Verilog has no 0-bit signals)."""
    return range(max(2, n))


def _is_pow2(n):
    return n > 0 and n & (n - 1) == 0


def _divmod_const(v, n):
    """``(v // n, v % n)`` for a non-negative value and a constant ``n``."""
    if n == 1:
        return v, C(0, 1)
    if _is_pow2(n):
        b = _clog2(n)
        return v >> b, v[:b]
    return v // n, v % n


def _lowest_one(bits, width):
    """Index of the lowest set bit of ``bits`` (0 when none)."""
    idx = C(0, _bits(width - 1))
    for i in reversed(range(width)):
        idx = Mux(bits[i], i, idx)
    return idx


def _popcount(bits, width):
    return sum(bits[i] for i in range(width))


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


class Phase(enum.Enum, shape=3):
    """Controller state; one cycle counter per phase (``Reg.CYC_*``)."""
    IDLE = 0
    ATTN = 1
    OFFSET = 2
    VALUE = 3
    BA = 4
    OUT = 5
    TAIL = 6


class MMKind(enum.Enum, shape=2):
    """Which phase an MM tile belongs to (travels with the tile to its result)."""
    ATTN = 0
    OFFSET = 1
    VALUE = 2
    OUT = 3


class CoreGeometry:
    """Derived sizes of the core (shared by the RTL, the perf model and the docs)."""

    def __init__(self, cfg, max_queries=DEFAULT_MAX_QUERIES):
        check_core_config(cfg)
        self.cfg = cfg
        self.mq = max_queries
        self.C, self.M, self.L, self.P, self.D = (cfg.d_model, cfg.n_heads, cfg.n_levels,
                                                  cfg.n_points, cfg.head_dim)
        self.R, self.Cc = cfg.pe_rows, cfg.pe_cols
        self.kc = self.C // self.R                       # K chunks per MM tile
        self.n_att = self.M * self.L * self.P            # points (= logits) per query
        self.t_att = -(-self.n_att // self.Cc)           # attention output tiles
        self.t_c = self.C // self.Cc                     # value / output tiles
        self.B = offset_banks(cfg)                       # points per offset tile
        self.n_slices = self.D // cfg.ba_channels
        self.acc = cfg.mm_acc_bits
        self.wr_beats = self.Cc // cfg.ba_channels       # buffer writes per value tile

    def memory_bits(self):
        """On-chip storage of the core in bits, by memory (for docs and reports)."""
        cfg, d = self.cfg, self.cfg.data_bits
        n_off = 2 * self.n_att
        mem = {
            "weights (Wv, Ws, Wa, Wo)": (2 * self.C + n_off + self.t_att * self.Cc) * self.C * d,
            "biases": (2 * self.C + n_off + self.t_att * self.Cc) * self.acc,
            "offset gather staging (3 batches)": self.B * 3 * self.kc * 2 * self.R * d,
            "queries + reference points (x2, double-buffered)":
                2 * self.mq * (self.C * d + self.L * 2 * cfg.ref_frac_bits),
            "keep masks": self.mq * self.M * self.L * self.P,
            "probabilities": self.mq * self.n_att * cfg.prob_bits,
            "offsets": self.mq * self.n_att * 2 * d,
            "aggregated samples": self.mq * self.C * d,
            "value buffers (n_heads x FmapBuffer)":
                self.M * sum(4 * cfg.bank_words(l) for l in range(self.L)) * self.D * d,
            "fmap-mask bits (incoming)": sum(4 * cfg.bank_words(l) for l in range(self.L)),
            "FWP counters": sum(4 * ((h + 1) // 2) * ((w + 1) // 2)
                                for h, w in cfg.max_shapes) * cfg.fwp_counter_bits,
        }
        return mem


class DefaCore(wiring.Component):
    """The DEFA accelerator core: one MSDeformAttn block per ``start``.

    Parameters
    ----------
    cfg : DefaConfig
    max_queries : int, keyword-only
        Queries per pass (default 64): sizes the query, probability, keep-mask,
        offset and aggregated-sample memories.  Blocks with more queries run in
        several passes; the value projection is done once per block.

    Attributes
    ----------
    weights, fmap, queries : In(stream)
        Packets of :mod:`defa_hw.rtl.core.interface`.
    results : Out(stream)
        Output codes and the next fmap mask (:func:`~defa_hw.rtl.core.interface.result_beat_layout`).
    csr_addr, csr_wdata, csr_we : In
        Register write port (``Reg`` word addresses); ``csr_rdata`` is the register
        at ``csr_addr`` one cycle later.
    busy, done : Out(1)
        Mirror ``CTRL``: a block is running / the last block has finished.
    """

    def __init__(self, cfg, *, max_queries=DEFAULT_MAX_QUERIES):
        if not isinstance(max_queries, int) or not 1 <= max_queries <= 4096:
            raise ValueError(f"max_queries = {max_queries!r} is invalid: allowed 1..4096")
        self.cfg = cfg
        self.geom = CoreGeometry(cfg, max_queries)
        super().__init__({
            "weights": In(stream.Signature(weight_beat_layout(cfg))),
            "fmap": In(stream.Signature(fmap_beat_layout(cfg))),
            "queries": In(stream.Signature(query_beat_layout(cfg))),
            "results": Out(stream.Signature(result_beat_layout(cfg))),
            "csr_addr": In(REG_ADDR_BITS),
            "csr_wdata": In(REG_BITS),
            "csr_we": In(1),
            "csr_rdata": Out(REG_BITS),
            "busy": Out(1),
            "done": Out(1),
        })

    # ------------------------------------------------------------------------------------
    def elaborate(self, platform):
        cfg, g = self.cfg, self.geom
        d = cfg.data_bits
        C_, M, L, P, D = g.C, g.M, g.L, g.P, g.D
        R, Cc, KC, B = g.R, g.Cc, g.kc, g.B
        MQ, NS, ACC = g.mq, g.n_slices, g.acc
        CH = cfg.ba_channels
        LP = L * P
        m = Module()
        self._m = m

        # ---- submodules --------------------------------------------------------------
        m.submodules.pe = pe = PEArray(cfg)
        m.submodules.rq_mm = rq_mm = Requant(cfg, acc_bits=cfg.mm_acc_bits, lanes=Cc)
        m.submodules.rq_ba = rq_ba = Requant(cfg, acc_bits=cfg.agg_acc_bits, lanes=CH)
        m.submodules.softmax = smax = Softmax(cfg)
        m.submodules.pmask = pmask = PointMask(cfg, count_bits=REG_BITS)
        m.submodules.fwp = fwp = FmapMaskGenerator(cfg)
        sas = []
        for l in range(L):
            sa = SamplingAddress(cfg)
            m.submodules[f"sa{l}"] = sa
            sas.append(sa)
        bufs = []
        for h in range(M):
            fb = FmapBuffer(cfg)
            m.submodules[f"vbuf{h}"] = fb
            bufs.append(fb)
        LAT = pe.LATENCY
        RQ = Requant.LATENCY
        SA_LAT = SamplingAddress.LATENCY
        FB_LAT = FmapBuffer.LATENCY
        GAP = PEArray.BA_TO_MM_GAP

        # ---- register block ----------------------------------------------------------
        phase = Signal(Phase)
        busy = phase != Phase.IDLE
        done = Signal()
        nq = Signal(16)
        prune = Signal(init=1)
        sh_value, sh_logit, sh_offset, sh_agg, sh_out = (
            Signal(6, name=f"reg_shift_{n}") for n in ("value", "logit", "offset", "agg", "out"))
        logit_frac = Signal(6)
        pap_thr = Signal(cfg.prob_bits + 1, init=cfg.pap_threshold_code)
        fwp_thr = Signal(cfg.fwp_counter_bits, init=cfg.fwp_threshold)
        shl = shapes_layout(cfg)
        shapes = Signal(shl, init=[{"h": h, "w": w} for h, w in cfg.max_shapes])
        start = Signal()
        m.d.comb += start.eq(self.csr_we & (self.csr_addr == Reg.CTRL) &
                             self.csr_wdata[0] & ~busy)
        with m.If(self.csr_we):
            with m.Switch(self.csr_addr):
                with m.Case(Reg.NQ):
                    m.d.sync += nq.eq(self.csr_wdata)
                with m.Case(Reg.FLAGS):
                    m.d.sync += prune.eq(self.csr_wdata[0])
                for reg, sig in ((Reg.SHIFT_VALUE, sh_value), (Reg.SHIFT_LOGIT, sh_logit),
                                 (Reg.SHIFT_OFFSET, sh_offset), (Reg.SHIFT_AGG, sh_agg),
                                 (Reg.SHIFT_OUT, sh_out), (Reg.LOGIT_FRAC, logit_frac),
                                 (Reg.PAP_THRESHOLD, pap_thr), (Reg.FWP_THRESHOLD, fwp_thr)):
                    with m.Case(reg):
                        m.d.sync += sig.eq(self.csr_wdata)
                for l in range(L):
                    with m.Case(Reg.SHAPE0 + l):
                        m.d.sync += [shapes[l].h.eq(self.csr_wdata[:16]),
                                     shapes[l].w.eq(self.csr_wdata[16:])]
        m.d.comb += [
            pmask.threshold.eq(self.csr_wdata), fwp.threshold.eq(self.csr_wdata),
            pmask.threshold_we.eq(self.csr_we & (self.csr_addr == Reg.PAP_THRESHOLD)),
            fwp.threshold_we.eq(self.csr_we & (self.csr_addr == Reg.FWP_THRESHOLD)),
            pmask.enable.eq(prune), fwp.enable.eq(prune),
            pmask.stat_clear.eq(start),
            self.busy.eq(busy), self.done.eq(done),
        ]
        # Runtime geometry of the block.
        npix = Signal(_rng(cfg.max_pixels + 1))
        m.d.comb += npix.eq(sum(shapes[l].h * shapes[l].w for l in range(L)))
        for sa in sas:
            m.d.comb += sa.shapes.eq(shapes)

        # ---- counters ------------------------------------------------------------------
        cnt = {k: Signal(REG_BITS, name=f"cnt_{k}") for k in (
            "cycles", "attn", "offset", "value", "ba", "out", "tail", "stall", "clamped",
            "masked_in", "conflicts_base", "mm_ops", "ba_ops", "passes")}
        stall = Signal()
        with m.If(busy):
            m.d.sync += [cnt["cycles"].eq(cnt["cycles"] + 1),
                         cnt["stall"].eq(cnt["stall"] + stall)]
            for ph, k in ((Phase.ATTN, "attn"), (Phase.OFFSET, "offset"),
                          (Phase.VALUE, "value"), (Phase.BA, "ba"), (Phase.OUT, "out"),
                          (Phase.TAIL, "tail")):
                with m.If(phase == ph):
                    m.d.sync += cnt[k].eq(cnt[k] + 1)
        conflicts = Signal(REG_BITS)
        m.d.comb += conflicts.eq(sum(fb.stat_conflict_reads for fb in bufs))
        with m.If(start):
            m.d.sync += cnt["conflicts_base"].eq(conflicts)

        # ---- pass bookkeeping ------------------------------------------------------------
        cur_pass = Signal(16)
        pass_base = Signal(16)                         # first query of the pass
        nq_pass = Signal(_rng(MQ + 1))                # queries in the pass
        last_pass = Signal()
        remaining = Signal(16)
        m.d.comb += [remaining.eq(nq - pass_base),
                     nq_pass.eq(Mux(remaining > MQ, MQ, remaining)),
                     last_pass.eq(remaining <= MQ)]
        half = cur_pass[0]                             # query-memory half of the pass

        # ---- memories --------------------------------------------------------------------
        def mem(name, width, depth, gran=None):
            # depth >= 2: a 1-word memory would have a 0-bit address (not Verilog)
            mm = Memory(shape=unsigned(width), depth=max(2, depth), init=[])
            m.submodules[name] = mm
            return mm, mm.read_port(), mm.write_port(granularity=gran)

        # Weight tiles: one memory per K chunk k (word = the pe_rows x pe_cols tile of
        # output-column tile jt, lane-major: lane j = output row jt * Cc + j), so that a
        # whole weight row is written in one beat; MM reads memory k at address jt.
        # Wv, Wa and Wo share the Kc memories (at word offsets W_BASE), so the array
        # input needs one Kc:1 tile multiplexer, not one per matrix (3 x 3072-bit 16:1
        # for defa was ~2/3 of the core's glue logic).
        tile_w = Cc * R * d
        W_BASE = {WeightTarget.VALUE: 0, WeightTarget.ATTN: g.t_c,
                  WeightTarget.OUT: g.t_c + g.t_att}
        wmm = [mem(f"w_mm_k{k}", tile_w, 2 * g.t_c + g.t_att, R * d) for k in range(KC)]
        bv, bv_r, bv_w = mem("b_value", Cc * ACC, g.t_c, ACC)
        ba_, ba_r, ba_w = mem("b_attn", Cc * ACC, g.t_att, ACC)
        bo, bo_r, bo_w = mem("b_out", Cc * ACC, g.t_c, ACC)
        # Offset weights, skewed: chunk k of point pt (its x and y rows) lives in bank
        # (pt + k) mod B, sub-memory k // B, word pt.
        ws = [[mem(f"w_offset_b{b}_s{s_}", 2 * R * d, g.n_att, R * d) for s_ in range(KC // B)]
              for b in range(B)]
        bs, bs_r, bs_w = mem("b_offset", 2 * ACC, g.n_att, ACC)
        qm, qm_r, qm_w = mem("queries", C_ * d, 2 * MQ)
        rb = cfg.ref_frac_bits
        rm, rm_r, rm_w = mem("refs", L * 2 * rb, 2 * MQ)
        km, km_r, km_w = mem("keep", LP, MQ * M)
        pms = [mem(f"prob{l}", cfg.prob_bits, MQ * M * P) for l in range(L)]
        oms = [mem(f"offs{l}", 2 * d, MQ * M * P) for l in range(L)]
        sm, sm_r, sm_w = mem("sampled", C_ * d, MQ, CH * d)
        tms = [mem(f"stage{i}", 2 * R * d, 3 * KC) for i in range(B)]
        mask_banks = []
        for b in range(4 * L):
            lvl = b // 4
            mask_banks.append(mem(f"fmask{b}", 1, cfg.bank_words(lvl)))

        # ---- weight loading (idle only) -----------------------------------------------------
        wbeat = self.weights.payload
        m.d.comb += self.weights.ready.eq(~busy)
        w_acc = self.weights.valid & self.weights.ready
        tgt = wbeat.target
        w_jt, w_j = _divmod_const(wbeat.row, Cc)
        w_row = wbeat.weights.as_value()
        w_lane = (C(1, Cc) << w_j)[:Cc]
        w_mm = w_acc & ((tgt == WeightTarget.VALUE) | (tgt == WeightTarget.ATTN) |
                        (tgt == WeightTarget.OUT))
        w_base = Mux(tgt == WeightTarget.ATTN, W_BASE[WeightTarget.ATTN],
                     Mux(tgt == WeightTarget.OUT, W_BASE[WeightTarget.OUT], 0))
        for k, (_, _, w_) in enumerate(wmm):
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
        w_rot = _divmod_const(B - _divmod_const(w_pt, B)[1], B)[1]     # (-pt) mod B
        for b in range(B):
            for s_, (_, _, w_) in enumerate(ws[b]):
                # chunk k = s * B + (b - pt) mod B
                r_ = _divmod_const(b + w_rot, B)[1]
                chunk = Array(w_row[(s_ * B + r) * R * d:(s_ * B + r + 1) * R * d]
                              for r in range(B))[r_]
                m.d.comb += [w_.addr.eq(w_pt), w_.data.eq(chunk.replicate(2)),
                             w_.en.eq(Mux(w_off, w_xy, 0))]
        m.d.comb += [bs_w.addr.eq(w_pt), bs_w.data.eq(wbeat.bias.as_unsigned().replicate(2)),
                     bs_w.en.eq(Mux(w_off, w_xy, 0))]

        # ---- query loading (double-buffered per pass) -----------------------------------
        n_loaded = Signal(16)
        load_slot = Signal(_rng(MQ))
        load_pass = Signal(16)
        qbeat = self.queries.payload
        m.d.comb += self.queries.ready.eq(busy & (n_loaded < nq) & (load_pass <= cur_pass + 1))
        q_acc = self.queries.valid & self.queries.ready
        q_waddr = load_pass[0] * MQ + load_slot
        m.d.comb += [
            qm_w.addr.eq(q_waddr), qm_w.data.eq(qbeat.query.as_value()), qm_w.en.eq(q_acc),
            rm_w.addr.eq(q_waddr), rm_w.data.eq(qbeat.ref.as_value()), rm_w.en.eq(q_acc),
        ]
        with m.If(q_acc):
            m.d.sync += n_loaded.eq(n_loaded + 1)
            with m.If(load_slot == MQ - 1):
                m.d.sync += [load_slot.eq(0), load_pass.eq(load_pass + 1)]
            with m.Else():
                m.d.sync += load_slot.eq(load_slot + 1)
        with m.If(start):
            m.d.sync += [n_loaded.eq(0), load_slot.eq(0), load_pass.eq(0)]

        # ---- MM issue stage (I0 -> I1 -> PE array) ----------------------------------------
        tag_layout = data.StructLayout({
            "kind": MMKind, "q": range(MQ), "jt": range(max(g.t_att, g.t_c)),
            "last": 1,                                  # OUT: last output beat of the block
            "level": range(L), "y": range(max(h for h, _ in cfg.max_shapes)),
            "x": range(max(w for _, w in cfg.max_shapes)),
            "pts": data.ArrayLayout(range(g.n_att), B), "cnt": range(B + 1),
        })
        i0_valid = Signal()
        i0_first = Signal()
        i0_last = Signal()
        i0_k = Signal(_rng(KC))
        i0_kind = Signal(MMKind)
        i0_tag = Signal(tag_layout)
        i1_valid = Signal()
        i1_first = Signal()
        i1_last = Signal()
        i1_k = Signal(_rng(KC))
        i1_kind = Signal(MMKind)
        i1_tag = Signal(tag_layout)
        m.d.sync += [i1_valid.eq(i0_valid), i1_first.eq(i0_first), i1_last.eq(i0_last),
                     i1_k.eq(i0_k), i1_kind.eq(i0_kind), i1_tag.eq(i0_tag)]
        m.d.sync += cnt["mm_ops"].eq(cnt["mm_ops"] + i1_valid)

        # Mode guard: an MM op must not reach the array within GAP cycles of a BA op.
        ba_pipe_busy = Signal()
        ba_quiet = Signal(_rng(GAP + 2), init=GAP + 1)  # cycles since a BA op, minus one
        mm_ok = Signal()
        m.d.comb += mm_ok.eq(~ba_pipe_busy & (ba_quiet + 1 >= GAP))

        # ---- ATTN issue ----------------------------------------------------------------------
        a_q = Signal(_rng(MQ + 1))
        a_jt = Signal(_rng(g.t_att))
        a_k = Signal(_rng(KC))
        a_done = Signal()
        a_res = Signal(_rng(16))                      # tiles issued, not yet serialised
        A_CAP = -(-(LAT + RQ + 4) // KC) + 2           # logit-tile FIFO depth
        a_loaded = n_loaded > pass_base + a_q
        a_credit = (a_k != 0) | (a_res < A_CAP)
        a_issue = (phase == Phase.ATTN) & ~a_done & a_loaded & a_credit & mm_ok

        # ---- OUT issue -------------------------------------------------------------------------
        o_q = Signal(_rng(MQ + 1))
        o_jt = Signal(_rng(g.t_c))
        o_k = Signal(_rng(KC))
        o_done = Signal()
        o_res = Signal(_rng(32))                      # result beats reserved (flight + FIFO)
        O_CAP = -(-(LAT + RQ + 4) // KC) + 4
        ba_done_q = Signal(_rng(MQ + 1))
        o_credit = (o_k != 0) | (o_res < O_CAP)
        # OUT starts once every aggregated sample of the pass is written (a fixed BA drain).
        o_ready_q = ba_done_q == nq_pass
        o_issue = (phase == Phase.OUT) & ~o_done & o_ready_q & o_credit & mm_ok

        # ---- VALUE issue -----------------------------------------------------------------------
        pix_layout = data.StructLayout({
            "pixel": unsigned(C_ * d), "level": range(L),
            "y": range(max(h for h, _ in cfg.max_shapes)),
            "x": range(max(w for _, w in cfg.max_shapes))})
        m.submodules.pix_fifo = pix_fifo = SyncFIFOBuffered(width=pix_layout.size, depth=2)
        pix_head = data.View(pix_layout, pix_fifo.r_data)
        cur_pix = Signal(pix_layout)
        v_active = Signal()                            # a pixel is being processed
        v_jt = Signal(_rng(g.t_c))
        v_k = Signal(_rng(KC))
        v_in_cnt = Signal(_rng(cfg.max_pixels + 1))   # fmap beats consumed
        v_new = ~v_active & pix_fifo.r_rdy
        v_issue = (phase == Phase.VALUE) & (v_active | pix_fifo.r_rdy) & mm_ok

        # ---- OFFSET issue (M stage of the offset pipeline) -------------------------------------
        mo_valid = Signal()                            # a batch is being issued
        mo_k = Signal(_rng(KC))
        mo_buf = Signal(_rng(3))
        mo_q = Signal(_rng(MQ))
        mo_cnt = Signal(_rng(B + 1))
        mo_pts = Signal(data.ArrayLayout(range(g.n_att), B))
        mo_bias = Signal(data.ArrayLayout(unsigned(2 * ACC), B))
        gm_valid = Signal()                            # gathered batch waiting for M
        gm_buf = Signal(_rng(3))
        gm_q = Signal(_rng(MQ))
        gm_cnt = Signal(_rng(B + 1))
        gm_pts = Signal(data.ArrayLayout(range(g.n_att), B))
        gm_bias = Signal(data.ArrayLayout(unsigned(2 * ACC), B))
        mo_take = ~mo_valid & gm_valid                 # op 0 of the next batch
        off_issue = (phase == Phase.OFFSET) & (mo_valid | gm_valid) & mm_ok
        mo_kk = Mux(mo_take, 0, mo_k)                  # chunk of this op

        # Shared read ports: addresses by phase (ATTN, OUT and VALUE issue only in their
        # own phase; a read at I0 is used at I1 by the op's kind).
        r_jt = Mux(phase == Phase.ATTN, W_BASE[WeightTarget.ATTN] + a_jt,
                   Mux(phase == Phase.OUT, W_BASE[WeightTarget.OUT] + o_jt, v_jt))
        r_k = Mux(phase == Phase.ATTN, a_k, Mux(phase == Phase.OUT, o_k, v_k))
        for k, (_, r_, _) in enumerate(wmm):
            m.d.comb += [r_.addr.eq(r_jt), r_.en.eq(r_k == k)]
        m.d.comb += [ba_r.addr.eq(a_jt), bo_r.addr.eq(o_jt), bv_r.addr.eq(v_jt),
                     sm_r.addr.eq(o_q)]

        with m.Switch(phase):
            with m.Case(Phase.ATTN):
                m.d.comb += [
                    qm_r.addr.eq(half * MQ + a_q),
                    i0_valid.eq(a_issue), i0_first.eq(a_k == 0), i0_last.eq(a_k == KC - 1),
                    i0_k.eq(a_k), i0_kind.eq(MMKind.ATTN),
                    i0_tag.kind.eq(MMKind.ATTN), i0_tag.q.eq(a_q), i0_tag.jt.eq(a_jt),
                ]
            with m.Case(Phase.OUT):
                m.d.comb += [
                    i0_valid.eq(o_issue), i0_first.eq(o_k == 0), i0_last.eq(o_k == KC - 1),
                    i0_k.eq(o_k), i0_kind.eq(MMKind.OUT),
                    i0_tag.kind.eq(MMKind.OUT), i0_tag.q.eq(o_q), i0_tag.jt.eq(o_jt),
                    i0_tag.last.eq(last_pass & (o_q == nq_pass - 1) & (o_jt == g.t_c - 1)),
                ]
            with m.Case(Phase.VALUE):
                src = data.View(pix_layout, Mux(v_active, cur_pix.as_value(),
                                                pix_head.as_value()))
                m.d.comb += [
                    i0_valid.eq(v_issue), i0_first.eq(v_k == 0), i0_last.eq(v_k == KC - 1),
                    i0_k.eq(v_k), i0_kind.eq(MMKind.VALUE),
                    i0_tag.kind.eq(MMKind.VALUE), i0_tag.jt.eq(v_jt),
                    i0_tag.level.eq(src.level), i0_tag.y.eq(src.y), i0_tag.x.eq(src.x),
                ]
            with m.Case(Phase.OFFSET):
                m.d.comb += [
                    qm_r.addr.eq(half * MQ + Mux(mo_take, gm_q, mo_q)),
                    i0_valid.eq(off_issue), i0_first.eq(mo_take),
                    i0_last.eq(mo_kk == KC - 1),
                    i0_k.eq(mo_kk), i0_kind.eq(MMKind.OFFSET),
                    i0_tag.kind.eq(MMKind.OFFSET),
                    i0_tag.q.eq(Mux(mo_take, gm_q, mo_q)),
                    i0_tag.pts.eq(Mux(mo_take, gm_pts, mo_pts)),
                    i0_tag.cnt.eq(Mux(mo_take, gm_cnt, mo_cnt)),
                ]

        # ATTN and OUT counters: chunk k, output tile jt, query q of the pass
        _count_tiles(m, a_issue, a_k, a_jt, a_q, a_done, kc=KC, n_jt=g.t_att, nq=nq_pass)
        _count_tiles(m, o_issue, o_k, o_jt, o_q, o_done, kc=KC, n_jt=g.t_c, nq=nq_pass)
        # VALUE counters: the pixel is latched at its first op (I1 reads cur_pix).
        m.d.comb += pix_fifo.r_en.eq(v_issue & v_new)
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
        # OFFSET M-stage counters
        for i in range(B):
            m.d.comb += tms[i][1].addr.eq(Mux(mo_take, gm_buf, mo_buf) * KC + mo_kk)
        with m.If(off_issue):
            with m.If(mo_take):
                m.d.sync += [mo_valid.eq(KC != 1), mo_k.eq(1), mo_buf.eq(gm_buf),
                             mo_q.eq(gm_q), mo_cnt.eq(gm_cnt), mo_pts.eq(gm_pts),
                             mo_bias.eq(gm_bias)]
            with m.Else():
                m.d.sync += mo_k.eq(mo_k + 1)
                with m.If(mo_k == KC - 1):
                    m.d.sync += mo_valid.eq(0)

        # ---- I1: operands into the PE array ----------------------------------------------
        i1_xword = Signal(C_ * d)
        with m.Switch(i1_kind):
            with m.Case(MMKind.VALUE):
                m.d.comb += i1_xword.eq(cur_pix.pixel)
            with m.Case(MMKind.OUT):
                m.d.comb += i1_xword.eq(sm_r.data)
            with m.Default():
                m.d.comb += i1_xword.eq(qm_r.data)
        x_chunk = i1_xword.word_select(i1_k, R * d)
        tile = Signal(tile_w)                          # lane-major: lane j, element i
        bias = Signal(Cc * ACC)
        stage_word = Cat(*[tms[i][1].data for i in range(B)])   # lane 2i + xy
        mm_tile = Array(r_.data for _, r_, _ in wmm)[i1_k]
        with m.Switch(i1_kind):
            with m.Case(MMKind.ATTN):
                m.d.comb += [tile.eq(mm_tile), bias.eq(ba_r.data)]
            with m.Case(MMKind.VALUE):
                m.d.comb += [tile.eq(mm_tile), bias.eq(bv_r.data)]
            with m.Case(MMKind.OUT):
                m.d.comb += [tile.eq(mm_tile), bias.eq(bo_r.data)]
            with m.Case(MMKind.OFFSET):
                m.d.comb += [tile.eq(stage_word), bias.eq(mo_bias.as_value())]
        w_ij = Cat(*[tile[(j * R + i) * d:(j * R + i + 1) * d]
                     for i in range(R) for j in range(Cc)])

        # BA side of the array input (c8 stage), filled in below.
        ba_valid = Signal()
        ba_first = Signal()
        ba_last = Signal()
        ba_pix = Signal(pe.pix.shape())
        ba_pt = Signal(pe.pt.shape())
        m.d.comb += [
            pe.valid.eq(i1_valid | ba_valid),
            pe.mode.eq(Mux(ba_valid, ArrayMode.BA, ArrayMode.MM)),
            pe.first.eq(Mux(ba_valid, ba_first, i1_first)),
            pe.last.eq(Mux(ba_valid, ba_last, i1_last)),
            pe.x.eq(x_chunk), pe.w.eq(w_ij), pe.bias.eq(bias),
            pe.pix.eq(ba_pix), pe.pt.eq(ba_pt),
        ]

        # ---- MM results: tag line, requant -------------------------------------------------
        mm_tags = [Signal(tag_layout, name=f"mm_tag{s}") for s in range(LAT + RQ + 1)]
        mm_tv = [Signal(name=f"mm_tv{s}") for s in range(LAT + RQ + 1)]
        m.d.comb += [mm_tags[0].eq(i1_tag), mm_tv[0].eq(i1_valid & i1_last)]
        for s in range(1, LAT + RQ + 1):
            m.d.sync += [mm_tags[s].eq(mm_tags[s - 1]), mm_tv[s].eq(mm_tv[s - 1])]
        t_out = mm_tags[LAT]
        mm_shift = Signal(6)
        with m.Switch(t_out.kind):
            with m.Case(MMKind.ATTN):
                m.d.comb += mm_shift.eq(sh_logit)
            with m.Case(MMKind.OFFSET):
                m.d.comb += mm_shift.eq(sh_offset)
            with m.Case(MMKind.VALUE):
                m.d.comb += mm_shift.eq(sh_value)
            with m.Case(MMKind.OUT):
                m.d.comb += mm_shift.eq(sh_out)
        mm_big = mm_shift >= cfg.mm_acc_bits            # the exact result is 0
        m.d.comb += [
            rq_mm.in_valid.eq(pe.out_valid & (pe.out_mode == ArrayMode.MM)),
            rq_mm.acc.eq(Mux(mm_big, 0, pe.mm_acc.as_value())),
            rq_mm.shift.eq(Mux(mm_big, 0, mm_shift)),
        ]
        res_tag = mm_tags[LAT + RQ]
        res_valid = rq_mm.out_valid
        res_q = rq_mm.q

        # ---- ATTN results: logit tiles -> serializer -> softmax -> point mask ---------------
        m.submodules.logit_fifo = lfifo = SyncFIFOBuffered(
            width=Cc * d + _bits(g.t_att), depth=A_CAP)
        m.d.comb += [
            lfifo.w_data.eq(Cat(res_q.as_value(), res_tag.jt)),
            lfifo.w_en.eq(res_valid & (res_tag.kind == MMKind.ATTN)),
        ]
        ser_codes = Signal(Cc * d)
        ser_idx = Signal(_rng(Cc))
        ser_n = Signal(_rng(Cc + 1))                  # valid logits in the tile
        ser_valid = Signal()
        ser_take = lfifo.r_rdy & (~ser_valid | (smax.logits.ready & (ser_idx == ser_n - 1)))
        m.d.comb += lfifo.r_en.eq(ser_take)
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
            smax.logit_frac_bits.eq(logit_frac),
        ]
        with m.If(start):
            m.d.sync += a_res.eq(0)
        with m.Else():
            m.d.sync += a_res.eq(a_res + (a_issue & (a_k == 0)) - ser_take)
        # Probabilities: tee into the per-level probability memories and the point mask.
        pr_i = Signal(_rng(LP))
        pr_head = Signal(_rng(MQ * M + 1))
        pr_lvl, pr_p = _divmod_const(pr_i, P)
        m.d.comb += [
            pmask.prob.valid.eq(smax.probs.valid),
            pmask.prob.payload.eq(smax.probs.payload),
            smax.probs.ready.eq(pmask.prob.ready),
            pmask.point.ready.eq(1),
            pmask.mask.ready.eq(1),
        ]
        pr_acc = smax.probs.valid & smax.probs.ready
        for l in range(L):
            _, _, pw = pms[l]
            m.d.comb += [pw.addr.eq(pr_head * P + pr_p), pw.data.eq(smax.probs.payload),
                         pw.en.eq(pr_acc & (pr_lvl == l))]
        with m.If(pr_acc):
            with m.If(pr_i == LP - 1):
                m.d.sync += [pr_i.eq(0), pr_head.eq(pr_head + 1)]
            with m.Else():
                m.d.sync += pr_i.eq(pr_i + 1)
        groups_done = Signal(_rng(MQ * M + 1))        # keep words written in this pass
        m.d.comb += [km_w.addr.eq(groups_done), km_w.data.eq(pmask.mask.payload.keep),
                     km_w.en.eq(pmask.mask.valid)]
        with m.If(pmask.mask.valid):
            m.d.sync += groups_done.eq(groups_done + 1)

        # ---- OFFSET pipeline: F (pick kept points) -> G (gather) -> M (issue) --------------
        # F reads the keep words of the pass in order through a small prefetch FIFO.
        kr_head = Signal(_rng(MQ * M + 1))            # next keep word to read
        kr_inflight = Signal()
        m.submodules.keep_fifo = kfifo = SyncFIFOBuffered(width=LP, depth=4)
        total_heads = nq_pass * M
        kr_issue = Signal()
        m.d.comb += kr_issue.eq((phase == Phase.OFFSET) & (kr_head < total_heads) &
                                (groups_done == total_heads) &
                                (kfifo.level + kr_inflight < 4))
        m.d.sync += kr_inflight.eq(kr_issue)
        with m.If(kr_issue):
            m.d.sync += kr_head.eq(kr_head + 1)
        m.d.comb += [kfifo.w_data.eq(km_r.data), kfifo.w_en.eq(kr_inflight)]

        f_q = Signal(_rng(MQ + 1))
        f_m = Signal(_rng(M))
        f_used = Signal(LP)
        f_cnt = Signal(_rng(B + 1))
        f_pts = Signal(data.ArrayLayout(range(g.n_att), B))
        f_done = Signal()
        fg_valid = Signal()
        fg_q = Signal(_rng(MQ))
        fg_cnt = Signal(_rng(B + 1))
        fg_pts = Signal(data.ArrayLayout(range(g.n_att), B))
        # Queries of the pass whose batches are still in flight (pushed at F, popped when
        # their offsets are written): BA may start a query once F has passed it and no
        # batch of it (or of an earlier query) is pending.
        m.submodules.batch_ids = bids = SyncFIFOBuffered(
            width=_bits(MQ), depth=8 + -(-(LAT + RQ + 2) // KC))

        cur_bits = kfifo.r_data & ~f_used
        has_pt = cur_bits.any()
        idx = _lowest_one(cur_bits, LP)
        rest = cur_bits & ~(C(1, LP) << idx)[:LP]
        head_end = ~rest.any()                          # this cycle finishes the word
        q_end = head_end & (f_m == M - 1)
        cnt_next = f_cnt + has_pt
        f_emit = (cnt_next == B) | (q_end & (cnt_next != 0))
        f_step = ((phase == Phase.OFFSET) & kfifo.r_rdy & ~f_done &
                  (~f_emit | (~fg_valid & bids.w_rdy)))
        new_pt = f_m * LP + idx
        m.d.comb += kfifo.r_en.eq(f_step & head_end)
        with m.If(f_step):
            with m.If(has_pt):
                m.d.sync += f_pts[f_cnt].eq(new_pt)
            m.d.sync += [f_used.eq(Mux(head_end, 0, f_used | (C(1, LP) << idx)[:LP])),
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
                    m.d.sync += fg_pts[i].eq(Mux((f_cnt == i) & has_pt, new_pt, f_pts[i]))
        m.d.comb += [bids.w_data.eq(f_q), bids.w_en.eq(f_step & f_emit)]

        # G: Kc cycles; in cycle c lane i reads chunk k_i = (c + i - pt_i) mod Kc from bank
        # (pt_i + k_i) mod B = (c + i) mod B, so the B lanes never share a bank.  Three
        # staging buffers (G writing, one gathered batch queued, M reading) let G run one
        # batch ahead of M, so M issues back to back.
        g_active = Signal()
        g_c = Signal(_rng(KC))
        g_rot = Signal(_rng(B))
        g_buf = Signal(_rng(3))
        g_q = Signal(_rng(MQ))
        g_cnt = Signal(_rng(B + 1))
        g_pts = Signal(data.ArrayLayout(range(g.n_att), B))
        g_k = [Signal(_rng(KC), name=f"g_k{i}") for i in range(B)]
        g_bias = Signal(data.ArrayLayout(unsigned(2 * ACC), B))
        g1_valid = Signal()
        g1_rot = Signal(_rng(B))
        g1_buf = Signal(_rng(3))
        g1_k = [Signal(_rng(KC), name=f"g1_k{i}") for i in range(B)]
        g1_bias_slot = Signal(_rng(B + 1))
        buf_busy = Signal(3)
        free_idx = Mux(~buf_busy[0], 0, Mux(~buf_busy[1], 1, 2))
        any_free = ~buf_busy.all()
        g_last = g_active & (g_c == KC - 1)
        g_start = fg_valid & (~g_active | g_last) & any_free
        with m.If(g_start):
            m.d.sync += [g_active.eq(1), g_c.eq(0), g_rot.eq(0), g_q.eq(fg_q), g_buf.eq(free_idx),
                         g_cnt.eq(fg_cnt), g_pts.eq(fg_pts), fg_valid.eq(0)]
            for i in range(B):
                # k_i(0) = (i - pt_i) mod Kc
                m.d.sync += g_k[i].eq(_divmod_const(i + KC * g.n_att - fg_pts[i], KC)[1])
        with m.Elif(g_last):
            m.d.sync += g_active.eq(0)
        lane_pt = Array(g_pts[i] for i in range(B))
        for b in range(B):
            lane = _divmod_const(b + B - g_rot, B)[1]
            for _, rp, _ in ws[b]:
                m.d.comb += [rp.addr.eq(lane_pt[lane]), rp.en.eq(g_active)]
        m.d.comb += bs_r.addr.eq(lane_pt[g_c[:_bits(B - 1)] if B > 1 else 0])
        m.d.sync += [g1_valid.eq(g_active), g1_rot.eq(g_rot), g1_buf.eq(g_buf)]
        m.d.sync += [g1_k[i].eq(g_k[i]) for i in range(B)]
        m.d.sync += g1_bias_slot.eq(Mux(g_active & (g_c < B), g_c, B))
        with m.If(g_active & ~g_last):
            m.d.sync += [g_c.eq(g_c + 1), g_rot.eq(Mux(g_rot == B - 1, 0, g_rot + 1))]
            for i in range(B):
                m.d.sync += g_k[i].eq(Mux(g_k[i] == KC - 1, 0, g_k[i] + 1))
        bank_data = Array(Array(rp.data for _, rp, _ in ws[b]) for b in range(B))
        for i in range(B):
            _, _, tw = tms[i]
            src_b = _divmod_const(i + g1_rot, B)[1]
            src_s = _divmod_const(g1_k[i], B)[0]
            m.d.comb += [tw.addr.eq(g1_buf * KC + g1_k[i]), tw.data.eq(bank_data[src_b][src_s]),
                         tw.en.eq(g1_valid)]
        # Bias of slot c arrives in cycle c + 1 (c < B < Kc): bypass it into the copy.
        g_bias_now = Signal.like(g_bias)
        m.d.comb += g_bias_now.eq(g_bias)
        with m.If(g1_bias_slot < B):
            m.d.comb += Array(g_bias_now[i] for i in range(B))[g1_bias_slot].eq(bs_r.data)
        m.d.sync += g_bias.eq(g_bias_now)
        # Gathered batches queue for M; the SyncFIFOBuffered's 2-cycle latency covers the
        # last chunk, written one cycle after G's last read.
        gq_layout = data.StructLayout({
            "buf": range(3), "q": range(MQ), "cnt": range(B + 1),
            "pts": data.ArrayLayout(range(g.n_att), B),
            "bias": data.ArrayLayout(unsigned(2 * ACC), B)})
        m.submodules.gather_q = gq = SyncFIFOBuffered(width=gq_layout.size, depth=3)
        m.d.comb += [gq.w_en.eq(g_last),
                     gq.w_data.eq(Cat(g_buf, g_q, g_cnt, g_pts, g_bias_now))]
        gq_head = data.View(gq_layout, gq.r_data)
        m.d.comb += [gm_valid.eq(gq.r_rdy), gm_buf.eq(gq_head.buf), gm_q.eq(gq_head.q),
                     gm_cnt.eq(gq_head.cnt), gm_pts.eq(gq_head.pts), gm_bias.eq(gq_head.bias),
                     gq.r_en.eq(off_issue & mo_take)]
        # Staging buffers: taken at G start, freed after M's last read of the batch.
        buf_set = Mux(g_start, C(1, 3) << free_idx, 0)[:3]
        buf_clr = Mux(off_issue & (mo_kk == KC - 1),
                      C(1, 3) << Mux(mo_take, gm_buf, mo_buf), 0)[:3]
        m.d.sync += buf_busy.eq((buf_busy | buf_set) & ~buf_clr)

        # Write-back: up to B points, one per level and cycle, into the offset memories.
        wb_pend = Signal(B)
        wb_q = Signal(_rng(MQ))
        wb_pts = Signal(data.ArrayLayout(range(g.n_att), B))
        wb_codes = Signal(Cc * d)
        wb_new = res_valid & (res_tag.kind == MMKind.OFFSET)
        pt_m = [_divmod_const(wb_pts[i], LP) for i in range(B)]
        pt_l = [_divmod_const(pt_m[i][1], P) for i in range(B)]   # (level, p)
        cleared = []
        for l in range(L):
            sel = Const(0, B)
            taken = Const(0, 1)
            for i in range(B):
                hit = wb_pend[i] & (pt_l[i][0] == l) & ~taken
                sel = sel | (hit << i)
                taken = taken | hit
            sel_s = Signal(B, name=f"wb_sel{l}")
            m.d.comb += sel_s.eq(sel)
            cleared.append(sel_s)
            addr = 0
            word = 0
            for i in reversed(range(B)):
                addr = Mux(sel_s[i], (wb_q * M + pt_m[i][0]) * P + pt_l[i][1], addr)
                word = Mux(sel_s[i], wb_codes[2 * i * d:(2 * i + 2) * d], word)
            _, _, ow = oms[l]
            m.d.comb += [ow.addr.eq(addr), ow.data.eq(word), ow.en.eq(sel_s.any())]
        acc_clear = cleared[0]
        for s_ in cleared[1:]:
            acc_clear = acc_clear | s_
        # Results of two batches are >= Kc >= B cycles apart: the previous batch is written.
        with m.If(wb_new):
            m.d.sync += [wb_pend.eq(((C(1, B + 1) << res_tag.cnt) - 1)[:B]),
                         wb_q.eq(res_tag.q), wb_pts.eq(res_tag.pts),
                         wb_codes.eq(res_q.as_value())]
        with m.Else():
            m.d.sync += wb_pend.eq(wb_pend & ~acc_clear)
        wb_finish = (wb_pend != 0) & ((wb_pend & ~acc_clear) == 0)
        m.d.comb += bids.r_en.eq(wb_finish)

        # ---- VALUE input: fmap stream -> mask bits + pixel FIFO ---------------------------
        in_lvl = Signal(_rng(L))
        in_y = Signal(pix_layout["y"].shape)
        in_x = Signal(pix_layout["x"].shape)
        fbeat = self.fmap.payload
        m.d.comb += self.fmap.ready.eq((phase == Phase.VALUE) & (v_in_cnt < npix) &
                                       pix_fifo.w_rdy)
        f_acc = self.fmap.valid & self.fmap.ready
        m.d.comb += [
            pix_fifo.w_data.eq(Cat(fbeat.pixel.as_value(), in_lvl, in_y, in_x)),
            pix_fifo.w_en.eq(f_acc & ~fbeat.masked),
        ]
        lw = Array(shapes[l].w for l in range(L))
        lh = Array(shapes[l].h for l in range(L))
        with m.If(f_acc):
            m.d.sync += [v_in_cnt.eq(v_in_cnt + 1), cnt["masked_in"].eq(cnt["masked_in"] +
                                                                       fbeat.masked)]
            with m.If(in_x == lw[in_lvl] - 1):
                m.d.sync += in_x.eq(0)
                with m.If(in_y == lh[in_lvl] - 1):
                    m.d.sync += [in_y.eq(0), in_lvl.eq(in_lvl + 1)]
                with m.Else():
                    m.d.sync += in_y.eq(in_y + 1)
            with m.Else():
                m.d.sync += in_x.eq(in_x + 1)
        # Mask bits: bank 4l + 2 (y & 1) + (x & 1), word (y >> 1 mod pairs) * pitch + x >> 1.
        geo = bufs[0].geometry

        def mask_word(l, y, x):
            row = y[1:1 + geo.pair_bits[l]] if geo.pair_bits[l] else C(0, 1)
            cb = _clog2(geo.pitch[l])
            col = x[1:1 + cb] if cb else C(0, 1)
            return row * geo.pitch[l] + col

        for b in range(4 * L):
            l = b // 4
            _, _, mw = mask_banks[b]
            m.d.comb += [mw.addr.eq(mask_word(l, in_y, in_x)), mw.data.eq(fbeat.masked),
                         mw.en.eq(f_acc & (in_lvl == l) & (Cat(in_x[0], in_y[0]) == b % 4))]
        value_in_done = v_in_cnt == npix

        # VALUE results: Cc codes -> Cc / ba_channels buffer writes (one per cycle).
        vw_valid = Signal()
        vw_idx = Signal(_rng(g.wr_beats))
        vw_codes = Signal(Cc * d)
        vw_jt = Signal(_rng(g.t_c))
        vw_lvl = Signal(_rng(L))
        vw_y = Signal(pix_layout["y"].shape)
        vw_x = Signal(pix_layout["x"].shape)
        with m.If(res_valid & (res_tag.kind == MMKind.VALUE)):
            m.d.sync += [vw_valid.eq(1), vw_idx.eq(0), vw_codes.eq(res_q.as_value()),
                         vw_jt.eq(res_tag.jt), vw_lvl.eq(res_tag.level), vw_y.eq(res_tag.y),
                         vw_x.eq(res_tag.x)]
        with m.Elif(vw_valid):
            with m.If(vw_idx == g.wr_beats - 1):
                m.d.sync += vw_valid.eq(0)
            with m.Else():
                m.d.sync += vw_idx.eq(vw_idx + 1)
        ch_base = vw_jt * Cc + vw_idx * CH
        vw_head, vw_rem = _divmod_const(ch_base, D)
        vw_slice = _divmod_const(vw_rem, CH)[0]
        for h, fb in enumerate(bufs):
            wl = fb.wr.payload
            m.d.comb += [fb.wr.valid.eq(vw_valid & (vw_head == h)),
                         wl.y.eq(vw_y), wl.x.eq(vw_x),
                         wl.data.eq(vw_codes.word_select(vw_idx, CH * d))]
            if "level" in fb.geometry.write_layout.members:
                m.d.comb += wl.level.eq(vw_lvl)
            if "slice" in fb.geometry.write_layout.members:
                m.d.comb += wl.slice.eq(vw_slice)
        value_tags_busy = Signal()
        m.d.comb += value_tags_busy.eq(
            Cat(*[mm_tv[s] & (mm_tags[s].kind == MMKind.VALUE)
                  for s in range(1, LAT + RQ + 1)]).any() |
            (i1_valid & (i1_kind == MMKind.VALUE)) | vw_valid)

        # ---- BA pipeline: c0 sequencer -> c1 memories -> SA (5) -> c6 buffers (2) -> c8 ----
        b_init = Signal()                               # head 0's keep word requested
        b_q = Signal(_rng(MQ + 1))
        b_m = Signal(_rng(M))
        b_s = Signal(_rng(NS))
        b_g = Signal(_rng(P + 1))
        b_fresh = Signal()                              # next op is a head's first
        b_kw = Signal(LP)
        b_G = Signal(_rng(P + 1))
        b_rem = [Signal(P, name=f"b_rem{l}") for l in range(L)]
        b_done = Signal()
        kw = Mux(b_fresh, km_r.data, b_kw)
        bits = [kw[l * P:(l + 1) * P] for l in range(L)]
        cnts = [_popcount(bits[l], P) for l in range(L)]
        gmax = Const(1, range(P + 1))
        for c_ in cnts:
            gmax = Mux(c_ > gmax, c_, gmax)
        G_cur = Mux(b_fresh, gmax, b_G)
        rem = [Mux(b_g == 0, bits[l], b_rem[l]) for l in range(L)]
        p_sel = [_lowest_one(rem[l], P) for l in range(L)]
        k_sel = [rem[l].any() for l in range(L)]
        b_issue = (phase == Phase.BA) & b_init & ~b_done
        b_head = b_q * M + b_m
        # BA starts once the value buffers and every offset of the pass are written and the
        # FWP counters are cleared (a fixed drain: simple to model, small per pass).
        ba_start_ok = ~fwp.busy & ~value_tags_busy & (bids.level == 0)
        # keep-word reads: the F reader in OFFSET, the BA sequencer in BA.
        with m.If(phase == Phase.OFFSET):
            m.d.comb += [km_r.addr.eq(kr_head), km_r.en.eq(kr_issue)]
        with m.Else():
            m.d.comb += [km_r.addr.eq(Mux(b_init, b_head + 1, 0)),
                         km_r.en.eq(Mux(b_init, b_issue & b_fresh, (phase == Phase.BA)))]
        with m.If((phase == Phase.BA) & ~b_init & ba_start_ok):
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
                        with m.If(b_q == nq_pass - 1):
                            m.d.sync += b_done.eq(1)
                    with m.Else():
                        m.d.sync += b_m.eq(b_m + 1)
                with m.Else():
                    m.d.sync += b_s.eq(b_s + 1)
            with m.Else():
                m.d.sync += b_g.eq(b_g + 1)
        maddr = [(b_head * P + p_sel[l]) for l in range(L)]
        for l in range(L):
            m.d.comb += [pms[l][1].addr.eq(maddr[l]), oms[l][1].addr.eq(maddr[l])]
        m.d.comb += rm_r.addr.eq(half * MQ + b_q)

        ba_ctl = data.StructLayout({
            "valid": 1, "first": 1, "last": 1, "fwp": 1, "q": range(MQ), "m": range(M),
            "s": range(NS), "keep": L, "endq": 1})
        c = [Signal(ba_ctl, name=f"ba_c{s}") for s in range(SA_LAT + FB_LAT + 2)]
        m.d.comb += [
            c[0].valid.eq(b_issue), c[0].first.eq(b_g == 0), c[0].last.eq(b_last_op),
            c[0].fwp.eq(b_s == 0), c[0].q.eq(b_q), c[0].m.eq(b_m), c[0].s.eq(b_s),
            c[0].keep.eq(Cat(*k_sel)),
            c[0].endq.eq((b_m == M - 1) & (b_s == NS - 1)),
        ]
        for s in range(1, len(c)):
            m.d.sync += c[s].eq(c[s - 1])
        C1, C6, C8 = 1, 1 + SA_LAT, 1 + SA_LAT + FB_LAT
        # c1: memory data -> sampling-address units
        ref_word = rm_r.data
        probs_c = []
        for l in range(L):
            sa = sas[l]
            ow = oms[l][1].data
            m.d.comb += [
                sa.in_valid.eq(c[C1].valid),
                sa.in_point.ref_x.eq(ref_word[(2 * l) * rb:(2 * l + 1) * rb]),
                sa.in_point.ref_y.eq(ref_word[(2 * l + 1) * rb:(2 * l + 2) * rb]),
                sa.in_point.off_x.eq(ow[:d]), sa.in_point.off_y.eq(ow[d:2 * d]),
                sa.in_point.level.eq(l),
            ]
            pl = [Signal(cfg.prob_bits, name=f"ba_prob{l}_c{s}") for s in range(C1, C8 + 1)]
            m.d.comb += pl[0].eq(pms[l][1].data)
            for s in range(1, len(pl)):
                m.d.sync += pl[s].eq(pl[s - 1])
            probs_c.append(pl)

        def prob_at(l, stage):
            return probs_c[l][stage - C1]

        # c6: addresses -> value buffer of head m, incoming-mask banks, FWP bundle
        c6 = c[C6]
        bundle = fwp.points.payload
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
        m.d.comb += fwp.points.valid.eq(c6.valid & c6.fwp)
        with m.If(c6.valid & c6.fwp):
            m.d.sync += cnt["clamped"].eq(cnt["clamped"] + clamped_now)
        for h, fb in enumerate(bufs):
            rq = fb.rd.payload
            m.d.comb += fb.rd.valid.eq(c6.valid & (c6.m == h))
            for l in range(L):
                for k in range(4):
                    r = rq.req[4 * l + k]
                    yy, xx, en = fb_req[l][k]
                    m.d.comb += [r.y.eq(yy), r.x.eq(xx), r.inb.eq(en)]
                    if "slice" in fb.geometry.request_layout.members:
                        m.d.comb += r.slice.eq(c6.s)
        # incoming-mask bits, read alongside (bank per 2x2 parity, like the buffer)
        mbits_c8 = Signal(4 * L)
        mb_c7 = []
        for l in range(L):
            yys = [fb_req[l][k][0] for k in range(4)]
            xxs = [fb_req[l][k][1] for k in range(4)]
            for j in range(4):
                _, mr, _ = mask_banks[4 * l + j]
                addr = 0
                for k in reversed(range(4)):
                    par = Cat(xxs[k][0], yys[k][0])
                    addr = Mux(par == j, mask_word(l, yys[k], xxs[k]), addr)
                m.d.comb += mr.addr.eq(addr)
            for k in range(4):
                par_c7 = Signal(2, name=f"mpar{l}_{k}")
                m.d.sync += par_c7.eq(Cat(xxs[k][0], yys[k][0]))
                bit = Array(mask_banks[4 * l + j][1].data for j in range(4))[par_c7]
                mb_c7.append(bit)
        m.d.sync += mbits_c8.eq(Cat(*mb_c7))
        # t0 / t1 / t01 from c6 to c8
        pts_c8 = Signal(ba_pt.shape())
        for l in range(L):
            a = sas[l].out_addr
            t7 = Signal(3 * cfg.coord_frac_bits, name=f"t_c7_{l}")
            t8 = Signal(3 * cfg.coord_frac_bits, name=f"t_c8_{l}")
            m.d.sync += [t7.eq(Cat(a.t0, a.t1, a.t01)), t8.eq(t7)]
            F = cfg.coord_frac_bits
            m.d.comb += [pts_c8[l].t0.eq(t8[:F]), pts_c8[l].t1.eq(t8[F:2 * F]),
                         pts_c8[l].t01.eq(t8[2 * F:]),
                         pts_c8[l].prob.eq(prob_at(l, C8)), pts_c8[l].keep.eq(c[C8].keep[l])]
        c8 = c[C8]
        rsp = Array(fb.rsp.payload.as_value() for fb in bufs)[c8.m]
        wbits = CH * d
        pix_words = [Mux(mbits_c8[r], 0, rsp[r * wbits:(r + 1) * wbits]) for r in range(4 * L)]
        m.d.comb += [ba_valid.eq(c8.valid), ba_first.eq(c8.first), ba_last.eq(c8.last),
                     ba_pix.eq(Cat(*pix_words)), ba_pt.eq(pts_c8)]
        m.d.sync += cnt["ba_ops"].eq(cnt["ba_ops"] + c8.valid)
        m.d.comb += ba_pipe_busy.eq(Cat(*[c[s].valid for s in range(1, len(c))]).any() |
                                    b_issue)
        with m.If(ba_valid):
            m.d.sync += ba_quiet.eq(0)
        with m.Elif(ba_quiet < GAP + 1):
            m.d.sync += ba_quiet.eq(ba_quiet + 1)

        # BA results: requant, then the aggregated-sample memory.
        ba_tags = [Signal(ba_ctl, name=f"ba_tag{s}") for s in range(LAT + RQ + 1)]
        m.d.comb += [ba_tags[0].eq(c8), ba_tags[0].valid.eq(c8.valid & c8.last)]
        for s in range(1, LAT + RQ + 1):
            m.d.sync += ba_tags[s].eq(ba_tags[s - 1])
        ba_big = sh_agg >= cfg.agg_acc_bits
        m.d.comb += [
            rq_ba.in_valid.eq(pe.out_valid & (pe.out_mode == ArrayMode.BA)),
            rq_ba.acc.eq(Mux(ba_big, 0, pe.ba_acc.as_value())),
            rq_ba.shift.eq(Mux(ba_big, 0, sh_agg)),
        ]
        bt = ba_tags[LAT + RQ]
        lane = bt.m * NS + bt.s
        m.d.comb += [sm_w.addr.eq(bt.q), sm_w.data.eq(rq_ba.q.as_value().replicate(C_ // CH)),
                     sm_w.en.eq(Mux(rq_ba.out_valid, (C(1, C_ // CH) << lane)[:C_ // CH], 0))]
        with m.If(rq_ba.out_valid & bt.endq):
            m.d.sync += ba_done_q.eq(ba_done_q + 1)
        ba_tags_busy = Cat(*[ba_tags[s].valid for s in range(1, LAT + RQ + 1)]).any()

        # ---- OUT results -> result FIFO -> results stream (merged with the FWP mask) --------
        rl = result_beat_layout(cfg)
        m.submodules.res_fifo = rfifo = SyncFIFOBuffered(width=Cc * d + 1, depth=O_CAP)
        m.d.comb += [rfifo.w_data.eq(Cat(res_q.as_value(), res_tag.last)),
                     rfifo.w_en.eq(res_valid & (res_tag.kind == MMKind.OUT))]
        res = self.results.payload
        # Mask bits are packed MB to a beat, so the sweep (one pixel per cycle) never waits
        # for the output beats it shares the stream with.
        MB = Cc * d
        m.submodules.mask_fifo = mfifo = SyncFIFOBuffered(width=MB + _bits(MB) + 1, depth=2)
        mk_bits = Signal(MB)
        mk_cnt = Signal(_rng(MB + 1))
        mk_acc = fwp.mask.valid & fwp.mask.ready
        mk_word = mk_bits | (fwp.mask.payload.masked << mk_cnt)[:MB]
        mk_push = mk_acc & ((mk_cnt == MB - 1) | fwp.mask.payload.last)
        m.d.comb += [fwp.mask.ready.eq(mfifo.w_rdy), mfifo.w_en.eq(mk_push),
                     mfifo.w_data.eq(Cat(mk_word, (mk_cnt + 1)[:_bits(MB)],
                                         fwp.mask.payload.last))]
        with m.If(mk_acc):
            m.d.sync += [mk_bits.eq(Mux(mk_push, 0, mk_word)),
                         mk_cnt.eq(Mux(mk_push, 0, mk_cnt + 1))]
        mask_sent = Signal()
        with m.If(rfifo.r_rdy):
            m.d.comb += [self.results.valid.eq(1), res.kind.eq(ResultKind.OUTPUT),
                         res.data.eq(rfifo.r_data[:Cc * d]), res.last.eq(rfifo.r_data[-1]),
                         rfifo.r_en.eq(self.results.ready)]
        with m.Else():
            m.d.comb += [self.results.valid.eq(mfifo.r_rdy), res.kind.eq(ResultKind.MASK),
                         res.data.eq(mfifo.r_data[:MB]),
                         res.count.eq(mfifo.r_data[MB:MB + _bits(MB)]),
                         res.last.eq(mfifo.r_data[-1]),
                         mfifo.r_en.eq(self.results.ready)]
        with m.If(mfifo.r_rdy & self.results.ready & ~rfifo.r_rdy & mfifo.r_data[-1]):
            m.d.sync += mask_sent.eq(1)
        out_pop = rfifo.r_rdy & self.results.ready
        with m.If(start):
            m.d.sync += o_res.eq(0)
        with m.Else():
            m.d.sync += o_res.eq(o_res + (o_issue & (o_k == 0)) - out_pop)

        # ---- FWP finish: after the last BA operation of the block ---------------------------
        fin_sent = Signal()
        m.d.comb += [fwp.finish.payload.eq(shapes),
                     fwp.finish.valid.eq((phase == Phase.OUT) & last_pass & ~fin_sent &
                                         ~ba_pipe_busy)]
        with m.If(fwp.finish.valid & fwp.finish.ready):
            m.d.sync += fin_sent.eq(1)

        # ---- controller ---------------------------------------------------------------------
        mm_busy = Cat(*mm_tv[1:]).any() | i1_valid
        # External stalls: an issuer that has work waits for a stream.
        with m.Switch(phase):
            with m.Case(Phase.ATTN):
                m.d.comb += stall.eq(~a_done & (~a_loaded | ~a_credit))
            with m.Case(Phase.VALUE):
                m.d.comb += stall.eq(~v_active & ~pix_fifo.r_rdy & ~value_in_done)
            with m.Case(Phase.OUT):
                m.d.comb += stall.eq(~o_done & o_ready_q & ~o_credit)
            with m.Case(Phase.TAIL):
                m.d.comb += stall.eq(self.results.valid & ~self.results.ready)

        def reset_pass_state():
            return [a_q.eq(0), a_jt.eq(0), a_k.eq(0), a_done.eq(0),
                    o_q.eq(0), o_jt.eq(0), o_k.eq(0), o_done.eq(0),
                    b_init.eq(0), b_q.eq(0), b_m.eq(0), b_s.eq(0), b_g.eq(0), b_done.eq(0),
                    f_q.eq(0), f_m.eq(0), f_used.eq(0), f_cnt.eq(0), f_done.eq(0),
                    kr_head.eq(0), groups_done.eq(0), pr_i.eq(0), pr_head.eq(0),
                    ba_done_q.eq(0)]

        with m.Switch(phase):
            with m.Case(Phase.IDLE):
                with m.If(start):
                    m.d.sync += [phase.eq(Phase.ATTN), done.eq(0), cur_pass.eq(0),
                                 pass_base.eq(0), fin_sent.eq(0), mask_sent.eq(0),
                                 v_in_cnt.eq(0), in_lvl.eq(0), in_y.eq(0), in_x.eq(0),
                                 cnt["passes"].eq(1)]
                    m.d.sync += reset_pass_state()
            with m.Case(Phase.ATTN):
                with m.If(a_done):
                    m.d.sync += phase.eq(Phase.OFFSET)
            with m.Case(Phase.OFFSET):
                with m.If(f_done & ~fg_valid & ~g_active & (gq.level == 0) &
                          ~(mo_valid & ~(off_issue & (mo_k == KC - 1)))):
                    m.d.sync += phase.eq(Mux(cur_pass == 0, Phase.VALUE, Phase.BA))
            with m.Case(Phase.VALUE):
                with m.If(value_in_done & (pix_fifo.level == 0) &
                          ~(v_active & ~(v_issue & (v_k == KC - 1) & (v_jt == g.t_c - 1)))):
                    m.d.sync += phase.eq(Phase.BA)
            with m.Case(Phase.BA):
                with m.If(b_done):
                    m.d.sync += phase.eq(Phase.OUT)
            with m.Case(Phase.OUT):
                with m.If(o_done):
                    with m.If(last_pass):
                        m.d.sync += phase.eq(Phase.TAIL)
                    with m.Else():
                        m.d.sync += [phase.eq(Phase.ATTN), cur_pass.eq(cur_pass + 1),
                                     pass_base.eq(pass_base + MQ),
                                     cnt["passes"].eq(cnt["passes"] + 1)]
                        m.d.sync += reset_pass_state()
            with m.Case(Phase.TAIL):
                with m.If(fin_sent & mask_sent & (rfifo.level == 0) & ~mm_busy &
                          ~ba_tags_busy):
                    m.d.sync += [phase.eq(Phase.IDLE), done.eq(1)]

        # ---- register reads (one cycle latency) -----------------------------------------
        status = Cat(busy, done, ~fwp.busy)
        cfg0 = C_ | (M << 12) | (L << 20) | (P << 24)
        cfg1 = R | (Cc << 8) | (MQ << 16)
        rd = Signal(REG_BITS)
        with m.Switch(self.csr_addr):
            with m.Case(Reg.CTRL):
                m.d.comb += rd.eq(status)
            for reg, sig in ((Reg.NQ, nq), (Reg.FLAGS, prune), (Reg.SHIFT_VALUE, sh_value),
                             (Reg.SHIFT_LOGIT, sh_logit), (Reg.SHIFT_OFFSET, sh_offset),
                             (Reg.SHIFT_AGG, sh_agg), (Reg.SHIFT_OUT, sh_out),
                             (Reg.LOGIT_FRAC, logit_frac), (Reg.PAP_THRESHOLD, pap_thr),
                             (Reg.FWP_THRESHOLD, fwp_thr),
                             (Reg.CYCLES, cnt["cycles"]), (Reg.CYC_ATTN, cnt["attn"]),
                             (Reg.CYC_OFFSET, cnt["offset"]), (Reg.CYC_VALUE, cnt["value"]),
                             (Reg.CYC_BA, cnt["ba"]), (Reg.CYC_OUT, cnt["out"]),
                             (Reg.CYC_TAIL, cnt["tail"]), (Reg.STALL_CYCLES, cnt["stall"]),
                             (Reg.POINTS_TOTAL, pmask.points_total),
                             (Reg.POINTS_PRUNED, pmask.points_pruned),
                             (Reg.POINTS_CLAMPED, cnt["clamped"]),
                             (Reg.PIXELS_MASKED_IN, cnt["masked_in"]),
                             (Reg.PIXELS_PRUNED_NEXT, fwp.pixels_masked),
                             (Reg.BANK_CONFLICTS, conflicts - cnt["conflicts_base"]),
                             (Reg.MM_OPS, cnt["mm_ops"]), (Reg.BA_OPS, cnt["ba_ops"]),
                             (Reg.PASSES, cnt["passes"]), (Reg.PHASE, phase),
                             (Reg.CONFIG0, C(cfg0, 32)), (Reg.CONFIG1, C(cfg1, 32))):
                with m.Case(reg):
                    m.d.comb += rd.eq(sig)
            for l in range(L):
                with m.Case(Reg.SHAPE0 + l):
                    m.d.comb += rd.eq(Cat(shapes[l].h, C(0, 16 - len(shapes[l].h)),
                                          shapes[l].w))
        m.d.sync += self.csr_rdata.eq(rd)
        # Last, so that it wins over every increment above.
        with m.If(start):
            m.d.sync += [c.eq(0) for k, c in cnt.items() if k not in ("conflicts_base", "passes")]
        return m


_ZERO_INIT = re.compile(
    r"  initial begin\n((?:    (\\?[^\s\[]+ ?)\[\d+\] = \d+'h0+;\n)+)  end\n")


def compact_memory_init(text):
    """Rewrite Yosys' all-zero memory initialisers (one statement per word) as one loop.

    Same meaning, deterministic, and 4x less Verilog for ``defa`` (the value buffers'
    zero words were 13 MB of it), which the simulators' compile times follow.
    """
    count = [0]

    def repl(mt):
        body, name = mt.group(1), mt.group(2)
        words = body.count("\n")
        if any(not line.strip().startswith(name.strip()) for line in body.splitlines()):
            return mt.group(0)
        k = count[0]
        count[0] += 1
        var = f"zinit_{k}"
        return (f"  integer {var};\n"
                f"  initial for ({var} = 0; {var} < {words}; {var} = {var} + 1) "
                f"{name}[{var}] = 0;\n")

    return _ZERO_INIT.sub(repl, text)


def core_verilog(cfg, *, max_queries=DEFAULT_MAX_QUERIES):
    """Deterministic Verilog of ``defa_core`` (``generate.to_verilog`` + compact inits)."""
    from defa_hw.flow.generate import to_verilog
    return compact_memory_init(to_verilog(DefaCore(cfg, max_queries=max_queries),
                                          name="defa_core"))

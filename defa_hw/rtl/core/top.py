"""DefaCore (Verilog module ``defa_core``): one whole MSDeformAttn block in RTL.

The block diagram, dataflow phases, packet formats, register map and the places
where cycles are lost are documented in ``docs/architecture.md`` (core sections);
the cycle model that mirrors this controller is :mod:`defa_hw.model.perf`.

One shared :class:`~defa_hw.rtl.pe_array.PEArray` runs DEFA's dataflow, per pass of
at most ``max_queries`` queries (the unit of each step in brackets):

1. ATTN   (MM) attention logits -> requant -> softmax -> PAP point mask [MMIssue,
   AttentionPath]
2. OFFSET (MM) sampling offsets of the *kept* points only, packed ``pe_cols / 2``
   points per output tile (skewed weight banks + gather) [OffsetGather, WeightStore]
3. BA     (BA) sampling address -> 16-bank buffers -> bilinear + aggregation,
   FWP counting alongside [BAPipeline]; before each query the value windows check
   that the buffers hold every row it can reach [ValueWindow]
4. VALUE  (MM) on a window miss: BA drains, the missing rows are asked for on
   ``fmap_req`` and projected into the value buffers (masked pixels cost no array cycle
   and read as zero) [ValueIngest], then BA resumes
5. OUT    (MM) output projection -> results stream [MMIssue, ResultMerger]

The :class:`~defa_hw.rtl.core.controller.Controller` sequences the phases.

after the last pass the FWP generator streams the next fmap mask.  Everything is
bit-exact with :func:`golden.model.defa_block`.
"""

import re

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from defa_hw.host.registers import MAX_QUERIES_LIMIT, REG_ADDR_BITS, REG_BITS
from defa_hw.rtl.core.attention import AttentionPath
from defa_hw.rtl.core.ba_pipeline import BAPipeline
from defa_hw.rtl.core.common import DEFAULT_MAX_QUERIES, CoreGeometry
from defa_hw.rtl.core.controller import Controller, Phase
from defa_hw.rtl.core.counters import Counters
from defa_hw.rtl.core.interface import (fmap_beat_layout, fmap_request_layout,
                                        query_beat_layout, result_beat_layout,
                                        weight_beat_layout)
from defa_hw.rtl.core.mm_issue import MMIssue
from defa_hw.rtl.core.offset_gather import OffsetGather
from defa_hw.rtl.core.queries import QueryBuffer
from defa_hw.rtl.core.registers import RegisterBlock
from defa_hw.rtl.core.results import ResultMerger
from defa_hw.rtl.core.value_ingest import ValueIngest
from defa_hw.rtl.core.value_window import ValueWindow
from defa_hw.rtl.core.weights import WeightStore
from defa_hw.rtl.fmap_buffer import FmapBuffer
from defa_hw.rtl.fmap_mask import FmapMaskGenerator
from defa_hw.rtl.pe_array import PEArray
from defa_hw.rtl.sampling_address import shapes_layout

__all__ = ["DefaCore", "Phase", "CoreGeometry", "DEFAULT_MAX_QUERIES", "core_verilog",
           "compact_memory_init"]


class DefaCore(wiring.Component):
    """The DEFA accelerator core: one MSDeformAttn block per ``start``.

    Built from the units of :mod:`defa_hw.rtl.core` (one file each, see
    ``docs/architecture.md``); this class only wires them.

    Parameters
    ----------
    cfg : DefaConfig
    max_queries : int, keyword-only
        Queries per pass (default 64): sizes the query, probability, keep-mask,
        offset and aggregated-sample memories.  Blocks with more queries run in
        several passes; the value windows keep their rows across the passes.

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
        if not isinstance(max_queries, int) or not 1 <= max_queries <= MAX_QUERIES_LIMIT:
            raise ValueError(f"max_queries = {max_queries!r} is invalid: allowed "
                             f"1..{MAX_QUERIES_LIMIT}")
        self.cfg = cfg
        self.geom = CoreGeometry(cfg, max_queries)
        super().__init__({
            "weights": In(stream.Signature(weight_beat_layout(cfg))),
            "fmap_req": Out(stream.Signature(fmap_request_layout(cfg))),
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

    def elaborate(self, platform):
        cfg, g = self.cfg, self.geom
        L = g.L
        m = Module()

        # ---- units and leaf blocks ---------------------------------------------------------
        m.submodules.ctl = ctl = Controller(g)
        m.submodules.wstore = ws = WeightStore(g)
        m.submodules.qbuf = qb = QueryBuffer(g)
        m.submodules.mm = mm = MMIssue(g)
        m.submodules.attn = at = AttentionPath(g, count_bits=REG_BITS)
        m.submodules.ogather = og = OffsetGather(g)
        m.submodules.vin = vi = ValueIngest(g)
        m.submodules.window = win = ValueWindow(g)
        m.submodules.ba = ba = BAPipeline(g)
        m.submodules.merge = rm = ResultMerger(g)
        m.submodules.pe = pe = PEArray(cfg)
        m.submodules.fwp = fwp = FmapMaskGenerator(cfg)
        bufs = []
        for h in range(g.M):
            fb = FmapBuffer(cfg)
            m.submodules[f"vbuf{h}"] = fb
            bufs.append(fb)

        # ---- registers and counters (the register table: defa_hw/host/registers.py) ----------
        m.submodules.regs = regs = RegisterBlock(cfg, max_queries=g.mq)
        m.submodules.counters = cnt = Counters()
        phase, busy, start = ctl.phase, ctl.busy, regs.start
        m.d.comb += [
            regs.csr_addr.eq(self.csr_addr), regs.csr_wdata.eq(self.csr_wdata),
            regs.csr_we.eq(self.csr_we), self.csr_rdata.eq(regs.csr_rdata),
            regs.busy.eq(busy), regs.done.eq(ctl.done), regs.ready.eq(~fwp.busy),
            regs.phase.eq(phase), self.busy.eq(busy), self.done.eq(ctl.done),
            regs.points_total.eq(at.points_total), regs.points_pruned.eq(at.points_pruned),
            regs.pixels_pruned_next.eq(fwp.pixels_masked),
        ]
        for name, port in cnt.signature.members.items():
            if port.flow == Out:
                m.d.comb += getattr(regs, name).eq(getattr(cnt, name))
        m.d.comb += [
            cnt.start.eq(start), cnt.busy.eq(busy), cnt.phase.eq(phase),
            # External stalls: an issuer that has work waits for a stream or a credit.
            cnt.stall.eq(mm.stall | ((phase == Phase.TAIL) & rm.blocked)),
            cnt.mm_op.eq(mm.op), cnt.ba_op.eq(ba.op), cnt.masked.eq(vi.masked),
            cnt.clamped.eq(ba.clamped), cnt.next_pass.eq(ctl.next_pass),
            cnt.conflicts.eq(sum(fb.stat_conflict_reads for fb in bufs)),
            cnt.window_load.eq(win.req.valid & win.req.ready), cnt.rows.eq(win.req.payload.rows),
            cnt.row_refetched.eq(vi.row_refetched), cnt.fmap_beat.eq(vi.beat),
            cnt.query_beat.eq(self.queries.valid & self.queries.ready),
            cnt.weight_beat.eq(self.weights.valid & self.weights.ready),
            cnt.result_beat.eq(self.results.valid & self.results.ready),
        ]
        # PAP and FWP keep their thresholds: they take the written word on an accepted write.
        shapes = Signal(shapes_layout(cfg))
        m.d.comb += [
            at.threshold.eq(self.csr_wdata), at.threshold_we.eq(regs.pap_threshold_we),
            fwp.threshold.eq(self.csr_wdata), fwp.threshold_we.eq(regs.fwp_threshold_we),
            at.enable.eq(regs.flags), fwp.enable.eq(regs.flags),
        ]
        for l in range(L):
            m.d.comb += [shapes[l].h.eq(getattr(regs, f"shape{l}_h")),
                         shapes[l].w.eq(getattr(regs, f"shape{l}_w"))]
        for unit, ports in ((mm, {"shift_logit": regs.shift_logit,
                                  "shift_offset": regs.shift_offset,
                                  "shift_value": regs.shift_value, "shift_out": regs.shift_out}),
                            (at, {"logit_frac": regs.logit_frac}),
                            (ba, {"shift_agg": regs.shift_agg, "shapes": shapes}),
                            (vi, {"shapes": shapes}), (win, {"shapes": shapes}),
                            (qb, {"nq": regs.nq}), (ctl, {"nq": regs.nq})):
            m.d.comb += [getattr(unit, k).eq(v) for k, v in ports.items()]

        # ---- controller: starts, pass bookkeeping, and the units' done / drained -------------
        m.d.comb += [
            ctl.start.eq(start), ctl.attn_done.eq(mm.attn_done),
            ctl.offset_done.eq(og.done), ctl.ba_done.eq(ba.done), ctl.out_done.eq(mm.out_done),
            ctl.value_in_drained.eq(vi.in_drained), ctl.value_issue_idle.eq(mm.value_idle),
            ctl.results_drained.eq(rm.drained), ctl.mm_drained.eq(mm.drained),
            ctl.ba_drained.eq(ba.drained),
            ctl.window_miss.eq(win.miss), ctl.window_loaded.eq(win.loaded),
            ctl.ba_idle.eq(ba.idle),
        ]
        for unit in (mm, og, vi, ba, win):
            m.d.comb += unit.phase.eq(phase)
        for unit in (mm, at, og, ba, win):
            m.d.comb += [unit.pass_start.eq(ctl.pass_start), unit.nq_pass.eq(ctl.nq_pass)]
        for unit in (mm, at, qb, vi, ba, rm, win):
            m.d.comb += unit.start.eq(start)
        m.d.comb += [
            mm.half.eq(ctl.pass_index[0]), ba.half.eq(ctl.pass_index[0]),
            win.half.eq(ctl.pass_index[0]),
            mm.pass_base.eq(ctl.pass_base), mm.last_pass.eq(ctl.last_pass),
            ba.last_pass.eq(ctl.last_pass),
            qb.busy.eq(busy), qb.pass_index.eq(ctl.pass_index), ws.busy.eq(busy),
        ]

        # ---- streams of the core -------------------------------------------------------------
        wiring.connect(m, wiring.flipped(self.weights), ws.weights)
        wiring.connect(m, wiring.flipped(self.queries), qb.queries)
        wiring.connect(m, wiring.flipped(self.fmap), vi.fmap)
        wiring.connect(m, win.req, wiring.flipped(self.fmap_req))
        wiring.connect(m, rm.results, wiring.flipped(self.results))

        # ---- memories lent between units -----------------------------------------------------
        for k in range(g.kc):
            wiring.connect(m, ws.tile_rd[k], mm.tile_rd[k])
        for gi in range(g.n_groups):
            wiring.connect(m, ws.offset_bias_rd[gi], og.offset_bias_rd[gi])
            for b in range(g.Bg):
                for s_ in range(g.kc // g.Bg):
                    wiring.connect(m, ws.offset_rd[gi][b][s_], og.offset_rd[gi][b][s_])
        for ln in range(cfg.ba_lanes):
            wiring.connect(m, at.prob_rd[ln], ba.prob_rd[ln])
            wiring.connect(m, og.offs_rd[ln], ba.offs_rd[ln])
        for j in range(cfg.ba_heads):
            wiring.connect(m, vi.mask_rd[j], ba.mask_rd[j])
        m.d.comb += ba.keep_seen.eq(og.keep_seen)
        for a, b_ in ((ws.value_bias_rd, mm.value_bias_rd), (ws.attn_bias_rd, mm.attn_bias_rd),
                      (ws.out_bias_rd, mm.out_bias_rd),
                      (qb.query_rd, mm.query_rd), (qb.ref_rd, ba.ref_rd),
                      (qb.ref_rd_window, win.ref_rd),
                      (at.keep_rd_f, og.keep_rd), (ba.agg_rd, mm.agg_rd)):
            wiring.connect(m, a, b_)

        # ---- MM dataflow: issue -> PE array -> results to every MM consumer ------------------
        wiring.connect(m, mm.res, at.res, og.res, vi.res, rm.res)
        wiring.connect(m, vi.pix, mm.pix)
        wiring.connect(m, og.op, mm.off)
        wiring.connect(m, ba.ba, mm.ba)
        m.d.comb += [
            mm.off_tile.eq(og.tile), mm.off_bias.eq(og.bias),
            mm.q_loaded.eq(qb.loaded), mm.agg_done.eq(ba.agg_done), mm.pix_done.eq(vi.in_done),
            mm.tile_taken.eq(at.tile_taken), mm.out_pop.eq(rm.out_pop),
            og.keep_done.eq(at.keep_done),
            pe.valid.eq(mm.pe_valid), pe.mode.eq(mm.pe_mode), pe.first.eq(mm.pe_first),
            pe.last.eq(mm.pe_last), pe.x.eq(mm.pe_x), pe.w.eq(mm.pe_w), pe.bias.eq(mm.pe_bias),
            pe.pix.eq(mm.pe_pix), pe.pt.eq(mm.pe_pt),
            mm.pe_out_valid.eq(pe.out_valid),
            mm.pe_mm_acc.eq(pe.mm_acc),
            ba.pe_ba_valid.eq(pe.ba_valid),
            ba.pe_ba_acc.eq(pe.ba_acc),
        ]

        # ---- BA dataflow: value buffers, FWP -------------------------------------------------
        for h, fb in enumerate(bufs):
            wiring.connect(m, vi.wr[h], fb.wr)
            wiring.connect(m, ba.rd[h], fb.rd)
            wiring.connect(m, fb.rsp, ba.rsp[h])
        wiring.connect(m, ba.points, fwp.points)
        wiring.connect(m, ba.finish, fwp.finish)
        wiring.connect(m, fwp.mask, rm.mask)
        m.d.comb += [
            ba.fwp_busy.eq(fwp.busy), ba.value_busy.eq(mm.value_busy),
            ba.value_wr_busy.eq(vi.wr_busy), ba.offsets_pending.eq(og.pending),
            # value windows: the check of the next query, and the loads of a miss
            ba.win_q.eq(win.q), ba.win_ok.eq(win.ok), win.take.eq(ba.take),
            win.ingest_busy.eq(vi.busy),
            vi.load_valid.eq(self.fmap_req.valid & self.fmap_req.ready),
            vi.load.eq(self.fmap_req.payload),
        ]
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

"""The units of ``defa_core`` that carry their own logic, each on its own (Amaranth's
simulator): the offset gather, the BA sequencer and the phase controller.

Expectations come from the documented behaviour (``docs/architecture.md``,
``docs/performance.md``) computed here from the inputs, never from the units' outputs.
"""

import numpy as np
import pytest
from amaranth import Elaboratable, Module, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from defa_hw.config import preset
from defa_hw.rtl.core.ba_pipeline import BASequencer
from defa_hw.rtl.core.common import CoreGeometry, MMKind
from defa_hw.rtl.core.controller import Controller, Phase
from defa_hw.rtl.core.interface import WeightTarget
from defa_hw.rtl.core.offset_gather import OffsetGather
from defa_hw.rtl.core.weights import WeightStore

MQ = 4


def _geom():
    return CoreGeometry(preset("tiny"), MQ)


def _run(dut, bench, *, deadline_cycles=20_000):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run_until(deadline_cycles * 1e-6)


def _keep_words(g, rng, nq):
    """Random keep words (bit ``l * P + p``) for ``nq`` queries, some heads empty."""
    keep = rng.random((nq, g.M, g.L * g.P)) < rng.choice([0.2, 0.5, 0.9])
    keep[rng.random((nq, g.M)) < 0.2] = False
    return keep


def _word(bits):
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def _signed(v, bits):
    return v - (1 << bits) if v >> (bits - 1) else v


class _KeepMemory(Elaboratable):
    """A unit plus the keep memory that its ``keep_rd`` port reads (and more units)."""

    def __init__(self, unit, keep_words, *others):
        self.unit, self.words, self.others = unit, keep_words, others

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = u = self.unit
        for i, o in enumerate(self.others):
            m.submodules[f"other{i}"] = o
        km = Memory(shape=unsigned(len(u.keep_rd.data)),
                    depth=1 << len(u.keep_rd.addr), init=self.words)
        m.submodules.keep = km
        p = km.read_port()
        m.d.comb += [p.addr.eq(u.keep_rd.addr), p.en.eq(u.keep_rd.en),
                     u.keep_rd.data.eq(p.data)]
        return m


# ---- offset gather ------------------------------------------------------------------------

def _expected_batches(g, keep):
    """F's documented batching: kept points in (query, head, level, point) order, up to
    B to a batch, a batch never spanning two queries."""
    out = []
    for q in range(keep.shape[0]):
        pts = [h * g.L * g.P + int(i) for h in range(g.M) for i in np.flatnonzero(keep[q, h])]
        out += [(q, pts[i:i + g.B]) for i in range(0, len(pts), g.B)]
    return out


#: Offset-gather geometries: tiny (one lane group), 8x8 (Kc 4, 2 groups of 2 lanes) and
#: 16x16 (Kc 2, 8 groups of 1 lane: more points per batch than K chunks).
GATHER_ARRAYS = {"tiny": {}, "8x8": {"pe_rows": 8, "pe_cols": 8},
                 "16x16": {"pe_rows": 16, "pe_cols": 16}}


@pytest.mark.parametrize("seed, array", [(0, "tiny"), (1, "tiny"), (2, "tiny"),
                                         (0, "8x8"), (1, "16x16")])
def test_offset_gather(seed, array):
    """Random keep masks: the gather hands the MM issuer exactly the kept points' offset
    weight rows (every K chunk, x and y) and biases, batch by batch, in F's order, each
    lane group reading its own banks without a conflict; the write-back stores each
    result where BA reads its point."""
    g = CoreGeometry(preset("tiny").replace(**GATHER_ARRAYS[array]), MQ)
    cfg, d, R, KC, B, BG = g.cfg, g.cfg.data_bits, g.R, g.kc, g.B, g.Bg
    assert (g.n_groups, BG) == {"tiny": (1, 4), "8x8": (2, 2), "16x16": (8, 1)}[array]
    rng = np.random.default_rng(seed)
    nq = int(rng.integers(1, MQ + 1))
    keep = _keep_words(g, rng, nq)
    words = [_word(keep[q, h]) for q in range(nq) for h in range(g.M)]
    W = rng.integers(-(1 << (d - 1)), 1 << (d - 1), size=(2 * g.n_att, g.C))
    bias = rng.integers(-(1 << 20), 1 << 20, size=2 * g.n_att)
    ws, og = WeightStore(g), OffsetGather(g)
    dut = _KeepMemory(og, words, ws)

    class Top(Elaboratable):
        def elaborate(self, platform):
            m = Module()
            m.submodules.dut = dut
            for gi in range(g.n_groups):
                wiring.connect(m, ws.offset_bias_rd[gi], og.offset_bias_rd[gi])
                for b in range(BG):
                    for s in range(KC // BG):
                        wiring.connect(m, ws.offset_rd[gi][b][s], og.offset_rd[gi][b][s])
            return m

    want = _expected_batches(g, keep)
    ops, operands, bank_reads = [], [], []
    offs_codes = {}

    async def bench(ctx):
        for row in range(2 * g.n_att):                      # load Ws through the stream
            ctx.set(ws.weights.valid, 1)
            ctx.set(ws.weights.payload, {"target": WeightTarget.OFFSET, "row": row,
                                         "weights": [int(v) for v in W[row]],
                                         "bias": int(bias[row])})
            await ctx.tick()
        ctx.set(ws.weights.valid, 0)
        ctx.set(og.nq_pass, nq)
        ctx.set(og.keep_done, 1)
        ctx.set(og.pass_start, 1)
        await ctx.tick()
        ctx.set(og.pass_start, 0)
        ctx.set(og.phase, Phase.OFFSET)
        ctx.set(og.op.ready, 1)
        took = False
        for _ in range(50 * KC * (len(want) + 2)):
            if ctx.get(og.offset_rd[0][0][0].en):          # a gather cycle: bank addresses
                bank_reads.append([[ctx.get(og.offset_rd[gi][b][0].addr) for b in range(BG)]
                                   for gi in range(g.n_groups)])
            if took:
                operands.append((ctx.get(og.tile), ctx.get(og.bias)))
            took = bool(ctx.get(og.op.valid))
            if took:
                p = ctx.get(og.op.payload)
                ops.append((p.first, p.k, p.q, p.cnt, [p.pts[i] for i in range(B)]))
            if ctx.get(og.done) and not took:
                break
            await ctx.tick()
        ctx.set(og.op.ready, 0)
        # write-back: one result per batch, Kc cycles apart, random codes
        for i, (q, pts) in enumerate(want):
            codes = [int(c) for c in rng.integers(0, 1 << d, size=2 * B)]
            ctx.set(og.res.valid, 1)
            ctx.set(og.res.tag, {"kind": MMKind.OFFSET, "q": q, "cnt": len(pts),
                                 "pts": list(pts) + [0] * (B - len(pts))})
            ctx.set(og.res.codes, sum(c << (j * d) for j, c in enumerate(codes)))
            for j, pt in enumerate(pts):
                offs_codes[(q, pt)] = (codes[2 * j], codes[2 * j + 1])
            await ctx.tick()
            ctx.set(og.res.valid, 0)
            await ctx.tick().repeat(KC)
        assert not ctx.get(og.pending), "a batch's offsets were never written"
        for (q, pt), (cx, cy) in offs_codes.items():
            h, i = divmod(pt, g.L * g.P)
            lvl, p = divmod(i, g.P)
            port = og.offs_rd[lvl]
            ctx.set(port.addr, (q * g.M + h) * g.P + p)
            await ctx.tick()
            assert ctx.get(port.data) == cx | (cy << d), (q, pt)

    _run(Top(), bench)
    assert len(ops) == len(want) * KC, "one operation per K chunk of every batch"
    # the documented bank schedule: in gather cycle c, lane gi * Bg + j reads bank
    # (c + j) mod Bg of its group's copy, so every bank serves one lane per cycle
    assert len(bank_reads) == len(want) * KC, "Kc gather cycles per batch"
    for n, (q, pts) in enumerate(want):
        for c in range(KC):
            for lane, pt in enumerate(pts):
                gi, j = divmod(lane, BG)
                assert bank_reads[n * KC + c][gi][(c + j) % BG] == pt, (n, c, lane)
    for n, (q, pts) in enumerate(want):
        for k in range(KC):
            first, kk, oq, cnt, opts = ops[n * KC + k]
            assert (first, kk, oq, cnt, opts[:cnt]) == (k == 0, k, q, len(pts), pts)
            tile, bvals = operands[n * KC + k]
            for lane, pt in enumerate(pts):
                for xy in range(2):
                    got = [_signed((tile >> (((2 * lane + xy) * R + j) * d)) & ((1 << d) - 1), d)
                           for j in range(R)]
                    assert got == list(W[2 * pt + xy, k * R:(k + 1) * R]), (n, k, lane, xy)
                    bv = (bvals[lane] >> (xy * g.acc)) & ((1 << g.acc) - 1)
                    assert _signed(bv, g.acc) == bias[2 * pt + xy], (n, lane, xy)


# ---- BA sequencer -------------------------------------------------------------------------

def _lane_ops(g, keep_q):
    """One query's documented BA operations: lane (j, l) takes the kept points of level l
    in the heads ``i * ba_heads + j``, head by head, slice by slice (``(i, s, p, first,
    last)``); the query takes ``max(1, longest lane)`` operations."""
    lanes = []
    for ln in range(g.L * g.J):
        l, j = ln % g.L, ln // g.L
        ops = []
        for i in range(g.M // g.J):
            h = i * g.J + j
            pts = [p for p in range(g.P) if keep_q[h, l * g.P + p]]
            for s in range(g.n_slices):
                ops += [(i, s, p, k == 0, k == len(pts) - 1) for k, p in enumerate(pts)]
        lanes.append(ops)
    return lanes, max(1, max(len(o) for o in lanes))


@pytest.mark.parametrize("ba_heads,seed", [(1, 0), (1, 1), (1, 2), (2, 3)])
def test_ba_sequencer(ba_heads, seed):
    """Per query every lane issues its own kept points back to back (docs/performance.md,
    BA), lane set j on the heads ``m mod ba_heads = j``; the keep words come as F reads
    them (``keep_seen``, in OFFSET); a query starts once start_ok is up, the value windows
    hold its rows and the query ``SLOTS`` before it has been summed."""
    cfg = preset("tiny").replace(ba_heads=ba_heads)
    g = CoreGeometry(cfg, 2 * BASequencer.SLOTS)
    rng = np.random.default_rng(100 + seed)
    nq = int(rng.integers(BASequencer.SLOTS + 1, g.mq + 1))
    keep = _keep_words(g, rng, nq)
    words = [_word(keep[q, h]) for q in range(nq) for h in range(g.M)]
    want, length = [], []
    for q in range(nq):
        lanes, T = _lane_ops(g, keep[q])
        length.append(T)
        for t in range(T):
            want.append((q, t == T - 1, [lanes[ln][t] if t < len(lanes[ln]) else None
                                         for ln in range(g.L * g.J)]))
    seq = BASequencer(g)
    got, cycles = [], []
    START_OK, HOLD, SUMMED = 3, 30, 60          # cycles (from BA) of the three gates

    async def bench(ctx):
        ctx.set(seq.nq_pass, nq)
        ctx.set(seq.pass_start, 1)
        await ctx.tick()
        ctx.set(seq.pass_start, 0)
        ctx.set(seq.phase, Phase.OFFSET)
        for h, w in enumerate(words):             # F's reads, with gaps
            ctx.set(seq.keep_seen, {"valid": 1, "head": h, "word": w})
            await ctx.tick()
            if h % 3 == 0:
                ctx.set(seq.keep_seen.valid, 0)
                await ctx.tick()
        ctx.set(seq.keep_seen.valid, 0)
        ctx.set(seq.phase, Phase.BA)
        wq = 0                                    # the value windows' checked query
        for cyc in range(len(want) + 400):
            ctx.set(seq.start_ok, cyc >= START_OK)
            ctx.set(seq.win_q, wq)
            ctx.set(seq.win_ok, not (wq == 1 and cyc < HOLD))
            ctx.set(seq.summed, 0 if cyc < SUMMED else nq)
            if ctx.get(seq.op.valid):
                op = ctx.get(seq.op)
                assert op.q == wq or not ctx.get(seq.take), "a query started unchecked"
                lanes = []
                for ln in range(g.L * g.J):
                    lo = op.lane[ln]
                    lanes.append((lo.i, lo.s, lo.p, bool(lo.first), bool(lo.last))
                                 if lo.keep else None)
                    assert lo.keep or not (lo.first or lo.last)
                got.append((op.q, bool(op.endq), lanes))
                cycles.append(cyc)
            elif got and len(got) == len(want):
                assert ctx.get(seq.done), "done follows the last operation"
                break
            if ctx.get(seq.take):
                wq += 1 if wq + 1 < nq else 0
            await ctx.tick()

    _run(seq, bench)
    assert got == want
    # query q starts at the latest of: the previous query's end, start_ok, the windows
    # (query 1) and its slot (query SLOTS on); then back to back
    expect, t = [], 0
    for q in range(nq):
        s = max(t, START_OK, HOLD if q == 1 else 0,
                SUMMED if q >= BASequencer.SLOTS else 0)
        expect += [s + i for i in range(length[q])]
        t = s + length[q]
    assert cycles == expect


# ---- controller ---------------------------------------------------------------------------

def test_controller_walks_the_passes():
    """ATTN -> OFFSET -> BA (-> VALUE on a window miss once BA is idle -> BA) -> OUT ->
    (next pass ATTN | TAIL) -> IDLE, each exit on its unit's done / drained inputs only;
    pass bookkeeping.  Pass 0 misses once, pass 1 twice, pass 2 never."""
    g = _geom()
    ctl = Controller(g)
    nq = 2 * MQ + 1                                   # three passes, the last of 1 query
    misses = {0: 1, 1: 2, 2: 0}
    exits = {Phase.ATTN: ["attn_done"], Phase.OFFSET: ["offset_done"],
             Phase.VALUE: ["window_loaded", "value_in_drained", "value_issue_idle"],
             Phase.BA: ["ba_done"], Phase.OUT: ["out_done"],
             Phase.TAIL: ["results_drained", "mm_drained", "ba_drained"]}
    walk = []

    async def bench(ctx):
        ctx.set(ctl.nq, nq)
        assert ctx.get(ctl.phase) == Phase.IDLE and not ctx.get(ctl.busy)
        ctx.set(ctl.start, 1)
        assert ctx.get(ctl.pass_start)
        await ctx.tick()
        ctx.set(ctl.start, 0)
        for _ in range(40):
            ph = Phase(ctx.get(ctl.phase))
            walk.append(ph)
            if ph == Phase.IDLE:
                break
            assert ctx.get(ctl.busy) and not ctx.get(ctl.done)
            pidx = ctx.get(ctl.pass_index)
            assert ctx.get(ctl.pass_base) == pidx * MQ
            assert ctx.get(ctl.nq_pass) == min(MQ, nq - pidx * MQ)
            assert ctx.get(ctl.last_pass) == (pidx == 2)
            names = exits[ph]
            if ph == Phase.BA and misses[pidx]:
                misses[pidx] -= 1
                names = ["window_miss", "ba_idle"]
            # every input but the last of the exit: the phase holds
            for n in names[:-1]:
                ctx.set(getattr(ctl, n), 1)
            others = [n for v in exits.values() for n in v if n not in names]
            if names == exits[Phase.BA]:
                others += ["ba_idle"]                 # idle alone is no miss
            if ph == Phase.BA and names != exits[Phase.BA]:
                others.remove("ba_done")              # done wins over a miss
            for n in others:                          # other units' flags are ignored
                ctx.set(getattr(ctl, n), 1)
            await ctx.tick()
            assert Phase(ctx.get(ctl.phase)) == ph, f"{ph} left without {names[-1]}"
            for n in others:
                ctx.set(getattr(ctl, n), 0)
            ctx.set(getattr(ctl, names[-1]), 1)
            nxt = ph == Phase.OUT and pidx < 2
            assert ctx.get(ctl.next_pass) == nxt and ctx.get(ctl.pass_start) == nxt
            await ctx.tick()
            for n in names:
                ctx.set(getattr(ctl, n), 0)
        assert ctx.get(ctl.done) and ctx.get(ctl.idle)

    _run(ctl, bench)
    P = Phase
    assert walk == [P.ATTN, P.OFFSET, P.BA, P.VALUE, P.BA, P.OUT,
                    P.ATTN, P.OFFSET, P.BA, P.VALUE, P.BA, P.VALUE, P.BA, P.OUT,
                    P.ATTN, P.OFFSET, P.BA, P.OUT, P.TAIL, P.IDLE]

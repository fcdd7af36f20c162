"""cocotb testbench of the feature-map buffer (``FmapBuffer``) against ``golden/fmap_buffer.py``.

Layering: a read source and a write source (``verif.lib.stream``, random idle cycles; a
stalled read stays stable), a response monitor, the golden bank model (updated with every
accepted write, read at every accepted read cycle: a read sees the writes of earlier
cycles only) and a checker comparing integer codes bit for bit and the fixed latency.
The sliding-window test also checks the golden reads against the value map itself, so
the refill policy (``golden.fmap_buffer.window_refills``) and the mapping together
really keep every pixel a query row can reach on chip.
"""

import itertools
import os
import random
from collections import deque

import numpy as np
import pytest

import cocotb
from cocotb.triggers import RisingEdge

from amaranth.hdl import Shape
from amaranth.lib import data

from defa_hw.config import preset
from defa_hw.rtl.fmap_buffer import FmapBuffer, FmapGeometry
from golden.fmap_buffer import (
    conflict_stats, conflict_workload, fmap_buffer, fmap_buffer_write, n_slices, new_banks,
    query_rows, window_refills,
)
from golden.sampling_address import sampling_address
from verif.lib.clock import reset as reset_dut
from verif.lib.clock import start_clock
from verif.lib.runner import cocotb_config, run_cocotb
from verif.lib.stream import StreamSource, random_pause, run_agents

MAPPING = os.environ.get("FMAP_MAPPING", "inter")
#: golden bank contents, carried from one cocotb test to the next like the RTL memories
_STATE = {}


# -- bit packing of the stream payloads (layout offsets from the interface) ----------------

def _leaves(layout, offset=0, path=()):
    """Flatten a layout into (path, offset, width, signed) leaves."""
    if isinstance(layout, data.StructLayout):
        for name, field in layout:
            yield from _leaves(field.shape, offset + field.offset, path + (name,))
    elif isinstance(layout, data.ArrayLayout):
        w = Shape.cast(layout.elem_shape).width
        for i in range(layout.length):
            yield from _leaves(layout.elem_shape, offset + i * w, path + (i,))
    else:
        s = Shape.cast(layout)
        yield path, offset, s.width, s.signed


class Packer:
    """Pack/unpack nested dict/list values to the integer of a payload port."""

    def __init__(self, layout):
        self.leaves = list(_leaves(layout))

    def pack(self, value):
        out = 0
        for path, off, w, _ in self.leaves:
            v = value
            for p in path:
                if isinstance(p, str) and p not in v:
                    v = 0
                    break
                v = v[p]
            out |= (int(v) & ((1 << w) - 1)) << off
        return out

    def unpack_flat(self, bits):
        out = []
        for _, off, w, sgn in self.leaves:
            v = (bits >> off) & ((1 << w) - 1)
            if sgn and v >> (w - 1):
                v -= 1 << w
            out.append(v)
        return out


# -- the bench ----------------------------------------------------------------------------

class Bench:
    """Drivers, monitor, golden model and checker around one ``FmapBuffer``."""

    def __init__(self, dut, cfg, mapping, seed):
        self.dut, self.cfg, self.mapping = dut, cfg, mapping
        self.geo = FmapGeometry(cfg, mapping)
        self.rng = random.Random(seed)
        self.np_rng = np.random.default_rng(seed)
        self.rd = Packer(self.geo.read_layout)
        self.wr = Packer(self.geo.write_layout)
        self.rsp = Packer(self.geo.response_layout)
        if "banks" not in _STATE:
            _STATE["banks"] = new_banks(cfg, mapping)
        self.banks = _STATE["banks"]
        self.cycle = 0
        self.stall_cycles = 0
        self.reads_done = 0
        self.expected = deque()

    async def reset(self):
        dut = self.dut
        start_clock(dut)
        dut.rd__payload.value = 0
        dut.wr__payload.value = 0
        await reset_dut(dut, cycles=2, low=("rd__valid", "wr__valid"))
        self.expected.clear()

    def _check_response(self):
        if not int(self.dut.rsp__valid.value):
            return
        assert self.expected, f"cycle {self.cycle}: response without a read"
        acc_cycle, want, note = self.expected.popleft()
        assert self.cycle == acc_cycle + FmapBuffer.LATENCY, (
            f"response of the read accepted in cycle {acc_cycle} came in cycle {self.cycle}")
        got = np.array(self.rsp.unpack_flat(self.dut.rsp__payload.value.to_unsigned()),
                       np.int64).reshape(want.shape)
        bad = np.flatnonzero((got != want).any(axis=1))
        assert len(bad) == 0, (f"{note}: read accepted in cycle {acc_cycle}: request(s) "
                               f"{bad.tolist()} got {got[bad].tolist()} expected "
                               f"{want[bad].tolist()}")
        self.reads_done += 1

    async def run(self, reads=(), writes=(), read_idle=0.2, write_idle=0.2):
        """Drive read cycles and write beats until all are done and the pipe is empty.

        ``reads``: dicts with ``y``, ``x``, ``inb``, ``slc`` (one entry per request),
        ``level`` (intra) and optionally ``ideal`` (expected words from the value map)
        and ``note``.  ``writes``: (level, y, x, slice, data) beats.  In the intra mapping
        a stalled read spans several cycles, so no write is issued while a read is on
        the bus (a write would land between its serving cycles).
        """
        dut, reads, writes = self.dut, list(reads), list(writes)

        taken = []

        def read_taken(i):
            taken.append(i)

        def golden_reads():
            # The SRAM is read the cycle after a read is accepted, so the golden read sees
            # the writes accepted up to and including that cycle (run after every sample).
            for i in taken:
                r = reads[i]
                want = fmap_buffer(self.banks, r["y"], r["x"], r["inb"], r["slc"], self.cfg,
                                   self.mapping, r.get("level", 0))
                if r.get("ideal") is not None:
                    # The testbench's own claim: these pixels are resident.
                    assert np.array_equal(want, r["ideal"]), (
                        f"{r.get('note')}: golden buffer does not hold the value map")
                self.expected.append((self.cycle, want, r.get("note", "read")))
            taken.clear()

        def write_taken(i):
            lv, y, x, s, word = writes[i]
            fmap_buffer_write(self.banks, lv, y, x, s, word, self.cfg, self.mapping)

        rd = StreamSource(dut, "rd", pause=random_pause(read_idle, rng=self.rng),
                          on_accept=read_taken)
        rd.send(self.rd.pack({"req": [{"y": r["y"][i], "x": r["x"][i], "inb": r["inb"][i],
                                       "slice": r["slc"][i]} for i in range(self.geo.n_req)],
                              "level": r.get("level", 0)}) for r in reads)
        idle = random_pause(write_idle, rng=self.rng)
        wr_pause = (rd.showing is not None and self.mapping != "inter" or next(idle)
                    for _ in itertools.count())
        wr = StreamSource(dut, "wr", pause=wr_pause, on_accept=write_taken)
        wr.send(self.wr.pack({"level": lv, "y": y, "x": x, "slice": s, "data": list(word)})
                for lv, y, x, s, word in writes)
        drain = [0]

        def each_cycle():
            golden_reads()
            self._check_response()
            drain[0] = drain[0] + 1 if rd.done and wr.done else 0
            self.cycle += 1

        # A read waits at most one cycle per request on bank conflicts.
        limit = (self.geo.n_req + 2) * (len(reads) + len(writes)) + 100
        await run_agents(dut.clk, [rd, wr], limit=limit, what="fmap buffer", each_cycle=each_cycle,
                         until=lambda: not self.expected and drain[0] >= 2)
        await RisingEdge(dut.clk)
        rd.idle()
        wr.idle()
        assert wr.stalled == 0, "the write stream is always ready"
        self.stall_cycles += rd.stalled

    def check_backdoor(self):
        """Every word of every RTL bank equals the golden bank model (the write mapping)."""
        ba, bits = self.cfg.ba_channels, self.cfg.data_bits
        for b, want in enumerate(self.banks):
            mem = getattr(self.dut, f"bank{b}")
            for a in range(len(want)):
                word = mem[a].value.to_unsigned()
                got = [(word >> (bits * j)) & ((1 << bits) - 1) for j in range(ba)]
                got = [v - (1 << bits) if v >> (bits - 1) else v for v in got]
                assert got == want[a].tolist(), f"bank {b} word {a}: {got} != {want[a].tolist()}"

    def stats(self):
        d = self.dut
        return (int(d.stat_reads.value), int(d.stat_conflict_reads.value),
                int(d.stat_lost_cycles.value))


# -- stimulus helpers ---------------------------------------------------------------------

def runtime_shapes(cfg):
    """Runtime shapes of the tests: the full map for tiny, small maps for larger presets
    (taller than the row window where there is one, so the window wraps)."""
    if cfg.name == "tiny":
        return np.array(cfg.max_shapes, np.int64)
    out = []
    for l, (h, w) in enumerate(cfg.max_shapes):
        rows = cfg.buffer_rows(l)
        out.append((min(h, rows + 9) if rows < h else min(h, 9), min(w, 6)))
    return np.array(out, np.int64)


def cycles_from_points(cfg, mapping, ny, nx, inb, level, rng):
    """Group points (..., 4 neighbours) into read cycles for the mapping.

    Inter: the points of axis -2 are the levels, one cycle each row.  Intra: 4 points
    of the same level per cycle.  Returns lists of request dicts.
    """
    S = n_slices(cfg)
    out = []
    if mapping == "inter":
        for k in range(ny.shape[0]):
            out.append({"y": ny[k].reshape(-1), "x": nx[k].reshape(-1),
                        "inb": inb[k].reshape(-1), "level": 0,
                        "slc": rng.integers(0, S, size=4 * cfg.n_levels)})
    else:
        for l in range(cfg.n_levels):
            sel = np.flatnonzero(level.reshape(-1) == l)
            py, px, pi = (a.reshape(-1, 4)[sel] for a in (ny, nx, inb))
            for c in range(0, len(sel) - 3, 4):
                out.append({"y": py[c:c + 4].reshape(-1), "x": px[c:c + 4].reshape(-1),
                            "inb": pi[c:c + 4].reshape(-1), "level": l,
                            "slc": rng.integers(0, S, size=16)})
    return out


def fill_beats(cfg, level, rows, width, value, rng, shuffle=True):
    """Write beats of rows ``rows`` (all slices) of a level's value map."""
    ba, S = cfg.ba_channels, n_slices(cfg)
    beats = [(level, y, x, s, value[y, x, s * ba:(s + 1) * ba])
             for y in rows for x in range(width) for s in range(S)]
    if shuffle:
        rng.shuffle(beats)
    return beats


def ideal_words(cfg, values, req, mapping):
    """What a read cycle must return, straight from the value maps."""
    ba = cfg.ba_channels
    n_req = len(req["y"])
    out = np.zeros((n_req, ba), np.int64)
    for i in range(n_req):
        if req["inb"][i]:
            l = i // 4 if mapping == "inter" else req["level"]
            s = req["slc"][i]
            out[i] = values[l][req["y"][i], req["x"][i], s * ba:(s + 1) * ba]
    return out


# -- cocotb tests -------------------------------------------------------------------------

@cocotb.test()
async def random_access(dut):
    """Random writes over the whole max shapes (some outside: dropped), random reads of
    2x2 neighbourhoods anywhere incl. outside the map, concurrent with writes (inter)."""
    cfg = cocotb_config()
    b = Bench(dut, cfg, MAPPING, seed=1)
    await b.reset()
    rng, S = b.np_rng, n_slices(cfg)
    L = cfg.n_levels
    hmax = np.array([h for h, _ in cfg.max_shapes])
    wmax = np.array([w for _, w in cfg.max_shapes])
    geo_w = b.geo.write_layout
    ymax_field = 1 << Shape.cast(geo_w["y"].shape).width
    xmax_field = 1 << Shape.cast(geo_w["x"].shape).width

    def beats(n):
        out = []
        for _ in range(n):
            l = int(rng.integers(0, L))
            if rng.random() < 0.05:     # outside max_shapes but representable: dropped
                y, x = int(rng.integers(hmax[l], ymax_field)), int(rng.integers(0, xmax_field))
            else:
                y, x = int(rng.integers(0, hmax[l])), int(rng.integers(0, wmax[l]))
            out.append((l, y, x, int(rng.integers(0, S)),
                        rng.integers(cfg.data_min, cfg.data_max + 1, size=cfg.ba_channels)))
        return out

    n_w = 1200 if cfg.name == "tiny" else 800
    await b.run(writes=beats(n_w), write_idle=0.1)
    b.check_backdoor()

    # Points anywhere from two pixels above/left of the map to past its end.
    n_cyc = 300                 # intra: the same points, 4 of one level per cycle
    lv = np.broadcast_to(np.arange(L), (n_cyc, L))
    y0 = rng.integers(-2, hmax[lv] + 1)
    x0 = rng.integers(-2, wmax[lv] + 1)
    ny = np.stack([y0, y0, y0 + 1, y0 + 1], -1)
    nx = np.stack([x0, x0 + 1, x0, x0 + 1], -1)
    H, W = hmax[lv][..., None], wmax[lv][..., None]
    inb = (ny >= 0) & (ny < H) & (nx >= 0) & (nx < W)
    inb &= rng.random(inb.shape) >= 0.05   # in-map but flagged out (e.g. masked): reads 0
    reads = cycles_from_points(cfg, MAPPING, ny, nx, inb, lv[..., None], rng)
    reads = [dict(r, note="random read") for r in reads]
    await b.run(reads=reads, writes=beats(200), read_idle=0.15, write_idle=0.5)
    assert b.reads_done == len(reads)
    if MAPPING == "inter":
        assert b.stall_cycles == 0, "the inter-level mapping never stalls"
    dut._log.info("random_access: %d writes, %d read cycles, %d stall cycles",
                  n_w + 200, len(reads), b.stall_cycles)


@cocotb.test()
async def sliding_window(dut):
    """Encoder-order query sweeps: whole levels loaded once, windowed levels refilled
    one new row pair at a time (prefetch concurrent with reads, inter); every read
    equals the value map."""
    cfg = cocotb_config()
    b = Bench(dut, cfg, MAPPING, seed=2)
    await b.reset()
    rng, L, F = b.np_rng, cfg.n_levels, cfg.coord_frac_bits
    shapes = runtime_shapes(cfg)
    values = [rng.integers(cfg.data_min, cfg.data_max + 1, size=(h, w, cfg.head_dim))
              for h, w in shapes]
    # Two sweeps: queries of level 0 (the finest, window slides most) then of the last
    # level, which restarts every window from the top.
    for sweep, lq in enumerate([0, L - 1]):
        hq, wq = shapes[lq]
        plans = []
        for l in range(L):
            lo, hi = query_rows(cfg, tuple(shapes[lq]), tuple(shapes[l]), l)
            plans.append(window_refills(cfg, l, lo, hi, int(shapes[l][0])))
        whole = [2 * (cfg.buffer_rows(l) // 2) >= shapes[l][0] for l in range(L)]
        for r in range(hq):
            need, ahead = [], []
            for l in range(L):
                if sweep and whole[l]:
                    continue            # levels that fit stay loaded for the block
                n_pairs, a_pairs = plans[l][r]
                rows = [y for p in n_pairs for y in (2 * p, 2 * p + 1) if y < shapes[l][0]]
                need += fill_beats(cfg, l, rows, shapes[l][1], values[l], rng)
                rows = [y for p in a_pairs for y in (2 * p, 2 * p + 1) if y < shapes[l][0]]
                ahead += fill_beats(cfg, l, rows, shapes[l][1], values[l], rng)
            await b.run(writes=need, write_idle=0.05)
            # A few queries of this row: reference = pixel centre, random clamped offsets.
            n_q = 4
            cols = rng.integers(0, wq, size=n_q)
            ref = np.stack([((2 * cols + 1) << cfg.ref_frac_bits) // (2 * wq),
                            np.full(n_q, ((2 * r + 1) << cfg.ref_frac_bits) // (2 * hq))], -1)
            ref = np.minimum(ref, (1 << cfg.ref_frac_bits) - 1)
            P = 4 if MAPPING == "intra" else 1
            bound = np.asarray(cfg.offset_bound)[None, :, None, None] << F
            off = rng.integers(-bound - 64, bound + 65, size=(n_q, L, P, 2))
            lv = np.broadcast_to(np.arange(L)[None, :, None], (n_q, L, P))
            sa = sampling_address(ref[:, None, None, :], off, lv, shapes, cfg)
            if MAPPING == "inter":
                ny, nx, inb = (sa[k][:, :, 0] for k in ("ny", "nx", "inb"))
            else:
                ny, nx, inb = sa["ny"], sa["nx"], sa["inb"]
            reads = cycles_from_points(cfg, MAPPING, ny, nx, inb, lv, rng)
            for q in reads:
                q["ideal"] = ideal_words(cfg, values, q, MAPPING)
                q["note"] = f"sweep {sweep} query row {r}"
            await b.run(reads=reads, writes=ahead, read_idle=0.1, write_idle=0.1)
    dut._log.info("sliding_window: %d read cycles checked against the value map",
                  b.reads_done)


@cocotb.test()
async def conflicts(dut):
    """Random sampling workload: read data, statistics counters and (intra) stall
    cycles against the golden conflict model."""
    cfg = cocotb_config()
    b = Bench(dut, cfg, MAPPING, seed=3)
    await b.reset()
    assert b.stats() == (0, 0, 0)
    shapes = np.array(cfg.max_shapes, np.int64)
    n_q = 32 if cfg.name == "tiny" else 8
    wl = conflict_workload(cfg, shapes, n_q, MAPPING, b.np_rng)
    want = conflict_stats(wl, cfg, MAPPING)
    reads = [{"y": wl["y"][c], "x": wl["x"][c], "inb": wl["inb"][c], "slc": wl["slc"][c],
              "level": int(wl["level"][c]), "note": f"workload cycle {c}"}
             for c in range(len(wl["y"]))]
    await b.run(reads=reads, read_idle=0.0)
    got = b.stats()
    assert got == (want["cycles"], want["conflict_cycles"], want["lost_cycles"]), (got, want)
    assert b.stall_cycles == want["lost_cycles"], (
        "one stall cycle per extra cycle of the conflict model")
    if MAPPING == "inter":
        assert want["lost_cycles"] == 0
    else:
        assert want["lost_cycles"] > 0, "the intra baseline must show conflicts"
    total = len(reads) + b.stall_cycles
    dut._log.info("conflicts (%s, RTL): %d points, %d read cycles, %d with conflicts "
                  "(rate %.3f), %d lost cycles (%.1f per 1000 points), %d cycles in all",
                  MAPPING, want["points"], got[0], got[1], got[1] / got[0], got[2],
                  1000 * got[2] / want["points"], total)


# -- pytest entry -------------------------------------------------------------------------

@pytest.mark.parametrize("preset_name,mapping", [
    ("tiny", "inter"), ("tiny", "intra"), ("defa", "inter"),
    pytest.param("defa", "intra", marks=pytest.mark.slow),
])
def test_fmap_buffer(preset_name, mapping):
    cfg = preset(preset_name)
    run_cocotb(component=FmapBuffer(cfg, mapping=mapping), toplevel="fmap_buffer",
               test_module="test_fmap_buffer", build_name=f"fmap_buffer_{preset_name}_{mapping}",
               cfg=cfg, env={"FMAP_MAPPING": mapping})

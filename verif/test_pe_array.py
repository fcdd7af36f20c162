"""cocotb testbench of the reconfigurable PE array (MM and BA modes).

A driver issues one operation per clock (tiles back to back, random idle gaps
that respect the BA->MM gap), a pipelined checker compares every tile result,
integer for integer, with the golden model composed in ``golden/pe_array.py``
(``linear_acc`` for MM, ``bilinear`` + ``aggregate_acc`` per level for BA, whose
levels run their tiles independently) exactly LATENCY cycles after the tile's last
operation, and checks that ``out_valid`` / ``ba_valid`` are low in every other cycle.  Stimulus is built in the golden model's layout
and mapped to operations by ``golden.pe_array.mm_schedule / ba_schedule``.
"""

import os
import time

import cocotb
import numpy as np
import pytest

from defa_hw.config import preset

# Random work per mode in the default run (on top of the directed tiles): at least
# this many MACs (MM) and bilinear-interpolation + probability MACs (BA).
MIN_RANDOM_WORK = 10_000


def random_ops(cfg, scale=1.0):
    """(MM ops, BA ops) of random stimulus: >= MIN_RANDOM_WORK * scale per mode."""
    mm = -(-int(MIN_RANDOM_WORK * scale) // (cfg.pe_rows * cfg.pe_cols))
    ba = -(-int(MIN_RANDOM_WORK * scale) // (cfg.ba_channels * cfg.ba_lanes))
    return mm, ba


# --------------------------------------------------------------------------------------
# stimulus (plain numpy, golden layout)
# --------------------------------------------------------------------------------------

def _values(rng, shape, cfg, extreme=0.3):
    """Random data codes: uniform full range, a fraction replaced by corner values."""
    lo, hi = cfg.data_min, cfg.data_max
    v = rng.integers(lo, hi + 1, size=shape)
    corners = np.array([lo, hi, lo + 1, 0, -1, 1])
    pick = rng.random(shape) < extreme
    return np.where(pick, rng.choice(corners, size=shape), v)


def _bias(rng, cfg, kind="random"):
    lim = 1 << (cfg.mm_acc_bits - 2)           # biases are saturated to mm_acc_bits - 1 bits
    if kind == "max":
        return np.full(cfg.pe_cols, lim - 1)
    if kind == "min":
        return np.full(cfg.pe_cols, -lim)
    if kind == "zero":
        return np.zeros(cfg.pe_cols, dtype=np.int64)
    b = rng.integers(-lim, lim, size=cfg.pe_cols)
    return np.where(rng.random(cfg.pe_cols) < 0.2, rng.choice([-lim, lim - 1, 0], cfg.pe_cols), b)


def mm_tiles(rng, cfg, n_ops, *, directed=True):
    """MM tiles (dicts with golden-layout operands): directed extremes, then at least
    ``n_ops`` operations of random tiles."""
    R, C = cfg.pe_rows, cfg.pe_cols
    tmax = cfg.d_model // R                    # K <= d_model keeps mm_acc_bits exact
    tiles = []

    def tile(x, w, b):
        tiles.append({"mode": "mm", "x": x, "w": w, "bias": b})

    if directed:
        _mm_directed(tile, rng, cfg, tmax * R)
    used = 0
    while used < n_ops:
        T = int(rng.integers(1, tmax + 1))
        tile(_values(rng, T * R, cfg), _values(rng, (C, T * R), cfg), _bias(rng, cfg))
        used += T
    return tiles


def _mm_directed(tile, rng, cfg, K):
    R, C = cfg.pe_rows, cfg.pe_cols
    lo, hi = cfg.data_min, cfg.data_max
    tile(np.full(K, lo), np.full((C, K), lo), _bias(rng, cfg, "max"))     # largest positive
    tile(np.full(K, lo), np.full((C, K), hi), _bias(rng, cfg, "min"))     # largest negative
    tile(np.full(K, hi), np.full((C, K), hi), _bias(rng, cfg, "zero"))
    tile(np.zeros(K, dtype=np.int64), np.zeros((C, K), dtype=np.int64), _bias(rng, cfg, "zero"))
    tile(np.full(R, hi), np.full((C, R), lo), _bias(rng, cfg, "min"))     # one-op tile


def _fractions(rng, n, cfg):
    F = cfg.coord_frac_bits
    t0 = rng.integers(0, 1 << F, size=n)
    t1 = rng.integers(0, 1 << F, size=n)
    # Usually the sampling-address rule round_shift(t0*t1, F); sometimes any code.
    t01 = np.where(rng.random(n) < 0.7, (t0 * t1 + (1 << (F - 1))) >> F,
                   rng.integers(0, 1 << F, size=n))
    corner = rng.random(n) < 0.15
    t0 = np.where(corner, rng.choice([0, (1 << F) - 1], n), t0)
    t1 = np.where(corner, rng.choice([0, (1 << F) - 1], n), t1)
    return t0, t1, t01


def ba_tiles(rng, cfg, n_ops, *, directed=True):
    """BA tiles, one head's L*P points on one channel slice each: directed ones, then at
    least ``n_ops`` operations of random tiles."""
    LP, CH = cfg.n_lp, cfg.ba_channels
    pmax = (1 << cfg.prob_bits) - 1
    tiles = []

    def tile(neigh, t0, t1, t01, prob, keep):
        full = lambda v: np.broadcast_to(np.asarray(v, dtype=np.int64), (LP,)).copy()
        tiles.append({"mode": "ba", "neigh": np.broadcast_to(neigh, (LP, 4, CH)).copy(),
                      "t0": full(t0), "t1": full(t1), "t01": full(t01),
                      "prob": full(prob), "keep": full(keep).astype(bool)})

    if directed:
        _ba_directed(tile, rng, cfg)
    used = 0
    while used < n_ops:
        neigh = _values(rng, (LP, 4, CH), cfg)
        # Out-of-map neighbours arrive as zero: random per-point in-bounds patterns.
        inb = np.where(rng.random((LP, 1)) < 0.5, 15, rng.integers(0, 16, size=(LP, 1)))
        inb = ((inb >> np.arange(4)[None, :]) & 1).astype(bool)
        neigh = np.where(inb[:, :, None], neigh, 0)
        t0, t1, t01 = _fractions(rng, LP, cfg)
        prob = np.where(rng.random(LP) < 0.2, rng.choice([0, pmax], LP),
                        rng.integers(0, pmax + 1, LP))
        keep = rng.random(LP) < rng.choice([0.2, 0.5, 0.9, 1.0])
        tile(neigh, t0, t1, t01, prob, keep)
        used += cfg.n_points
    return tiles


def _ba_directed(tile, rng, cfg):
    LP, CH, F = cfg.n_lp, cfg.ba_channels, cfg.coord_frac_bits
    pmax = (1 << cfg.prob_bits) - 1
    tmax = (1 << F) - 1
    lo, hi = cfg.data_min, cfg.data_max
    ones = np.ones(LP, dtype=bool)
    alt = np.arange(LP) % 2 == 0
    checker = np.where((np.arange(4)[:, None] + np.arange(CH)[None, :]) % 2, hi, lo)
    tile(hi, tmax, tmax, tmax, pmax, ones)                 # everything at its maximum
    tile(lo, tmax, tmax, tmax, pmax, ones)
    tile(lo, 0, 0, 0, pmax, ones)                           # t = 0: v00 only
    tile(checker, tmax, tmax, 0, pmax, ones)                # mixed extremes, t01 inconsistent
    tile(checker, 0, 0, tmax, pmax, ones)                   # worst case |bil| (t01 alone)
    tile(0, tmax, tmax, tmax, pmax, ones)                   # all out of map = zeros
    tile(hi, tmax, tmax, tmax, pmax, ~ones)                 # everything pruned
    tile(lo, tmax, 0, 0, pmax, alt)                          # alternate points pruned
    tile(hi, 0, tmax, 0, 0, ones)                           # probability 0, kept
    single = np.zeros(LP, dtype=bool)
    single[LP - 1] = True
    tile(lo, tmax, tmax, tmax, pmax, single)
    # Every out-of-map pattern of the 4 neighbours, extreme values elsewhere.
    for pattern in range(16):
        inb = np.array([(pattern >> k) & 1 for k in range(4)], dtype=bool)
        vals = np.where(inb[:, None], checker, 0)
        tile(vals, rng.integers(0, tmax + 1, LP), rng.integers(0, tmax + 1, LP),
             rng.integers(0, tmax + 1, LP), pmax, ones)


# --------------------------------------------------------------------------------------
# packing into the flattened Verilog ports
# --------------------------------------------------------------------------------------

def _pack(values, width):
    mask = (1 << width) - 1
    out = 0
    for k, v in enumerate(np.asarray(values).ravel().tolist()):
        out |= (int(v) & mask) << (k * width)
    return out


def _unpack_signed(word, width, n):
    out = []
    for k in range(n):
        v = (word >> (k * width)) & ((1 << width) - 1)
        out.append(v - (1 << width) if v >> (width - 1) else v)
    return out


def _pack_points(pt, cfg):
    """pt: dict of (L,) arrays -> the flattened ``pt`` port (ArrayLayout of StructLayout)."""
    from defa_hw.rtl.pe_array import ba_point_layout
    lay = ba_point_layout(cfg)
    word = 0
    for l in range(cfg.ba_lanes):
        for name in ("t0", "t1", "t01", "prob", "keep", "first", "last"):
            fld = lay[name]
            word |= (int(pt[name][l]) & ((1 << fld.width) - 1)) << (l * lay.size + fld.offset)
    return word


def build_program(tiles, cfg, rng):
    """Operations (one dict of port values per cycle) and expected results.

    Consecutive BA tiles form a segment in which every level runs on its own: level
    l's points of each tile follow each other with random idle slots between and
    before them (``keep`` 0, garbage operands), so the levels' tiles start and end in
    different cycles, as they do when the BA pipeline balances the levels.  Expected
    results: ``(mode, op index of the tile's last op, level or None, packed, values)``.
    """
    from golden.pe_array import ba_schedule, mm_schedule, pe_array_ba, pe_array_mm
    from defa_hw.rtl.pe_array import PEArray
    d, L, P, J = cfg.data_bits, cfg.n_levels, cfg.n_points, cfg.ba_heads
    gap = PEArray.BA_TO_MM_GAP
    ops, expected = [], []
    prev_mode = None
    k = 0
    while k < len(tiles):
        t = tiles[k]
        # Idle cycles between tiles: mostly none; BA->MM needs at least `gap`, and
        # sometimes gets exactly `gap` to test the boundary.
        idle = int(rng.choice([0, 0, 0, 1, 3]))
        if prev_mode == "ba" and t["mode"] == "mm":
            idle = max(idle, gap)
        ops.extend([None] * idle)
        if t["mode"] == "mm":
            x_ops, w_ops = mm_schedule(t["x"], t["w"], cfg)
            exp = pe_array_mm(t["x"], t["w"], t["bias"], cfg)
            bias = _pack(t["bias"], cfg.mm_acc_bits)
            T = len(x_ops)
            for s in range(T):
                if s and rng.random() < 0.05:
                    ops.append(None)                  # a bubble inside the tile
                ops.append({"mode": 0, "first": int(s == 0), "last": int(s == T - 1),
                            "x": _pack(x_ops[s], d), "w": _pack(w_ops[s], d), "bias": bias})
            expected.append(("mm", len(ops) - 1, None, _pack(exp, cfg.mm_acc_bits), exp))
            k += 1
        else:
            seg = []
            while k < len(tiles) and tiles[k]["mode"] == "ba":
                seg.append(tiles[k])
                k += 1
            # per lane: slots (pix (4, CH), point dict); lane j * L + l takes level l of
            # the tiles j, j + J, ... (J = ba_heads)
            NL = J * L
            idle = lambda: (_values(rng, (4, cfg.ba_channels), cfg),
                            dict(t0=1, t1=2, t01=3, prob=int(rng.integers(0, 8)), keep=0,
                                 first=0, last=0))
            slots = [[] for _ in range(NL)]
            for ti, t in enumerate(seg):
                j = ti % J
                pix, pt = ba_schedule(t["neigh"], t["t0"], t["t1"], t["t01"], t["prob"],
                                      t["keep"], cfg)
                for l in range(L):
                    ln = j * L + l
                    slots[ln] += [idle() for _ in range(int(rng.choice([0, 0, 0, 1, 2])))]
                    for s in range(P):
                        slots[ln].append((pix[s, l], {**{n: v[s, l] for n, v in pt.items()},
                                                      "first": int(s == 0),
                                                      "last": int(s == P - 1)}))
                    sel = slice(l * P, (l + 1) * P)
                    exp = pe_array_ba(t["neigh"][sel], t["t0"][sel], t["t1"][sel],
                                      t["t01"][sel], t["prob"][sel], t["keep"][sel], cfg)
                    expected.append(("ba", len(ops) + len(slots[ln]) - 1, ln,
                                     _pack(exp, cfg.agg_acc_bits), exp))
            n = max(len(sl) for sl in slots)
            for sl in slots:
                sl += [idle() for _ in range(n - len(sl))]
            for s in range(n):
                ops.append({"mode": 1, "first": int(rng.integers(0, 2)),
                            "last": int(rng.integers(0, 2)),
                            "pix": _pack(np.stack([slots[ln][s][0] for ln in range(NL)]), d),
                            "pt": _pack_points({f: [slots[ln][s][1][f] for ln in range(NL)]
                                                for f in slots[0][s][1]}, cfg)})
            t = seg[-1]
        prev_mode = t["mode"]
    return ops, expected


# --------------------------------------------------------------------------------------
# cocotb side
# --------------------------------------------------------------------------------------

def _u(handle):
    v = handle.value
    return v.to_unsigned() if hasattr(v, "to_unsigned") else int(v)


async def _reset(dut):
    from verif.lib.clock import clock_and_reset
    await clock_and_reset(dut, low=("valid", "mode", "first", "last", "x", "w", "bias", "pix",
                                    "pt"))


async def run_program(dut, cfg, ops, expected, rng):
    """Drive ``ops`` one per cycle and check every tile result; returns the cycles run.
    ``out_valid`` must rise exactly for MM tiles, ``ba_valid[l]`` exactly for level l's
    BA tiles (the array's own ``first`` / ``last`` carry garbage in BA operations)."""
    from cocotb.triggers import FallingEdge
    from defa_hw.rtl.pe_array import PEArray
    lat = PEArray(cfg).LATENCY
    L, CH, A = cfg.ba_lanes, cfg.ba_channels, cfg.agg_acc_bits
    due_mm, due_ba = {}, {}
    for mode, n, l, word, exp in expected:
        if mode == "mm":
            due_mm[n + lat] = (word, exp)
        else:
            assert (n + lat, l) not in due_ba
            due_ba[n + lat, l] = (word, exp)
    ports = {k: getattr(dut, k) for k in ("valid", "mode", "first", "last", "x", "w", "bias",
                                          "pix", "pt")}
    checked = 0
    total = len(ops) + lat + 1
    for n in range(total):
        await FallingEdge(dut.clk)
        ov = _u(dut.out_valid)
        if n in due_mm:
            word, exp = due_mm[n]
            assert ov == 1, f"cycle {n}: out_valid low, expected an MM result"
            got = _u(dut.mm_acc)
            if got != word:
                raise AssertionError(f"cycle {n} mm: got "
                                     f"{_unpack_signed(got, cfg.mm_acc_bits, cfg.pe_cols)}"
                                     f" expected {list(map(int, exp))}")
            checked += 1
        else:
            assert ov == 0, f"cycle {n}: unexpected out_valid"
        bv = _u(dut.ba_valid)
        acc = _u(dut.ba_acc)
        for l in range(L):
            if (n, l) in due_ba:
                word, exp = due_ba[n, l]
                assert bv >> l & 1, f"cycle {n}: ba_valid[{l}] low, expected a BA result"
                got = (acc >> (l * CH * A)) & ((1 << (CH * A)) - 1)
                if got != word:
                    raise AssertionError(f"cycle {n} ba level {l}: got "
                                         f"{_unpack_signed(got, A, CH)} expected "
                                         f"{list(map(int, exp))}")
                checked += 1
            else:
                assert not bv >> l & 1, f"cycle {n}: unexpected ba_valid[{l}]"
        op = ops[n] if n < len(ops) else None
        if op is None:
            ports["valid"].value = 0
            # Idle inputs carry garbage, which the array must ignore.
            ports["first"].value = int(rng.integers(0, 2))
            ports["last"].value = int(rng.integers(0, 2))
        else:
            ports["valid"].value = 1
            for k, v in op.items():
                ports[k].value = v
    assert checked == len(expected)
    return total


def _counts(tiles, cfg):
    mm_ops = sum(len(t["x"]) // cfg.pe_rows for t in tiles if t["mode"] == "mm")
    ba_ops = sum(cfg.n_points for t in tiles if t["mode"] == "ba")
    return mm_ops, ba_ops


@cocotb.test()
async def pe_array_mm_then_ba(dut):
    """All MM tiles, then all BA tiles (directed extremes first, then random)."""
    from verif.lib.runner import cocotb_config
    cfg = cocotb_config()
    rng = np.random.default_rng(1)
    n_mm, n_ba = random_ops(cfg, float(os.environ.get("PE_ARRAY_SCALE", "1")))
    tiles = mm_tiles(rng, cfg, n_mm) + ba_tiles(rng, cfg, n_ba)
    mm_ops, ba_ops = _counts(tiles, cfg)
    ops, expected = build_program(tiles, cfg, rng)
    await _reset(dut)
    t0 = time.perf_counter()
    cycles = await run_program(dut, cfg, ops, expected, rng)
    wall = time.perf_counter() - t0
    dut._log.info(f"{cfg.name}: {len(expected)} tiles, {mm_ops} MM ops "
                  f"({mm_ops * cfg.pe_rows * cfg.pe_cols} MACs), {ba_ops} BA ops "
                  f"({ba_ops * cfg.ba_lanes * cfg.ba_channels} bilinear+MAC), "
                  f"{cycles} cycles in {wall:.2f} s")
    _bench_record("pe_array_mm_then_ba", cycles, wall)


def _bench_record(test, cycles, wall):
    """For verif/bench_pe_array.py: simulated cycles and wall seconds of the timed loop."""
    out = os.environ.get("PE_ARRAY_BENCH_OUT")
    if out:
        with open(os.path.join(out, f"{test}.bench"), "w") as fh:
            fh.write(f"{cycles} {wall}\n")


@cocotb.test(skip=not os.environ.get("PE_ARRAY_FREE_RUN"))
async def pe_array_free_run(dut):
    """Benchmark only (skipped unless PE_ARRAY_FREE_RUN = cycles): the simulator alone,
    clock running, static random MM operands, every operation a one-op tile."""
    from cocotb.triggers import ClockCycles
    from verif.lib.runner import cocotb_config
    cfg = cocotb_config()
    rng = np.random.default_rng(4)
    n = int(os.environ["PE_ARRAY_FREE_RUN"])
    await _reset(dut)
    R, C, d = cfg.pe_rows, cfg.pe_cols, cfg.data_bits
    dut.x.value = _pack(_values(rng, R, cfg), d)
    dut.w.value = _pack(_values(rng, R * C, cfg), d)
    dut.bias.value = _pack(_bias(rng, cfg), cfg.mm_acc_bits)
    dut.mode.value = 0
    dut.first.value = 1
    dut.last.value = 1
    dut.valid.value = 1
    t0 = time.perf_counter()
    await ClockCycles(dut.clk, n)
    _bench_record("pe_array_free_run", n, time.perf_counter() - t0)

@cocotb.test()
async def pe_array_interleaved(dut):
    """MM and BA tiles in random order, mode switches with the minimum gaps."""
    from verif.lib.runner import cocotb_config
    cfg = cocotb_config()
    rng = np.random.default_rng(2)
    n_mm, n_ba = random_ops(cfg, 0.25)
    tiles = mm_tiles(rng, cfg, n_mm, directed=False) + ba_tiles(rng, cfg, n_ba, directed=False)
    rng.shuffle(tiles)
    ops, expected = build_program(tiles, cfg, rng)
    assert len({t["mode"] for t in tiles}) == 2
    await _reset(dut)
    await run_program(dut, cfg, ops, expected, rng)


# --------------------------------------------------------------------------------------
# pytest side
# --------------------------------------------------------------------------------------

def _variant(name):
    """The presets plus shapes that exercise other PE <-> group mappings."""
    t = preset("tiny")
    variants = {
        # One row: every probability PE sits in row 0 and also takes the MM bias.
        "tiny_r1": dict(pe_rows=1, pe_cols=32),
        # Groups of 4 PEs in 8-row columns (two groups per column).
        "tiny_r8": dict(pe_rows=8, pe_cols=4),
        # More PEs than a head's BA groups (ba_channels capped at head_dim = 16): 256 of
        # the 512 PEs only do MM.
        "tiny_xl": dict(pe_rows=16, pe_cols=32),
        # Two heads per BA operation: 8 lanes of 1 channel.
        "tiny_h2": dict(ba_heads=2),
        # Two levels, three points.
        "tiny_l2": dict(n_levels=2, n_banks=8, n_points=3, max_shapes=((12, 10), (6, 5)),
                        offset_bound=(1, 2)),
        # One level.
        "tiny_l1": dict(n_levels=1, n_banks=4, n_points=3, max_shapes=((12, 10),),
                        offset_bound=(1,), pe_cols=4),
    }
    if name in variants:
        return t.replace(name=name, **variants[name])
    return preset(name)


@pytest.mark.parametrize("name", ["tiny", "defa", "tiny_r1", "tiny_xl", "tiny_h2",
                                  pytest.param("tiny_r8", marks=pytest.mark.slow),
                                  pytest.param("tiny_l2", marks=pytest.mark.slow),
                                  pytest.param("tiny_l1", marks=pytest.mark.slow)])
def test_pe_array(name):
    from verif.lib.runner import run_cocotb
    from defa_hw.rtl.pe_array import PEArray
    cfg = _variant(name)
    run_cocotb(component=PEArray(cfg), toplevel="pe_array", test_module="test_pe_array",
               build_name=f"pe_array_{name}", cfg=cfg)


@pytest.mark.parametrize("name", ["tiny", "tiny_r1", "tiny_xl", "tiny_h2",
                                  pytest.param("defa", marks=pytest.mark.slow)])
def test_pe_array_structure(name, tmp_path):
    """Every multiplier is a PE multiplier, and the adders are exactly the PE
    accumulators, 7 per BA group (3-mult/7-add bilinear form) and the read-out trees."""
    from defa_hw.flow.generate import to_verilog
    from defa_hw.rtl.pe_array import PEArray
    from test_bilinear import HIDDEN_ARITH, yosys_cells
    cfg = _variant(name)
    cells = yosys_cells(to_verilog(PEArray(cfg), name="pe_array"), "pe_array", tmp_path)
    n_pe = cfg.pe_rows * cfg.pe_cols
    groups = cfg.ba_channels * cfg.ba_lanes
    assert cells.get("$mul", 0) == n_pe
    assert cells.get("$sub", 0) == 4 * groups
    assert cells.get("$add", 0) == n_pe + 3 * groups + cfg.pe_cols * (cfg.pe_rows - 1)
    for hidden in HIDDEN_ARITH:
        assert cells.get(hidden, 0) == 0, f"unexpected {hidden} cells: {cells}"

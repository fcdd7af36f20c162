"""cocotb testbench: SamplingAddress vs golden.sampling_address, bit for bit.

One point per clock with random bubbles; a checker pops the golden result of every
point at exactly ``LATENCY`` cycles after it was driven and compares every field.
Random points (full INT12 offsets so that clamping happens, reference points in
[0, 1) including 0 and the largest code) over several random runtime shapes, plus
directed points: exact pixel centres, every out-of-map neighbour pattern on every
side, row-window wrap edges and offsets at, inside and beyond the clamp bound.
"""

import os
import random
from collections import deque

import cocotb
import numpy as np
import pytest
from cocotb.triggers import FallingEdge

from defa_hw.rtl.levels import shapes_layout
from defa_hw.rtl.sampling_address import SamplingAddress, address_layout, point_layout
from golden.quant import round_shift
from golden.sampling_address import sampling_address
from verif.configs import config_by_name as _config
from verif.lib.clock import clock_and_reset
from verif.lib.runner import cocotb_config, run_cocotb

FIELDS = ("x0", "y0", "t0", "t1", "t01", "clamped")
LANES = ("inb", "bank", "addr")


# -- stimulus -----------------------------------------------------------------------------------

def random_shapes(cfg, rng):
    return [(rng.randint(1, h), rng.randint(1, w)) for h, w in cfg.max_shapes]


def random_points(cfg, rng, n):
    """``n`` random points: (ref (n, 2), offset (n, 2), level (n,))."""
    rmax = (1 << cfg.ref_frac_bits) - 1
    lo, hi = cfg.data_min, cfg.data_max
    level = np.array([rng.randrange(cfg.n_levels) for _ in range(n)])
    ref = np.empty((n, 2), dtype=np.int64)
    off = np.empty((n, 2), dtype=np.int64)
    for i in range(n):
        bound = cfg.offset_bound[level[i]] << cfg.coord_frac_bits
        for c in range(2):
            r = rng.random()
            ref[i, c] = 0 if r < 0.05 else rmax if r < 0.1 else rng.randint(0, rmax)
            r = rng.random()
            if r < 0.45:                                   # whole INT12 range: clamps often
                off[i, c] = rng.randint(lo, hi)
            elif r < 0.9:                                  # inside the bound
                off[i, c] = rng.randint(-bound, bound)
            else:                                          # at / next to the bound, extremes
                off[i, c] = rng.choice([bound, -bound, bound + 1, -bound - 1, bound - 1,
                                        1 - bound, lo, hi, 0])
    return ref, off, level


def point_at(cfg, shape, level, xt, yt):
    """A (ref, offset) pair whose coordinate is the Q.F target ``(xt, yt)`` when the
    bound allows (else the nearest the clamp lets through; golden has the last word)."""
    F, R = cfg.coord_frac_bits, cfg.ref_frac_bits
    H, W = shape
    half = 1 << (F - 1)
    bound = cfg.offset_bound[level] << F
    ref, off = [], []
    for t, size in ((xt, W), (yt, H)):
        code = int(np.clip(round((t + half) * 2.0 ** (R - F) / size), 0, (1 << R) - 1))
        base = int(round_shift(code * size, R - F)) - half
        ref.append(code)
        off.append(int(np.clip(t - base, -bound, bound)))
    return ref, off


def directed_points(cfg, shape_sets, rng):
    """Directed points per shape set: list of (shapes, ref, off, level)."""
    F = cfg.coord_frac_bits
    one = 1 << F
    out = []
    for shapes in shape_sets:
        ref, off, lev = [], [], []

        def add(level, xt, yt):
            r, o = point_at(cfg, shapes[level], level, xt, yt)
            ref.append(r), off.append(o), lev.append(level)

        for l, (H, W) in enumerate(shapes):
            B = cfg.offset_bound[l]
            # Exact pixel centres (t0 = t1 = 0) over the whole map, sparsely.
            for y in sorted({0, H // 2, H - 1}):
                for x in sorted({0, W // 2, W - 1}):
                    add(l, x * one, y * one)
            # Every column/row case: both out (left / above), only the second in, both
            # in, only the first in, both out (right / below); with random fractions.
            xs = sorted({-B - 1, -2, -1, 0, W // 2, W - 2, W - 1, W, W + B - 1})
            ys = sorted({-B - 1, -2, -1, 0, H // 2, H - 2, H - 1, H, H + B - 1})
            for y0 in ys:
                for x0 in xs:
                    add(l, x0 * one + rng.randrange(one), y0 * one + rng.randrange(one))
            # Row-window edges: rows just before / at every multiple of buffer_rows, and
            # row pairs straddling it.
            rows = cfg.buffer_rows(l)
            for k in range(1, H // rows + 1):
                for y0 in (k * rows - 2, k * rows - 1, k * rows, k * rows + 1):
                    if y0 < H:
                        add(l, rng.randrange(W * one), y0 * one + rng.randrange(one))
            # Offsets at, just inside and just beyond the bound, and the code extremes.
            bound = B << F
            for ox in (bound, -bound, bound - 1, -bound + 1, bound + 1, -bound - 1,
                       cfg.data_min, cfg.data_max):
                for oy in (0, ox, min(-ox, cfg.data_max)):
                    ref.append([rng.randrange(1 << cfg.ref_frac_bits) for _ in range(2)])
                    off.append([ox, oy])
                    lev.append(l)
                    ref.append([rng.randrange(1 << cfg.ref_frac_bits) for _ in range(2)])
                    off.append([oy, ox])
                    lev.append(l)
        out.append((shapes, np.array(ref), np.array(off), np.array(lev)))
    return out


# -- driver / checker -------------------------------------------------------------------------

def pack_point(layout, ref, off, level):
    return layout.const({"ref_x": int(ref[0]), "ref_y": int(ref[1]), "off_x": int(off[0]),
                         "off_y": int(off[1]), "level": int(level)}).as_bits()


def pack_shapes(cfg, shapes):
    return shapes_layout(cfg).const([{"h": h, "w": w} for h, w in shapes]).as_bits()


async def start(dut):
    dut.in_point.value = 0
    await clock_and_reset(dut, low=("in_valid",))


async def run_points(dut, cfg, shapes, ref, off, level, rng, bubble=0.1):
    """Drive the points one per cycle (random bubbles); check every result bit for bit.

    Returns the golden results (for coverage checks by the caller).
    """
    gold = sampling_address(ref, off, level, np.array(shapes), cfg)
    in_layout, out_layout = point_layout(cfg), address_layout(cfg)
    lat = SamplingAddress.LATENCY
    dut.shapes.value = pack_shapes(cfg, shapes)
    pending = deque()                      # (cycle driven, point index)
    cycle, i, n, checked = 0, 0, len(level), 0
    while i < n or pending:
        await FallingEdge(dut.clk)
        # Outputs visible now were driven `lat` falling edges ago.
        valid = int(dut.out_valid.value)
        expect = pending[0][1] if pending and pending[0][0] + lat == cycle else None
        assert valid == (expect is not None), (
            f"cycle {cycle}: out_valid={valid}, expected {expect is not None}")
        if expect is not None:
            pending.popleft()
            got = out_layout.from_bits(dut.out_addr.value.to_unsigned())
            j = expect
            for f in FIELDS:
                want = int(gold[f][j])
                assert int(getattr(got, f)) == want, (
                    f"point {j} {f}: rtl {int(getattr(got, f))} != golden {want} (ref "
                    f"{ref[j].tolist()} off {off[j].tolist()} level {level[j]} shapes {shapes})")
            for f in LANES:
                rtl = [int(v) for v in getattr(got, f)]
                want = [int(v) for v in gold[f][j]]
                assert rtl == want, (
                    f"point {j} {f}: rtl {rtl} != golden {want} (ref {ref[j].tolist()} off "
                    f"{off[j].tolist()} level {level[j]} shapes {shapes})")
            checked += 1
        # Next input (or a bubble carrying junk that must not come out valid).
        if i < n and rng.random() >= bubble:
            dut.in_point.value = pack_point(in_layout, ref[i], off[i], level[i])
            dut.in_valid.value = 1
            pending.append((cycle, i))
            i += 1
        else:
            dut.in_point.value = rng.getrandbits(in_layout.size)
            dut.in_valid.value = 0
        cycle += 1
    assert checked == n
    return gold


def _rng():
    return random.Random(int(os.environ.get("SEED", "1")))


@cocotb.test()
async def random_points_test(dut):
    """Random points over several random runtime shapes (max and 1x1 included)."""
    cfg = cocotb_config()
    rng = _rng()
    await start(dut)
    n = int(os.environ.get("SA_POINTS", "10000"))
    shape_sets = [list(cfg.max_shapes), [(1, 1)] * cfg.n_levels]
    shape_sets += [random_shapes(cfg, rng) for _ in range(4)]
    per = -(-n // len(shape_sets))
    clamped = total = 0
    for shapes in shape_sets:
        ref, off, level = random_points(cfg, rng, per)
        gold = await run_points(dut, cfg, shapes, ref, off, level, rng)
        clamped += int(gold["clamped"].sum())
        total += per
    dut._log.info(f"{total} random points bit-exact, {clamped} clamped")
    assert total >= n and 0 < clamped < total


@cocotb.test()
async def directed_points_test(dut):
    """Pixel centres, out-of-map neighbours on every side, window edges, clamp bounds."""
    cfg = cocotb_config()
    rng = _rng()
    await start(dut)
    shape_sets = [list(cfg.max_shapes), [(1, 1)] * cfg.n_levels,
                  [(max(1, h // 2), max(1, w - 1)) for h, w in cfg.max_shapes]]
    patterns, wraps, centres, clamp_exact = set(), set(), 0, 0
    total = 0
    for shapes, ref, off, level in directed_points(cfg, shape_sets, rng):
        gold = await run_points(dut, cfg, shapes, ref, off, level, rng, bubble=0.0)
        total += len(level)
        # Coverage: which neighbour patterns, window wraps, exact centres and exact-bound
        # offsets the directed set really produced (computed by golden, not assumed).
        patterns |= {tuple(bool(b) for b in row) for row in gold["inb"]}
        for j in range(len(level)):
            pairs = cfg.buffer_rows(level[j]) // 2
            if any(((gold["ny"][j] >> 1) >= pairs) & gold["inb"][j]):
                wraps.add(int(level[j]))
        centres += int(np.sum((gold["t0"] == 0) & (gold["t1"] == 0) & gold["inb"][:, 0]))
        bound = np.array(cfg.offset_bound)[level] << cfg.coord_frac_bits
        clamp_exact += int(np.sum((np.abs(off[:, 0]) == bound) & ~gold["clamped"]))
    windowed = {l for l in range(cfg.n_levels) if cfg.buffer_rows(l) < cfg.max_shapes[l][0]}
    dut._log.info(f"{total} directed points bit-exact; {len(patterns)} neighbour patterns, "
                  f"window wraps on levels {sorted(wraps)}, {centres} exact centres")
    assert len(patterns) == 10, f"neighbour patterns covered: {sorted(patterns)}"
    assert wraps >= windowed, f"row-window wrap not reached on levels {windowed - wraps}"
    assert centres > 0 and clamp_exact > 0


# -- pytest entry ------------------------------------------------------------------------------

def _run(name, **env):
    cfg = _config(name)
    run_cocotb(component=SamplingAddress(cfg), toplevel="sampling_address",
               test_module="test_sampling_address",
               build_name=f"sampling_address_{name}" + ("_long" if env else ""),
               cfg=cfg, env=env)


@pytest.mark.parametrize("name", ["tiny", "defa", "odd"])
def test_sampling_address(name):
    _run(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny", "defa"])
def test_sampling_address_long(name):
    _run(name, SA_POINTS=200_000, SEED=7)

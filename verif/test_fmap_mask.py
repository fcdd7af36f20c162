"""cocotb testbench of the FWP fmap-mask generator against golden.fmap_mask.

Driver: bundles of one point per level (kept flag, probability, 4 neighbours with
in-bounds flags, as the sampling-address unit produces them) with random valid gaps,
then a ``finish`` carrying the runtime shapes.  Monitor: the mask-bit stream with
random ready back-pressure.  Checker: ``golden.fmap_mask.fmap_counts``/``fmap_mask``
over pixel indices ``level_start[l] + y * W + x`` (``golden.model.level_start``),
compared bit for bit, plus the masked-pixel count.
"""

import os
import random

import numpy as np
import pytest

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from golden.fmap_mask import fmap_counts, fmap_mask
from golden.model import level_start
from defa_hw.rtl.fmap_mask import FmapMaskGenerator, bundle_layout
from defa_hw.rtl.levels import shapes_layout

try:
    from verif.lib.runner import cocotb_config, run_cocotb
except ImportError:  # inside the simulator, verif/ itself is on the path
    from verif.lib.runner import cocotb_config, run_cocotb


# ---- stimulus ---------------------------------------------------------------------------

def random_bundles(cfg, shapes, rng, n, *, mode="spread", keep_prob=0.8):
    """``n`` beats of one point per level: dict arrays keep/prob (n, L), ny/nx/inb (n, L, 4).

    ``spread``: top-left neighbour anywhere the clamped offsets can reach (including
    partly and fully out-of-map windows).  ``hot``: windows inside a 3x3 pixel area, so
    pixel (1, 1) is hit by every beat (back to back, so forwarded) and saturates.  ``corner``: the far corner
    of each level (largest word addresses).
    """
    L = cfg.n_levels
    top = (1 << cfg.prob_bits) - 1
    keep = np.zeros((n, L), dtype=bool)
    prob = np.zeros((n, L), dtype=np.int64)
    y0 = np.zeros((n, L), dtype=np.int64)
    x0 = np.zeros((n, L), dtype=np.int64)
    for i in range(n):
        for l, (h, w) in enumerate(shapes):
            b = cfg.offset_bound[l]
            keep[i, l] = rng.random() < keep_prob
            prob[i, l] = rng.choice([0, top, rng.randrange(top + 1), rng.randrange(256)])
            if mode == "hot":
                y0[i, l], x0[i, l] = rng.randrange(0, 2), rng.randrange(0, 2)
            elif mode == "corner":
                y0[i, l], x0[i, l] = rng.randrange(h - 2, h), rng.randrange(w - 2, w)
            else:
                y0[i, l], x0[i, l] = rng.randrange(-b - 1, h + b), rng.randrange(-b - 1, w + b)
    ny = np.stack([y0, y0, y0 + 1, y0 + 1], axis=-1)
    nx = np.stack([x0, x0 + 1, x0, x0 + 1], axis=-1)
    H = np.array([s[0] for s in shapes])[None, :, None]
    W = np.array([s[1] for s in shapes])[None, :, None]
    inb = (ny >= 0) & (ny < H) & (nx >= 0) & (nx < W)
    return {"keep": keep, "prob": prob, "ny": ny, "nx": nx, "inb": inb}


def concat(*parts):
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def encode_bundles(cfg, b):
    layout = bundle_layout(cfg)
    out = []
    for i in range(len(b["keep"])):
        pts = [{"keep": int(b["keep"][i, l]), "prob": int(b["prob"][i, l]),
                "nb": [{"y": int(b["ny"][i, l, k]), "x": int(b["nx"][i, l, k]),
                        "inb": int(b["inb"][i, l, k])} for k in range(4)]}
               for l in range(cfg.n_levels)]
        out.append(layout.const(pts).as_value().value)
    return out


def golden_mask(cfg, shapes, b, threshold, enable):
    """Expected next-block mask (S,) from the golden counters."""
    shapes = np.asarray(shapes, dtype=np.int64)
    S = int((shapes[:, 0] * shapes[:, 1]).sum())
    W = shapes[:, 1][None, :, None]
    pixel = level_start(shapes)[None, :, None] + b["ny"] * W + b["nx"]
    pixel = np.where(b["inb"], pixel, 0)
    gcfg = cfg.replace(fwp_threshold=threshold)
    counts = fmap_counts(pixel, b["inb"], b["prob"], b["keep"], S, gcfg)
    return counts, fmap_mask(counts, gcfg, enabled=enable)


# ---- testbench components ---------------------------------------------------------------

async def reset(dut, cfg):
    dut.rst.value = 1
    dut.points__valid.value = 0
    dut.points__payload.value = 0
    dut.finish__valid.value = 0
    dut.finish__payload.value = 0
    dut.mask__ready.value = 0
    dut.enable.value = 1
    dut.threshold.value = 0
    dut.threshold_we.value = 0
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await wait_idle(dut, 10 * cfg.max_pixels)


async def wait_idle(dut, limit):
    for _ in range(limit):
        await RisingEdge(dut.clk)
        await ReadOnly()
        if dut.busy.value == 0:
            await RisingEdge(dut.clk)
            return
    raise AssertionError("generator stayed busy")


async def drive(dut, beats, shapes_word, rng, valid_prob, finish_with_last):
    """Offer every beat, then the finish command; returns cycles spent on the beats."""
    cycles, i = 0, 0
    while i < len(beats):
        await RisingEdge(dut.clk)
        cycles += 1
        valid = rng.random() < valid_prob
        dut.points__valid.value = int(valid)
        dut.points__payload.value = beats[i] if valid else 0
        with_finish = finish_with_last and valid and i == len(beats) - 1
        dut.finish__valid.value = int(with_finish)
        dut.finish__payload.value = shapes_word
        await ReadOnly()
        if valid and dut.points__ready.value == 1:
            i += 1
            if with_finish:
                assert dut.finish__ready.value == 1
                await RisingEdge(dut.clk)
                dut.points__valid.value = 0
                dut.finish__valid.value = 0
                return cycles
    await RisingEdge(dut.clk)
    dut.points__valid.value = 0
    await ClockCycles(dut.clk, rng.randrange(1, 4))
    dut.finish__valid.value = 1
    dut.finish__payload.value = shapes_word
    while True:
        await ReadOnly()
        accepted = dut.finish__ready.value == 1
        await RisingEdge(dut.clk)
        if accepted:
            break
    dut.finish__valid.value = 0
    return cycles


async def collect_mask(dut, rng, ready_prob, limit):
    """Mask bits up to and including the beat flagged ``last``; returns (bits, cycles)."""
    bits, cycles = [], 0
    while cycles < limit:
        await RisingEdge(dut.clk)
        cycles += 1
        r = rng.random() < ready_prob
        dut.mask__ready.value = int(r)
        await ReadOnly()
        if r and dut.mask__valid.value == 1:
            word = dut.mask__payload.value.to_unsigned()
            bits.append(word & 1)
            if word >> 1 & 1:
                await RisingEdge(dut.clk)
                dut.mask__ready.value = 0
                return bits, cycles
    raise AssertionError(f"no last mask beat after {limit} cycles ({len(bits)} beats)")


async def write_threshold(dut, code):
    await RisingEdge(dut.clk)
    dut.threshold.value = code
    dut.threshold_we.value = 1
    await RisingEdge(dut.clk)
    dut.threshold_we.value = 0


async def run_block(dut, cfg, rng, shapes, bundles, *, threshold, enable, valid_prob=0.8,
                    ready_prob=0.7, finish_with_last=False, saturating=False):
    """One block: count the bundles, finish, and check the streamed mask against golden."""
    n = len(bundles["keep"])
    S = sum(h * w for h, w in shapes)
    dut._log.info(f"block: shapes={shapes} beats={n} threshold={threshold} "
                  f"enable={enable} valid={valid_prob} ready={ready_prob}")
    await write_threshold(dut, threshold)
    dut.enable.value = int(enable)
    counts, expected = golden_mask(cfg, shapes, bundles, threshold, enable)
    shapes_word = shapes_layout(cfg).const(
        [{"h": h, "w": w} for h, w in shapes]).as_value().value
    mon = cocotb.start_soon(collect_mask(dut, rng, ready_prob, 20 * S + 1000))
    cycles = await drive(dut, encode_bundles(cfg, bundles), shapes_word, rng, valid_prob,
                         finish_with_last)
    got, sweep_cycles = await mon
    got = np.array(got, dtype=bool)
    assert len(got) == S, f"{len(got)} mask beats for {S} pixels"
    bad = np.flatnonzero(got != expected)
    assert bad.size == 0, (f"{bad.size} mask bits differ, first at pixel {bad[0]} "
                           f"(count {counts[bad[0]]}, threshold {threshold})")
    await wait_idle(dut, 100)
    await ReadOnly()
    masked = dut.pixels_masked.value.to_unsigned()
    assert masked == int(expected.sum()), f"pixels_masked {masked} != {int(expected.sum())}"
    await RisingEdge(dut.clk)
    sat = int((counts == (1 << cfg.fwp_counter_bits) - 1).sum())
    assert sat > 0 or not saturating, "stimulus meant to saturate counters did not"
    dut._log.info(f"  ok: {int(expected.sum())}/{S} masked, {sat} saturated counters, "
                  f"{cycles} cycles for {n} beats")
    return cycles, sweep_cycles


def _start(dut):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    return cocotb_config(), random.Random(int(os.environ.get("SEED", "1")))


def _shape_sets(cfg):
    """Runtime shapes to test: the full map for the small preset, small maps otherwise."""
    full = [tuple(s) for s in cfg.max_shapes]
    if cfg.max_pixels <= 1000:
        small = [(max(1, h - 3), max(1, w - 1 - l)) for l, (h, w) in enumerate(full)]
        return full, small
    return [(9, 13), (5, 7), (3, 4), (2, 3)], [(6, 20), (4, 3), (2, 5), (1, 1)]


# ---- cocotb tests -----------------------------------------------------------------------

@cocotb.test()
async def fm_blocks(dut):
    """Consecutive blocks: spread and hot points, thresholds, enable, runtime shapes."""
    cfg, rng = _start(dut)
    await reset(dut, cfg)
    cmax = (1 << cfg.fwp_counter_bits) - 1
    a, b = _shape_sets(cfg)

    # 1. config threshold, spread points incl. out-of-map windows.
    await run_block(dut, cfg, rng, a, random_bundles(cfg, a, rng, 120),
                    threshold=cfg.fwp_threshold, enable=True)
    # 2. repeated hits on the same counters (forwarding) until they saturate; maximum
    #    threshold masks every pixel except the saturated ones.
    hot = concat(random_bundles(cfg, a, rng, 200, mode="hot", keep_prob=0.95),
                 random_bundles(cfg, a, rng, 30))
    await run_block(dut, cfg, rng, a, hot, threshold=cmax, enable=True, valid_prob=1.0,
                    ready_prob=0.5, saturating=True)
    # 3. the same hot block again with gaps (counters must have been cleared).
    await run_block(dut, cfg, rng, a, hot, threshold=cmax, enable=True, valid_prob=0.6,
                    ready_prob=0.9, finish_with_last=True, saturating=True)
    # 4. threshold 0 masks nothing.
    await run_block(dut, cfg, rng, b, random_bundles(cfg, b, rng, 60), threshold=0,
                    enable=True)
    # 5. smaller runtime shapes, random threshold; finish in the cycle of the last beat.
    await run_block(dut, cfg, rng, b, random_bundles(cfg, b, rng, 80),
                    threshold=rng.randrange(1, 12), enable=True, finish_with_last=True)
    # 6. enable off: all zeros whatever the counts.
    await run_block(dut, cfg, rng, a, random_bundles(cfg, a, rng, 60), threshold=cmax,
                    enable=False)
    # 7. an empty block: every pixel has count 0.
    await run_block(dut, cfg, rng, b, random_bundles(cfg, b, rng, 5, keep_prob=0.0),
                    threshold=1, enable=True)
    # 7b. a single beat finished in the same cycle: its updates are still in the pipeline
    #     when finish is accepted and must land before the sweep reads them.
    await run_block(dut, cfg, rng, b, random_bundles(cfg, b, rng, 1, mode="hot", keep_prob=1.0),
                    threshold=1, enable=True, valid_prob=1.0, finish_with_last=True)
    # 8. back to the first shapes: nothing of blocks 4-7 may remain.
    await run_block(dut, cfg, rng, a, random_bundles(cfg, a, rng, 100),
                    threshold=3, enable=True, valid_prob=0.9, ready_prob=0.4)


@cocotb.test()
async def fm_throughput(dut):
    """No stalls: one bundle per cycle in, one mask bit per cycle out."""
    cfg, rng = _start(dut)
    await reset(dut, cfg)
    a, _ = _shape_sets(cfg)
    n = 64
    cycles, sweep = await run_block(dut, cfg, rng, a, random_bundles(cfg, a, rng, n, mode="hot"),
                                    threshold=cfg.fwp_threshold, enable=True, valid_prob=1.0,
                                    ready_prob=1.0)
    S = sum(h * w for h, w in a)
    dut._log.info(f"throughput: {n} bundles in {cycles} cycles; sweep of {S} pixels "
                  f"finished {sweep} cycles after the first beat")
    assert cycles == n
    assert sweep <= n + S + 10


@cocotb.test()
async def fm_full_map(dut):
    """The largest runtime shapes, points at the far corners (largest word addresses)."""
    cfg, rng = _start(dut)
    await reset(dut, cfg)
    full = [tuple(s) for s in cfg.max_shapes]
    pts = concat(random_bundles(cfg, full, rng, 60, mode="corner"),
                 random_bundles(cfg, full, rng, 60))
    await run_block(dut, cfg, rng, full, pts, threshold=5, enable=True, valid_prob=0.9,
                    ready_prob=1.0)
    await run_block(dut, cfg, rng, full, random_bundles(cfg, full, rng, 40, mode="corner"),
                    threshold=2, enable=True, valid_prob=1.0, ready_prob=1.0)


# ---- pytest entry -----------------------------------------------------------------------

@pytest.mark.parametrize("preset_name", ["tiny", "defa"])
def test_fmap_mask(preset_name):
    from defa_hw.config import preset
    cfg = preset(preset_name)
    run_cocotb(component=FmapMaskGenerator(cfg), toplevel="fmap_mask",
               test_module="test_fmap_mask", build_name=f"fmap_mask_{preset_name}", cfg=cfg)


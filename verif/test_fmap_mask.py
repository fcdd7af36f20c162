"""cocotb testbench of the FWP fmap-mask generator against golden.fmap_mask.

Sources (``verif.lib.stream``): bundles of one point per level (kept flag, probability,
4 neighbours with in-bounds flags, as the sampling-address unit produces them) with
random valid gaps, then a ``finish`` carrying the runtime shapes.  Sink: the mask-bit
stream with random ready back-pressure.  Checker: ``golden.fmap_mask.fmap_counts``/``fmap_mask``
over pixel indices ``level_start[l] + y * W + x`` (``golden.model.level_start``),
compared bit for bit, plus the masked-pixel count.
"""

import os
import random

import numpy as np
import pytest

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from golden.fmap_mask import fmap_counts, fmap_mask
from golden.model import level_start
from defa_hw.rtl.fmap_mask import FmapMaskGenerator, bundle_layout
from defa_hw.rtl.levels import shapes_layout

from verif.lib.clock import reset as reset_dut
from verif.lib.clock import start_clock, wait_until
from verif.lib.runner import cocotb_config, run_cocotb
from verif.lib.stream import StreamSink, StreamSource, random_pause, run_agents


# ---- stimulus ---------------------------------------------------------------------------

def random_bundles(cfg, shapes, rng, n, *, mode="spread", keep_prob=0.8):
    """``n`` beats of one point per BA lane (lane ``j * L + l`` on level l): dict arrays
    keep/prob (n, lanes), ny/nx/inb (n, lanes, 4).

    ``spread``: top-left neighbour anywhere the clamped offsets can reach (including
    partly and fully out-of-map windows).  ``hot``: windows inside a 3x3 pixel area, so
    pixel (1, 1) is hit by every beat (back to back, so forwarded) and saturates.  ``corner``: the far corner
    of each level (largest word addresses).
    """
    L, NL = cfg.n_levels, cfg.ba_lanes
    top = (1 << cfg.prob_bits) - 1
    keep = np.zeros((n, NL), dtype=bool)
    prob = np.zeros((n, NL), dtype=np.int64)
    y0 = np.zeros((n, NL), dtype=np.int64)
    x0 = np.zeros((n, NL), dtype=np.int64)
    for i in range(n):
        for ln in range(NL):
            l = ln % L
            h, w = shapes[l]
            b = cfg.offset_bound[l]
            keep[i, ln] = rng.random() < keep_prob
            prob[i, ln] = rng.choice([0, top, rng.randrange(top + 1), rng.randrange(256)])
            if mode == "hot":
                y0[i, ln], x0[i, ln] = rng.randrange(0, 2), rng.randrange(0, 2)
            elif mode == "corner":
                y0[i, ln], x0[i, ln] = rng.randrange(h - 2, h), rng.randrange(w - 2, w)
            else:
                y0[i, ln], x0[i, ln] = (rng.randrange(-b - 1, h + b),
                                        rng.randrange(-b - 1, w + b))
    ny = np.stack([y0, y0, y0 + 1, y0 + 1], axis=-1)
    nx = np.stack([x0, x0 + 1, x0, x0 + 1], axis=-1)
    lv = np.arange(NL) % L
    H = np.array([s[0] for s in shapes])[lv][None, :, None]
    W = np.array([s[1] for s in shapes])[lv][None, :, None]
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
               for l in range(cfg.ba_lanes)]
        out.append(layout.const(pts).as_value().value)
    return out


def golden_mask(cfg, shapes, b, threshold, enable):
    """Expected next-block mask (S,) from the golden counters."""
    shapes = np.asarray(shapes, dtype=np.int64)
    S = int((shapes[:, 0] * shapes[:, 1]).sum())
    lv = np.arange(cfg.ba_lanes) % cfg.n_levels
    W = shapes[:, 1][lv][None, :, None]
    pixel = level_start(shapes)[lv][None, :, None] + b["ny"] * W + b["nx"]
    pixel = np.where(b["inb"], pixel, 0)
    gcfg = cfg.replace(fwp_threshold=threshold)
    counts = fmap_counts(pixel, b["inb"], b["prob"], b["keep"], S, gcfg)
    return counts, fmap_mask(counts, gcfg, enabled=enable)


# ---- testbench components ---------------------------------------------------------------

async def reset(dut, cfg):
    dut.points__payload.value = 0
    dut.finish__payload.value = 0
    dut.enable.value = 1
    dut.threshold.value = 0
    dut.threshold_we.value = 0
    await reset_dut(dut, low=("points__valid", "finish__valid", "mask__ready"))
    await wait_idle(dut, 10 * cfg.max_pixels)


async def wait_idle(dut, limit):
    await wait_until(dut.clk, lambda: dut.busy.value == 0, limit=limit,
                     what="fmap mask generator idle")
    await RisingEdge(dut.clk)


def finish_pause(points, rng, with_last):
    """Pause generator of the finish stream: shown with the last points beat
    (``with_last``), else 1 to 3 cycles after every points beat was taken."""
    gap = rng.randrange(1, 4)
    while True:
        if with_last:
            yield points.showing != len(points.beats) - 1
        elif points.done and gap == 0:
            yield False
        else:
            gap -= points.done
            yield True


async def drive_and_collect(dut, beats, shapes_word, rng, *, valid_prob, ready_prob,
                            finish_with_last, limit):
    """Offer every beat, then the finish command, and take mask bits up to the beat
    flagged ``last``; returns (bits, cycle of the last beat, cycle of the last mask bit)."""
    points = StreamSource(dut, "points", pause=random_pause(1.0 - valid_prob, rng=rng))
    points.send(beats)
    finish = StreamSource(dut, "finish", pause=finish_pause(points, rng, finish_with_last))
    finish.send([shapes_word])
    bits, last = [], []

    def on_mask(word):                 # bit 0: the pixel's mask bit, bit 1: last
        bits.append(word & 1)
        last.append(word >> 1 & 1)

    mask = StreamSink(dut, "mask", pause=random_pause(1.0 - ready_prob, rng=rng),
                      on_beat=on_mask)
    agents = [points, finish, mask]
    await run_agents(dut.clk, agents, limit=limit, what=f"mask of {len(beats)} beats",
                     until=lambda: finish.done and last and last[-1])
    await RisingEdge(dut.clk)
    for a in agents:
        a.idle()
    if finish_with_last:
        assert finish.accepted_at == points.accepted_at[-1:], \
            "finish was not taken with the last beat"
    return bits, points.accepted_at[-1], mask.accepted_at[-1]


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
    got, cycles, sweep_cycles = await drive_and_collect(
        dut, encode_bundles(cfg, bundles), shapes_word, rng, valid_prob=valid_prob,
        ready_prob=ready_prob, finish_with_last=finish_with_last, limit=20 * S + 20 * n + 1000)
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
    start_clock(dut)
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

@pytest.mark.parametrize("preset_name", ["tiny", "defa", "tiny_h2"])
def test_fmap_mask(preset_name):
    """``tiny_h2``: two heads per BA operation, so two points per level per beat and two
    counter copies that the sweep adds."""
    from defa_hw.config import preset
    cfg = (preset("tiny").replace(name=preset_name, ba_heads=2) if preset_name == "tiny_h2"
           else preset(preset_name))
    run_cocotb(component=FmapMaskGenerator(cfg), toplevel="fmap_mask",
               test_module="test_fmap_mask", build_name=f"fmap_mask_{preset_name}", cfg=cfg)


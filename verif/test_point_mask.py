"""cocotb testbench of the PAP point-mask block against golden.point_mask.

Driver: probability codes with random valid gaps.  Monitors: the compacted point
stream and the mask-word stream, each with random ready back-pressure.  Checker:
the expected streams and counters are built from ``golden.point_mask.point_mask``
and compared as integer codes.
"""

import os
import random

import numpy as np
import pytest

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge
from amaranth.lib import data

from golden.point_mask import point_mask
from defa_hw.rtl.point_mask import PointMask, count_bits_for, mask_layout, survivor_layout

from verif.lib.clock import reset as reset_dut
from verif.lib.clock import start_clock
from verif.lib.runner import cocotb_config, run_cocotb
from verif.lib.stream import StreamSink, StreamSource, random_pause, run_agents


# ---- testbench components ---------------------------------------------------------------

async def reset(dut):
    dut.prob__payload.value = 0
    dut.enable.value = 1
    dut.threshold.value = 0
    dut.threshold_we.value = 0
    dut.stat_clear.value = 0
    await reset_dut(dut, low=("prob__valid", "point__ready", "mask__ready"))
    await RisingEdge(dut.clk)


async def write_threshold(dut, code):
    await RisingEdge(dut.clk)
    dut.threshold.value = code
    dut.threshold_we.value = 1
    dut.stat_clear.value = 1
    await RisingEdge(dut.clk)
    dut.threshold_we.value = 0
    dut.stat_clear.value = 0


def golden_cfg(cfg, code):
    """``cfg`` whose ``pap_threshold_code`` is ``code`` (0 .. 2**prob_bits)."""
    full = 1 << cfg.prob_bits
    thr = code / full if code < full else (code - 0.25) / full
    g = cfg.replace(pap_threshold=thr)
    assert g.pap_threshold_code == code
    return g


def expected_streams(keep, prob):
    """Compacted survivors (prob, index, first, last) and mask words (keep bits, count)."""
    points, masks = [], []
    for k, p in zip(keep, prob):
        idx = np.flatnonzero(k)
        for j, i in enumerate(idx):
            points.append((int(p[i]), int(i), int(j == 0), int(j == len(idx) - 1)))
        masks.append((int(sum(1 << int(i) for i in idx)), len(idx)))
    return points, masks


def random_codes(cfg, rng, n_groups, thr):
    """Mostly near-zero probabilities (as after softmax) plus threshold-edge codes."""
    top = (1 << cfg.prob_bits) - 1
    special = [0, top, thr, thr - 1, thr + 1, 1]
    out = []
    for _ in range(n_groups * cfg.n_lp):
        r = rng.random()
        if r < 0.35:
            c = rng.choice(special)
        elif r < 0.75:
            c = rng.randrange(0, 2 * thr + 2)
        else:
            c = rng.randrange(0, top + 1)
        out.append(min(max(c, 0), top))
    return out


async def run_scenario(dut, cfg, rng, *, code, enable, n_groups, valid_prob, ready_prob,
                       mask_ready_prob=None, codes=None):
    """Drive groups, collect both outputs, compare with the golden model."""
    dut._log.info(f"scenario: threshold={code} enable={enable} groups={n_groups} "
                  f"valid={valid_prob} ready={ready_prob}/{mask_ready_prob}")
    await write_threshold(dut, code)
    dut.enable.value = int(enable)
    if codes is None:
        codes = random_codes(cfg, rng, n_groups, min(code, (1 << cfg.prob_bits) - 1))
    prob = np.array(codes, dtype=np.int64).reshape(-1, cfg.n_lp)
    keep = point_mask(prob, golden_cfg(cfg, code), enabled=enable)
    exp_points, exp_masks = expected_streams(keep, prob)

    if mask_ready_prob is None:
        mask_ready_prob = ready_prob
    src = StreamSource(dut, "prob", pause=random_pause(1.0 - valid_prob, rng=rng))
    src.send(int(c) for c in codes)
    points = StreamSink(dut, "point", pause=random_pause(1.0 - ready_prob, rng=rng))
    masks = StreamSink(dut, "mask", pause=random_pause(1.0 - mask_ready_prob, rng=rng))
    agents = [src, points, masks]
    # At the lowest probabilities above a beat takes ~20 cycles on average.
    await run_agents(dut.clk, agents, limit=100 * len(codes) + 2000, what="point mask",
                     until=lambda: (src.done and masks.count >= len(exp_masks)
                                    and points.count >= len(exp_points)))
    await run_agents(dut.clk, agents, until=None, limit=10)      # nothing extra may follow
    await RisingEdge(dut.clk)
    for a in agents:
        a.idle()
    got_points = [data.Const(survivor_layout(cfg), v) for v in points.beats]
    got_masks = [data.Const(mask_layout(cfg), v) for v in masks.beats]
    cycles = src.accepted_at[-1]

    got_p = [(int(b.prob), int(b.index), int(b.first), int(b.last)) for b in got_points]
    got_m = [(int(b.keep), int(b.count)) for b in got_masks]
    assert got_m == exp_masks, f"mask words differ: first mismatch at " \
        f"{next((i for i, (a, b) in enumerate(zip(got_m, exp_masks)) if a != b), len(got_m))}"
    assert got_p == exp_points, f"surviving points differ ({len(got_p)} vs {len(exp_points)})"

    top = (1 << int(os.environ["PM_COUNT_BITS"])) - 1
    await RisingEdge(dut.clk)
    await ReadOnly()
    n, pruned = keep.size, int((~keep).sum())
    assert dut.points_total.value.to_unsigned() == min(n, top)
    assert dut.points_pruned.value.to_unsigned() == min(pruned, top)
    await RisingEdge(dut.clk)
    return cycles, n


# ---- cocotb tests -----------------------------------------------------------------------

def _start(dut):
    start_clock(dut)
    return cocotb_config(), random.Random(int(os.environ.get("SEED", "1")))


@cocotb.test()
async def pm_thresholds(dut):
    """Config threshold, 0, maximum and random thresholds; enable on/off; random stalls."""
    cfg, rng = _start(dut)
    await reset(dut)
    full = 1 << cfg.prob_bits
    await run_scenario(dut, cfg, rng, code=cfg.pap_threshold_code, enable=True, n_groups=60,
                       valid_prob=0.7, ready_prob=0.6)
    await run_scenario(dut, cfg, rng, code=0, enable=True, n_groups=20,
                       valid_prob=0.8, ready_prob=0.5)
    await run_scenario(dut, cfg, rng, code=full, enable=True, n_groups=20,
                       valid_prob=0.8, ready_prob=0.5)
    await run_scenario(dut, cfg, rng, code=full - 1, enable=True, n_groups=20,
                       valid_prob=0.9, ready_prob=0.3)
    await run_scenario(dut, cfg, rng, code=rng.randrange(1, full), enable=False, n_groups=20,
                       valid_prob=0.9, ready_prob=0.7)
    await run_scenario(dut, cfg, rng, code=1, enable=True, n_groups=30,
                       valid_prob=0.5, ready_prob=0.9)
    # Each stream stalled on its own while the other flows freely.
    await run_scenario(dut, cfg, rng, code=cfg.pap_threshold_code, enable=True, n_groups=30,
                       valid_prob=1.0, ready_prob=1.0, mask_ready_prob=0.05)
    await run_scenario(dut, cfg, rng, code=cfg.pap_threshold_code, enable=True, n_groups=30,
                       valid_prob=1.0, ready_prob=0.1, mask_ready_prob=1.0)


@cocotb.test()
async def pm_group_edges(dut):
    """Directed groups: all kept, none kept, only first/last kept, single survivors."""
    cfg, rng = _start(dut)
    await reset(dut)
    thr, n = cfg.pap_threshold_code, cfg.n_lp
    hi, lo = thr, thr - 1
    groups = [[hi] * n, [lo] * n, [hi] + [lo] * (n - 1), [lo] * (n - 1) + [hi],
              [lo] * n, [hi] * n]
    for i in range(n):
        groups.append([hi if j == i else lo for j in range(n)])
        groups.append([lo if j == i else hi for j in range(n)])
    codes = [c for g in groups for c in g]
    for vp, rp in ((1.0, 1.0), (1.0, 0.3), (0.4, 1.0)):
        await run_scenario(dut, cfg, rng, code=thr, enable=True, n_groups=len(groups),
                           valid_prob=vp, ready_prob=rp, codes=codes)


@cocotb.test()
async def pm_throughput(dut):
    """No stalls: one point per cycle."""
    cfg, rng = _start(dut)
    await reset(dut)
    cycles, n = await run_scenario(dut, cfg, rng, code=cfg.pap_threshold_code, enable=True,
                                   n_groups=40, valid_prob=1.0, ready_prob=1.0)
    dut._log.info(f"throughput: {n} points in {cycles} cycles")
    assert cycles == n, f"{n} points took {cycles} cycles without stalls"


@cocotb.test()
async def pm_counter_saturation(dut):
    """Statistics counters stick at their maximum (only where that is reachable quickly)."""
    cfg, rng = _start(dut)
    bits = int(os.environ["PM_COUNT_BITS"])
    if bits > 13:
        dut._log.info(f"{bits}-bit counters: saturation needs too many points; skipped")
        return
    await reset(dut)
    n_groups = ((1 << bits) + 3 * cfg.n_lp) // cfg.n_lp
    # Maximum threshold: every point pruned, so both counters saturate.
    await run_scenario(dut, cfg, rng, code=1 << cfg.prob_bits, enable=True, n_groups=n_groups,
                       valid_prob=1.0, ready_prob=1.0)


# ---- pytest entry -----------------------------------------------------------------------

@pytest.mark.parametrize("preset_name", ["tiny", "defa"])
def test_point_mask(preset_name):
    from defa_hw.config import preset
    cfg = preset(preset_name)
    count_bits = count_bits_for(cfg)
    run_cocotb(component=PointMask(cfg), toplevel="point_mask", test_module="test_point_mask",
               build_name=f"point_mask_{preset_name}", cfg=cfg,
               env={"PM_COUNT_BITS": count_bits})

"""Cycle model of ``defa_core``: per-phase cycles from the config and the pruning statistics.

The model mirrors the controller in :mod:`defa_hw.rtl.core` phase by phase (see
``docs/performance.md``); its fill and drain cycles are sums of the class constants
that the core's units (:mod:`defa_hw.rtl.core`) and blocks export.  It is checked
against the RTL's cycle counters on every regression workload (``verif/test_core.py``),
and extrapolates to the Deformable DETR encoder layer (:func:`encoder_projection`,
``python -m defa_hw.model.perf``).

Inputs are what pruning decides: the PAP keep mask of every (query, head, point) and
the incoming fmap mask.  The host model is the testbench's: streams always valid and
ready, the first query presented one cycle after START.

``ideal`` is the bound set by the PE array's peak rate in each mode: MACs /
(pe_rows * pe_cols) for the MM phases, and for BA every surviving point's head_dim
channels at 4 PEs each (3 bilinear multipliers + 1 probability MAC) over the whole array
(``kept / n_levels`` operations per slice when ``ba_channels`` uses every PE).
"""

import argparse
import json
from dataclasses import dataclass, field

import numpy as np

from defa_hw.config import preset
from defa_hw.rtl.core import DEFAULT_MAX_QUERIES, CoreGeometry
from defa_hw.rtl.core.attention import AttentionPath
from defa_hw.rtl.core.ba_pipeline import BAPipeline, BASequencer
from defa_hw.rtl.core.controller import Controller, Phase
from defa_hw.rtl.core.offset_gather import OffsetGather
from defa_hw.rtl.core.results import ResultMerger
from defa_hw.rtl.core.value_ingest import ValueIngest
from defa_hw.rtl.core.value_window import ValueWindow
from defa_hw.model.traffic import external_traffic
from defa_hw.rtl.fmap_mask import FmapMaskGenerator
from defa_hw.rtl.softmax import Softmax

__all__ = ["Prediction", "model", "predict", "encoder_projection", "encoder_schedule",
           "layer_projection", "pruning_masks", "PRUNINGS", "PHASE_NAMES",
           "ENCODER_SHAPES", "CLOCK_HZ", "operation_counts"]

#: The controller's busy phases in order (one ``Reg.CYC_*`` counter each).
PHASE_NAMES = tuple(p.name.lower() for p in Phase if p is not Phase.IDLE)

#: Deformable DETR encoder at 800 x 1333 (strides 8, 16, 32, 64).
ENCODER_SHAPES = ((100, 167), (50, 84), (25, 42), (13, 21))
CLOCK_HZ = 400e6

#: The pixel FIFO: a fmap beat is readable by the VALUE issuer two cycles later.
FIFO_LAT = ValueIngest.PIXEL_FIFO_LATENCY


@dataclass
class Prediction:
    cycles: dict                      # phase -> cycles, and "total"
    ideal: dict                       # phase -> ideal cycles, and "total"
    detail: dict = field(default_factory=dict)

    def ratio(self):
        return {k: (self.cycles[k] / self.ideal[k] if self.ideal.get(k) else None)
                for k in self.cycles}


def _head_groups(keep, g):
    """Per query: BA operations ``T = max(1, n_slices * max_(j,l) kept_jl)`` (lane (j, l)
    takes the kept points of level l in the heads ``m mod ba_heads = j``); per (query,
    head): kept points."""
    k = keep.reshape(keep.shape[0], g.M // g.J, g.J, g.L, g.P)   # head m = i * J + j
    per_lane = k.sum(axis=(1, 4))
    T = np.maximum(1, g.n_slices * per_lane.max(axis=(1, 2)))
    return T, keep.reshape(keep.shape[0], g.M, g.L * g.P).sum(axis=2)


def _ba_pass(T, g, *, first_at, misses, d):
    """One pass's BA timeline, from its first BA cycle (VALUE phases included).

    ``T`` the queries' operations; ``first_at`` the first query's earliest start (offsets
    written; after its window load when it misses); ``misses`` {pass query index: (VALUE
    cycles, value-write resume)} for the later queries that miss.  A query starts at the
    latest of: the previous query's end (+ the window check of ``CHECK + 1`` cycles
    from the previous start, or the BA drain, VALUE and the resume after a miss) and its
    partial-sum slot (the level sum has read the query ``SLOTS`` before; the sum reads a
    query's heads, ``ba_heads`` per cycle, from ``SUM`` after its last operation).  Returns
    (last operation, aggregated samples all written (``agg_done``))."""
    M, N = g.M // g.J, BASequencer.SLOTS
    SUM = BAPipeline.sum_delay(g)
    e = s = None
    u = -M
    u_start = []
    for i, t in enumerate(T):
        if i == 0:
            a = first_at
        elif i in misses:
            v, resume = misses[i]
            a = e + 1 + BAPipeline.C8 + 1 + resume + v
        else:
            a = max(e + 1, s + ValueWindow.CHECK + 1)
        if i >= N:
            a = max(a, u_start[i - N] + M)
        s, e = a, a + int(t) - 1
        u = max(e + SUM, u + M)
        u_start.append(u)
    return e, u + M + BAPipeline.SUM_OUT


def _f_steps(kept_heads, g):
    """F's steps over a pass: per step, whether it emits a batch.

    F walks the heads of the pass in order; a step takes the head's remaining kept points,
    as many as the batch has room for, so a head costs one step plus one per batch it
    fills before its end (an empty head one step); a batch is cut at B points or at the
    end of a query.
    """
    steps = []
    B, M = g.B, g.M
    for q in range(kept_heads.shape[0]):
        cnt = 0
        for m in range(M):
            n = int(kept_heads[q, m])
            while True:
                t = min(n, B - cnt)
                n -= t
                cnt += t
                emit = cnt == B or (n == 0 and m == M - 1 and cnt > 0)
                steps.append(emit)
                if emit:
                    cnt = 0
                if n == 0:
                    break
    return steps


def _offset_cycles(kept_heads, g, keep_drain):
    """Cycles of one OFFSET phase: F's steps (from the keep FIFO, one per cycle; a step
    that emits a batch waits until G has taken the previous one), G (``kc`` cycles per
    batch, three staging buffers) and M (``kc`` operations per batch, back to back)."""
    KC = g.kc
    t = keep_drain + OffsetGather.KEEP_READ          # F's first step
    g_start = []                                     # G takes batch n
    m_start = []                                     # M issues op 0 of batch n
    for emit in _f_steps(kept_heads, g):
        if emit:
            if g_start:
                t = max(t, g_start[-1] + 1)
            n = len(g_start)
            s = t + OffsetGather.GATHER_START
            if n:
                s = max(s, g_start[-1] + KC)
            if n >= 3:
                s = max(s, m_start[n - 3] + KC)      # a staging buffer is free again
            g_start.append(s)
            mm = s + KC + OffsetGather.GATHER_QUEUE
            m_start.append(mm if not n else max(mm, m_start[-1] + KC))
        t += 1
    if not m_start:
        return t + KC + OffsetGather.FILL - OffsetGather.KEEP_READ
    return m_start[-1] + KC


def _last_batch_write(keep_pass):
    """Write-back cycles of the pass's last offset batch: one (the whole batch at once),
    none when the pass kept no point."""
    return int(bool(np.asarray(keep_pass).any()))


def _value_cycles(groups, g):
    """Cycles of one VALUE phase: the loads of a window miss (one mask array per
    ``fmap_req``, in order; the first with the VALUE cycle of its first beat).  A load
    is asked for once the previous load's last beat is taken and the host answers on
    the next cycle, so its first beat comes two cycles after that one.  Beats enter a
    2-entry pixel FIFO (whose inner slot must be free even for a masked beat) feeding
    the issuer: t_c * Kc operations per unmasked pixel, the first one 2 cycles after
    its beat.  Returns (cycles, unmasked pixels, slack): ``slack`` = cycles from the
    last pixel's last operation to the end of VALUE, minus one (its value drain overlaps
    them; None when no pixel was projected)."""
    T = g.t_c * g.kc
    c = None                  # cycle the previous beat was accepted
    inner_free_at = 0         # first cycle a beat may be accepted (FIFO inner slot free)
    s = None                  # first-op cycle of the previous unmasked pixel
    n = 0
    for first_at, mask in groups:
        earliest = first_at if c is None else c + 2
        for masked in mask:
            t = max(earliest, inner_free_at)
            earliest = t + 1
            c = t
            if not masked:
                start = t + FIFO_LAT if s is None else max(t + FIFO_LAT, s + T)
                # A pixel that arrives while the previous one still occupies the output
                # register waits in the inner slot until that one starts (+1 to free it).
                inner_free_at = t + 1 if (s is None or start == t + FIFO_LAT) else start + 1
                s = start
                n += 1
    if s is None:
        return (c if c is not None else 0) + 2, 0, None
    end = max(s + T, c + 2)
    return end, n, end - (s + T)


def model(cfg, keep, fmap_mask, shapes, ref, *, max_queries=DEFAULT_MAX_QUERIES,
          prune=True, first_query_delay=2, schedule=None):
    """Per-phase cycles of one block.

    ``keep`` (Lq, M, L*P) PAP keep mask (all True without pruning), ``fmap_mask`` (S,)
    the incoming fmap mask, ``ref`` (Lq, L, 2) the reference codes in run order: they
    decide the value-window loads (:func:`golden.value_window.window_schedule`, or pass
    its ``schedule``).
    """
    from golden.value_window import window_schedule
    g = CoreGeometry(cfg, max_queries)
    keep = np.asarray(keep, dtype=bool).reshape(-1, g.M, g.L * g.P)
    fmap_mask = np.asarray(fmap_mask, dtype=bool)
    Lq = keep.shape[0]
    S = len(fmap_mask)
    KC, T_A, T_C, NS = g.kc, g.t_att, g.t_c, g.n_slices
    cyc = dict.fromkeys(PHASE_NAMES, 0)
    ideal = dict.fromkeys(PHASE_NAMES, 0.0)
    peak = g.R * g.Cc
    C = g.C
    n_pass = -(-Lq // g.mq)
    T_q, kept_heads = _head_groups(keep, g)
    d = _drains(cfg, g)
    X = Controller.EXIT
    if schedule is None:
        schedule = window_schedule(cfg, ref, shapes)
    misses = dict(schedule.misses)
    groups = dict(zip((q for q, _ in schedule.misses), schedule.load_groups(shapes)))
    out_len = 0
    unmasked = 0
    for p in range(n_pass):
        q0, q1 = p * g.mq, min(Lq, (p + 1) * g.mq)
        nq = q1 - q0
        # ATTN: back-to-back tiles; the first query arrives first_query_delay cycles late.
        cyc["attn"] += (first_query_delay if p == 0 else 0) + nq * T_A * KC + X
        # OFFSET: wait for the pass's last keep word, F forms the first batch, G gathers
        # it, then M issues every batch back to back.
        cyc["offset"] += _offset_cycles(kept_heads[q0:q1], g, d["keep"])
        # BA: the pass's operations, plus a VALUE phase at every window miss.
        # the first query may start once the pass's offsets are written
        offsets_at = d["offset"] + _last_batch_write(keep[q0:q1])
        first_at, later, v_pass = offsets_at, {}, 0
        for q in (q for q in range(q0, q1) if q in misses):
            first = 2 + misses[q][0][0]
            v, n, slack = _value_cycles([(first, fmap_mask[ix]) for ix in groups[q]], g)
            cyc["value"] += v
            v_pass += v
            unmasked += n
            # back in BA: the window is ready a cycle later; the last value write
            # (d["value"] after the last op, less the VALUE cycles that followed it)
            if q == q0:
                # the check of the pass's first query; the sequencer starts after VALUE
                resume = 1 if slack is None else max(1, d["value"] - slack)
                first_at = max(ValueWindow.CHECK + 1 + v + resume, offsets_at)
            else:
                # BA drains before VALUE (the sequencer is already started)
                later[q - q0] = (v, 1 if slack is None else max(1, d["value"] - slack))
        last, agg_done = _ba_pass(T_q[q0:q1], g, first_at=first_at, misses=later, d=d)
        cyc["ba"] += last + 1 + X - v_pass
        # OUT issues once the level sum has written the pass's last aggregated sample
        out_len = (agg_done - last - 2) + nq * T_C * KC + X
        cyc["out"] += out_len
    cyc["tail"] = max(d["out"], d["sweep"] + S - out_len)
    # ideal (array peak): every pixel projected once
    kept = int(keep.sum())
    ideal["attn"] = Lq * g.n_att * C / peak
    ideal["offset"] = kept * 2 * C / peak
    ideal["value"] = int((~fmap_mask).sum()) * C * C / peak
    # BA peak: 4 PEs per point and channel (3 bilinear + 1 probability MAC), whole array
    ideal["ba"] = kept * 4 * g.D / peak
    ideal["out"] = Lq * C * C / peak
    cyc["total"] = sum(cyc[k] for k in PHASE_NAMES)
    ideal["total"] = sum(ideal[k] for k in PHASE_NAMES)
    return Prediction(cycles=cyc, ideal=ideal,
                      detail={"passes": n_pass, "kept_points": kept, "points": int(keep.size),
                              "ba_ops": int(T_q.sum()), "pixels": S,
                              "pixels_masked_in": int(fmap_mask.sum()),
                              "window_loads": schedule.loads,
                              "window_misses": len(schedule.misses),
                              "rows_loaded": schedule.rows_loaded,
                              "rows_refetched": schedule.rows_refetched,
                              "pixels_projected": unmasked,
                              "traffic": external_traffic(
                                  cfg, shapes, Lq, window_loads=schedule.loads,
                                  fmap_rows_loaded=schedule.rows_per_level(g.L))})


def operation_counts(cfg, keep, fmap_mask, *, max_queries=DEFAULT_MAX_QUERIES):
    """The work of one block that :func:`model` schedules (cycles are not touched here).

    ``mm_macs``: useful MACs per MM phase, the numerators of ``ideal`` (attention logits
    for every point, offsets (x, y) of the kept points, value projection of the unmasked
    pixels, output projection); ``ba_point_channels``: kept points x ``head_dim`` (one
    bilinear interpolation plus one probability MAC each); ``ba_cycles``: the BA
    sequencer's steps (``Prediction.detail["ba_ops"]``); ``mm_cycles_ideal``: the MM MACs at
    the array's peak rate (``pe_rows * pe_cols`` per cycle).
    """
    g = CoreGeometry(cfg, max_queries)
    keep = np.asarray(keep, dtype=bool).reshape(-1, g.M, g.L * g.P)
    fmap_mask = np.asarray(fmap_mask, dtype=bool)
    Lq, S = keep.shape[0], len(fmap_mask)
    kept = int(keep.sum())
    unmasked = int((~fmap_mask).sum())
    T_q, _ = _head_groups(keep, g)
    macs = {"attn": Lq * g.n_att * g.C, "offset": kept * 2 * g.C,
            "value": unmasked * g.C * g.C, "out": Lq * g.C * g.C}
    return {"queries": Lq, "pixels": S, "pixels_unmasked": unmasked,
            "points": int(keep.size), "kept_points": kept,
            "mm_macs": macs, "mm_macs_total": sum(macs.values()),
            "mm_cycles_ideal": sum(macs.values()) / (g.R * g.Cc),
            "ba_point_channels": kept * g.D, "ba_cycles": int(T_q.sum()),
            "passes": -(-Lq // g.mq)}


def _drains(cfg, g):
    """Fixed fill / drain cycles of the phase transitions: sums of the units' constants.

    ``keep``: last ATTN op -> its logits through the PE array, requant, the logit FIFO
    and serializer, softmax, point mask -> the pass's last keep word (OFFSET waits for
    it).  ``value`` / ``offset``: BA waits for the last value-buffer write / offset write,
    then its sequencer starts (OUT's wait for the last aggregated sample is
    :func:`_ba_pass`'s).  ``out``: last OUT result through the result FIFO.  ``sweep``: FWP finish (BA pipeline drained) -> last packed mask beat sent.
    """
    mm = g.mm_result_latency                   # I1 -> requantised MM result
    # logits serialised before the pass's last one: the last tile's (one softmax), or
    # its last head's (a softmax lane per head, ``att_lanes > 1``)
    n_last = g.n_att - (g.t_att - 1) * g.Cc if g.att_lanes == 1 else g.L * g.P
    return {
        "keep": (mm + AttentionPath.LOGIT_FILL + n_last + Softmax.latency_first(cfg) +
                 cfg.n_lp + AttentionPath.KEEP_WRITE),
        "value": mm + ValueIngest.WRITE_LATENCY + g.wr_beats + BASequencer.START,
        "offset": mm + OffsetGather.WRITE_BACK + BASequencer.START,
        "out": mm + ResultMerger.OUT_DRAIN,
        "sweep": BAPipeline.DRAIN + FmapMaskGenerator.UPDATE_LATENCY + ResultMerger.MASK_DRAIN,
    }


def predict(cfg, qb, gold, *, prune=True, max_queries=DEFAULT_MAX_QUERIES,
            first_query_delay=2):
    """Model cycles of a QuantizedBlock given its golden result (for the keep mask);
    ``first_query_delay``: cycles from START to the first query's issue (2 with a host
    that offers it the cycle after START, as the cocotb testbench does)."""
    return model(cfg, gold["keep"], qb.fmap_mask, qb.shapes, qb.ref,
                 max_queries=max_queries, prune=prune, first_query_delay=first_query_delay)


# ---- extrapolation to the Deformable DETR encoder layer ---------------------------------

#: DEFA's reported average pruning (COCO 2017, after fine-tuning): 84% of the sampling
#: points (PAP) and 43% of the fmap pixels (FWP).
DEFA_POINT_PRUNE = 0.84
DEFA_PIXEL_PRUNE = 0.43


def synthetic_keep(cfg, n_queries, point_prune, rng):
    """A keep mask with a given point-pruning ratio: per head the most probable point is
    always kept (softmax gives it >= 1/(L*P) > threshold), every other point survives
    independently with the probability that makes the expected ratio ``point_prune``."""
    n = cfg.n_lp
    p = min(1.0, max(0.0, ((1.0 - point_prune) * n - 1.0) / (n - 1)))
    keep = rng.random((n_queries, cfg.n_heads, n)) < p
    top = rng.integers(0, n, size=(n_queries, cfg.n_heads))
    np.put_along_axis(keep, top[..., None], True, axis=2)
    return keep


def measured_statistics(cfg, *, seed=0, n_queries=200):
    """Keep patterns and pixel-pruning ratio of the golden model on a random workload
    (``golden.accuracy.random_workload``, small spatial shapes)."""
    from golden.accuracy import SMALL_DEFA_SHAPES, random_workload
    from golden.model import defa_block
    from defa_hw.model.workload import quantize_workload
    shapes = SMALL_DEFA_SHAPES if cfg.n_levels == 4 else None
    params, inp = random_workload(cfg, seed, shapes=shapes, n_queries=n_queries)
    qb = quantize_workload(cfg, params, inp)
    res = defa_block(cfg, qb, prune=True)
    heads = res["keep"].reshape(-1, cfg.n_lp)
    return heads, res["pixels_pruned_next"] / res["pixels_total"]


def encoder_schedule(cfg, shapes=ENCODER_SHAPES, order="locality"):
    """Reference codes of an encoder layer's queries in run ``order`` and their value-window
    loads: ``(ref, golden.value_window.WindowSchedule)``."""
    from golden.value_window import window_schedule
    from defa_hw.host.order import encoder_reference_codes, query_order
    ref = encoder_reference_codes(cfg, shapes)
    ref = ref[query_order(ref, order)]
    return ref, window_schedule(cfg, ref, shapes)


#: Pruning cases of a projected layer (``defa-hw perf --pruning``).
PRUNINGS = ("none", "defa", "golden")


def pruning_masks(cfg, pruning, n_queries, n_pixels, *, seed=0):
    """Keep mask ``(Lq, M, L*P)``, incoming fmap mask ``(S,)`` and a label for ``pruning``:
    ``none``; ``defa``, DEFA's reported ratios (84% points, 43% pixels; synthetic i.i.d.
    masks, :func:`synthetic_keep`); ``golden``, the keep patterns and pixel ratio of the
    golden model on a random workload (bootstrapped per head, i.i.d. pixels)."""
    if pruning not in PRUNINGS:
        raise ValueError(f"pruning {pruning!r} is invalid: allowed {', '.join(PRUNINGS)}")
    rng = np.random.default_rng(seed)
    if pruning == "none":
        return (np.ones((n_queries, cfg.n_heads, cfg.n_lp), dtype=bool),
                np.zeros(n_pixels, dtype=bool), "no pruning")
    if pruning == "defa":
        return (synthetic_keep(cfg, n_queries, DEFA_POINT_PRUNE, rng),
                rng.random(n_pixels) < DEFA_PIXEL_PRUNE,
                f"DEFA reported ({100 * DEFA_POINT_PRUNE:.0f}% points, "
                f"{100 * DEFA_PIXEL_PRUNE:.0f}% pixels)")
    heads, pix = measured_statistics(cfg, seed=seed)
    keep = heads[rng.integers(0, len(heads), size=n_queries * cfg.n_heads)].reshape(
        n_queries, cfg.n_heads, cfg.n_lp)
    return (keep, rng.random(n_pixels) < pix,
            f"golden on random workload ({100 * (1.0 - heads.mean()):.0f}% points, "
            f"{100 * pix:.1f}% pixels)")


def layer_projection(cfg=None, *, pruning="defa", shapes=ENCODER_SHAPES, order="locality",
                     max_queries=DEFAULT_MAX_QUERIES, seed=0, clock_hz=CLOCK_HZ,
                     schedule=None):
    """Projected cycles, latency and traffic of one encoder layer (every token a query at
    its own pixel centre, :func:`encoder_schedule`) with ``pruning`` (:data:`PRUNINGS`)."""
    cfg = cfg or preset("defa")
    S = int(sum(h * w for h, w in shapes))
    ref, sched = schedule or encoder_schedule(cfg, shapes, order)
    keep, mask, label = pruning_masks(cfg, pruning, S, S, seed=seed)
    pred = model(cfg, keep, mask, shapes, ref, max_queries=max_queries, schedule=sched)
    tot = pred.cycles["total"]
    return {
        "pruning": pruning, "case": label, "order": order, "queries": S, "pixels": S,
        "shapes": [list(s) for s in shapes], "clock_hz": clock_hz, "max_queries": max_queries,
        "cycles": pred.cycles, "ideal": pred.ideal,
        "points_pruned": float(1.0 - keep.mean()), "pixels_pruned": float(mask.mean()),
        "latency_ms": 1e3 * tot / clock_hz, "layers_per_s": clock_hz / tot,
        "queries_per_s": clock_hz * S / tot, "ratio_to_ideal": tot / pred.ideal["total"],
        "window_loads": sched.loads, "rows_loaded": sched.rows_loaded,
        "rows_refetched": sched.rows_refetched,
        "traffic_bits": pred.detail["traffic"]["total_bits"],
        "bandwidth_gb_s": pred.detail["traffic"]["total_bits"] / 8 / (tot / clock_hz) / 1e9,
    }


def encoder_projection(cfg=None, *, max_queries=DEFAULT_MAX_QUERIES, seed=0,
                       shapes=ENCODER_SHAPES, clock_hz=CLOCK_HZ, order="locality"):
    """:func:`layer_projection` of the three pruning cases (:data:`PRUNINGS`), the
    queries run in ``order`` (:data:`defa_hw.host.order.QUERY_ORDERS`)."""
    cfg = cfg or preset("defa")
    S = int(sum(h * w for h, w in shapes))
    sched = encoder_schedule(cfg, shapes, order)
    out = {}
    for pruning in PRUNINGS:
        c = layer_projection(cfg, pruning=pruning, shapes=shapes, order=order,
                             max_queries=max_queries, seed=seed, clock_hz=clock_hz,
                             schedule=sched)
        out[c["case"]] = c
    return {"shapes": shapes, "queries": S, "pixels": S, "clock_hz": clock_hz,
            "max_queries": max_queries, "order": order, "cases": out}


def format_projection(proj):
    first = next(iter(proj["cases"].values()))
    lines = [f"Deformable DETR encoder layer, {proj['queries']} queries, "
             f"{proj['pixels']} pixels, {proj['clock_hz'] / 1e6:.0f} MHz, "
             f"max_queries {proj['max_queries']}, {proj['order']} query order: "
             f"{first['window_loads']} window loads, {first['rows_loaded']} rows loaded "
             f"({first['rows_refetched']} again)", "",
             "| case | points pruned | pixels pruned | cycles (M) | ideal (M) | ratio | "
             "latency (ms) | layers/s | traffic (Mbit) | GB/s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, c in proj["cases"].items():
        lines.append(f"| {name} | {100 * c['points_pruned']:.1f}% | "
                     f"{100 * c['pixels_pruned']:.1f}% | {c['cycles']['total'] / 1e6:.2f} | "
                     f"{c['ideal']['total'] / 1e6:.2f} | {c['ratio_to_ideal']:.3f} | "
                     f"{c['latency_ms']:.2f} | {c['layers_per_s']:.1f} | "
                     f"{c['traffic_bits'] / 1e6:.1f} | {c['bandwidth_gb_s']:.2f} |")
    lines += ["", "| case | " + " | ".join(PHASE_NAMES) + " |",
              "| --- |" + " --- |" * len(PHASE_NAMES)]
    for name, c in proj["cases"].items():
        lines.append(f"| {name} | " + " | ".join(
            f"{c['cycles'][k] / 1e6:.3f}M ({c['cycles'][k] / c['ideal'][k]:.2f}x)"
            if c["ideal"][k] else f"{c['cycles'][k]}" for k in PHASE_NAMES) + " |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Projected encoder-layer latency of defa_core")
    ap.add_argument("--max-queries", type=int, default=DEFAULT_MAX_QUERIES)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--order", choices=("locality", "given"), default="locality")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    proj = encoder_projection(max_queries=args.max_queries, seed=args.seed, order=args.order)
    if args.json:
        print(json.dumps(proj, default=float, indent=1))
    else:
        print(format_projection(proj))


if __name__ == "__main__":
    main()

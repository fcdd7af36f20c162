"""Evaluate the sweep points as dask.distributed jobs and collect the results.

Jobs: one RTLIL elaboration per (leaf block, config), one synthesis per distinct RTLIL
(:mod:`defa_hw.explore.area`), one accuracy run per offset bound, and one job per point
(performance model, area composition, energy) that waits on those.  The client is a
``LocalCluster`` of ``workers`` processes, or the scheduler at ``scheduler``.
"""

import hashlib
import json
import logging
import sys
import time

import numpy as np

from defa_hw.config import DefaConfig
from defa_hw.explore.area import LEAVES, compose, leaf_rtlil, leaf_synth
from synth.tools import progress_line

__all__ = ["ExploreError", "accuracy", "energy_figures", "point_energy", "evaluate_point",
           "run_sweep"]

#: The accuracy workload: seeds x queries of ``golden.accuracy.random_workload``.
ACCURACY_SEEDS = 3
ACCURACY_QUERIES = 200
#: Seconds to reach ``--scheduler`` before giving up.
SCHEDULER_TIMEOUT_S = 5


class ExploreError(Exception):
    """A user error of ``defa-hw explore`` (one line, exit status 2)."""


def accuracy(cfg_dict, seeds=ACCURACY_SEEDS, n_queries=ACCURACY_QUERIES):
    """SQNR (dB) of the INT12 model against exact float MSDeformAttn (no offset clamp),
    pruning off, mean and min over ``seeds`` random workloads at ``SMALL_DEFA_SHAPES``
    (or the config's max_shapes when those do not fit): the cost of the offset bound."""
    from golden.accuracy import SMALL_DEFA_SHAPES, measure, random_workload
    cfg = DefaConfig.from_dict(cfg_dict)
    fits = len(SMALL_DEFA_SHAPES) == cfg.n_levels and all(
        h <= hm and w <= wm for (h, w), (hm, wm) in zip(SMALL_DEFA_SHAPES, cfg.max_shapes))
    shapes = SMALL_DEFA_SHAPES if fits else None
    runs = [measure(cfg, *random_workload(cfg, s, shapes=shapes, n_queries=n_queries),
                    prune=False) for s in range(seeds)]
    return {"sqnr_db": float(np.mean([r["sqnr_db"] for r in runs])),
            "sqnr_min_db": float(min(r["sqnr_db"] for r in runs)),
            "points_clamped": float(np.mean([r["points_clamped_frac"] for r in runs])),
            "shapes": [list(s) for s in (shapes or cfg.max_shapes)]}


def energy_figures(base):
    """The asic figures ``defa_hw.model.energy`` reads (the base's committed baseline),
    with the PE count of the config they were synthesised for; (None, reason) when the
    baseline has no PE-array power."""
    from defa_hw.model import energy
    from synth.baseline import baseline_path
    try:
        figs = energy.synth_figures(config_name=base.name)
        ref = json.loads(baseline_path(base.name).read_text())["config"]
    except (ValueError, OSError) as e:
        return None, str(e).splitlines()[0]
    return dict(figs, pe_count=ref["pe_rows"] * ref["pe_cols"]), None


def point_energy(cfg, pruning, shapes, figs):
    """Energy per layer (J, 40 nm estimate) from ``defa_hw.model.energy``; the PE array's
    power is scaled by PE count from the synthesised array (same energy per PE-cycle)."""
    from defa_hw.model import energy
    arr = figs["blocks"]["pe_array"]
    scaled = dict(figs, blocks=dict(figs["blocks"], pe_array=dict(
        arr, power_mw=arr["power_mw"] * cfg.pe_rows * cfg.pe_cols / figs["pe_count"])))
    e = energy.per_op_energies(cfg, scaled, node="40nm")
    counts, _cycles, traffic = energy.layer_counts(cfg, pruning, shapes=shapes)
    return energy.layer_energy(cfg, counts, traffic, e)["total"]


def evaluate_point(cfg_dict, max_queries, *, pruning, shapes, clock_hz, target, leaves,
                   acc, figs):
    """Latency (performance model), composed area and energy of one point."""
    from defa_hw.model.energy import PRUNING_CHOICES
    from defa_hw.model.perf import layer_projection
    from defa_hw.config import ConfigError
    cfg = DefaConfig.from_dict(cfg_dict)
    t0 = time.monotonic()
    try:
        proj = layer_projection(cfg, pruning=pruning, shapes=shapes,
                                max_queries=max_queries, clock_hz=clock_hz)
    except ConfigError as e:        # a rule of the model's own: the point is skipped
        return {"skipped": str(e)}
    out = {"latency_ms": proj["latency_ms"], "cycles": int(proj["cycles"]["total"]),
           "ideal_cycles": float(proj["ideal"]["total"]),
           "ratio_to_ideal": proj["ratio_to_ideal"], "sqnr_db": acc["sqnr_db"],
           "sqnr_min_db": acc["sqnr_min_db"], "points_clamped": acc["points_clamped"]}
    errs = [f"{v['block']}: {v['error']}" for v in leaves.values() if "error" in v]
    if errs:
        out["area"] = {"error": errs[0]}
    else:
        out["area"] = compose(cfg, max_queries, leaves, target)
        out["area"]["leaf_keys"] = {n: v["key"] for n, v in sorted(leaves.items())}
    if figs is None or pruning not in PRUNING_CHOICES:
        out["energy_j"] = None
    else:
        out["energy_j"] = point_energy(cfg, pruning, shapes, figs)
    out["seconds"] = time.monotonic() - t0
    return out


def _digest(obj):
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _client(scheduler, workers):
    from dask.distributed import Client, LocalCluster
    if scheduler:
        try:
            return Client(scheduler, timeout=f"{SCHEDULER_TIMEOUT_S}s")
        except (OSError, TimeoutError, ValueError) as e:
            raise ExploreError(f"--scheduler {scheduler}: cannot connect "
                               f"({type(e).__name__})") from None
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address=":0", silence_logs=logging.ERROR)
    return Client(cluster)


def run_sweep(base, points, *, pruning, shapes, clock_hz, target, cache_dir, scheduler=None,
              workers=2, progress=sys.stderr):
    """Evaluate ``points`` (:func:`defa_hw.explore.grid.expand`) on a dask cluster; each
    evaluated point gains ``result``.  One progress line per finished point."""
    figs, _reason = energy_figures(base)
    shapes = [list(s) for s in shapes]
    t_start = time.monotonic()
    n = len(points)
    done = 0
    for p in points:
        if "skipped" in p:
            done += 1
            progress_line(progress, f"[{done}/{n}] {p['label']}: skipped ({p['skipped']})")
    live = [p for p in points if "skipped" not in p]
    if not live:
        return points
    client = _client(scheduler, workers)
    try:
        cfgs = {_digest(p["cfg"].to_dict()): p["cfg"].to_dict() for p in live}
        rtl = {(b, k): client.submit(leaf_rtlil, b, c, target, key=f"rtlil-{b}-{target}-{k}")
               for k, c in cfgs.items() for b in LEAVES}
        keys = dict(zip(rtl, client.gather(list(rtl.values()))))
        synth = {}
        for (b, _k), (key, text) in sorted(keys.items()):
            if text is None:
                synth[key] = {"block": b, "key": None, "error": key}
            elif key not in synth:
                synth[key] = client.submit(leaf_synth, b, key, text, target, str(cache_dir),
                                           key=f"synth-{_digest(key)}")
        acc = {}
        futs = {}
        for p in live:
            d = p["cfg"].to_dict()
            ob = d["offset_bound"]
            acc_cfg = base.replace(offset_bound=tuple(ob)).to_dict()
            if tuple(ob) not in acc:
                acc[tuple(ob)] = client.submit(accuracy, acc_cfg,
                                               key=f"accuracy-{_digest(acc_cfg)}")
            k = _digest(d)
            leaves = {b: synth[keys[(b, k)][0]] for b in LEAVES}
            f = client.submit(evaluate_point, d, p["max_queries"], pruning=pruning,
                              shapes=shapes, clock_hz=clock_hz, target=target, leaves=leaves,
                              acc=acc[tuple(ob)], figs=figs,
                              key=f"point-{_digest([d, p['max_queries'], pruning, shapes])}")
            futs.setdefault(f.key, (f, []))[1].append(p)
        from dask.distributed import as_completed
        for f in as_completed([f for f, _ps in futs.values()]):
            r = f.result()
            for p in futs[f.key][1]:
                done += 1
                if "skipped" in r:
                    p["skipped"] = r["skipped"]
                    progress_line(progress, f"[{done}/{n}] {p['label']}: skipped ({r['skipped']})")
                    continue
                p["result"] = r
                a = r["area"]
                area = f"{a['mm2']:.2f} mm2" if "mm2" in a else "area n/a"
                progress_line(progress, f"[{done}/{n}] {p['label']}: {r['latency_ms']:.2f} ms, "
                          f"{area} ({time.monotonic() - t_start:.1f} s)")
    finally:
        cluster = getattr(client, "cluster", None)
        client.close()
        if cluster is not None:
            cluster.close()
    return points

"""``defa-hw explore``: design-space exploration of ``defa_core`` (docs/explore.md).

=============  =====================================================================
``grid.py``    the sweep axes (one table), named grids, points, presets, Pareto front
``area.py``    leaf blocks synthesised (cached), composed with the SRAM model; check
``run.py``     the jobs on dask.distributed: RTLIL, synthesis, accuracy, per point
``report.py``  explore.json, explore.md, latency_area.png, energy_area.png
=============  =====================================================================
"""

import sys
from pathlib import Path

from defa_hw.explore.grid import AXES, BASE, GRIDS, expand, pareto_front, preset_points
from defa_hw.explore.run import ExploreError, run_sweep

__all__ = ["AXES", "BASE", "GRIDS", "ExploreError", "expand", "pareto_front", "explore"]


def _jsonable(v):
    return list(v) if isinstance(v, tuple) else v


def explore(base, *, grid="small", pruning="defa", shapes=None, clock_hz=400e6,
            target="generic", out="out/explore", cache_dir=None, scheduler=None, workers=2,
            presets=None, min_sqnr=None, area_checks=(), progress=sys.stderr):
    """Sweep ``grid`` around ``base``, write the outputs into ``out``; returns the report
    dict (explore.json's content).  ``min_sqnr``: see :func:`report.summarise`;
    ``area_checks``: synth reports the area composition is also checked against."""
    from defa_hw.config import PRESETS
    from defa_hw.explore.area import LEAVES, TARGETS, _sram_per_bit, validate
    from defa_hw.explore.report import summarise, write_outputs
    from defa_hw.explore.run import energy_figures
    shapes = [tuple(s) for s in (shapes or base.max_shapes)]
    points = expand(base, grid)
    left_out = preset_points(base, points, PRESETS if presets is None else presets)
    run_sweep(base, points, pruning=pruning, shapes=shapes, clock_hz=clock_hz, target=target,
              cache_dir=Path(cache_dir or Path(out) / "cache").resolve(),
              scheduler=scheduler, workers=workers, progress=progress)
    t = TARGETS[target]
    figs, reason = energy_figures(base)
    by_bound = {}
    for p in points:
        if "result" in p:
            r = p["result"]
            by_bound["/".join(map(str, p["cfg"].offset_bound))] = {
                "sqnr_db": round(r["sqnr_db"], 2), "sqnr_min_db": round(r["sqnr_min_db"], 2),
                "points_clamped": round(r["points_clamped"], 4)}
    meta = {
        "base": base.to_dict(), "grid": grid if isinstance(grid, str) else "custom",
        "grid_values": {k: [_jsonable(v) for v in vs]
                        for k, vs in (GRIDS[grid] if isinstance(grid, str) else grid).items()},
        "axes": {a.name: a.doc for a in AXES}, "pruning": pruning,
        "shapes": [list(s) for s in shapes],
        "shapes_text": ",".join(f"{h}x{w}" for h, w in shapes),
        "clock_mhz": clock_hz / 1e6, "target": target, "presets_left_out": left_out,
        "area_model": {
            "summary": f"{target} flow; the leaf blocks synthesised, times their count, plus "
                       f"every memory of CoreGeometry.memory_bits() x the flow's SRAM model; "
                       f"the rest of the core's logic is left out (check below).",
            "unit": t["unit"], "node": t["node"], "mm2_per_unit": t["mm2_per_unit"],
            "sram_per_bit": _sram_per_bit(target),
            "synthesised": {n: rule for n, (rule, _f) in LEAVES.items()},
            "validation": validate(area_checks)},
        "energy": ({"summary": "n/a (" + reason + ").", "source": None} if figs is None else
                   {"summary": f"defa_hw.model.energy per layer, 40 nm estimate, from "
                               f"{figs['source']} (PE-array power scaled by PE count); n/a "
                               f"for pruning 'golden'.", "source": figs["source"]}),
        "accuracy": {"summary": "SQNR of the INT12 model vs exact float MSDeformAttn, "
                                "pruning off, 3 random workloads of 200 queries "
                                "(golden.accuracy).", "by_offset_bound": by_bound},
    }
    rep = summarise(points, meta, min_sqnr=min_sqnr)
    write_outputs(rep, out)
    return rep

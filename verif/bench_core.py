"""Benchmark of ``defa_core``: RTL cycles vs ideal per phase, and simulator wall time.

For each workload (preset, spatial shapes, queries, pruning) the block is run through
the RTL with every simulator asked for (``defa_hw.flow.simulate.simulate_block``, the same
path as ``defa-hw simulate``), checked bit for bit against golden, and reported:

* cycles per phase, the ideal cycles (array peak rate) and their ratio, and the
  performance model's prediction;
* wall time of the simulation (build excluded, reported separately) per simulator and
  the Icarus / Verilator ratio.

Then the projection of the Deformable DETR encoder layer at 400 MHz (defa_hw.model.perf).

    python verif/bench_core.py [--presets tiny,defa] [--sims icarus,verilator] [--json F]
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from defa_hw.config import preset  # noqa: E402
from defa_hw.model.perf import PHASE_NAMES, encoder_projection, format_projection, predict  # noqa: E402
from defa_hw.flow.simulate import (REPO_ROOT, build_core, build_dir_for,  # noqa: E402
                              compare_with_golden, simulate_block)

#: preset -> (spatial shapes, queries, incoming fmap-mask fraction): the regression's
#: workloads (verif/test_core.py), so the figures match what the tests check.
WORKLOADS = {
    "tiny": (((4, 5), (2, 3), (2, 2), (1, 2)), 6, 0.3),
    "defa": (((2, 2), (1, 2), (1, 1), (1, 1)), 2, 0.3),
}


def _block(cfg, shapes, nq, mask_frac, seed=1):
    sys.path.insert(0, str(REPO_ROOT / "verif"))
    from test_core import make_block
    return make_block(cfg, seed, shapes=shapes, n_queries=nq, mask_frac=mask_frac)


def run(presets, sims, prune_modes=(True, False)):
    rows = []
    for name in presets:
        cfg = preset(name)
        shapes, nq, mf = WORKLOADS[name]
        qb = _block(cfg, shapes, nq, mf)
        for sim in sims:
            t0 = time.monotonic()
            root = REPO_ROOT / "build" / "verif" / "core"      # shared with the tests
            build_core(cfg, sim, build_dir_for(cfg, sim, root))
            t_build = time.monotonic() - t0
            for prune in prune_modes:
                t1 = time.monotonic()
                res = simulate_block(cfg, qb, prune=prune, sim=sim, build_root=root,
                                     log=lambda m: None)
                wall = time.monotonic() - t1
                gold, problems = compare_with_golden(cfg, qb, res, prune=prune)
                pred = predict(cfg, qb, gold, prune=prune,
                               max_queries=int(res["max_queries"]))
                rows.append({"preset": name, "sim": sim, "prune": prune, "queries": nq,
                             "pixels": int(qb.input.shape[0]), "bit_exact": not problems,
                             "build_s": round(t_build, 1), "wall_s": round(wall, 2),
                             "sim_s": round(float(res["sim_seconds"]), 2),
                             "cycles": {k: int(res[f"cycles_{k}"]) for k in PHASE_NAMES} |
                             {"total": int(res["cycles"])},
                             "model": pred.cycles, "ideal": pred.ideal,
                             "bank_conflicts": int(res["bank_conflicts"])})
                t_build = 0.0
    return rows


def report(rows):
    out = ["| preset | prune | phase | rtl cycles | model | ideal | rtl / ideal |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    seen = set()
    for r in rows:
        key = (r["preset"], r["prune"])
        if key in seen:
            continue
        seen.add(key)
        for k in PHASE_NAMES + ("total",):
            ideal = r["ideal"][k]
            ratio = f"{r['cycles'][k] / ideal:.3f}" if ideal else "-"
            out.append(f"| {r['preset']} | {'on' if r['prune'] else 'off'} | {k} | "
                       f"{r['cycles'][k]} | {r['model'][k]} | {ideal:.0f} | {ratio} |")
    out += ["", "| preset | prune | queries | pixels | sim | build (s) | simulate call (s) | "
            "cocotb test (s) | block cycles / test s | bit exact | bank conflicts |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        out.append(f"| {r['preset']} | {'on' if r['prune'] else 'off'} | {r['queries']} | "
                   f"{r['pixels']} | {r['sim']} | {r['build_s']} | {r['wall_s']} | "
                   f"{r['sim_s']} | {r['cycles']['total'] / max(r['sim_s'], 1e-9):.0f} | "
                   f"{r['bit_exact']} | {r['bank_conflicts']} |")
    walls = {}
    for r in rows:
        walls.setdefault((r["preset"], r["prune"]), {})[r["sim"]] = r["sim_s"]
    ratio_lines = [f"| {p} | {'on' if pr else 'off'} | {w['icarus']} | {w['verilator']} | "
                   f"{w['icarus'] / max(w['verilator'], 1e-9):.1f} |"
                   for (p, pr), w in walls.items() if {"icarus", "verilator"} <= set(w)]
    if ratio_lines:
        out += ["", "| preset | prune | icarus test (s) | verilator test (s) | icarus / verilator |",
                "| --- | --- | --- | --- | --- |"] + ratio_lines
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="tiny,defa")
    ap.add_argument("--sims", default="icarus,verilator")
    ap.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    ap.add_argument("--no-projection", action="store_true")
    args = ap.parse_args(argv)
    rows = run(args.presets.split(","), args.sims.split(","))
    print(report(rows))
    if not args.no_projection:
        print()
        print(format_projection(encoder_projection()))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=float))
    return 0 if all(r["bit_exact"] and r["bank_conflicts"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

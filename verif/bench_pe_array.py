"""Simulator speed benchmark: the PE-array testbench on Icarus and on Verilator.

Runs the ``defa`` preset's PE-array cocotb testbench (``pe_array_mm_then_ba``:
one operation per clock, every result checked against golden) with a larger
random load on both simulators, plus a free-running test (clock only, no Python
per cycle), and prints simulated cycles per second of wall time and the ratio
Verilator / Icarus.  The timed window is the simulation loop only (not the
build, not the stimulus generation); build times are printed separately.

Usage: ``.venv/bin/python verif/bench_pe_array.py [--preset defa] [--scale 4]
[--free-cycles 20000]``.  Not collected by pytest (``bench_*.py``).
"""

import argparse
import os
import sys
import time
from pathlib import Path

VERIF = Path(__file__).resolve().parent
sys.path[:0] = [str(VERIF), str(VERIF.parent)]


TESTS = ("pe_array_mm_then_ba", "pe_array_free_run")


def _run(sim, cfg, env):
    """Build the PE array for ``sim`` and run the two timed cocotb tests in one
    simulation; returns {test: (cycles, wall seconds)} and the total seconds."""
    from verif.lib.runner import BUILD_ROOT, run_cocotb
    from defa_hw.rtl.pe_array import PEArray
    os.environ["SIM"] = sim
    build_name = f"bench_pe_array_{cfg.name}"
    out = BUILD_ROOT / sim / build_name
    out.mkdir(parents=True, exist_ok=True)
    for t in TESTS:
        (out / f"{t}.bench").unlink(missing_ok=True)
    t0 = time.perf_counter()
    run_cocotb(component=PEArray(cfg), toplevel="pe_array", test_module="test_pe_array",
               build_name=build_name, cfg=cfg, testcase=list(TESTS),
               env={**env, "PE_ARRAY_BENCH_OUT": str(out)})
    total = time.perf_counter() - t0
    res = {}
    for t in TESTS:
        cycles, wall = (out / f"{t}.bench").read_text().split()
        res[t] = (int(cycles), float(wall))
    return res, total


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="defa")
    ap.add_argument("--scale", type=float, default=4.0,
                    help="random work per mode, in units of 10,000 MACs (default 4)")
    ap.add_argument("--free-cycles", type=int, default=20000,
                    help="cycles of the free-running test (default 20000)")
    args = ap.parse_args(argv)

    from defa_hw.config import preset
    from verif.lib.runner import VERILATOR_MAKEFLAGS
    cfg = preset(args.preset)
    rows, lines = {}, []
    for sim in ("icarus", "verilator"):
        res, total = _run(sim, cfg, {"PE_ARRAY_SCALE": args.scale,
                                     "PE_ARRAY_FREE_RUN": args.free_cycles})
        rows[sim] = [res[t][0] / res[t][1] for t in TESTS]
        for t, label in zip(TESTS, ("checked testbench", "free-running     ")):
            cyc, wall = res[t]
            lines.append(f"{sim:9s} {label}: {cyc:6d} cycles in {wall:7.2f} s = "
                         f"{cyc / wall:8.0f} cycles/s")
        lines.append(f"{sim:9s} build + both runs: {total:.1f} s"
                     + (f" (make {' '.join(VERILATOR_MAKEFLAGS)})" if sim == "verilator"
                        else ""))
    ratio, fratio = (rows["verilator"][k] / rows["icarus"][k] for k in range(2))
    lines.append(f"PE array ({cfg.name}, {cfg.pe_rows}x{cfg.pe_cols}): Verilator / Icarus = "
                 f"{ratio:.2f}x (checked testbench), {fratio:.2f}x (free-running)")
    # The simulators' own logs come first; the summary is the last lines.
    print("\n".join(["", "== bench_pe_array =="] + lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

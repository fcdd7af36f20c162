"""``defa-hw synth``: options checked, the run, the reports, the baseline check."""

import json
import sys
from pathlib import Path

from synth.asic import asic_tools
from synth.baseline import (baseline_from_report, baseline_path, compare_to_baseline,
                            in_source_checkout, update_command)
from synth.report import write_reports
from synth.runs import TARGETS, TOP_BLOCK, synthesize
from synth.tools import SynthInputError

__all__ = ["main"]


def main(cfg, args, *, stream=sys.stderr):
    """``defa-hw synth``: returns the exit status (0 ok, 1 tool failure or regression)."""
    from defa_hw.config import PRESETS
    targets = TARGETS if args.target == "all" else (args.target,)
    if args.jobs < 1:
        raise SynthInputError(f"--jobs must be >= 1, got {args.jobs}")
    if args.timeout < 1:
        raise SynthInputError(f"--timeout must be >= 1 s, got {args.timeout}")
    if args.freq <= 0:
        raise SynthInputError(f"--freq must be > 0 MHz, got {args.freq}")
    if "asic" in targets:
        asic_tools()        # a missing 'sta' or liberty: one line naming the package
    only = [b for b in (args.blocks or "").split(",") if b] or None
    if args.no_top:
        if args.fpga_top:
            raise SynthInputError("--no-top and --fpga-top contradict each other")
        from defa_hw.rtl.blocks import BLOCKS
        only = [n for n in (only or sorted(BLOCKS)) if n != TOP_BLOCK]
    is_preset = cfg.name in PRESETS and PRESETS[cfg.name] == cfg
    if (args.update_baseline or args.check_baseline) and not is_preset:
        raise SynthInputError("--update-baseline/--check-baseline need an unchanged preset "
                              "(--preset NAME)")
    if args.check_baseline and not baseline_path(cfg.name).exists():
        raise SynthInputError(f"no baseline for preset {cfg.name!r} "
                              f"(synth/baseline_{cfg.name}.json); make one with "
                              f"{update_command(cfg.name)}")
    if args.update_baseline and not in_source_checkout():
        # An installed package's baseline would be lost with the next install.
        raise SynthInputError("--update-baseline writes synth/baseline_<preset>.json of the "
                              "repository; run it in a checkout installed with pip install -e .")
    out = Path(args.out)
    report = synthesize(cfg, out, targets=targets, only=only, jobs=args.jobs,
                        sweep=args.sweep, freq_mhz=args.freq, progress=stream,
                        fpga_top=args.fpga_top, timeout=args.timeout)
    paths = write_reports(report, out)
    status = 1 if report["errors"] else 0
    if args.check_baseline:
        base = json.loads(baseline_path(cfg.name).read_text())
        fails, notes = compare_to_baseline(base, report, only=only)
        for line in notes:
            print(f"[baseline] note: {line}", file=stream)
        for line in fails:
            print(f"defa-hw synth: regression: {line}", file=stream)
        if fails:
            status = 1
        else:
            print(f"[baseline] within limits of {baseline_path(cfg.name).name}", file=stream)
    if args.update_baseline:
        if report["errors"]:
            print("defa-hw synth: error: not updating the baseline while blocks fail",
                  file=stream)
        else:
            bp = baseline_path(cfg.name)
            prev = json.loads(bp.read_text()) if bp.exists() else None
            bp.write_text(json.dumps(baseline_from_report(report, prev), indent=2,
                                     sort_keys=True) + "\n")
            print(f"[baseline] wrote {bp}", file=stream)
    print(f"[synth] done in {report['run_times_s']['total']:.1f} s; wrote "
          + ", ".join(str(p) for p in paths), file=stream)
    return status

"""Committed baselines (``synth/baseline_<preset>.json``) and the regression check."""

from synth.tools import SYNTH_DIR

__all__ = ["AREA_TOLERANCE", "FMAX_TOLERANCE", "baseline_path", "update_command",
           "in_source_checkout", "baseline_from_report", "compare_to_baseline"]

#: Regression tolerances (relative): area may move 5 % either way, Fmax may fall 10 %.
#: An area that drops is not a regression of the hardware, but of the baseline: left
#: stale, it would let the same area grow back unnoticed (or hide logic optimised away).
AREA_TOLERANCE = 0.05
FMAX_TOLERANCE = 0.10


_GENERIC_METRICS = ("area_nand2_logic", "area_nand2_total_est", "sram_bits")
_ECP5_INFO = ("lut", "ff", "bram", "dsp")
#: asic: areas checked like the generic ones, Fmax like the ECP5 one; power is kept for
#: the energy model (defa_hw/model/energy.py) and only noted when it changes.
_ASIC_AREAS = ("area_um2", "area_um2_total_est")
_ASIC_INFO = ("fmax_mhz", "power_mw", "cell_count", "sram_bits")


def baseline_path(name):
    """The committed baseline of preset ``name`` (package data beside this module)."""
    return SYNTH_DIR / f"baseline_{name}.json"


def update_command(name):
    """The command that rewrites the baseline of preset ``name`` (run in the repository)."""
    return f"defa-hw synth --preset {name} --out build/synth/{name} --update-baseline"


def in_source_checkout():
    """True when this package is the repository's ``synth/`` folder (an editable install),
    the only place where writing a baseline means anything."""
    return (SYNTH_DIR.parent / "pyproject.toml").is_file()


def baseline_from_report(report, previous=None):
    """The figures a baseline keeps: area per block, FPGA and standard-cell results, no run
    times.  With ``previous`` (the baseline being replaced, same config), the targets of a
    block that this run did not synthesise are kept from it, so that one target can be
    refreshed (``--target asic --update-baseline``) without rerunning the others."""
    blocks = {}
    if previous is not None and previous.get("config") == report["config"]:
        blocks = {n: dict(b) for n, b in previous.get("blocks", {}).items()}
    for n, b in report["blocks"].items():
        e = {}
        g = b.get("generic")
        if g and "error" not in g:
            e["generic"] = {k: g[k] for k in _GENERIC_METRICS + ("transistors_logic",)}
        f = b.get("ecp5")
        if f and "error" not in f:
            e["ecp5"] = {k: f[k] for k in _ECP5_INFO + ("fmax_mhz", "device")}
        a = b.get("asic")
        if a and "error" not in a:
            e["asic"] = {k: a[k] for k in _ASIC_AREAS + _ASIC_INFO}
        if e:
            blocks[n] = {**blocks.get(n, {}), **e}
    return {"schema": 1, "config_name": report["config_name"], "config": report["config"],
            "tools": report["tools"], "tolerances": {"area_growth": AREA_TOLERANCE,
                                                     "area_drop": AREA_TOLERANCE,
                                                     "fmax_drop": FMAX_TOLERANCE},
            "blocks": blocks}


def compare_to_baseline(baseline, report, *, area_tol=AREA_TOLERANCE, fmax_tol=FMAX_TOLERANCE,
                        only=None):
    """(failures, notes): a failure is any area grown or dropped by more than ``area_tol``,
    Fmax fallen by more than ``fmax_tol`` (relative; ECP5 and asic), a baseline block now
    missing or failing, or a changed config; notes list new blocks and smaller changes.
    ``only``: the blocks this run was asked for (``--blocks``/``--no-top``); baseline
    blocks outside it are not expected."""
    fails, notes = [], []
    update = update_command(report.get("config_name"))
    if baseline.get("config") != report.get("config"):
        fails.append(f"config {report.get('config_name')!r} differs from the baseline's; "
                     f"refresh it with {update}")
        return fails, notes
    cur = report["blocks"]
    for n, base in sorted(baseline["blocks"].items()):
        if only is not None and n not in only:
            continue
        if n not in cur:
            fails.append(f"{n}: in the baseline but not synthesised now")
            continue
        for target, metrics in base.items():
            now = cur[n].get(target)
            if now is None:
                notes.append(f"{n} ({target}): not run now")
                continue
            if "error" in now:
                fails.append(f"{n} ({target}): {now['error']}")
                continue
            for k, old in metrics.items():
                new = now.get(k)
                if not isinstance(old, (int, float)) or not isinstance(new, (int, float)):
                    continue
                rel = (new - old) / old if old else (0.0 if new == old else float("inf"))
                if (target, k) in {("generic", m) for m in _GENERIC_METRICS} | {
                        ("asic", m) for m in _ASIC_AREAS}:
                    if rel > area_tol:
                        fails.append(f"{n}: {k} grew {rel:+.1%} ({old:g} -> {new:g}), "
                                     f"limit +{area_tol:.0%}")
                    elif -rel > area_tol:
                        fails.append(f"{n}: {k} dropped {rel:+.1%} ({old:g} -> {new:g}), "
                                     f"limit -{area_tol:.0%}; if that is intended, update "
                                     f"the baseline: {update}")
                    elif rel:
                        notes.append(f"{n}: {k} {rel:+.1%} ({old:g} -> {new:g})")
                elif target in ("ecp5", "asic") and k == "fmax_mhz":
                    if -rel > fmax_tol:
                        fails.append(f"{n} ({target}): Fmax fell {rel:+.1%} ({old:g} -> {new:g} MHz), "
                                     f"limit -{fmax_tol:.0%}")
                    elif rel:
                        notes.append(f"{n} ({target}): Fmax {rel:+.1%} ({old:g} -> {new:g} MHz)")
                elif rel:
                    notes.append(f"{n} ({target}): {k} {rel:+.1%} ({old:g} -> {new:g})")
    for n in sorted(set(cur) - set(baseline["blocks"])):
        notes.append(f"{n}: new block, not in the baseline")
    return fails, notes

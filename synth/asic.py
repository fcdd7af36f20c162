"""The ASIC flow: a block mapped onto the OSU 0.18 um standard cells (Yosys + ABC), timed
and its power estimated by OpenSTA; memories stay SRAM macros with a cited model.

The liberty comes from the Debian package ``qflow-tech-osu018`` and ``sta`` from
``opensta``; both are looked up, never shipped.  See docs/synthesis.md, "Standard cells
(OSU 0.18 um)".
"""

import re
import shutil
import subprocess
from pathlib import Path

from synth.generic import liberty_script, parse_memories, prepare_gates, yosys_step
from synth.tools import SynthInputError, ToolError, stat_design

__all__ = ["ASIC_LIBERTY", "ASIC_CORNER", "ASIC_DELAY_TARGET_PS", "ASIC_ABC_CONSTR",
           "ASIC_POWER_MHZ", "ASIC_ACTIVITY", "ASIC_SRAM_MODEL", "asic_model", "asic_tools",
           "run_asic", "parse_paths", "sram_macro", "compose_asic"]

#: Where Debian's qflow-tech-osu018 installs the OSU 0.18 um library.
ASIC_LIBERTY = Path("/usr/share/qflow/tech/osu018/osu018_stdcells.lib")
#: The liberty's only corner (its header: typ delay/power model, operating_conditions).
ASIC_CORNER = "typical, 1.8 V, 25 C"
#: ABC's delay target (``abc -D``) and the clock period STA checks against: 5 ns.
ASIC_DELAY_TARGET_PS = 5000
#: ABC's constraints (``abc -constr``): with them Yosys' ABC script ends in ``buffer;
#: upsize; dnsize``, i.e. it buffers high fan-out nets and sizes gates.  Without them a
#: select line of the tiny pe_array drove ~500 inputs from one NOR2X1: a 102 ns path
#: (9.8 MHz), 5.5 ns with them for +3.4 % area.  Inputs are driven by a BUFX2; outputs
#: load 0.05 pF, four NAND2X1 inputs (0.0125 pF each).
ASIC_ABC_CONSTR = "set_driving_cell BUFX2\nset_load 0.05\n"
#: The clock and global switching activity of the power estimate.  OpenSTA's
#: ``set_power_activity -global -activity A`` is A transitions per clock period on every
#: net that no other source sets (10 %, duty 0.5); it cannot read a VCD/SAIF.
ASIC_POWER_MHZ = 100.0
ASIC_ACTIVITY = 0.1

#: SRAM macro model at 180 nm (an estimate; the memories are not synthesised):
#: * area: the project's per-bit model (CACTI 6.5 ``technology.cc`` 6T bit cell, 146 F^2,
#:   50 % array efficiency; docs/synthesis.md) at F = 0.18 um: 9.46 um^2 per bit;
#: * access time and energy: the published GF180MCU single-port macro
#:   ``gf180mcu_fd_ip_sram__sram512x8m8wm1`` (GlobalFoundries PDK IP, repository
#:   google/globalfoundries-pdk-ip-gf180mcu_fd_ip_sram, liberty ``__tt_025C_1v80.lib``,
#:   Apache-2.0): CLK->Q 17.30 ns (rise, smallest load and slew in its table; fall
#:   18.20 ns), min period
#:   23.56 ns, 103.176 pJ per read and 112.563 pJ per write of its 8-bit word.  Energies
#:   scale with the word width (per bit of the word); the access time is taken as is.
#:   Its periphery uses 5 V transistors, so time and energy are pessimistic for a
#:   1.8 V-only macro.
ASIC_SRAM_MODEL = {
    "area_um2_per_bit": round(146 * 0.18 ** 2 / 0.5, 3),
    "area_source": "146 F^2 6T bit cell (CACTI 6.5 technology.cc) / 50 % array "
                   "efficiency at F = 0.18 um",
    "access_ns": 17.30,
    "min_cycle_ns": 23.56,
    "read_pj_per_bit": round(103.176 / 8, 3),
    "write_pj_per_bit": round(112.563 / 8, 3),
    "timing_energy_source": "GF180MCU gf180mcu_fd_ip_sram__sram512x8m8wm1, "
                            "tt_025C_1v80 liberty (5 V periphery transistors)",
}

#: After the mapping: the $mem_v2 cells (SRAM macros) stayed in for it (the logic around
#: them is kept) and now leave the netlist that STA reads.
_ASIC_NETLIST = """\
delete t:$mem_v2{ignore}
splitnets -ports
opt_clean -purge
write_verilog -noattr -noexpr net.v
"""

_STA_SCRIPT = """\
# defa-hw synth, asic target, step 3: OpenSTA (ideal clock, no wire load, no I/O delays:
# only register-to-register paths are checked)
read_liberty {lib}
read_verilog net.v
link_design {top}
create_clock -name clk -period {period} [get_ports clk]
report_checks -path_delay max -group_count 3 -digits 3
puts "== power"
create_clock -name clk -period {power_period} [get_ports clk]
set_power_activity -global -activity {activity} -duty 0.5
report_power -digits 6
"""


def asic_model():
    """The conditions of the asic flow, as ``report.json`` records them (``models.asic``)."""
    from synth.scaling import DEFA_POINT, SCALE_TO_40NM, SOURCE
    return {"scaled_40nm": {"estimate": True, "source": SOURCE,
                            "factors_from_180nm": {k: round(v, 5)
                                                   for k, v in SCALE_TO_40NM.items()},
                            "defa_point": dict(DEFA_POINT)},
            "liberty": "osu018_stdcells (qflow-tech-osu018)", "corner": ASIC_CORNER,
            "abc_delay_target_ps": ASIC_DELAY_TARGET_PS,
            "abc_constraints": ASIC_ABC_CONSTR.strip().split("\n"),
            "power_clock_mhz": ASIC_POWER_MHZ, "activity": ASIC_ACTIVITY,
            "sram": dict(ASIC_SRAM_MODEL)}


def asic_tools():
    """(sta, liberty) paths; one-line SynthInputError naming the package when missing."""
    sta = shutil.which("sta")
    if sta is None:
        raise SynthInputError("--target asic needs OpenSTA's 'sta': install it with "
                              "'apt-get install opensta' (or make venv as root)")
    if not ASIC_LIBERTY.is_file():
        raise SynthInputError(f"--target asic needs {ASIC_LIBERTY}: install it with "
                              "'apt-get install qflow-tech-osu018' (or make venv as root)")
    return sta, ASIC_LIBERTY


def sram_macro(mem):
    """Area, access time and energy of one memory (a :func:`parse_memories` entry)."""
    m = ASIC_SRAM_MODEL
    return {"area_um2": round(mem["bits"] * m["area_um2_per_bit"], 1),
            "access_ns": m["access_ns"],
            "read_pj": round(mem["width"] * m["read_pj_per_bit"], 2),
            "write_pj": round(mem["width"] * m["write_pj_per_bit"], 2)}


_PATH_RE = re.compile(r"^Startpoint: (\S+) \(([^)]*)\)\s*\nEndpoint: (\S+) \(([^)]*)\)"
                      r"(.*?)^\s*(-?[\d.]+)\s+slack \((?:MET|VIOLATED)\)", re.S | re.M)


def parse_paths(text, *, period_ns, netlist_cells=None):
    """The paths of OpenSTA's ``report_checks``, worst first: start and end instance
    (with OpenSTA's description), data arrival, setup, slack, and ``delay_ns``, the
    clock period the path needs (``period - slack``).

    ``netlist_cells`` (instance -> (cell type, net on its Q pin)) adds the cell at each
    end and, for flip-flops, the register bit it holds."""
    paths = []
    for m in _PATH_RE.finditer(text):
        body = m.group(5)
        arrival = re.search(r"^\s*(-?[\d.]+)\s+data arrival time", body, re.M)
        setup = re.search(r"^\s*(-?[\d.]+)\s+-?[\d.]+\s+library setup time", body, re.M)
        slack = float(m.group(6))
        p = {"start": _inst(m.group(1)), "start_kind": m.group(2),
             "end": _inst(m.group(3)), "end_kind": m.group(4),
             "arrival_ns": float(arrival.group(1)) if arrival else None,
             "setup_ns": float(setup.group(1)) if setup else None,
             "slack_ns": slack, "delay_ns": round(period_ns - slack, 3)}
        if netlist_cells is not None:
            for end in ("start", "end"):
                p[f"{end}_cell"], p[f"{end}_reg"] = netlist_cells.get(p[end], (None, None))
        paths.append(p)
    return sorted(paths, key=lambda p: -p["delay_ns"])


def _inst(pin_or_inst):
    """``\\name.x[3]`` / ``_123_`` as OpenSTA prints them -> the instance name alone."""
    return pin_or_inst.replace("\\", "")


def _netlist_cells(text):
    """instance -> (cell type, net on its Q pin or None) of a ``write_verilog`` netlist."""
    cells = {}
    for m in re.finditer(r"^  (\w+) (\\\S+|\w+) \((.*?)\);", text, re.M | re.S):
        q = re.search(r"\.Q\((.*?)\)", m.group(3))
        cells[m.group(2).replace("\\", "")] = (
            m.group(1), None if q is None else q.group(1).strip().replace("\\", ""))
    return cells


def _power(text):
    m = re.search(r"^Total\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", text.split("== power")[-1], re.M)
    if m is None:
        return None
    internal, switching, leakage, total = (float(x) for x in m.groups())
    return {"internal_mw": round(internal * 1e3, 4), "switching_mw": round(switching * 1e3, 4),
            "leakage_mw": round(leakage * 1e3, 6), "total_mw": round(total * 1e3, 4)}


def run_asic(il_text, *, name, workdir, timeout=1800, ignore_types=()):
    """OSU 0.18 um area, timing and power of RTLIL text; returns the block's figures.

    ``ignore_types``: black-box cell types (a composed top's parts), left out of the
    cell counts and out of STA (their ports end and start no path)."""
    sta, liberty = asic_tools()
    workdir = prepare_gates(il_text, name=name, workdir=workdir)
    lib = liberty.name
    shutil.copyfile(liberty, workdir / lib)
    (workdir / "abc.constr").write_text(ASIC_ABC_CONSTR)
    (workdir / "asic.ys").write_text(
        liberty_script(lib=lib, abc=f"-D {ASIC_DELAY_TARGET_PS} -constr abc.constr",
                       stat="asic_stat.json",
                       comment="defa-hw synth, asic target, step 2: OSU 0.18 um cells")
        + _ASIC_NETLIST.format(ignore="".join(f" t:{t}" for t in ignore_types)))
    yosys_step(workdir, "prep.ys", what=f"{name} (asic, prep.ys)", timeout=timeout)
    yosys_step(workdir, "asic.ys", what=f"{name} (asic, asic.ys)", timeout=timeout)
    (workdir / "gates.il").unlink(missing_ok=True)
    net = workdir / "net.v"     # OpenSTA 2.0.17's Verilog reader knows no 'signed'
    net.write_text(re.sub(r"^(\s*(?:wire|input|output)) signed\b", r"\1",
                          net.read_text(), flags=re.M))

    period = ASIC_DELAY_TARGET_PS / 1000
    (workdir / "sta.tcl").write_text(_STA_SCRIPT.format(
        lib=lib, top=name, period=period, power_period=round(1e3 / ASIC_POWER_MHZ, 6),
        activity=ASIC_ACTIVITY))
    log = workdir / "sta.log"
    try:
        with open(log, "w") as out:
            proc = subprocess.run([sta, "-no_init", "-no_splash", "-exit", "sta.tcl"],
                                  cwd=workdir, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ToolError(f"sta timed out after {timeout} s on {name} (asic)", log) from None
    text = log.read_text(errors="replace")
    err = re.search(r"^(Error:.*)$", text, re.M)
    if proc.returncode != 0 or err:
        raise ToolError(f"sta failed on {name} (asic): "
                        f"{err.group(1)[:200] if err else 'non-zero exit status'}", log)

    stat = stat_design(workdir / "asic_stat.json")
    ignore = {t.lstrip("\\") for t in ignore_types}
    cells = {k: v for k, v in sorted(stat["num_cells_by_type"].items())
             if k.lstrip("\\") not in ignore}
    mems = parse_memories((workdir / "memories.il").read_text())
    for m in mems:
        m.update(sram_macro(m))
    paths = parse_paths(text, period_ns=period,
                        netlist_cells=_netlist_cells((workdir / "net.v").read_text()))
    worst = paths[0] if paths else None
    logic = float(stat.get("area", 0.0))
    power = _power(text)
    sram = round(sum(m["area_um2"] for m in mems), 1)
    return {
        "method": "flat",
        "liberty": {"name": "osu018_stdcells", "package": "qflow-tech-osu018",
                    "corner": ASIC_CORNER},
        "cells": cells,
        "cell_count": sum(v for k, v in cells.items() if not k.startswith("$")),
        "area_um2": round(logic, 1),
        "area_um2_seq": round(float(stat.get("sequential_area", 0.0)), 1),
        "memories": mems,
        "sram_bits": sum(m["bits"] for m in mems),
        "area_um2_sram_est": sram,
        "area_um2_total_est": round(logic + sram, 1),
        "clock_period_ns": period,
        "critical_path": None if worst is None else
        {k: worst[k] for k in ("start", "end", "start_cell", "end_cell", "start_reg",
                               "end_reg", "delay_ns", "slack_ns")},
        "worst_paths": paths[:3],
        "fmax_mhz": None if worst is None else round(1e3 / worst["delay_ns"], 1),
        "power_mw": None if power is None else power["total_mw"],
        "power_breakdown_mw": power,
        "power_conditions": {"clock_mhz": ASIC_POWER_MHZ, "activity": ASIC_ACTIVITY,
                             "duty": 0.5, "sram": "not included (see memories)"},
    }


_SUM = ("cell_count", "area_um2", "area_um2_seq", "sram_bits", "area_um2_sram_est",
        "area_um2_total_est")


def compose_asic(glue, parts):
    """A composed block's figures (parts = [(instance, result)]): areas, cells, memories
    and power add up; Fmax and the critical path are the slowest part's (paths across
    the parts' boundaries are not timed)."""
    rs = [("", glue)] + list(parts)
    out = {k: round(sum(r[k] for _i, r in rs), 1) for k in _SUM}
    out["cell_count"] = int(out["cell_count"])
    out["cells"] = {}
    for _i, r in rs:
        for t, v in r["cells"].items():
            out["cells"][t] = out["cells"].get(t, 0) + v
    out["cells"] = dict(sorted(out["cells"].items()))
    out["memories"] = sorted(glue["memories"] + [dict(m, name=f"{i}.{m['name']}")
                                                 for i, r in parts for m in r["memories"]],
                             key=lambda m: m["name"])
    timed = [(i, r) for i, r in rs if r["critical_path"] is not None]
    inst, slow = max(timed, key=lambda ir: ir[1]["critical_path"]["delay_ns"],
                     default=("", glue))
    out["critical_path"] = None if slow["critical_path"] is None else dict(
        slow["critical_path"], part=inst or "(glue)")
    out["worst_paths"] = slow["worst_paths"]
    out["fmax_mhz"] = slow["fmax_mhz"]
    powers = [r["power_breakdown_mw"] for _i, r in rs]
    out["power_breakdown_mw"] = None if None in powers else {
        k: round(sum(p[k] for p in powers), 6) for k in powers[0]}
    out["power_mw"] = None if None in powers else out["power_breakdown_mw"]["total_mw"]
    for k in ("liberty", "clock_period_ns", "power_conditions"):
        out[k] = glue[k]
    return out

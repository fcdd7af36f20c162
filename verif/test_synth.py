"""Tests of the synthesis flow (``defa-hw synth``, the ``synth`` package).

* the baseline comparison on synthetic numbers (fails on +6 % or -6 % area, -11 % Fmax);
* the flows on small Amaranth components of this file (multipliers, a RAM, a ROM):
  memories stay memories, 3 multipliers are 3 ``$mul`` and 3 DSPs, reports are
  written without machine paths, tool failures are one line naming the log;
* the registered ``bilinear`` block: 3 ``$mul`` cells and 3 MULT18X18D;
* the regression against ``synth/baseline_tiny.json`` (area +/-5 %, Fmax -10 %):
  generic area of every baseline block by default, the ECP5 part as ``slow``.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from amaranth.hdl import Module, Signal, signed
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

import synth
from defa_hw.rtl.blocks import BLOCKS
from defa_hw.config import preset

REPO = Path(__file__).resolve().parent.parent


# -- small test components -----------------------------------------------------------------

class ThreeMul(wiring.Component):
    """Bilinear-like datapath: three multipliers and two adders, combinational."""
    a: In(signed(13))
    b: In(signed(13))
    c: In(signed(13))
    t0: In(8)
    t1: In(8)
    t01: In(8)
    y: Out(signed(24))

    def __init__(self, cfg=None):
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.y.eq(self.a * self.t1 + self.b * self.t0 + self.c * self.t01)
        return m


class RamRom(wiring.Component):
    """A 64 x 16 RAM (must stay a memory) and a 16 x 8 ROM (becomes logic)."""
    addr: In(6)
    wdata: In(16)
    we: In(1)
    rdata: Out(16)
    acc: Out(8)

    def __init__(self, cfg=None):
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.ram = ram = memory.Memory(shape=16, depth=64, init=[])
        wp, rp = ram.write_port(), ram.read_port()
        m.d.comb += [wp.addr.eq(self.addr), wp.data.eq(self.wdata), wp.en.eq(self.we),
                     rp.addr.eq(self.addr + 1), self.rdata.eq(rp.data)]
        m.submodules.rom = rom = memory.Memory(shape=8, depth=16,
                                               init=[(i * 37) % 256 for i in range(16)])
        rr = rom.read_port()
        acc = Signal(8)
        m.d.sync += acc.eq(acc + rr.data)
        m.d.comb += [rr.addr.eq(self.addr[:4]), self.acc.eq(acc)]
        return m


class Scaled(wiring.Component):
    """Area grows with the PE array (one multiplier per row) and with the bank count."""

    def __init__(self, cfg):
        self.rows, self.banks = cfg.pe_rows, cfg.n_banks
        super().__init__({"x": In(8), "sel": In(4), "y": Out(20)})

    def elaborate(self, platform):
        m = Module()
        acc = 0
        for r in range(self.rows):
            acc = acc + self.x * (r + 3)
        words = []
        for b in range(self.banks):
            mem = memory.Memory(shape=8, depth=16, init=[])
            m.submodules[f"bank{b}"] = mem
            wp, rp = mem.write_port(), mem.read_port()
            m.d.comb += [wp.addr.eq(self.sel), wp.data.eq(self.x), wp.en.eq(self.sel == b),
                         rp.addr.eq(self.sel)]
            words.append(rp.data)
        total = acc
        for w in words:
            total = total + w
        m.d.sync += self.y.eq(total)
        return m


class Fixed(wiring.Component):
    """Does not depend on the PE array or the levels: never swept."""
    x: In(4)
    y: Out(4)

    def __init__(self, cfg=None):
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.y.eq(self.x + 1)
        return m


class Unit(wiring.Component):
    """A unit of a top that holds a registered block (ThreeMul) one level down."""
    a: In(signed(13))
    y: Out(signed(25))

    def __init__(self, cfg=None):
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.mul = mul = ThreeMul()
        # No constant inputs: Amaranth would fold them into the instance's module.
        m.d.comb += [mul.a.eq(self.a), mul.b.eq(self.a + 1), mul.c.eq(self.a - 1),
                     mul.t0.eq(self.a[1:9]), mul.t1.eq(self.a[:8]), mul.t01.eq(self.a[4:12])]
        m.d.sync += self.y.eq(mul.y + self.a)
        return m


class NestedTop(Unit):
    """A top whose only part is a :class:`Unit` (and so the same ports)."""

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = unit = Unit()
        m.d.comb += unit.a.eq(self.a)
        m.d.sync += self.y.eq(unit.y)
        return m


TINY = preset("tiny")


def _no_machine_paths(path, tmp_path):
    text = Path(path).read_text()
    assert str(tmp_path) not in text and str(REPO) not in text


# -- comparison logic on synthetic numbers ---------------------------------------------------

def _report(area=1000.0, total=1500.0, sram=800, fmax=100.0, cfg=TINY, extra=None):
    blocks = {"blk": {"generic": {"area_nand2_logic": area, "area_nand2_total_est": total,
                                  "sram_bits": sram, "transistors_logic": 4000},
                      "ecp5": {"lut": 50, "ff": 60, "bram": 0, "dsp": 3, "fmax_mhz": fmax,
                               "device": "LFE5U-25F-CABGA381"}}}
    blocks.update(extra or {})
    return {"config_name": cfg.name, "config": cfg.to_dict(), "tools": {}, "blocks": blocks}


def test_compare_passes_within_limits():
    base = synth.baseline_from_report(_report())
    fails, notes = synth.compare_to_baseline(base, _report(area=1049.0, total=1574.0,
                                                           fmax=90.5))
    assert fails == []
    assert any("area_nand2_logic +4.9%" in n for n in notes)


def test_compare_fails_on_6_percent_area_growth():
    base = synth.baseline_from_report(_report())
    fails, _ = synth.compare_to_baseline(base, _report(area=1060.0))
    assert len(fails) == 1 and "area_nand2_logic grew +6.0%" in fails[0]
    fails, _ = synth.compare_to_baseline(base, _report(total=1590.0))
    assert len(fails) == 1 and "area_nand2_total_est" in fails[0]
    fails, _ = synth.compare_to_baseline(base, _report(sram=848))
    assert len(fails) == 1 and "sram_bits" in fails[0]


def test_compare_fails_on_6_percent_area_drop_asking_for_an_update():
    base = synth.baseline_from_report(_report())
    fails, _ = synth.compare_to_baseline(base, _report(area=940.0))
    assert len(fails) == 1 and "area_nand2_logic dropped -6.0%" in fails[0]
    # The message names the command that rewrites the baseline, and it is a valid one.
    cmd = "defa-hw synth --preset tiny --out build/synth/tiny --update-baseline"
    assert fails[0].endswith(cmd)
    from defa_hw.cli import _build_parser
    args = _build_parser().parse_args(cmd.split()[1:])
    assert args.update_baseline and args.preset == "tiny"
    fails, _ = synth.compare_to_baseline(base, _report(total=1400.0, sram=700))
    assert len(fails) == 2 and all("dropped" in f for f in fails)
    # A drop within the limit is a note; a faster Fmax is never a failure.
    fails, notes = synth.compare_to_baseline(base, _report(area=951.0, fmax=150.0))
    assert fails == [] and any("area_nand2_logic -4.9%" in x for x in notes)


def test_compare_fails_on_fmax_drop_over_10_percent():
    base = synth.baseline_from_report(_report())
    fails, _ = synth.compare_to_baseline(base, _report(fmax=89.0))
    assert len(fails) == 1 and "Fmax fell -11.0%" in fails[0]
    assert synth.compare_to_baseline(base, _report(fmax=90.1))[0] == []


def test_compare_missing_failing_new_blocks_and_config():
    base = synth.baseline_from_report(_report())
    now = _report()
    del now["blocks"]["blk"]
    assert "not synthesised now" in synth.compare_to_baseline(base, now)[0][0]
    now = _report()
    now["blocks"]["blk"]["generic"] = {"error": "yosys failed on blk; see x.log"}
    assert "yosys failed" in synth.compare_to_baseline(base, now)[0][0]
    fails, notes = synth.compare_to_baseline(base, _report(extra={"newblk": {}}))
    assert fails == [] and any("new block" in n for n in notes)
    other = _report(cfg=TINY.replace(pe_cols=4))
    assert "differs from the baseline" in synth.compare_to_baseline(base, other)[0][0]


def test_baseline_has_no_run_times():
    rep = _report()
    rep["run_times_s"] = {"total": 12.3}
    base = synth.baseline_from_report(rep)
    assert "run_times_s" not in json.dumps(base)


def test_parse_memories():
    text = """
  cell $mem_v2 \\buf.bank0
    parameter \\MEMID "\\\\buf.bank0"
    parameter \\WIDTH 12
    parameter \\SIZE 60
    parameter \\RD_PORTS 1
    parameter \\WR_PORTS 1
    parameter \\RD_CLK_ENABLE 1'1
  end
  cell $mem_v2 \\buf.bank1
    parameter \\MEMID "\\\\buf.bank1"
    parameter \\WIDTH 8
    parameter \\SIZE 32
    parameter \\RD_PORTS 2
    parameter \\WR_PORTS 1
  end
"""
    mems = synth.parse_memories(text)
    assert [(m["name"], m["bits"], m["read_ports"]) for m in mems] == [
        ("buf.bank0", 720, 1), ("buf.bank1", 256, 2)]


def test_liberty_cells_and_nand2_reference():
    cells = synth.liberty_cells()
    assert cells["NAND2"] == 1.0
    for c in ("INV", "BUF", "NOR2", "AND2", "OR2", "XOR2", "XNOR2", "AOI21", "OAI21", "MUX2",
              "DFF"):
        assert c in cells


# -- the flows on the test components -------------------------------------------------------

@pytest.fixture(scope="module")
def small_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth_small")
    rep = synth.synthesize(TINY, out, blocks={"three_mul": ThreeMul, "ram_rom": RamRom},
                           jobs=2, progress=None)
    synth.write_reports(rep, out)
    return out, rep


def test_three_multipliers_are_three_mul_and_three_dsp(small_report):
    _, rep = small_report
    b = rep["blocks"]["three_mul"]
    assert b["generic"]["rtl_cells"]["$mul"] == 3
    assert b["ecp5"]["dsp"] == 3
    assert b["generic"]["area_nand2_logic"] > 500
    assert b["generic"]["transistors_logic"] > 4 * b["generic"]["area_nand2_logic"] / 2
    assert b["ecp5"]["fmax_mhz"] > 0 and b["ecp5"]["wrapper_ff"] == 13 * 3 + 8 * 3 + 24


def test_ram_stays_a_memory_rom_becomes_logic(small_report):
    _, rep = small_report
    g = rep["blocks"]["ram_rom"]["generic"]
    assert [(m["depth"], m["width"], m["bits"]) for m in g["memories"]] == [(64, 16, 1024)]
    assert g["sram_bits"] == 1024
    # Not blown up into flip-flops: the flops are the accumulator, the ROM read register
    # and nothing of the 1024-bit RAM.
    assert g["cells"].get("DFF", 0) < 40
    assert g["cells"]["$mem_v2"] == 1
    assert g["area_nand2_sram_est"] == pytest.approx(1024 * synth.SRAM_MODEL["nand2_per_bit"],
                                                     abs=0.1)
    assert g["area_nand2_total_est"] == pytest.approx(g["area_nand2_logic"]
                                                      + g["area_nand2_sram_est"], abs=0.02)


def test_reports_written_without_machine_paths(small_report, tmp_path):
    out, rep = small_report
    for f in ("report.json", "report.md", "area_breakdown.png"):
        assert (out / f).stat().st_size > 0
    for f in ("report.json", "report.md"):
        _no_machine_paths(out / f, out)
    data = json.loads((out / "report.json").read_text())
    assert set(data["blocks"]) == {"three_mul", "ram_rom"}
    assert "run_times_s" in data and "total" in data["run_times_s"]
    assert "| three_mul |" in (out / "report.md").read_text()


def test_generic_flow_is_deterministic(tmp_path):
    reps = [synth.synthesize(TINY, tmp_path / f"r{i}", blocks={"three_mul": ThreeMul},
                             targets=("generic",), progress=None) for i in range(2)]
    for r in reps:
        r.pop("run_times_s")
    assert reps[0] == reps[1]
    for i in range(2):
        synth.write_reports(reps[i], tmp_path / f"r{i}", plots=False)
    assert ((tmp_path / "r0" / "report.json").read_text()
            == (tmp_path / "r1" / "report.json").read_text())


def test_sweep_picks_the_blocks_that_change(tmp_path):
    rep = synth.synthesize(TINY, tmp_path, blocks={"scaled": Scaled, "fixed": Fixed},
                           targets=("generic",), sweep=True, progress=None)
    sw = rep["sweep"]
    assert sw["blocks"] == ["scaled"]
    pts = {p["label"]: p for p in sw["points"]}
    bad = pts["3 levels / 12 banks"]     # 4 x 8 PEs cannot split into 12-multiplier groups
    assert not bad["valid"] and "config field" in bad["reason"]
    a = [pts[f"PE {r}x{r}"]["blocks"]["scaled"]["area_nand2_logic"] for r in (4, 8, 16)]
    assert a[0] < a[1] < a[2]
    bits = [pts[lbl]["blocks"]["scaled"]["sram_bits"]
            for lbl in ("2 levels / 8 banks", "4 levels / 16 banks")]
    assert bits == [8 * 128, 16 * 128]
    synth.write_reports(rep, tmp_path)
    assert (tmp_path / "area_sweep.png").stat().st_size > 0


def test_tool_failure_is_one_line_naming_the_log(tmp_path):
    with pytest.raises(synth.ToolError) as e:
        synth.run_generic("this is not RTLIL\n", name="broken", workdir=tmp_path / "b")
    msg = str(e.value)
    assert "\n" not in msg and "prep.log" in msg and "broken" in msg and "ERROR" in msg


# -- command line ---------------------------------------------------------------------------

def _cli(*args):
    return subprocess.run([sys.executable, "-m", "defa_hw.cli", "synth", *args],
                          capture_output=True, text=True, cwd=REPO)


@pytest.mark.parametrize("args, needle", [
    (("--preset", "nope", "--out", "x"), "unknown preset"),
    (("--preset", "tiny", "--out", "x", "--blocks", "no_such_block"), "unknown block"),
    (("--preset", "tiny", "--out", "x", "--jobs", "0"), "--jobs"),
    (("--preset", "tiny", "--out", "x", "--target", "nope"), "invalid choice"),
    (("--preset", "tiny"), "--out"),
])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, args, needle):
    args = tuple(str(tmp_path / a) if a == "x" else a for a in args)
    r = _cli(*args)
    assert r.returncode == 2
    assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr


def test_cli_baseline_needs_a_preset(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(TINY.replace(name="mine").to_json())
    r = _cli("--config", str(cfg), "--out", str(tmp_path / "o"), "--update-baseline")
    assert r.returncode == 2 and "preset" in r.stderr


def test_update_baseline_only_in_a_checkout(tmp_path, monkeypatch):
    """An installed package's baseline would be lost with the next install: refused
    before any tool runs (the install test checks the real installed case)."""
    from defa_hw.cli import _build_parser
    assert synth.baseline.in_source_checkout()
    monkeypatch.setattr(synth.baseline, "SYNTH_DIR", tmp_path / "site-packages" / "synth")
    args = _build_parser().parse_args(["synth", "--preset", "tiny", "--out",
                                       str(tmp_path / "o"), "--update-baseline"])
    with pytest.raises(synth.SynthInputError, match="--update-baseline .* checkout"):
        synth.main(TINY, args)
    assert not (tmp_path / "o").exists()


# -- registered blocks ----------------------------------------------------------------------

def test_top_parts_are_recognised_as_their_blocks():
    """The top reuses a block's run only for hardware built by the same constructor:
    PEArray(cfg) inside defa_core is the pe_array block; Requant with the core's lanes
    and accumulator width is not the requant block; another config's array is not it."""
    from defa_hw.rtl.blocks import build_block
    from defa_hw.config import DefaConfig
    sig = {n: synth.structure_signature(synth.to_rtlil(build_block(n, TINY), name=n))
           for n in ("pe_array", "fmap_buffer", "requant", "softmax")}
    top = synth.to_rtlil(build_block("defa_core", TINY), name="defa_core")
    units = {i: (r, t) for i, r, t in synth.compose_parts(top, "defa_core")[1]}

    def nested(unit, inst):
        # Blocks the core's units instantiate (softmax in the attention path, the
        # requantisers in the MM issue and BA pipeline).
        r, t = units[unit]
        return {i: synth.structure_signature(tt) for i, _r, tt in synth.compose_parts(t, r)[1]}[inst]

    assert synth.structure_signature(units["pe"][1]) == sig["pe_array"]
    assert (synth.structure_signature(units["vbuf0"][1]) ==
            synth.structure_signature(units["vbuf1"][1]) == sig["fmap_buffer"])
    assert nested("attn", "softmax") == sig["softmax"]
    assert nested("mm", "rq_mm") != sig["requant"] and nested("ba", "rq_ba") != sig["requant"]
    other = DefaConfig.from_dict(dict(TINY.to_dict(), name="other", pe_rows=8, pe_cols=8))
    assert synth.structure_signature(
        synth.to_rtlil(build_block("pe_array", other), name="pe_array")) != sig["pe_array"]


def test_top_reuses_a_block_nested_in_a_part(tmp_path):
    """A block one level down in a part of the top is reused, not synthesised again
    inside a flat run of the part: the part is composed (its glue + the block)."""
    rep = synth.synthesize(TINY, tmp_path, blocks={"three_mul": ThreeMul, "top": NestedTop},
                           targets=("generic",), top="top", progress=None)
    runs = set(rep["run_times_s"]["generic"])
    assert runs == {"generic/three_mul", "generic/top/glue", "generic/top/unit/glue"}
    top, mul = rep["blocks"]["top"]["generic"], rep["blocks"]["three_mul"]["generic"]
    assert top["method"].startswith("composed") and top["rtl_cells"]["$mul"] == 3
    unit = top["parts"]["unit"]
    assert unit["area_nand2_logic"] > mul["area_nand2_logic"]
    assert top["area_nand2_logic"] == pytest.approx(top["glue"]["area_nand2_logic"]
                                                    + unit["area_nand2_logic"], abs=0.02)


@pytest.mark.skipif("bilinear" not in BLOCKS, reason="bilinear not registered yet")
def test_bilinear_has_three_multipliers(tmp_path):
    rep = synth.synthesize(TINY, tmp_path, only=["bilinear"], progress=None)
    b = rep["blocks"]["bilinear"]
    assert b["generic"]["rtl_cells"].get("$mul") == 3
    assert b["ecp5"]["dsp"] == 3


def _baseline():
    p = synth.baseline_path("tiny")
    if not p.exists():
        pytest.skip("no synth/baseline_tiny.json yet (defa-hw synth --preset tiny "
                    "--update-baseline)")
    return json.loads(p.read_text())


def _regression(tmp_path, target):
    base = _baseline()
    names = sorted(n for n, b in base["blocks"].items() if target in b)
    missing = [n for n in names if n not in BLOCKS]
    assert not missing, f"baseline blocks no longer registered: {missing}"
    if not names:
        pytest.skip(f"baseline has no {target} figures")
    rep = synth.synthesize(TINY, tmp_path, targets=(target,), only=names, progress=sys.stderr)
    base = dict(base, blocks={n: {target: b[target]} for n, b in base["blocks"].items()
                              if target in b})
    fails, notes = synth.compare_to_baseline(base, rep)
    print("\n".join(notes))
    assert not fails, "\n".join(fails)


@pytest.mark.heavy
def test_tiny_area_against_baseline(tmp_path):
    _regression(tmp_path, "generic")


@pytest.mark.slow
def test_tiny_fpga_against_baseline(tmp_path):
    _regression(tmp_path, "ecp5")

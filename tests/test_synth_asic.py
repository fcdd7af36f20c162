"""Tests of ``defa-hw synth --target asic`` (synth/asic.py): OSU 0.18 um cells, OpenSTA.

Tiny blocks only (a few seconds each): area, cells and the liberty are reported; Fmax
comes from a flip-flop to flip-flop path; a longer combinational path lowers it; a
missing tool is one line naming its Debian package (exit 2).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

import synth
import synth.asic as asic
from defa_hw.config import preset
from synth.rtlil import to_rtlil

REPO = Path(__file__).resolve().parent.parent
HAVE_TOOLS = asic.ASIC_LIBERTY.is_file() and __import__("shutil").which("sta") is not None
needs_tools = pytest.mark.skipif(not HAVE_TOOLS, reason="needs opensta and qflow-tech-osu018 "
                                 "(make venv as root)")


class Chain(wiring.Component):
    """Registered inputs, ``depth`` dependent add/xor stages, a registered output."""
    a: In(16)
    b: In(16)
    y: Out(16)

    def __init__(self, depth):
        self.depth = depth
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        ra, rb = Signal(16), Signal(16)
        m.d.sync += [ra.eq(self.a), rb.eq(self.b)]
        v = ra
        for i in range(self.depth):
            v = ((v + rb) ^ (v >> (i + 1)))[:16]
        m.d.sync += self.y.eq(v)
        return m


def _asic(design, name, tmp_path):
    return asic.run_asic(to_rtlil(design, name=name), name=name, workdir=tmp_path / name)


def _flops():
    """Names of the liberty's flip-flop cells (those with an ``ff`` group)."""
    import re
    text = asic.ASIC_LIBERTY.read_text()
    return set(re.findall(r"cell \((\w+)\) \{\s*area : [\d.]+;\s*cell_leakage_power : "
                          r"[\d.e-]+;\s*ff \(", text))


@needs_tools
@pytest.mark.parametrize("name", ["requant", "bilinear"])
def test_tiny_block_area_cells_liberty_and_flop_to_flop_path(tmp_path, name):
    from defa_hw.rtl.blocks import build_block
    r = _asic(build_block(name, preset("tiny")), name, tmp_path)
    assert r["area_um2"] > 0 and r["cell_count"] > 0 and r["area_um2_seq"] > 0
    assert r["liberty"]["name"] == "osu018_stdcells" and "1.8 V" in r["liberty"]["corner"]
    assert all(not t.startswith("$") for t in r["cells"])     # everything mapped
    cp, flops = r["critical_path"], _flops()
    assert flops and cp["start_cell"] in flops and cp["end_cell"] in flops
    assert all("flip-flop" in p["start_kind"] and "flip-flop" in p["end_kind"]
               for p in r["worst_paths"])
    assert len(r["worst_paths"]) == 3
    assert r["fmax_mhz"] == pytest.approx(1e3 / cp["delay_ns"], rel=1e-3)
    pw = r["power_breakdown_mw"]
    assert 0 < pw["switching_mw"] < r["power_mw"] == pytest.approx(
        pw["internal_mw"] + pw["switching_mw"] + pw["leakage_mw"], rel=1e-3)
    assert r["power_conditions"]["activity"] == 0.1


@needs_tools
def test_longer_combinational_path_lowers_fmax(tmp_path):
    short, long_ = (_asic(Chain(d), f"chain{d}", tmp_path) for d in (1, 6))
    assert long_["critical_path"]["delay_ns"] > 1.5 * short["critical_path"]["delay_ns"]
    assert long_["fmax_mhz"] < short["fmax_mhz"]
    assert long_["area_um2"] > short["area_um2"]


@needs_tools
def test_report_json_and_md_have_the_asic_figures_without_paths(tmp_path):
    report = synth.synthesize(preset("tiny"), tmp_path / "o", targets=("asic",),
                              only=["requant"], jobs=1, progress=None)
    synth.write_reports(report, tmp_path / "o", plots=False)
    text = (tmp_path / "o" / "report.json").read_text()
    a = json.loads(text)["blocks"]["requant"]["asic"]
    for k in ("area_um2", "cell_count", "fmax_mhz", "critical_path", "power_mw",
              "power_conditions", "liberty"):
        assert a[k], k
    assert str(tmp_path) not in text
    md = (tmp_path / "o" / "report.md").read_text()
    assert "## Standard cells: OSU 0.18 um" in md
    assert "| requant | " in md.split("Standard cells")[1]


def test_missing_sta_is_one_line_naming_the_package(tmp_path):
    env = dict(os.environ, PATH=str(Path(sys.executable).parent))    # no /usr/bin: no sta
    r = subprocess.run([sys.executable, "-m", "defa_hw.cli", "synth", "--preset", "tiny",
                        "--target", "asic", "--blocks", "requant", "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, cwd=REPO, env=env)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "apt-get install opensta" in lines[0], r.stderr


def test_missing_liberty_is_one_line_naming_the_package(monkeypatch):
    monkeypatch.setattr(asic.shutil, "which", lambda _n: "/usr/bin/sta")
    monkeypatch.setattr(asic, "ASIC_LIBERTY", Path("/nonexistent/osu018_stdcells.lib"))
    with pytest.raises(synth.SynthInputError, match="qflow-tech-osu018") as e:
        asic.asic_tools()
    assert "\n" not in str(e.value)


def test_sram_macro_model_scales_with_bits_and_width():
    small = asic.sram_macro({"bits": 1024, "width": 8})
    big = asic.sram_macro({"bits": 4096, "width": 32})
    assert big["area_um2"] == pytest.approx(4 * small["area_um2"], rel=1e-4)
    assert big["read_pj"] == pytest.approx(4 * small["read_pj"], rel=1e-3) and small["read_pj"] > 0
    assert small["access_ns"] == asic.ASIC_SRAM_MODEL["access_ns"]


def _result(area, delay, mems=()):
    power = {"internal_mw": 1.0, "switching_mw": 0.5, "leakage_mw": 0.0, "total_mw": 1.5}
    cp = {"start": "a", "end": "b", "delay_ns": delay}
    return {"cell_count": 10, "area_um2": area, "area_um2_seq": area / 4, "sram_bits": 0,
            "area_um2_sram_est": 0.0, "area_um2_total_est": area, "cells": {"INVX1": 10},
            "memories": list(mems), "critical_path": cp, "worst_paths": [cp],
            "fmax_mhz": round(1e3 / delay, 1), "power_breakdown_mw": power,
            "power_mw": 1.5, "liberty": {"name": "osu018_stdcells"}, "clock_period_ns": 5.0,
            "power_conditions": {"activity": 0.1}}


def test_composed_block_adds_area_and_power_and_takes_the_slowest_part():
    out = asic.compose_asic(_result(100.0, 2.0), [("p0", _result(50.0, 4.0)),
                                                   ("p1", _result(50.0, 3.0))])
    assert out["area_um2"] == 200.0 and out["cell_count"] == 30 and out["cells"]["INVX1"] == 30
    assert out["power_mw"] == pytest.approx(4.5)
    assert out["fmax_mhz"] == 250.0 and out["critical_path"]["part"] == "p0"


class RamLogic(wiring.Component):
    """A 64 x 16 RAM (must stay a macro) read into a register through an adder."""
    addr: In(6)
    wdata: In(16)
    we: In(1)
    y: Out(16)

    def elaborate(self, platform):
        from amaranth.lib import memory
        m = Module()
        m.submodules.ram = ram = memory.Memory(shape=16, depth=64, init=[])
        wp, rp = ram.write_port(), ram.read_port()
        m.d.comb += [wp.addr.eq(self.addr), wp.data.eq(self.wdata), wp.en.eq(self.we),
                     rp.addr.eq(self.addr + 1)]
        m.d.sync += self.y.eq(rp.data + self.wdata)
        return m


@needs_tools
def test_ram_stays_a_macro_with_model_figures(tmp_path):
    r = _asic(RamLogic(), "ram_logic", tmp_path)
    (mem,) = r["memories"]
    assert (mem["width"], mem["depth"], mem["bits"]) == (16, 64, 1024)
    assert mem["area_um2"] == pytest.approx(1024 * asic.ASIC_SRAM_MODEL["area_um2_per_bit"],
                                            rel=1e-3)
    assert mem["read_pj"] > 0 and mem["access_ns"] > 0
    assert r["area_um2_total_est"] == pytest.approx(r["area_um2"] + mem["area_um2"], abs=0.2)
    assert r["area_um2"] < 0.5 * mem["area_um2"]        # 1 kbit as flops would be far larger
    assert "$mem_v2" in r["cells"] and r["cell_count"] == sum(
        v for k, v in r["cells"].items() if k != "$mem_v2")


# ---- the asic baseline (synth/baseline.py) ------------------------------------------------

def _asic_report(area=100_000.0, total=150_000.0, fmax=200.0, power=10.0):
    cfg = preset("tiny")
    a = {"area_um2": area, "area_um2_total_est": total, "fmax_mhz": fmax, "power_mw": power,
         "cell_count": 1000, "sram_bits": 512}
    return {"config_name": "tiny", "config": cfg.to_dict(), "tools": {},
            "blocks": {"blk": {"asic": a}}}


def test_asic_baseline_fails_on_6_percent_area_growth_and_11_percent_fmax_drop():
    base = synth.baseline_from_report(_asic_report())
    assert set(base["blocks"]["blk"]["asic"]) >= {"area_um2", "fmax_mhz", "power_mw"}
    assert synth.compare_to_baseline(base, _asic_report(area=104_900.0, fmax=180.2))[0] == []
    fails, _ = synth.compare_to_baseline(base, _asic_report(area=106_000.0))
    assert len(fails) == 1 and "area_um2 grew +6.0%" in fails[0]
    fails, _ = synth.compare_to_baseline(base, _asic_report(total=159_000.0))
    assert len(fails) == 1 and "area_um2_total_est grew +6.0%" in fails[0]
    fails, _ = synth.compare_to_baseline(base, _asic_report(fmax=178.0))
    assert len(fails) == 1 and "(asic): Fmax fell -11.0%" in fails[0]
    # Power is the energy model's input, not a limit: a change is a note.
    fails, notes = synth.compare_to_baseline(base, _asic_report(power=20.0))
    assert fails == [] and any("power_mw" in n for n in notes)


def test_asic_update_keeps_the_other_targets_and_a_restricted_run_skips_other_blocks():
    prev = {"config": preset("tiny").to_dict(),
            "blocks": {"blk": {"generic": {"area_nand2_logic": 5.0}},
                       "other": {"generic": {"area_nand2_logic": 7.0}}}}
    base = synth.baseline_from_report(_asic_report(), prev)
    assert base["blocks"]["blk"]["generic"] == {"area_nand2_logic": 5.0}
    assert base["blocks"]["blk"]["asic"]["area_um2"] == 100_000.0
    assert "other" in base["blocks"]
    assert synth.compare_to_baseline(base, _asic_report(), only=["blk"])[0] == []
    assert "not synthesised now" in synth.compare_to_baseline(base, _asic_report())[0][0]


@needs_tools
@pytest.mark.heavy(minutes=1)
def test_tiny_asic_blocks_within_the_committed_baseline(tmp_path):
    """requant and bilinear (tiny) through the asic flow, checked as --check-baseline does."""
    base = json.loads(synth.baseline_path("tiny").read_text())
    only = ["requant", "bilinear"]
    assert all("asic" in base["blocks"][n] for n in only)
    report = synth.synthesize(preset("tiny"), tmp_path / "o", targets=("asic",), only=only,
                              jobs=1, progress=None)
    fails, _notes = synth.compare_to_baseline(base, report, only=only)
    assert fails == []
    sc = report["blocks"]["requant"]["asic"]["scaled_40nm"]
    assert sc["estimate"] is True and sc["fmax_mhz"] > report["blocks"]["requant"]["asic"][
        "fmax_mhz"]


# ---- the 40 nm estimate (synth/scaling.py) ----------------------------------------------

def test_scaling_factors_lie_between_the_papers_45_and_32_nm_points():
    from synth import scaling
    f40 = scaling.SCALE_TO_40NM
    f45, f32 = scaling.factors(45), scaling.factors(32)
    for k in ("area", "delay", "energy", "power"):
        assert f32[k] < f40[k] < f45[k] < 1, k
    assert f45["area"] == pytest.approx(1 / 19) and f32["area"] == pytest.approx(1 / 40)
    # The authors' erratum: HP32 energy fit at 0.9 V = 0.4571.
    assert scaling._poly(scaling.POLY["HP32"]["energy"], 0.9) == pytest.approx(0.4571, abs=1e-4)
    with pytest.raises(ValueError):
        scaling.factors(28)


def test_scale_block_applies_each_factor_once_and_judges_400_mhz():
    from synth import scaling
    f = {"area": 0.5, "delay": 0.25, "energy": 0.1, "power": 0.2}
    a = _result(1000.0, 4.0)
    sc = scaling.scale_block(a, f, target_mhz=1000.0)
    assert sc["area_um2"] == 500.0 and sc["delay_ns"] == 1.0 and sc["fmax_mhz"] == 1000.0
    assert sc["power_mw"] == pytest.approx(0.15) and sc["meets_target"] is True
    assert scaling.scale_block(_result(1000.0, 4.1), f, target_mhz=1000.0)["meets_target"] is False
    assert sc["estimate"] is True

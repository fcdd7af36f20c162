"""Energy per encoder layer (defa_hw/model/energy.py) and external traffic
(defa_hw/model/traffic.py): the figures add up and follow their inputs.  No expected
value here is copied from the implementation's output."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from defa_hw.config import preset
from defa_hw.model import energy
from defa_hw.model.perf import ENCODER_SHAPES
from defa_hw.model.traffic import external_traffic
from synth.scaling import SCALE_TO_40NM

REPO = Path(__file__).resolve().parent.parent
#: Stand-in synthesis figures: a 1,000 mW pe_array at 100 MHz is 10,000 pJ per cycle.
FIG = {"source": "test", "power_clock_mhz": 100.0, "activity": 0.1,
       "blocks": {"pe_array": {"power_mw": 1000.0, "fmax_mhz": 150.0},
                  "defa_core": {"power_mw": 2000.0, "fmax_mhz": 125.0}}}


@pytest.fixture(scope="module")
def reps():
    cfg = preset("defa")
    return {p: energy.energy_report(cfg, p, figures=FIG) for p in ("none", "defa")}


def test_components_sum_to_the_total(reps):
    for r in reps.values():
        for n in r["nodes"].values():
            e = n["energy_j"]
            assert sum(v for k, v in e.items() if k != "total") == pytest.approx(e["total"])
            assert all(v >= 0 for v in e.values())


def test_pruning_lowers_the_energy_and_the_work(reps):
    none, defa = reps["none"], reps["defa"]
    assert defa["counts"]["kept_points"] < 0.25 * none["counts"]["kept_points"]
    for node in ("180nm", "40nm"):
        assert defa["nodes"][node]["energy_j"]["total"] < none["nodes"][node]["energy_j"]["total"]
        assert defa["nodes"][node]["energy_j"]["ba"] < none["nodes"][node]["energy_j"]["ba"]
    # The stream carries every pixel whatever the mask: the external bits do not change.
    assert defa["traffic"]["total_bits"] == none["traffic"]["total_bits"]


def test_per_op_energies_from_the_array_power_and_the_40nm_factor_applied_once():
    cfg = preset("defa")
    e180 = energy.per_op_energies(cfg, FIG, node="180nm")
    e40 = energy.per_op_energies(cfg, FIG, node="40nm")
    assert e180["mm_mac"] == pytest.approx(10_000 / (16 * 16))     # pJ per cycle / PEs
    assert e180["ba_point_channel"] == pytest.approx(10_000 / (4 * 16))
    for k in ("mm_mac", "ba_point_channel", "sram_read_bit", "sram_write_bit"):
        assert e40[k] == pytest.approx(e180[k] * SCALE_TO_40NM["energy"])
    assert e40["external_bit"] == e180["external_bit"] == 1.2
    # Twice the array power: twice the MM and BA energy of the layer, nothing else.
    fig2 = json.loads(json.dumps(FIG))
    fig2["blocks"]["pe_array"]["power_mw"] *= 2
    r1 = energy.energy_report(cfg, "defa", figures=FIG)["nodes"]["40nm"]["energy_j"]
    r2 = energy.energy_report(cfg, "defa", figures=fig2)["nodes"]["40nm"]["energy_j"]
    assert r2["mm_macs"] == pytest.approx(2 * r1["mm_macs"])
    assert r2["ba"] == pytest.approx(2 * r1["ba"])
    assert r2["external"] == r1["external"] and r2["sram_weights"] == r1["sram_weights"]


def test_doubling_the_traffic_energy_per_bit_doubles_the_external_share():
    cfg = preset("defa")
    a = energy.energy_report(cfg, "none", figures=FIG)["nodes"]["40nm"]["energy_j"]
    b = energy.energy_report(cfg, "none", figures=FIG, hbm_pj_per_bit=2.4)["nodes"]["40nm"][
        "energy_j"]
    assert b["external"] == pytest.approx(2 * a["external"])
    assert b["total"] - a["total"] == pytest.approx(a["external"])


def test_mm_energy_is_macs_times_energy_per_mac(reps):
    r = reps["none"]
    q, C, n_att = 22223, 256, 8 * 4 * 4
    # every pixel a query, no pruning: attention, offsets, value and output projections
    assert r["counts"]["mm_macs_total"] == q * n_att * C + q * n_att * 2 * C + 2 * q * C * C
    n = r["nodes"]["180nm"]
    assert n["energy_j"]["mm_macs"] == pytest.approx(
        r["counts"]["mm_macs_total"] * n["per_op_pj"]["mm_mac"] * 1e-12)
    # GOPS/W = ops / energy, whatever the clock
    assert n["gops_per_w"] == pytest.approx(r["ops"] / n["energy_j"]["total"] / 1e9)


def test_gpu_comparison_is_board_power_times_latency(reps):
    g = reps["none"]["gpu"]
    assert g["energy_j"] == pytest.approx(350 * 1.234e-3)
    n = reps["none"]["nodes"]["40nm"]
    assert n["gpu_energy_ratio"] == pytest.approx(
        g["energy_j"] * 22223 / 15200 / n["energy_j"]["total"])


def test_external_traffic_is_widths_times_beats():
    cfg = preset("defa")
    t = external_traffic(cfg, ENCODER_SHAPES, 100)
    S = sum(h * w for h, w in ENCODER_SHAPES)
    assert t["fmap"]["beats"] == S and t["fmap"]["beat_bits"] == 256 * 12 + 1
    assert t["queries"]["beats"] == 100
    assert t["queries"]["beat_bits"] == 256 * 12 + 4 * 2 * cfg.ref_frac_bits
    assert t["weights"]["beats"] == 256 + 256 + 8 * 16 + 8 * 16 * 2
    assert t["results_output"]["beats"] == 100 * 256 // 16
    assert t["total_bits"] == sum(v["bits"] for k, v in t.items() if k != "total_bits")
    # Rows fetched twice on level 0: that level's fmap bits double.
    rows = [2 * ENCODER_SHAPES[0][0]] + [h for h, _ in ENCODER_SHAPES[1:]]
    t2 = external_traffic(cfg, ENCODER_SHAPES, 100, fmap_rows_loaded=rows)
    extra = ENCODER_SHAPES[0][0] * ENCODER_SHAPES[0][1] * t["fmap"]["beat_bits"]
    assert t2["fmap"]["bits"] - t["fmap"]["bits"] == extra
    with pytest.raises(ValueError, match="one per level"):
        external_traffic(cfg, ENCODER_SHAPES, 100, fmap_rows_loaded=[1, 2])


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "defa_hw.cli", "energy", *args],
                          capture_output=True, text=True, cwd=REPO)


def test_cli_bad_pruning_is_one_line_naming_the_allowed_values():
    r = _cli("--pruning", "half")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--pruning" in lines[0] and "none" in lines[0] \
        and "defa" in lines[0]


def test_cli_bad_synth_report_is_one_line(tmp_path):
    bad = tmp_path / "r.json"
    bad.write_text("{}")
    r = _cli("--synth-report", str(bad))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "pe_array" in r.stderr


def test_cli_writes_json_table_and_plot(tmp_path):
    rep = tmp_path / "report.json"
    rep.write_text(json.dumps({"blocks": {n: {"asic": b} for n, b in FIG["blocks"].items()}}))
    r = _cli("--synth-report", str(rep), "--pruning", "defa", "--json", "--out",
             str(tmp_path / "o"))
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert [d["pruning"] for d in data] == ["defa"]
    assert data[0]["nodes"]["40nm"]["estimate"] is True
    for f in ("energy.json", "energy.md", "energy.png"):
        assert (tmp_path / "o" / f).stat().st_size > 0

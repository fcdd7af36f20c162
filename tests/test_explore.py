"""defa-hw explore: grid expansion, Pareto front, area composition and its check, the
sweep on a dask LocalCluster (the small grid around tiny) and the command's bad input."""

import io
import json

import pytest

from defa_hw.cli import main
from defa_hw.config import PRESETS, preset
from defa_hw.explore import BASE, explore
from defa_hw.explore.area import TARGETS, compose, validate
from defa_hw.explore.grid import expand, pareto_front, preset_points
from defa_hw.rtl.core import CoreGeometry
from synth import SRAM_MODEL


def test_pareto_front_on_hand_made_points():
    pts = [(1, 5), (2, 3), (3, 3), (2, 4), (4, 1), (1, 5), (5, 2)]
    # (3, 3) and (2, 4) are dominated by (2, 3); (5, 2) by (4, 1); equal points both stay
    assert pareto_front(pts) == [0, 1, 4, 5]
    assert pareto_front([(1, 1)]) == [0]
    assert pareto_front([]) == []


def test_composition_is_the_sum_of_its_parts():
    cfg = preset("defa")
    each = {"pe": 10.0, "pe_mm": 6.0, "fmap_buffer": 100.0, "sampling_address": 7.0,
            "softmax": 3.0, "fmap_mask": 5.0}
    leaves = {n: {"logic": v} for n, v in each.items()}
    a = compose(cfg, 64, leaves, "generic")
    logic = 16 * 16 * 10.0 + 8 * 100.0 + 4 * 7.0 + 3.0 + 5.0
    assert a["parts"]["pe_mm"]["count"] == 0
    bits = sum(CoreGeometry(cfg, 64).memory_bits().values())
    assert a["logic"] == pytest.approx(logic)
    assert a["sram_bits"] == bits and bits > 29_000_000      # 8 value buffers dominate
    assert a["sram"] == pytest.approx(bits * SRAM_MODEL["nand2_per_bit"])
    assert a["total"] == pytest.approx(logic + a["sram"])
    assert a["mm2"] == pytest.approx(a["total"] * 0.798e-6)
    # more queries per pass: only the per-query memories grow
    b = compose(cfg, 128, leaves, "generic")
    assert b["logic"] == a["logic"] and b["sram_bits"] > a["sram_bits"]
    # defa-xl one head per BA operation: 512 PEs in BA groups (32 channels x 4 levels x 4),
    # 3,584 MM-only; with its 8 heads at once every PE is in a BA group, 32 sampling units
    xl1 = compose(preset("defa-xl").replace(ba_heads=1), 64, leaves, "generic")
    assert (xl1["parts"]["pe"]["count"], xl1["parts"]["pe_mm"]["count"]) == (512, 3584)
    assert xl1["logic"] == pytest.approx(512 * 10.0 + 3584 * 6.0 + 8 * 100.0 + 4 * 7.0 + 8.0)
    xl = compose(preset("defa-xl"), 64, leaves, "generic")
    assert (xl["parts"]["pe"]["count"], xl["parts"]["pe_mm"]["count"]) == (4096, 0)
    assert xl["logic"] == pytest.approx(4096 * 10.0 + 8 * 100.0 + 32 * 7.0 + 8.0)
    assert xl["sram_bits"] > xl1["sram_bits"]           # FWP counter and read copies


def test_composition_checked_against_the_synthesised_cores():
    rows = {(v["reference"], v["target"]): v for v in validate()}
    defa = rows[("synth/baseline_defa.json", "asic")]
    assert defa["total_error"] == pytest.approx(
        defa["composed_total"] / defa["synthesised_total"] - 1, abs=1e-4)
    # the SRAM model dominates the defa core: the left-out logic costs a few percent
    assert -0.05 < defa["total_error"] < 0 and -0.2 < defa["logic_error"] < 0
    tiny = rows[("synth/baseline_tiny.json", "generic")]
    assert -0.25 < tiny["total_error"] < 0


def test_composition_checked_against_a_given_report(tmp_path):
    cfg = preset("defa")
    each = {"pe": 10.0, "fmap_buffer": 100.0, "sampling_address": 7.0, "softmax": 3.0,
            "fmap_mask": 5.0}                       # no pe_mm: defa has no MM-only PE
    bits = sum(CoreGeometry(cfg, 64).memory_bits().values())
    total = 3396.0 + bits * SRAM_MODEL["nand2_per_bit"]
    blocks = {n: {"generic": {"area_nand2_logic": v}} for n, v in each.items()}
    blocks["defa_core"] = {"generic": {"area_nand2_logic": 4000.0,
                                       "area_nand2_total_est": total / 0.9}}
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"config": cfg.to_dict(), "config_name": "defa",
                                "blocks": blocks}))
    v = validate([path])[-1]
    assert v["reference"] == "report.json" and v["target"] == "generic"
    assert v["composed_logic"] == 3396.0 and v["logic_error"] == pytest.approx(-0.151)
    assert v["total_error"] == pytest.approx(-0.1, abs=1e-4)


def test_illegal_points_are_kept_with_the_reason():
    base = preset("defa")
    pts = expand(base, {"pe": [BASE, (3, 16)], "n_banks": [BASE, 3], "max_queries": [64, 0]})
    assert len(pts) == 8
    ok = [p for p in pts if "skipped" not in p]
    assert len(ok) == 1 and ok[0]["cfg"] == base and ok[0]["label"] == "pe 16x16 mq 64 ob 13 nb 16"
    reasons = [p["skipped"] for p in pts if "skipped" in p]
    # the first rule broken names its field: n_banks is checked before pe_rows
    assert sum("'pe_rows'" in r for r in reasons) == 1          # 3 does not divide d_model
    assert sum("'n_banks'" in r for r in reasons) == 2
    assert sum("max_queries" in r for r in reasons) == 4
    with pytest.raises(KeyError, match="unknown sweep axis 'banks'"):
        expand(base, {"banks": [16]})


def test_presets_with_the_base_shape_label_points():
    base = preset("defa")
    pts = expand(base, {"pe": [BASE]})
    alt = base.replace(pe_rows=8, pe_cols=8)
    left = preset_points(base, pts, {**PRESETS, "alt": alt})
    assert "tiny" in left and "defa" not in left and "alt" not in left
    assert pts[0]["presets"] == ["defa"]
    assert pts[1]["presets"] == ["alt"] and pts[1]["cfg"] == alt


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    """The small grid around tiny on a LocalCluster of one worker process."""
    out = tmp_path_factory.mktemp("explore")
    log = io.StringIO()
    rep = explore(preset("tiny"), grid="small", out=out, workers=1, progress=log)
    return rep, out, log.getvalue()


def test_sweep_on_a_local_cluster(tiny_sweep):
    from defa_hw.model.perf import layer_projection
    rep, out, log = tiny_sweep
    cfg = preset("tiny")
    lines = log.splitlines()
    assert len(lines) == 4 and lines[-1].startswith("[4/4] ")
    assert {f.name for f in out.iterdir()} >= {"explore.json", "explore.md",
                                              "latency_area.png", "energy_area.png"}
    assert json.loads((out / "explore.json").read_text()) == rep
    base = [x for x in rep["points"] if x["presets"] == ["tiny"]]
    assert len(base) == 1
    x = base[0]
    lat = layer_projection(cfg, pruning="defa", shapes=cfg.max_shapes, max_queries=64)
    assert x["latency_ms"] == pytest.approx(lat["latency_ms"], rel=1e-3)
    assert x["cycles"] == lat["cycles"]["total"]
    a = x["area"]
    logic = sum(p["count"] * p["each"] for p in a["parts"].values())
    assert a["logic"] == pytest.approx(logic, rel=1e-5)
    assert a["parts"]["pe"]["count"] == 32 and a["parts"]["pe_mm"]["count"] == 0
    assert x["area_mm2"] == pytest.approx(a["total"] * TARGETS["generic"]["mm2_per_unit"],
                                          rel=1e-3)
    # the synthesised PE agrees with the committed baseline's (its 5 % tolerance)
    pe_ref = json.loads(open("synth/baseline_tiny.json").read())["blocks"]["pe"]["generic"]
    assert a["parts"]["pe"]["each"] == pytest.approx(pe_ref["area_nand2_logic"], rel=0.05)
    assert x["energy_mj"] > 0
    # a larger offset bound keeps more of the float model's offsets: higher SQNR
    sq = {tuple(p["offset_bound"]): p["sqnr_db"] for p in rep["points"]}
    assert sq[(4, 4, 4, 4)] > sq[cfg.offset_bound] + 10
    assert rep["pareto"] and all(x["pareto"] == (x["id"] in rep["pareto"])
                                 for x in rep["points"])
    skipped = {s["id"]: s["reason"] for s in rep["skipped"]}
    assert all("config field" in r or "defa_core" in r for r in skipped.values())
    assert len(rep["points"]) + len(rep["skipped"]) == 4


def test_sweep_on_an_existing_scheduler_is_deterministic(tiny_sweep, tmp_path):
    from dask.distributed import LocalCluster
    rep, out, _log = tiny_sweep
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster:
        again = explore(preset("tiny"), grid="small", out=tmp_path, cache_dir=out / "cache",
                        scheduler=cluster.scheduler_address, progress=None)
    assert again == rep
    assert (tmp_path / "explore.md").read_text() == (out / "explore.md").read_text()


@pytest.mark.parametrize("args, field", [
    (["--points", "huge"], "--points"),
    (["--workers", "0"], "--workers"),
    (["--shapes", "1x1"], "--shapes"),
    (["--clock-mhz", "0"], "--clock-mhz"),
    (["--target", "fpga"], "--target"),
    (["--preset", "nope"], "preset"),
    (["--area-check", "missing.json"], "--area-check"),
])
def test_bad_input_is_one_line_and_exit_2(args, field, capsys):
    try:
        rc = main(["explore", *args])
    except SystemExit as e:         # argparse's own errors
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2 and field in err and len(err.strip().splitlines()) == 1, err


def test_unreachable_scheduler_is_one_line(capsys, tmp_path, monkeypatch):
    import defa_hw.explore.run as run
    monkeypatch.setattr(run, "SCHEDULER_TIMEOUT_S", 1)
    rc = main(["explore", "--preset", "tiny", "--scheduler", "tcp://127.0.0.1:9",
               "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("defa-hw explore: error: --scheduler")


def _fake(cfg, latency, mm2, sqnr):
    a = {"unit": "NAND2-eq", "logic": 1.0, "sram": 1.0, "sram_bits": 1, "total": 2.0,
         "mm2": mm2, "parts": {}, "leaf_keys": {}}
    return {"cfg": cfg, "max_queries": 64, "label": f"p{latency}", "values": {},
            "presets": [], "result": {"latency_ms": latency, "cycles": 1,
                                      "ratio_to_ideal": 1.0, "area": a, "energy_j": None,
                                      "sqnr_db": sqnr, "sqnr_min_db": sqnr,
                                      "points_clamped": 0.0}}


def test_summary_marks_the_front_within_the_accuracy_target():
    from defa_hw.explore.report import summarise
    cfg = preset("defa")
    pts = [_fake(cfg, 3.0, 10.0, 40.0), _fake(cfg, 3.0, 5.0, 7.0), _fake(cfg, 2.0, 20.0, 40.0),
           {"label": "bad", "values": {}, "presets": [], "skipped": "config field 'x'"}]
    assert summarise(pts, {})["pareto"] == [1, 2]
    rep = summarise(pts, {}, min_sqnr=30)
    assert rep["pareto"] == [0, 2] and rep["min_sqnr_db"] == 30
    assert [x["pareto"] for x in rep["points"]] == [True, False, True]
    assert rep["skipped"] == [{"id": 3, "label": "bad", "values": {}, "presets": [],
                               "reason": "config field 'x'"}]

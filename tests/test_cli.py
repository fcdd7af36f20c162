"""The defa-hw command line: golden runs, and one-line exit-2 errors for malformed input."""

import json
import subprocess
import sys

import numpy as np
import pytest

from defa_hw.config import preset
from golden.accuracy import random_workload
from golden.model import defa_block, quantize_block


def run(*args):
    return subprocess.run([sys.executable, "-m", "defa_hw.cli", *args], capture_output=True,
                          text=True)


@pytest.fixture(scope="module")
def tiny_inputs(tmp_path_factory):
    path = tmp_path_factory.mktemp("in") / "in.npz"
    r = run("make-inputs", "--preset", "tiny", "--queries", "12", "--seed", "3",
            "--out", str(path))
    assert r.returncode == 0, r.stderr
    return path


def test_golden_writes_outputs_matching_the_model(tiny_inputs, tmp_path):
    out = tmp_path / "out.npz"
    r = run("golden", "--preset", "tiny", "--inputs", str(tiny_inputs), "--out", str(out))
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    with np.load(out) as z:
        assert z["output"].dtype == np.float32 and z["output"].shape == (12, 32)
        assert z["next_fmap_mask"].shape == (summary["pixels_total"],)
        cfg = preset("tiny")
        with np.load(tiny_inputs) as i:
            q = quantize_block(cfg, {k: i[k] for k in i.files if "." in k}, i["query"],
                               i["reference_points"], i["input_flatten"], i["spatial_shapes"])
        ref = defa_block(cfg, q, prune=True)
        assert np.array_equal(z["output_int"], ref["output_int"])
        assert int(z["points_pruned"]) == ref["points_pruned"] == summary["points_pruned"]
    r = run("golden", "--preset", "tiny", "--inputs", str(tiny_inputs), "--out", str(out),
            "--no-prune")
    s = json.loads(r.stdout)
    assert s["points_pruned"] == 0 and s["pixels_pruned_next"] == 0


def _write(path, arrays):
    np.savez(path, **arrays)
    return path


def _base():
    cfg = preset("tiny")
    params, inputs = random_workload(cfg, 0, n_queries=4)
    arrays = {k: v.astype(np.float32) for k, v in params.items()}
    for k in ("query", "reference_points", "input_flatten"):
        arrays[k] = inputs[k].astype(np.float32)
    arrays["spatial_shapes"] = inputs["spatial_shapes"]
    return arrays


def _bad_cases():
    def drop(a):
        del a["query"]
    def extradim(a):
        a["query"] = a["query"][None]
    def dtype(a):
        a["input_flatten"] = a["input_flatten"].astype(np.int32)
    def nan(a):
        a["input_flatten"][3, 4] = np.nan
    def inf(a):
        a["value_proj.weight"][0, 0] = np.inf
    def s_mismatch(a):
        a["input_flatten"] = a["input_flatten"][:-1]
    def levels(a):
        a["spatial_shapes"] = a["spatial_shapes"][:3]
    def width(a):
        a["query"] = np.zeros((4, 16), np.float32)
    def extra(a):
        a["bogus"] = np.zeros(3)
    def ref_range(a):
        a["reference_points"][0, 0, 0] = 1.5
    def too_big(a):
        a["spatial_shapes"] = a["spatial_shapes"] * 2
    def coarse_offsets(a):       # |query| and |W_s| so large that Q x W_s is coarser than Q.F
        a["query"] = a["query"] * 3000
        a["sampling_offsets.weight"] = a["sampling_offsets.weight"] * 3000
    return [("missing array 'query'", drop), ("'query' has shape", extradim),
            ("'input_flatten' has dtype int32", dtype), ("'input_flatten' contains NaN", nan),
            ("'value_proj.weight' contains NaN or Inf", inf),
            ("S = sum\\(H\\*W\\)", s_mismatch), ("config has n_levels = 4", levels),
            ("expected \\(4, 32\\)", width), ("unexpected array 'bogus'", extra),
            ("outside \\[0, 1\\]", ref_range), ("config max_shapes", too_big),
            ("coarser than the coordinate format", coarse_offsets)]


@pytest.mark.parametrize("expect, mutate", _bad_cases(), ids=lambda v: getattr(v, "__name__", ""))
def test_malformed_input_is_one_line_exit_2_and_writes_nothing(expect, mutate, tmp_path):
    arrays = _base()
    mutate(arrays)
    out = tmp_path / "out.npz"
    r = run("golden", "--preset", "tiny", "--inputs", str(_write(tmp_path / "in.npz", arrays)),
            "--out", str(out))
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    import re
    assert re.search(expect, r.stderr), r.stderr
    assert not out.exists()


def test_unreadable_inputs_and_bad_config(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_text("not a zip")
    for args, expect in [
        (["golden", "--inputs", str(junk), "--out", str(tmp_path / "o.npz")], "not a readable"),
        (["golden", "--inputs", str(tmp_path / "none.npz"), "--out", "o.npz"], "does not exist"),
        (["golden", "--preset", "huge", "--inputs", "x", "--out", "y"], "allowed presets"),
        (["generate", "--block", "nope", "--out", str(tmp_path)], "allowed blocks"),
        (["make-inputs", "--shapes", "3x", "--out", "x.npz"], "HxW per level"),
    ]:
        r = run(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert expect in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_config_command_prints_valid_json():
    r = run("config", "--preset", "tiny", "--derived")
    assert r.returncode == 0
    d = json.loads(r.stdout)
    assert d["name"] == "tiny" and d["derived"]["ba_channels"] == preset("tiny").ba_channels


def test_perf_prints_the_projected_layer():
    """defa-hw perf --json: one line; the phases add up to the cycles, pruning shortens
    the layer, the locality order loads each row once and the given order does not."""
    outs = {}
    for pruning, order in (("none", "locality"), ("defa", "locality"), ("defa", "given")):
        r = run("perf", "--preset", "defa", "--pruning", pruning, "--order", order, "--json")
        assert r.returncode == 0, r.stderr
        assert len(r.stdout.strip().splitlines()) == 1
        outs[pruning, order] = d = json.loads(r.stdout)
        assert sum(d["cycles_per_phase"].values()) == d["cycles"]
        assert d["latency_ms"] == pytest.approx(d["cycles"] / 400e3, rel=1e-3)
        assert d["cycles"] >= d["ideal_cycles"] and d["queries"] == 22223
    assert outs["defa", "locality"]["latency_ms"] < outs["none", "locality"]["latency_ms"]
    assert outs["defa", "locality"]["rows_refetched"] == 0
    assert outs["defa", "given"]["rows_refetched"] > 0
    assert outs["defa", "given"]["cycles"] > outs["defa", "locality"]["cycles"]


@pytest.mark.parametrize("args,field", [
    (("--shapes", "100x167"), "--shapes"), (("--shapes", "120x167,50x84,25x42,13x21"), "level 0"),
    (("--pruning", "most"), "--pruning"), (("--clock-mhz", "0"), "--clock-mhz")])
def test_perf_rejects_bad_input(args, field):
    r = run("perf", "--preset", "defa", *args)
    assert r.returncode == 2 and field in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr

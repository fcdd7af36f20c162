"""``defa-hw calibrate``, ``golden --quant`` and the ``torch_output`` SQNR in the summary."""

import json
import subprocess
import sys

import numpy as np
import pytest

from defa_hw.config import preset
from defa_hw.model.workload import save_workload
from golden import reference
from golden.accuracy import random_workload

TINY = preset("tiny")


def run(*args):
    return subprocess.run([sys.executable, "-m", "defa_hw.cli", *args], capture_output=True,
                          text=True)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Three inputs of one tiny block (shared weights); the last also holds torch_output."""
    d = tmp_path_factory.mktemp("cal")
    params, _ = random_workload(TINY, 0, n_queries=8)
    paths = []
    for seed in range(3):
        inp = reference.random_inputs(np.random.default_rng(50 + seed),
                                      np.array(TINY.max_shapes), 8, TINY.d_model)
        inp["fmap_mask"] = np.zeros(len(inp["input_flatten"]), dtype=bool)
        paths.append(d / f"in{seed}.npz")
        save_workload(paths[-1], params, inp)
    flt = reference.msdeform_attn_forward(params, inp["query"], inp["reference_points"],
                                          inp["input_flatten"], inp["spatial_shapes"],
                                          n_heads=TINY.n_heads)
    with np.load(paths[-1]) as z:
        arrays = dict(z)
    np.savez(paths[-1], **arrays, torch_output=flt.astype(np.float32))
    return d, paths, flt


def test_calibrate_then_golden_with_static_scales(files):
    d, paths, flt = files
    q = d / "quant.json"
    r = run("calibrate", "--preset", "tiny", "--inputs", str(paths[0]), str(paths[1]),
            "--out", str(q))
    assert r.returncode == 0, r.stderr
    stored = json.loads(q.read_text())
    assert stored["n_inputs"] == 2 and set(stored["frac_bits"]) >= {"query", "output"}
    out = d / "out.npz"
    r = run("golden", "--preset", "tiny", "--inputs", str(paths[2]), "--out", str(out),
            "--quant", str(q), "--no-prune")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["values_saturated"] == sum(s["saturated"].values())
    with np.load(out) as z:
        err = z["output"].astype(np.float64) - flt.astype(np.float32)
    sq = 10 * np.log10(np.sum(flt.astype(np.float32).astype(np.float64) ** 2) / np.sum(err ** 2))
    assert s["sqnr_vs_torch_db"] == pytest.approx(sq, abs=0.01)
    # Without torch_output in the input there is no such field.
    r = run("golden", "--preset", "tiny", "--inputs", str(paths[0]), "--out", str(out))
    assert "sqnr_vs_torch_db" not in json.loads(r.stdout)


def test_bad_quant_files_and_mixed_weights_are_one_line_exit_2(files, tmp_path):
    d, paths, _ = files
    bad = tmp_path / "bad.json"
    r = run("calibrate", "--preset", "tiny", "--inputs", str(paths[0]), "--out", str(bad))
    assert r.returncode == 0, r.stderr
    good = json.loads(bad.read_text())
    wrong = dict(good, frac_bits=dict(good["frac_bits"], value="x"))
    for text, expect in (("{not json", "not valid JSON"),
                         (json.dumps(wrong), "'frac_bits.value'")):
        bad.write_text(text)
        r = run("golden", "--preset", "tiny", "--inputs", str(paths[0]),
                "--out", str(tmp_path / "o.npz"), "--quant", str(bad))
        assert r.returncode == 2 and expect in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "o.npz").exists()
    other = tmp_path / "other.npz"
    params, inp = random_workload(TINY, 9, n_queries=8)
    save_workload(other, params, inp)
    r = run("calibrate", "--preset", "tiny", "--inputs", str(paths[0]), str(other),
            "--out", str(tmp_path / "q.json"))
    assert r.returncode == 2 and "other weights" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "q.json").exists()


@pytest.mark.slow
def test_simulate_with_static_scales_is_bit_exact(files, tmp_path):
    """The RTL takes the static scales as golden does (builds defa_core: about a minute)."""
    d, paths, _ = files
    q = tmp_path / "quant.json"
    assert run("calibrate", "--preset", "tiny", "--inputs", str(paths[0]), "--out",
               str(q)).returncode == 0
    small = tmp_path / "small.npz"
    params, _ = random_workload(TINY, 0, n_queries=8)        # the weights of `files`
    on_chip = np.array([(8, 10), (6, 5), (3, 3), (2, 2)])    # fits tiny's row windows
    save_workload(small, params, reference.random_inputs(np.random.default_rng(7), on_chip, 8,
                                                         TINY.d_model))
    r = run("simulate", "--preset", "tiny", "--inputs", str(small), "--out",
            str(tmp_path / "sim.npz"), "--quant", str(q), "--build-dir", str(tmp_path / "build"))
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads(r.stdout)
    assert s["bit_exact"] and s["values_saturated"] == sum(s["saturated"].values())

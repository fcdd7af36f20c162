"""examples/encoder_int12.py at a small size: a transformers encoder with INT12 attention
blocks, FWP chained across layers."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the interop extra (torch) is not installed")
pytest.importorskip("transformers", reason="the interop extra (transformers) is not installed")
pytest.importorskip("skimage", reason="the interop extra (scikit-image) is not installed")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "encoder_int12.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("encoder_int12", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(example, tmp_path, *args):
    out = tmp_path / "report.json"
    assert example.main(["--size", "128x128", "--layers", "2", "--small-backbone",
                         "--json", str(out), *args]) == 0
    return json.loads(out.read_text())


def test_unpruned_int12_encoder_tracks_the_float_encoder(example, tmp_path):
    rep = _run(example, tmp_path, "--no-prune", "--trained-like")
    assert rep["spatial_shapes"] == [[16, 16], [8, 8], [4, 4], [2, 2]]
    run = rep["runs"]["per_input"]
    assert len(run["layers"]) == 2
    for row in run["layers"]:
        assert row["attn_sqnr_db"] >= 30.0          # the INT12 target, per block
        assert row["points_pruned"] == 0 and row["pixels_pruned_next"] == 0
    assert run["encoder_sqnr_db"] >= 30.0


def test_fwp_mask_is_chained_from_layer_to_layer(example):
    """Layer i+1 reads exactly the pixels layer i's FWP left (checked inside the run)."""
    model = example.build_model(layers=3, trained_like=True, small=True)
    pixels = example.load_image("chelsea", (128, 128))
    cfg, _ = example.defa_config(model, pixels)
    # A high FWP threshold so that the chain carries a non-empty mask at this small size.
    state = {"cfg": cfg.replace(fwp_threshold=200), "prune": True, "quant": None,
             "layers": [], "next_mask": None}
    masks_in, masks_out = [], []

    class Spy(example.Int12Attention):
        def __call__(self, **kwargs):
            prev = self.run["next_mask"]
            out = super().__call__(**kwargs)
            masks_in.append(None if self.index == 0 else prev.copy())
            masks_out.append(self.run["next_mask"].copy())
            return out

    example._layer_outputs(model, pixels, lambda inner, i: Spy(inner, i, state))
    rows = state["layers"]
    assert len(rows) == 3 and rows[0]["pixels_masked_in"] == 0
    for i in (1, 2):
        assert np.array_equal(masks_in[i], masks_out[i - 1])
        assert rows[i]["pixels_masked_in"] == pytest.approx(masks_out[i - 1].mean())
    assert 0 < masks_out[0].sum() < masks_out[0].size


def test_the_float_path_is_the_model_itself(example):
    model = example.build_model(layers=2, small=True)
    pixels = example.load_image("astronaut", (128, 128))
    layers, out = example._layer_outputs(model, pixels)
    with torch.no_grad():
        ref = model(pixel_values=pixels).encoder_last_hidden_state[0].double().numpy()
    assert np.array_equal(out, ref) and np.array_equal(layers[-1], ref)


def test_a_local_checkpoint_is_loaded_not_downloaded(example, tmp_path):
    saved = example.build_model(layers=3, small=True, seed=3)
    saved.save_pretrained(tmp_path / "ckpt")
    rep = _run(example, tmp_path, "--checkpoint", str(tmp_path / "ckpt"), "--no-prune")
    assert rep["checkpoint"] == str(tmp_path / "ckpt")
    assert len(rep["runs"]["per_input"]["layers"]) == 3      # the checkpoint's, not --layers 2
    assert rep["runs"]["per_input"]["encoder_sqnr_db"] >= 30.0


def test_bad_arguments_are_one_line_exit_2(example, capsys):
    assert example.main(["--size", "12x"]) == 2
    assert example.main(["--image", "/nonexistent.png", "--size", "128x128", "--layers", "1",
                         "--small-backbone"]) == 2
    assert example.main(["--size", "128x128", "--layers", "1", "--small-backbone",
                         "--fwp-threshold", "999"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "fwp_threshold" in err[2]
    assert all(line.startswith("encoder_int12: error:") for line in err)

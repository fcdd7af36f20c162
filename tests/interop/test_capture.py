"""capture() against transformers' and the original MSDeformAttn: batches with padding,
mask polarity, calibration on held-out inputs, and one-line refusals."""

import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the interop extra (torch) is not installed")
pytest.importorskip("transformers", reason="the interop extra (transformers) is not installed")

from interop_cases import batch, hf_config, hf_kwargs, original_args  # noqa: E402
from defa_hw.config import preset  # noqa: E402
from defa_hw.interop import InteropError, capture, config_for, run_golden, save  # noqa: E402
from defa_hw.model.workload import validate_workload  # noqa: E402
from golden import reference  # noqa: E402
from golden.calibration import calibrate  # noqa: E402

DEFA = preset("defa")


def _float_reference(case, fmap_mask):
    """golden's float64 reference on a captured case (no integer arithmetic)."""
    return reference.msdeform_attn_forward(case, case["query"], case["reference_points"],
                                           case["input_flatten"], case["spatial_shapes"],
                                           fmap_mask, n_heads=DEFA.n_heads)


def _close(a, b):
    return np.max(np.abs(a - b)) <= 1e-4 * np.max(np.abs(b))


@pytest.mark.parametrize("interface", ["hf", "original"])
def test_batch_of_two_with_different_padding_is_within_30_db(interface, hf_attn, original_attn):
    b = batch(1)
    if interface == "hf":
        cases = capture(hf_attn, **hf_kwargs(b))
    else:
        cases = capture(original_attn, *original_args(b))
    assert len(cases) == 2
    pads = b["pad"].numpy()
    assert pads[0].sum() != pads[1].sum()             # two different paddings
    for i, case in enumerate(cases):
        # The captured arrays reproduce the module: float reference == torch output.
        assert _close(_float_reference(case, case["fmap_mask"]), case["torch_output"])
        res = run_golden(case, DEFA, prune=False)
        print(f"{interface} batch element {i}: SQNR {res['sqnr_vs_torch_db']:.2f} dB")
        assert res["sqnr_vs_torch_db"] >= 30.0
        assert res["pixels_masked_in"] == pads[i].sum()


@pytest.mark.parametrize("interface", ["hf", "original"])
def test_padding_mask_polarity(interface, hf_attn, original_attn):
    """HF's attention_mask is True = keep, the original's input_padding_mask True =
    padding; both must arrive as fmap_mask True = masked."""
    b = batch(2)
    pad = b["pad"].numpy()
    if interface == "hf":
        cases = capture(hf_attn, **hf_kwargs(b))
    else:
        cases = capture(original_attn, *original_args(b))
    for i, case in enumerate(cases):
        assert np.array_equal(case["fmap_mask"], pad[i])
        # The opposite polarity would not reproduce the module's output.
        flipped = _float_reference(case, ~case["fmap_mask"])
        err = flipped - case["torch_output"]
        assert np.sum(err ** 2) > 0.1 * np.sum(case["torch_output"] ** 2)


def test_calibration_on_held_out_batches(hf_attn):
    calib = [c for seed in (10, 11) for c in capture(hf_attn, **hf_kwargs(batch(seed)))]
    held = capture(hf_attn, **hf_kwargs(batch(12)))
    scales = calibrate(DEFA, [validate_workload(c, DEFA) for c in calib])
    assert scales.n_inputs == 4
    for i, case in enumerate(held):
        static = run_golden(case, DEFA, prune=False, quant=scales)
        own = run_golden(case, DEFA, prune=False)
        print(f"held-out element {i}: static {static['sqnr_vs_torch_db']:.2f} dB, "
              f"per-input {own['sqnr_vs_torch_db']:.2f} dB, "
              f"saturated {sum(static['saturated'].values())}")
        assert static["sqnr_vs_torch_db"] >= 30.0 and own["sqnr_vs_torch_db"] >= 30.0


def test_saved_cases_run_through_the_cli_with_the_sqnr(hf_attn, tmp_path):
    cases = capture(hf_attn, **hf_kwargs(batch(5, B=1, n_queries=40)))
    (path,) = save(cases, tmp_path / "cases")
    r = subprocess.run([sys.executable, "-m", "defa_hw.cli", "golden", "--inputs", str(path),
                        "--out", str(tmp_path / "out.npz"), "--no-prune"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["sqnr_vs_torch_db"] >= 30.0 and s["pixels_masked_in"] == cases[0]["fmap_mask"].sum()


def test_config_for_takes_the_module_shape(hf_attn):
    assert config_for(hf_attn, base=DEFA) is DEFA
    tiny = preset("tiny")
    cfg = config_for(hf_attn, base=tiny, shapes=[(24, 40), (12, 20), (6, 10), (3, 5)])
    assert (cfg.d_model, cfg.n_heads, cfg.n_points) == (256, 8, 4)
    assert cfg.max_shapes[0] == (24, 40) and cfg.max_shapes[3] == (3, 5)


class _NotAttention(torch.nn.Module):
    """The original signature, but no MSDeformAttn layers."""

    n_heads, n_levels, n_points = 8, 4, 4

    def forward(self, query, reference_points, input_flatten, input_spatial_shapes,
                input_level_start_index, input_padding_mask=None):
        return query


def _refusals():
    def linear(hf, orig):
        return torch.nn.Linear(4, 4), (torch.zeros(1, 4),), {}

    def boxes(hf, orig):
        kw = hf_kwargs(batch(0))
        kw["reference_points"] = torch.full((2, 120, 4, 4), 0.5)
        return hf, (), kw

    def int_mask(hf, orig):
        kw = hf_kwargs(batch(0))
        kw["attention_mask"] = kw["attention_mask"].long()
        return hf, (), kw

    def no_layers(hf, orig):
        return _NotAttention(), original_args(batch(0)), {}

    def outside(hf, orig):
        args = list(original_args(batch(0)))
        args[1] = args[1] * 1.5
        return orig, tuple(args), {}

    def level_start(hf, orig):
        kw = hf_kwargs(batch(0))
        kw["level_start_index"] = kw["level_start_index"] + 1
        return hf, (), kw

    def levels(hf, orig):
        kw = hf_kwargs(batch(0))
        kw["spatial_shapes"] = kw["spatial_shapes"][:3]
        return hf, (), kw

    def no_encoder_states(hf, orig):
        kw = hf_kwargs(batch(0))
        kw["encoder_hidden_states"] = None
        return hf, (), kw

    def unknown_arg(hf, orig):
        return orig, original_args(batch(0)), {"bogus": 1}

    return [(linear, "not a recognised MSDeformAttn"), (boxes, "only 2-d reference points"),
            (int_mask, "attention_mask has dtype torch.int64"), (no_layers, "value_proj"),
            (outside, "outside [0, 1]"), (level_start, "level_start_index"),
            (levels, "spatial_shapes"), (no_encoder_states, "encoder_hidden_states is None"),
            (unknown_arg, "do not fit")]


@pytest.mark.parametrize("make, expect", _refusals(), ids=lambda v: getattr(v, "__name__", ""))
def test_unmappable_modules_and_calls_are_refused_in_one_line(make, expect, hf_attn,
                                                              original_attn):
    module, args, kwargs = make(hf_attn, original_attn)
    with pytest.raises(InteropError) as e:
        capture(module, *args, **kwargs)
    assert expect in str(e.value) and "\n" not in str(e.value)


def test_clipping_reference_points_is_explicit(original_attn):
    args = list(original_args(batch(0)))
    args[1] = args[1] * 1.5
    cases = capture(original_attn, *args, clip_reference_points=True)
    assert all(c["reference_points"].max() <= 1.0 for c in cases)


def test_a_config_with_other_levels_is_refused(hf_attn):
    from transformers.models.deformable_detr.modeling_deformable_detr import (
        DeformableDetrMultiscaleDeformableAttention)
    three = DeformableDetrMultiscaleDeformableAttention(hf_config(num_feature_levels=3), 8, 4)
    with pytest.raises(InteropError, match="3 levels"):
        config_for(three, base=DEFA)

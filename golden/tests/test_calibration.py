"""Static (offline) activation scales: max-abs over a calibration set, held-out inputs,
saturation counts, and validation of the stored form."""

import math

import numpy as np
import pytest

from defa_hw.config import preset
from golden import reference
from golden.accuracy import SMALL_DEFA_SHAPES
from golden.calibration import ACTIVATIONS, CalibrationError, StaticScales, calibrate
from golden.model import defa_block, quantize_block, sqnr_db

DEFA = preset("defa")


def _largest_f(max_abs):
    # floor(m * 2^f + 1/2) <= 2047  <=>  m * 2^f < 2047.5: the largest such integer f.
    return math.ceil(math.log2(2047.5 / max_abs)) - 1


@pytest.fixture(scope="module")
def block():
    """One block's weights and 6 inputs: 4 to calibrate on, 2 held out."""
    rng = np.random.default_rng(11)
    params = reference.random_params(rng, DEFA.d_model, DEFA.n_heads, DEFA.n_levels,
                                     DEFA.n_points)
    inputs = []
    for _ in range(6):
        inp = reference.random_inputs(rng, np.array(SMALL_DEFA_SHAPES), 150, DEFA.d_model)
        inp["fmap_mask"] = np.zeros(len(inp["input_flatten"]), dtype=bool)
        inputs.append(inp)
    return params, inputs


def _run(params, inp, scales):
    qb = quantize_block(DEFA, params, inp["query"], inp["reference_points"],
                        inp["input_flatten"], inp["spatial_shapes"], inp["fmap_mask"],
                        scales=scales)
    return qb, defa_block(DEFA, qb, prune=False)


def test_scales_are_max_abs_over_the_whole_set(block):
    params, inputs = block
    sc = calibrate(DEFA, [(params, i) for i in inputs[:4]])
    assert sc.n_inputs == 4 and set(sc.frac_bits) == set(ACTIVATIONS)
    q_max = max(np.abs(i["query"]).max() for i in inputs[:4])
    # The logits written out from the weights, not through the model under test.
    l_max = max(np.abs(i["query"] @ params["attention_weights.weight"].T
                       + params["attention_weights.bias"]).max() for i in inputs[:4])
    assert sc.frac_bits["query"] == _largest_f(q_max)
    assert sc.frac_bits["logits"] == _largest_f(l_max)
    assert sc.max_abs["query"] == pytest.approx(q_max)
    # One input alone gives a scale at least as fine as the whole set's.
    one = calibrate(DEFA, [(params, inputs[0])])
    assert all(one.frac_bits[k] >= sc.frac_bits[k] for k in ACTIVATIONS)


def test_held_out_inputs_with_static_scales_stay_above_30_db(block):
    params, inputs = block
    sc = calibrate(DEFA, [(params, i) for i in inputs[:4]])
    for inp in inputs[4:]:
        flt = reference.msdeform_attn_forward(params, inp["query"], inp["reference_points"],
                                              inp["input_flatten"], inp["spatial_shapes"],
                                              n_heads=DEFA.n_heads)
        qb, res = _run(params, inp, sc)
        assert qb.qp.query == sc.frac_bits["query"] and qb.qp.input == sc.frac_bits["input_flatten"]
        assert sqnr_db(flt, res["output"]) >= 30.0


def test_out_of_range_inputs_saturate_and_are_counted(block):
    params, inputs = block
    sc = calibrate(DEFA, [(params, i) for i in inputs[:4]])
    loud = dict(inputs[4])
    loud["input_flatten"] = inputs[4]["input_flatten"] * 4.0
    qb, res = _run(params, loud, sc)
    scaled = np.floor(loud["input_flatten"] * 2.0 ** sc.frac_bits["input_flatten"] + 0.5)
    expect = int(np.sum((scaled > 2047) | (scaled < -2048)))
    assert expect > 0 and res["saturated"]["input_flatten"] == expect
    assert qb.input.max() == 2047 and qb.input.min() == -2048
    assert res["saturated"]["value"] > 0
    # Per-input calibration on the same input saturates nothing at the input.
    _, own = _run(params, loud, None)
    assert own["saturated"]["input_flatten"] == 0 and own["saturated"]["query"] == 0


def test_static_scales_of_another_width_are_refused(block):
    params, inputs = block
    sc = calibrate(DEFA, [(params, inputs[0])])
    other = StaticScales(frac_bits=sc.frac_bits, data_bits=10, max_abs=sc.max_abs, n_inputs=1)
    with pytest.raises(ValueError, match="data_bits = 10"):
        _run(params, inputs[0], other)


def _good():
    return StaticScales(frac_bits={k: 8 for k in ACTIVATIONS}, data_bits=12,
                        max_abs={k: 1.0 for k in ACTIVATIONS}, n_inputs=3).to_dict()


def _set(path, value):
    def mutate(d):
        *head, last = path
        for k in head:
            d = d[k]
        if value is KeyError:
            del d[last]
        else:
            d[last] = value
    return mutate


@pytest.mark.parametrize("mutate, field", [
    (_set(["frac_bits", "value"], KeyError), "frac_bits.value"),
    (_set(["frac_bits", "logits"], "7"), "frac_bits.logits"),
    (_set(["frac_bits", "output"], 40), "frac_bits.output"),
    (_set(["frac_bits", "bogus"], 3), "frac_bits.bogus"),
    (_set(["max_abs", "sampled"], -1.0), "max_abs.sampled"),
    (_set(["data_bits"], 12.5), "data_bits"),
    (_set(["format"], "other"), "format"),
    (_set(["version"], 2), "version"),
    (_set(["n_inputs"], KeyError), "n_inputs"),
])
def test_malformed_scales_name_the_field(mutate, field):
    d = _good()
    assert StaticScales.from_dict(d).to_dict() == d
    mutate(d)
    with pytest.raises(CalibrationError, match=f"'{field}'"):
        StaticScales.from_dict(d)


def test_an_all_zero_weight_keeps_its_bias():
    """Deformable DETR's initial sampling_offsets.weight is all zero with a bias of whole
    pixels: the weight's scale must leave the bias representable, so every offset is
    exactly the bias (in Q.F codes)."""
    rng = np.random.default_rng(5)
    params = reference.random_params(rng, DEFA.d_model, DEFA.n_heads, DEFA.n_levels,
                                     DEFA.n_points, scale=0.0)
    assert not params["sampling_offsets.weight"].any()
    inp = reference.random_inputs(rng, np.array(SMALL_DEFA_SHAPES), 20, DEFA.d_model)
    inp["fmap_mask"] = np.zeros(len(inp["input_flatten"]), dtype=bool)
    _, res = _run(params, inp, None)
    expect = params["sampling_offsets.bias"].reshape(DEFA.n_heads, DEFA.n_levels, DEFA.n_points, 2)
    # (cos, sin) leave 1e-16 residues where a component is 0: round to whole codes.
    expect = np.broadcast_to(np.round(expect * 2 ** DEFA.coord_frac_bits), res["offsets"].shape)
    assert np.array_equal(res["offsets"], expect)

"""The whole INT12 block against the float reference: SQNR bounds and pruning behaviour."""

import numpy as np
import pytest

from defa_hw.config import preset
from golden import reference
from golden.accuracy import SMALL_DEFA_SHAPES, measure, random_workload
from golden.model import defa_block, quantize_block

DEFA, TINY = preset("defa"), preset("tiny")


@pytest.mark.parametrize("seed", range(3))
def test_defa_unpruned_sqnr_at_least_30_db(seed):
    m = measure(DEFA, *random_workload(DEFA, seed, shapes=SMALL_DEFA_SHAPES), prune=False)
    assert m["sqnr_db"] >= 30.0, m["sqnr_db"]
    # Against the float model with the same range reduction, only arithmetic remains.
    assert m["sqnr_clamped_db"] >= 40.0, m["sqnr_clamped_db"]
    assert m["points_pruned_frac"] == 0 and m["pixels_pruned_frac"] == 0


def test_tiny_arithmetic_sqnr():
    m = measure(TINY, *random_workload(TINY, 7), prune=False)
    assert m["sqnr_clamped_db"] >= 35.0


def test_pruning_prunes_and_matches_float_with_same_masks():
    params, inputs = random_workload(DEFA, 1, shapes=SMALL_DEFA_SHAPES)
    m = measure(DEFA, params, inputs, prune=True)
    res = m["result"]
    assert 0.3 < m["points_pruned_frac"] < 0.95
    assert res["points_pruned"] == int((~res["keep"]).sum())
    # The float reference given the INT12 model's own point mask isolates arithmetic
    # error from the algorithmic effect of pruning.
    Lq, M, L, P = len(inputs["query"]), DEFA.n_heads, DEFA.n_levels, DEFA.n_points
    flt = reference.msdeform_attn_forward(
        params, inputs["query"], inputs["reference_points"], inputs["input_flatten"],
        inputs["spatial_shapes"], inputs["fmap_mask"], res["keep"].reshape(Lq, M, L, P),
        n_heads=M, offset_bound=DEFA.offset_bound)
    err = res["output"] - flt
    assert 10 * np.log10(np.sum(flt ** 2) / np.sum(err ** 2)) >= 35.0


def test_fmap_mask_input_zeroes_value_rows_and_fwp_masks_rare_pixels():
    params, inputs = random_workload(TINY, 2, n_queries=10)
    S = len(inputs["input_flatten"])
    mask = np.zeros(S, dtype=bool)
    mask[::3] = True
    qb = quantize_block(TINY, params, inputs["query"], inputs["reference_points"],
                        inputs["input_flatten"], inputs["spatial_shapes"], mask)
    res = defa_block(TINY, qb, prune=True)
    assert not res["value"][mask].any() and res["value"][~mask].any()
    assert res["pixels_masked_in"] == mask.sum()
    assert np.array_equal(res["next_fmap_mask"], res["fwp_counts"] < TINY.fwp_threshold)
    assert 0 < res["pixels_pruned_next"] < S        # 10 queries leave pixels untouched
    off = defa_block(TINY, qb, prune=False)
    assert off["points_pruned"] == 0 and not off["next_fmap_mask"].any()


def test_integer_pipeline_is_deterministic_and_in_range():
    params, inputs = random_workload(TINY, 4, n_queries=8)
    args = (params, inputs["query"], inputs["reference_points"], inputs["input_flatten"],
            inputs["spatial_shapes"])
    a = defa_block(TINY, quantize_block(TINY, *args))
    b = defa_block(TINY, quantize_block(TINY, *args))
    assert np.array_equal(a["output_int"], b["output_int"])
    assert a["output_int"].dtype == np.int64
    assert a["output_int"].min() >= -2048 and a["output_int"].max() <= 2047
    for k in ("logits", "offsets", "value", "sampled"):
        assert a[k].min() >= -2048 and a[k].max() <= 2047, k
    assert a["prob"].min() >= 0 and a["prob"].max() <= 4095

"""Hand-worked and property tests of each golden block function against docs/numerics.md."""

import math

import numpy as np
import pytest

from defa_hw.config import preset
from golden.aggregate import aggregate, aggregate_acc
from golden.bank_map import bank_map, bank_map_intra
from golden.bilinear import bilinear
from golden.fmap_mask import fmap_counts, fmap_mask, fwp_weight
from golden.linear import linear, linear_acc
from golden.point_mask import point_mask
from golden.quant import (dequantize, frac_bits_for, quantize, quantize_unsigned, requant,
                          round_shift, saturate)
from golden.sampling_address import sampling_address
from golden.softmax import LOG2E_CODE, exp2_lut, softmax, softmax_recip_shift

# Hand-worked numbers below use 8 coordinate fraction bits (t = 128 is one half).
TINY = preset("tiny").replace(coord_frac_bits=8)
DEFA = preset("defa").replace(coord_frac_bits=8, offset_bound=(7, 7, 7, 7))


# -- primitives ------------------------------------------------------------------------------

def test_round_shift_is_round_half_up():
    assert round_shift(5, 1) == 3          # 2.5 -> 3
    assert round_shift(-5, 1) == -2        # -2.5 -> -2 (half up, not away from zero)
    assert round_shift(7, 2) == 2          # 1.75
    assert round_shift(6, 2) == 2          # 1.5
    assert round_shift(-6, 2) == -1        # -1.5
    assert round_shift(-7, 2) == -2        # -1.75
    assert round_shift(123, 0) == 123
    assert round_shift(-3, -2) == -12      # negative shift: exact left shift
    assert list(round_shift(np.array([4, 5, 6]), np.array([1, 1, 2]))) == [2, 3, 2]


def test_saturate_and_requant_at_int12_limits():
    assert list(saturate([2047, 2048, -2048, -2049, 10 ** 9], 12)) == [2047, 2047, -2048, -2048,
                                                                      2047]
    assert requant(2047 * 16 + 7, 4, 12) == 2047     # 2047.44 -> 2047
    assert requant(2047 * 16 + 8, 4, 12) == 2047     # 2047.5 -> 2048 -> saturates
    assert requant(-2048 * 16 - 8, 4, 12) == -2048   # -2048.5 -> -2048 (half up)
    assert requant(-2048 * 16 - 9, 4, 12) == -2048   # -2048.56 -> -2049 -> saturates


def test_frac_bits_for_picks_largest_scale_that_fits():
    assert frac_bits_for(1.0, 12) == 10              # 1024 fits, 2048 does not
    assert frac_bits_for(2047.0, 12) == 0
    assert frac_bits_for(2047.6, 12) == -1           # rounds to 2048 at f = 0
    assert frac_bits_for(0.001, 12) == 20            # 0.001 * 2^20 = 1048.6
    assert frac_bits_for(0.0, 12) == 32
    with pytest.raises(ValueError):
        frac_bits_for(float("inf"), 12)


def test_quantize_rounds_half_up_and_saturates():
    assert list(quantize([0.5, -0.25, -0.75, 1e9, -1e9], 1, 12)) == [1, 0, -1, 2047, -2048]
    assert list(quantize_unsigned([0.0, 0.5, 1.0, -0.1], 16, 16)) == [0, 32768, 65535, 0]
    with pytest.raises(ValueError, match="NaN"):
        quantize([np.nan], 0, 12)
    assert dequantize(3, 2) == 0.75


# -- MM mode -----------------------------------------------------------------------------------

def test_linear_hand_worked():
    x, w, b = np.array([[1, 2]]), np.array([[3, 4], [5, 6]]), np.array([10, -20])
    assert linear_acc(x, w, b, DEFA).tolist() == [[21, -3]]
    # 21/4 = 5.25 -> 5; -3/4 = -0.75 -> -1 (round half up).
    assert linear(x, w, b, 2, DEFA).tolist() == [[5, -1]]


def test_linear_extremes_fit_accumulator_and_saturate():
    C = DEFA.d_model
    for a, v in [(-2048, -2048), (2047, -2048), (2047, 2047)]:
        x = np.full((1, C), a)
        w = np.full((3, C), v)
        bias_max = (1 << (DEFA.mm_acc_bits - 2)) - 1          # saturated bias code limit
        acc = linear_acc(x, w, np.array([bias_max, -bias_max - 1, 0]), DEFA)
        assert acc[0, 2] == C * a * v
        out = linear(x, w, np.zeros(3, dtype=np.int64), 4, DEFA)
        assert out[0, 2] == (2047 if a * v > 0 else -2048)


# -- softmax -----------------------------------------------------------------------------------

def test_exp2_lut_and_constants():
    lut = exp2_lut(DEFA)
    assert len(lut) == 64 and lut[0] == 32768
    assert lut[32] == 23170                       # 2^15 / sqrt(2) = 23170.48
    assert np.all(np.diff(lut) < 0)
    assert LOG2E_CODE == round(math.log2(math.e) * 2 ** 15)
    assert softmax_recip_shift(DEFA) == 35


def test_softmax_equal_logits_split_evenly():
    p = softmax(np.zeros((1, 16), dtype=np.int64), 8, DEFA)
    # e = 2^15 each, sum = 2^19, recip = 2^16, p = 2^31 >> 23 = 256 = 4096 / 16.
    assert p.tolist() == [[256] * 16]


def test_softmax_dominant_logit_saturates_to_one():
    x = np.full((1, 16), -2048)
    x[0, 5] = 2047
    p = softmax(x, 0, DEFA)
    assert p[0, 5] == 4095 and p.sum() == 4095       # 1.0 saturates to 4095/4096
    x[0, 9] = 2047
    p = softmax(x, 0, DEFA)
    assert p[0, 5] == p[0, 9] == 2048 and p.sum() == 4096


def test_softmax_one_unit_below_max_hand_worked():
    # d = 1.0 (f_a = 0): u = round(47274 / 2^9) = 92 -> n = 1, r = 28.
    x = np.array([[0, -1] + [-2048] * 14])
    _, mid = softmax(x, 0, DEFA, return_intermediates=True)
    assert mid["u"][0, 1] == 92
    lut28 = math.floor(2 ** (15 - 28 / 64) + 0.5)
    assert mid["e"][0, 1] == lut28 >> 1 == 12098       # 2^15 * 2^-0.4375 = 24196.3


@pytest.mark.parametrize("f_a", [0, 4, 8, 11])
def test_softmax_close_to_float(f_a):
    rng = np.random.default_rng(f_a)
    x = rng.integers(-2048, 2048, size=(500, 16)) >> rng.integers(0, 8, size=(500, 1))
    p = softmax(x, f_a, DEFA)
    z = x / 2.0 ** f_a
    ref = np.exp(z - z.max(-1, keepdims=True))
    ref /= ref.sum(-1, keepdims=True)
    # Bound (docs/numerics.md): 2^(1/128) - 1 < 0.55% relative from the exponent's
    # rounding, doubled for the normalisation, plus 2 LSB for reciprocal and rounding.
    assert np.all(np.abs(p - 4096 * ref) <= 0.011 * 4096 * ref + 2)
    assert np.all(np.abs(p.sum(-1) - 4096) <= 16 + 0.011 * 4096)


# -- PAP ---------------------------------------------------------------------------------------

def test_point_mask_threshold_is_inclusive():
    p = np.array([0, 81, 82, 83, 4095])
    assert point_mask(p, DEFA).tolist() == [False, False, True, True, True]
    assert point_mask(p, DEFA, enabled=False).all()
    assert point_mask(p, DEFA.replace(pap_threshold=0.0)).all()


# -- sampling address and bank mapping --------------------------------------------------------

def _addr(ref, off, level=0, shapes=((12, 10), (6, 5), (3, 3), (2, 2)), cfg=TINY):
    return sampling_address(np.array(ref), np.array(off), np.array(level), np.array(shapes), cfg)


def test_sampling_address_hand_worked_centre():
    # ref (0.5, 0.5) on a 12x10 level: x = 5 - 0.5 = 4.5 px, y = 6 - 0.5 = 5.5 px.
    a = _addr([32768, 32768], [0, 0])
    assert (a["x"], a["y"]) == (1152, 1408)
    assert (a["x0"], a["y0"], a["t1"], a["t0"], a["t01"]) == (4, 5, 128, 128, 64)
    assert a["inb"].tolist() == [True] * 4
    # Neighbours (5,4) (5,5) (6,4) (6,5): parities 2, 3, 0, 1.
    assert a["bank"].tolist() == [2, 3, 0, 1]
    # Tiny level 0: 8 window rows -> 4 row pairs, pitch ceil(10/2) = 5.
    assert a["addr"].tolist() == [2 * 5 + 2, 2 * 5 + 2, 3 * 5 + 2, 3 * 5 + 2]
    assert not a["clamped"]


def test_sampling_address_exact_pixel_centre_has_zero_fraction():
    # Pixel centre of column 3 on a 10-wide level: (3 + 0.5) / 10 = 0.35 -> ref*W = 3.5.
    a = _addr([math.floor(0.35 * 65536 + 0.5), 32768], [0, 0])
    assert a["x0"] == 3 and a["t1"] == 0 and a["t01"] == 0


def test_sampling_address_out_of_map_corner():
    a = _addr([0, 0], [0, 0])                      # x = y = -0.5 px
    assert (a["x0"], a["y0"], a["t1"], a["t0"]) == (-1, -1, 128, 128)
    assert a["inb"].tolist() == [False, False, False, True]
    assert a["addr"].tolist()[:3] == [0, 0, 0]


def test_sampling_address_clamps_to_level_bound():
    bound = TINY.offset_bound[1] << 8
    a = _addr([32768, 32768], [bound, -bound], level=1)
    assert not a["clamped"]
    a = _addr([32768, 32768], [bound + 1, 0], level=1)
    assert a["clamped"] and a["x"] == 640 - 128 + bound      # 0.5 * W = 2.5 px on W = 5
    a = _addr([32768, 32768], [0, -2048], level=1)
    assert a["clamped"] and a["y"] == 3 * 256 - 128 - bound


def test_bank_map_inter_level_never_conflicts():
    rng = np.random.default_rng(1)
    for _ in range(200):
        banks = []
        for l, (h, w) in enumerate(DEFA.max_shapes):
            y, x = rng.integers(0, h - 1), rng.integers(0, w - 1)
            b, _ = bank_map(l, np.array([y, y, y + 1, y + 1]), np.array([x, x + 1, x, x + 1]),
                            DEFA)
            banks += b.tolist()
        assert sorted(banks) == list(range(16))


def test_bank_map_addresses_unique_within_window():
    for l, (h, w) in enumerate(DEFA.max_shapes):
        rows = DEFA.buffer_rows(l)
        y, x = np.meshgrid(np.arange(rows) + 6, np.arange(w), indexing="ij")  # any window
        b, a = bank_map(l, y.ravel(), x.ravel(), DEFA)
        pairs = set(zip(b.tolist(), a.tolist()))
        assert len(pairs) == rows * w
        assert a.max() < DEFA.bank_words(l)


def test_bank_map_intra_baseline_conflicts():
    # Two points of one level whose 2x2 windows share a (y, x) mod 4 class collide.
    b0 = bank_map_intra(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]), DEFA)
    b1 = bank_map_intra(np.array([4, 4, 5, 5]), np.array([4, 5, 4, 5]), DEFA)
    assert set(b0.tolist()) == set(b1.tolist())


# -- bilinear and aggregation ------------------------------------------------------------------

def test_bilinear_hand_worked():
    F = DEFA.coord_frac_bits
    assert bilinear(100, 7, 8, 9, 0, 0, 0, DEFA) == 100 << F          # on the pixel
    assert bilinear(100, 300, 8, 9, 0, 128, 0, DEFA) == 200 << F      # halfway right
    assert bilinear(100, 300, 500, 700, 128, 128, 64, DEFA) == 400 << F  # mean of four
    assert bilinear(0, 0, 0, 2047, 255, 255, 254, DEFA) == 254 * 2047  # only v11 in map
    assert bilinear(2047, 2047, 2047, 2047, 255, 255, 254, DEFA) == 2047 << F


def test_bilinear_close_to_float_and_fits_width():
    rng = np.random.default_rng(2)
    F = DEFA.coord_frac_bits
    v = rng.integers(-2048, 2048, size=(4, 20000))
    v[:, :8] = [[-2048] * 8, [2047] * 8, [2047] * 8, [-2048] * 8]
    t0, t1 = rng.integers(0, 1 << F, size=(2, 20000))
    t01 = round_shift(t0 * t1, F)
    got = bilinear(*v, t0, t1, t01, DEFA)
    a, b = t0 / 2 ** F, t1 / 2 ** F
    exact = (1 - a) * (1 - b) * v[0] + (1 - a) * b * v[1] + a * (1 - b) * v[2] + a * b * v[3]
    dd = (v[3] - v[2]) - (v[1] - v[0])
    # Only t01's rounding (<= 1/2 LSB of Q.F) separates it from the exact value.
    assert np.all(np.abs(got - exact * 2 ** F) <= 0.5 * np.abs(dd) + 1e-6)
    assert np.all(np.abs(got) < 2 ** (DEFA.bilinear_bits - 1))


def test_aggregate_hand_worked_and_pruning():
    bil = np.array([[[256], [512]]])                   # 1.0 and 2.0 in Q.8
    prob = np.array([[2048, 1024]])                    # 0.5 and 0.25
    keep = np.array([[True, True]])
    assert aggregate_acc(bil, prob, keep).tolist() == [[2048 * 256 + 1024 * 512]]
    assert aggregate_acc(bil, prob, ~keep).tolist() == [[0]]
    # 1.0 in Q.(12 + 8) shifted to Q.4: 16.
    assert aggregate(bil, prob, np.array([[True, True]]), 16, DEFA).tolist() == [[16]]
    assert aggregate(bil * 1000, prob, keep, 10, DEFA).tolist() == [[2047]]


# -- FWP ---------------------------------------------------------------------------------------

def test_fwp_weight_and_counts_hand_worked():
    assert fwp_weight(np.array([0, 1023, 1024, 4095]), DEFA).tolist() == [1, 1, 2, 4]
    pixel = np.array([[0, 1, 2, 3], [1, 1, 1, 1], [2, 3, 4, 5]])
    inb = np.array([[True, True, True, True], [True, False, True, False], [True] * 4])
    prob = np.array([4095, 1024, 4095])
    keep = np.array([True, True, False])               # third point pruned: no count
    counts = fmap_counts(pixel, inb, prob, keep, 6, DEFA)
    assert counts.tolist() == [4, 4 + 2 + 2, 4, 4, 0, 0]


def test_fwp_counters_saturate_and_threshold():
    pixel = np.zeros((100, 4), dtype=np.int64)
    counts = fmap_counts(pixel, np.ones((100, 4), bool), np.full(100, 4095),
                         np.ones(100, bool), 2, DEFA)
    assert counts.tolist() == [255, 0]
    c = np.array([0, 1, 2, 3, 255])
    assert fmap_mask(c, DEFA).tolist() == [True, True, False, False, False]   # threshold 2
    assert not fmap_mask(c, DEFA.replace(fwp_threshold=0)).any()
    assert fmap_mask(c, DEFA.replace(fwp_threshold=255)).tolist() == [True] * 4 + [False]
    assert not fmap_mask(c, DEFA, enabled=False).any()


# -- property tests against float within stated bounds ----------------------------------------

def test_linear_requant_within_half_lsb_of_float():
    rng = np.random.default_rng(5)
    x = rng.integers(-2048, 2048, size=(64, 256))
    w = rng.integers(-2048, 2048, size=(32, 256))
    b = rng.integers(-2 ** 20, 2 ** 20, size=32)
    shift = 18
    exact = (x.astype(float) @ w.T.astype(float) + b) / 2 ** shift
    got = linear(x, w, b, shift, DEFA)
    inside = np.abs(exact) < 2047
    # Round half up: within 1/2 LSB where not saturated, saturated otherwise.
    assert np.all(np.abs(got - exact)[inside] <= 0.5)
    assert np.all(np.abs(got[~inside]) >= 2047)


def test_sampling_address_within_one_lsb_of_float_location():
    rng = np.random.default_rng(6)
    n, cfg = 5000, preset("defa")
    F, R = cfg.coord_frac_bits, cfg.ref_frac_bits
    shapes = np.array(cfg.max_shapes)
    level = rng.integers(0, 4, size=n)
    ref = rng.integers(0, 1 << R, size=(n, 2))
    off = rng.integers(-2048, 2048, size=(n, 2))
    a = sampling_address(ref, off, level, shapes, cfg)
    H, W = shapes[level, 0], shapes[level, 1]
    bound = np.array(cfg.offset_bound)[level]
    off_px = np.clip(off / 2 ** F, -bound[:, None], bound[:, None])
    fx = ref[:, 0] / 2 ** R * W - 0.5 + off_px[:, 0]
    fy = ref[:, 1] / 2 ** R * H - 0.5 + off_px[:, 1]
    # Only ref * W is rounded to Q.F (half an LSB); the rest is exact.
    assert np.all(np.abs(a["x"] / 2 ** F - fx) <= 2.0 ** -(F + 1))
    assert np.all(np.abs(a["y"] / 2 ** F - fy) <= 2.0 ** -(F + 1))
    assert np.array_equal(a["x0"], np.floor(a["x"] / 2 ** F))
    assert np.all((a["t0"] >= 0) & (a["t0"] < 2 ** F) & (a["t01"] <= a["t0"]))
    assert a["clamped"].mean() > 0.15          # |offset| > 13 px: 3/16 per component

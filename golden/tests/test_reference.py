"""Tests of the float64 MSDeformAttn reference (golden/reference.py).

Three independent yardsticks: the committed PyTorch vectors, live PyTorch when
it is installed, and hand-worked bilinear values / a per-point loop.
"""

import pathlib

import numpy as np
import pytest

from golden.reference import (
    PARAM_NAMES,
    encoder_reference_points,
    level_start_index,
    ms_deform_attn_core,
    msdeform_attn_forward,
    random_inputs,
    random_params,
    softmax,
)

VECTOR_DIR = pathlib.Path(__file__).resolve().parents[1] / "vectors"
CORE_CASES = ("core_directed", "core_random")
BLOCK_CASES = ("block_encoder", "block_multilevel", "block_outside", "block_border",
               "block_fmap_mask", "block_point_mask", "block_boxref")
TOL = 1e-9


def _load(name):
    with np.load(VECTOR_DIR / f"{name}.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _pixel_coords(a):
    """Pixel coordinates (x, y) of a case's sampling locations, (Lq, M, L, P) each."""
    sh = a["spatial_shapes"]
    W = sh[:, 1][None, None, :, None]
    H = sh[:, 0][None, None, :, None]
    loc = a["sampling_locations"]
    return loc[..., 0] * W - 0.5, loc[..., 1] * H - 0.5, W, H


# ------------------------------------------------------------ committed vectors


def test_vector_set_is_complete_and_covers_the_corner_cases():
    files = sorted(p.stem for p in VECTOR_DIR.glob("*.npz"))
    assert files == sorted(CORE_CASES + BLOCK_CASES)
    assert sum(p.stat().st_size for p in VECTOR_DIR.glob("*.npz")) < 200_000
    cases = {n: _load(n) for n in files}
    assert all(str(a["kind"]) == ("core" if n in CORE_CASES else "block")
               for n, a in cases.items())
    assert any("fmap_mask" in a and a["fmap_mask"].any() for a in cases.values())
    assert any("point_mask" in a and not a["point_mask"].all() for a in cases.values())
    assert max(len(a["spatial_shapes"]) for a in cases.values()) >= 4
    assert max(a["value"].shape[1] for a in cases.values()) >= 4  # heads
    assert all(np.any(a["spatial_shapes"][:, 0] != a["spatial_shapes"][:, 1])
               for a in cases.values())
    assert any(a["reference_points"].shape[-1] == 4 for a in cases.values()
               if "reference_points" in a)
    d = cases["core_directed"]
    loc = d["sampling_locations"]
    assert np.any(loc == 0.0) and np.any(loc == 1.0)
    x, y, W, H = _pixel_coords(d)
    assert np.any(x == -0.5) and np.any(x == W - 0.5) and np.any(y == -0.5) and np.any(y == H - 0.5)
    assert np.any((x == np.round(x)) & (y == np.round(y)) & (x >= 0) & (x < W) & (y >= 0) & (y < H))
    fully_out = (x <= -1) | (x >= W) | (y <= -1) | (y >= H)
    half_out = ~fully_out & ((x < 0) | (x > W - 1) | (y < 0) | (y > H - 1))
    assert fully_out.any() and half_out.any()
    # The block path must reach the borders too, through ref + offset / (W, H).
    xb, yb, Wb, Hb = _pixel_coords(cases["block_border"])
    assert np.any(np.isclose(xb, -0.5, atol=1e-12)) and np.any(np.isclose(xb, Wb - 0.5, atol=1e-12))
    assert np.any(np.isclose(yb, -0.5, atol=1e-12)) and np.any(np.isclose(yb, Hb - 0.5, atol=1e-12))


@pytest.mark.parametrize("name", CORE_CASES + BLOCK_CASES)
def test_core_matches_torch_vectors(name):
    a = _load(name)
    got = ms_deform_attn_core(a["value"], a["spatial_shapes"], a["sampling_locations"],
                              a["attention_weights"])
    assert got.shape == a["core_output"].shape
    assert np.max(np.abs(got - a["core_output"])) <= TOL


@pytest.mark.parametrize("name", BLOCK_CASES)
def test_block_matches_torch_vectors(name):
    a = _load(name)
    params = {k: a["param." + k] for k in PARAM_NAMES}
    out, it = msdeform_attn_forward(params, a["query"], a["reference_points"], a["input_flatten"],
                                    a["spatial_shapes"], a.get("fmap_mask"), a.get("point_mask"),
                                    return_intermediates=True, n_heads=int(a["n_heads"]))
    assert out.shape == a["output"].shape
    assert np.max(np.abs(out - a["output"])) <= TOL
    assert np.max(np.abs(it["value"] - a["value"])) <= TOL
    assert np.max(np.abs(it["attn"] - a["attention_probs"])) <= TOL
    assert np.max(np.abs(it["sampling_locations"] - a["sampling_locations"])) <= TOL
    assert np.max(np.abs(it["sampled"] - a["core_output"])) <= TOL


# ------------------------------------------------------------ live PyTorch


def _live_cases():
    """Fresh random workloads: realistic, far-reaching offsets, masks, boxes."""
    for seed, shapes, C, M, P, nq, kw in [
        (11, [[7, 9], [4, 5], [2, 3], [1, 2]], 32, 8, 4, None, {}),
        (12, [[6, 3], [3, 2]], 16, 4, 2, 20, {"offset_px": 5.0}),
        (13, [[5, 8]], 8, 2, 5, 9, {"offset_px": 10.0, "mask": True}),
        (14, [[9, 4], [5, 2], [3, 1]], 24, 3, 3, 15, {"box": True, "mask": True}),
    ]:
        rng = np.random.default_rng(seed)
        shapes = np.array(shapes)
        inp = random_inputs(rng, shapes, nq, C, ref_jitter=1.0)
        params = random_params(rng, C, M, len(shapes), P, 1.0,
                               offset_px=kw.get("offset_px", 1.0))
        Lq, S = inp["query"].shape[0], inp["input_flatten"].shape[0]
        fmap_mask = point_mask = None
        if kw.get("mask"):
            fmap_mask = rng.uniform(size=S) < 0.3
            point_mask = rng.uniform(size=(Lq, M, len(shapes), P)) < 0.5
        if kw.get("box"):
            inp["reference_points"] = np.concatenate(
                [inp["reference_points"], rng.uniform(0.05, 0.8, size=(Lq, len(shapes), 2))], -1)
        yield params, inp, fmap_mask, point_mask, M


def test_live_against_torch():
    pytest.importorskip("torch")
    from golden.make_vectors import torch_core, torch_forward

    worst = 0.0
    n_outside = 0
    for params, inp, fmap_mask, point_mask, M in _live_cases():
        out, it = msdeform_attn_forward(params, **inp, fmap_mask=fmap_mask, point_mask=point_mask,
                                        return_intermediates=True, n_heads=M)
        ref = torch_forward(params, inp["query"], inp["reference_points"], inp["input_flatten"],
                            inp["spatial_shapes"], fmap_mask, point_mask, n_heads=M)
        worst = max(worst, np.max(np.abs(out - ref["output"])),
                    np.max(np.abs(it["sampled"] - ref["core_output"])))
        x, y, W, H = _pixel_coords({"spatial_shapes": inp["spatial_shapes"],
                                    "sampling_locations": it["sampling_locations"]})
        n_outside += int(np.sum((x < 0) | (x > W - 1) | (y < 0) | (y > H - 1)))
    # Core alone on locations well beyond the map on every side.
    rng = np.random.default_rng(15)
    shapes = np.array([[4, 7], [3, 2], [1, 1]])
    S = int(np.sum(shapes[:, 0] * shapes[:, 1]))
    value = rng.standard_normal((S, 3, 5))
    locs = rng.uniform(-0.7, 1.7, size=(40, 3, 3, 4, 2))
    attn = rng.standard_normal((40, 3, 3, 4))
    worst = max(worst, np.max(np.abs(ms_deform_attn_core(value, shapes, locs, attn)
                                     - torch_core(value, shapes, locs, attn))))
    assert n_outside > 100  # the comparison did exercise the zero padding
    assert worst <= TOL


# ------------------------------------------------------------ hand-worked bilinear


def _sample(vmap, px, py):
    """Bilinear sample of one (H, W) map at pixel coordinates via the core."""
    H, W = vmap.shape
    loc = np.array([(px + 0.5) / W, (py + 0.5) / H]).reshape(1, 1, 1, 1, 2)
    return ms_deform_attn_core(vmap.reshape(H * W, 1, 1), [[H, W]], loc,
                               np.ones((1, 1, 1, 1)))[0, 0]


# 3 x 4 map, v[y, x] = 10*y + x + 1: every value names its pixel.
VMAP = (10 * np.arange(3)[:, None] + np.arange(4)[None, :] + 1).astype(np.float64)


def test_pixel_centre_returns_the_pixel():
    for yy in range(3):
        for xx in range(4):
            assert _sample(VMAP, xx, yy) == VMAP[yy, xx]


def test_midpoint_returns_mean_of_four():
    assert _sample(VMAP, 0.5, 0.5) == pytest.approx((1 + 2 + 11 + 12) / 4, abs=1e-15)
    assert _sample(VMAP, 2.5, 1.5) == pytest.approx((13 + 14 + 23 + 24) / 4, abs=1e-15)


def test_interior_fraction():
    # x = 1.25, y = 0.75: (1-ty)[(1-tx) v(0,1) + tx v(0,2)] + ty[(1-tx) v(1,1) + tx v(1,2)]
    want = 0.25 * (0.75 * 2 + 0.25 * 3) + 0.75 * (0.75 * 12 + 0.25 * 13)
    assert _sample(VMAP, 1.25, 0.75) == pytest.approx(want, abs=1e-14)


@pytest.mark.parametrize("px,py", [(-1.0, 1.0), (4.0, 1.0), (1.0, -1.0), (1.0, 3.0), (-7.3, 0.2),
                                   (2.2, 9.9), (-1.0, -1.0), (4.0, 3.0), (-30.0, 50.0)])
def test_point_entirely_outside_is_zero(px, py):
    assert _sample(VMAP, px, py) == 0.0


@pytest.mark.parametrize("px,py,want", [
    (-0.5, 1.0, 0.5 * 11),                 # loc_x = 0: left border, half the pixel
    (-0.25, 1.0, 0.75 * 11),               # a quarter outside
    (3.5, 2.0, 0.5 * 24),                  # loc_x = 1: right border (W - 0.5)
    (1.0, -0.5, 0.5 * 2),                  # loc_y = 0: top border
    (2.0, 2.5, 0.5 * 23),                  # loc_y = 1: bottom border (H - 0.5)
    (-0.5, -0.5, 0.25 * 1),                # loc (0, 0): corner, a quarter
    (3.5, 2.5, 0.25 * 24),                 # loc (1, 1): opposite corner
    (0.5, -0.5, 0.25 * (1 + 2)),           # top border between two pixels
    (3.75, 0.5, 0.25 * 0.5 * (4 + 14)),    # right side, between two rows
    (-0.9, 2.8, 0.1 * 0.2 * 21),           # almost out at the bottom-left corner
])
def test_point_half_outside_at_border(px, py, want):
    assert _sample(VMAP, px, py) == pytest.approx(want, abs=1e-14)


def test_exact_normalised_borders():
    """loc = 0.0 and 1.0 written exactly (not via pixel coordinates)."""
    H, W = VMAP.shape
    v = VMAP.reshape(H * W, 1, 1)
    locs = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.5 / H]])
    got = ms_deform_attn_core(v, [[H, W]], locs.reshape(5, 1, 1, 1, 2), np.ones((5, 1, 1, 1)))
    assert np.allclose(got[:, 0], [0.25 * 1, 0.25 * 24, 0.25 * 21, 0.25 * 4, 0.5 * 1], atol=1e-15)


def test_levels_and_heads_read_their_own_slices():
    # Two levels, two heads; every (level, head) map is a constant so the sample names it.
    shapes = np.array([[2, 3], [3, 1]])
    S = 9
    value = np.empty((S, 2, 2))
    value[:6, 0], value[:6, 1] = 1.0, 2.0
    value[6:, 0], value[6:, 1] = 10.0, 20.0
    locs = np.full((1, 2, 2, 1, 2), 0.5)  # map centre: fully inside both levels
    for lvl, want in ((0, [1.0, 1.0, 2.0, 2.0]), (1, [10.0, 10.0, 20.0, 20.0])):
        attn = np.zeros((1, 2, 2, 1))
        attn[:, :, lvl] = 1.0
        got = ms_deform_attn_core(value, shapes, locs, attn)[0]
        assert np.allclose(got, want, atol=1e-15)
    assert level_start_index(shapes).tolist() == [0, 6]


def _naive_core(value, shapes, locs, attn):
    """Per-point loop transcription of the bilinear rule (no vectorisation)."""
    Lq, M, L, P, _ = locs.shape
    D = value.shape[2]
    starts = level_start_index(shapes)
    out = np.zeros((Lq, M, D))
    for q in range(Lq):
        for m in range(M):
            for lvl in range(L):
                H, W = shapes[lvl]
                for p in range(P):
                    x = locs[q, m, lvl, p, 0] * W - 0.5
                    y = locs[q, m, lvl, p, 1] * H - 0.5
                    x0, y0 = int(np.floor(x)), int(np.floor(y))
                    for yi in (y0, y0 + 1):
                        for xi in (x0, x0 + 1):
                            if 0 <= xi < W and 0 <= yi < H:
                                w = (1 - abs(x - xi)) * (1 - abs(y - yi))
                                out[q, m] += (attn[q, m, lvl, p] * w
                                              * value[starts[lvl] + yi * W + xi, m])
    return out.reshape(Lq, M * D)


def test_core_matches_per_point_loop():
    rng = np.random.default_rng(21)
    shapes = np.array([[3, 5], [2, 2], [4, 1]])
    S = int(np.sum(shapes[:, 0] * shapes[:, 1]))
    value = rng.standard_normal((S, 2, 3))
    locs = rng.uniform(-0.4, 1.4, size=(7, 2, 3, 3, 2))
    attn = rng.standard_normal((7, 2, 3, 3))
    assert np.allclose(ms_deform_attn_core(value, shapes, locs, attn),
                       _naive_core(value, shapes, locs, attn), atol=1e-13, rtol=0)


def test_core_rejects_bad_input():
    v = np.zeros((6, 1, 1))
    with pytest.raises(ValueError):
        ms_deform_attn_core(v, [[2, 2]], np.zeros((1, 1, 1, 1, 2)), np.ones((1, 1, 1, 1)))
    with pytest.raises(ValueError):
        ms_deform_attn_core(v, [[2, 3]], np.full((1, 1, 1, 1, 2), np.nan), np.ones((1, 1, 1, 1)))
    with pytest.raises(ValueError):
        ms_deform_attn_core(v, [[2, 3]], np.zeros((1, 1, 1, 2, 2)), np.ones((1, 1, 1, 1)))


# ------------------------------------------------------------ block semantics


def _workload(seed=31, shapes=((5, 4), (3, 2)), C=16, M=4, P=3, nq=12, scale=1.0):
    rng = np.random.default_rng(seed)
    shapes = np.array(shapes)
    return (random_params(rng, C, M, len(shapes), P, scale),
            random_inputs(rng, shapes, nq, C, ref_jitter=1.0), M, rng)


def test_softmax_is_joint_over_levels_and_points():
    params, inp, M, _ = _workload()
    _, it = msdeform_attn_forward(params, **inp, return_intermediates=True, n_heads=M)
    attn, logits = it["attn"], it["logits"]
    Lq, _, L, P = attn.shape
    assert logits.shape == (Lq, M, L * P)
    assert np.allclose(attn.sum(axis=(2, 3)), 1.0, atol=1e-14)
    manual = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    assert np.allclose(attn.reshape(Lq, M, L * P), manual, atol=1e-15)
    # Not per level: a single level's probabilities do not sum to one.
    assert not np.allclose(attn.sum(axis=3), 1.0)
    assert np.allclose(softmax(np.array([1000.0, 1000.0])), [0.5, 0.5])  # no overflow


def test_sampling_locations_and_offsets_in_pixels():
    params, inp, M, rng = _workload(scale=0.0)
    # scale=0: zero offset weights, so offsets are the bias (pixels).
    _, it = msdeform_attn_forward(params, **inp, return_intermediates=True, n_heads=M)
    Lq = inp["query"].shape[0]
    shapes = inp["spatial_shapes"]
    bias = params["sampling_offsets.bias"].reshape(M, len(shapes), 3, 2)
    assert np.allclose(it["offsets"], np.broadcast_to(bias, it["offsets"].shape), atol=1e-15)
    W = shapes[:, 1][None, None, :, None]
    H = shapes[:, 0][None, None, :, None]
    ref = inp["reference_points"]
    px = it["sampling_locations"][..., 0] * W - 0.5
    py = it["sampling_locations"][..., 1] * H - 0.5
    assert np.allclose(px, ref[:, None, :, None, 0] * W - 0.5 + bias[None, ..., 0], atol=1e-12)
    assert np.allclose(py, ref[:, None, :, None, 1] * H - 0.5 + bias[None, ..., 1], atol=1e-12)
    assert it["sampling_locations"].shape == (Lq, M, len(shapes), 3, 2)


def test_output_is_output_proj_of_sampled():
    params, inp, M, _ = _workload()
    out, it = msdeform_attn_forward(params, **inp, return_intermediates=True, n_heads=M)
    assert np.allclose(out, it["sampled"] @ params["output_proj.weight"].T
                       + params["output_proj.bias"], atol=1e-14)
    assert np.array_equal(out, msdeform_attn_forward(params, **inp, n_heads=M))
    assert it["value"].shape == (inp["input_flatten"].shape[0], M, 16 // M)


def test_fmap_mask_zeroes_masked_pixels():
    params, inp, M, rng = _workload(scale=1.0)
    S = inp["input_flatten"].shape[0]
    mask = rng.uniform(size=S) < 0.5
    out, it = msdeform_attn_forward(params, **inp, fmap_mask=mask, return_intermediates=True,
                                    n_heads=M)
    assert np.all(it["value"][mask] == 0.0)  # bias included
    assert np.all(np.abs(it["value"][~mask]).sum(-1) > 0)
    # Whatever the masked pixels hold, they are never read.
    noisy = dict(inp, input_flatten=inp["input_flatten"].copy())
    noisy["input_flatten"][mask] = 1e6
    assert np.array_equal(out, msdeform_attn_forward(params, **noisy, fmap_mask=mask, n_heads=M))
    assert not np.allclose(out, msdeform_attn_forward(params, **inp, n_heads=M))
    everything = msdeform_attn_forward(params, **inp, fmap_mask=np.ones(S, bool), n_heads=M)
    assert np.allclose(everything, params["output_proj.bias"][None], atol=1e-15)


def test_point_mask_prunes_without_renormalising():
    params, inp, M, rng = _workload()
    Lq = inp["query"].shape[0]
    L, P = len(inp["spatial_shapes"]), 3
    pmask = rng.uniform(size=(Lq, M, L, P)) < 0.4
    out, it = msdeform_attn_forward(params, **inp, point_mask=pmask, return_intermediates=True,
                                    n_heads=M)
    kept = np.where(pmask, it["attn"], 0.0)
    want = ms_deform_attn_core(it["value"], inp["spatial_shapes"], it["sampling_locations"], kept)
    assert np.allclose(it["sampled"], want, atol=1e-14)
    renorm = kept / np.maximum(kept.sum(axis=(2, 3), keepdims=True), 1e-300)
    assert not np.allclose(it["sampled"], ms_deform_attn_core(
        it["value"], inp["spatial_shapes"], it["sampling_locations"], renorm))
    # "attn" stays the unpruned softmax (PAP decides from it).
    assert np.allclose(it["attn"].sum(axis=(2, 3)), 1.0)
    full = np.ones_like(pmask)
    assert np.array_equal(msdeform_attn_forward(params, **inp, point_mask=full, n_heads=M),
                          msdeform_attn_forward(params, **inp, n_heads=M))
    none = msdeform_attn_forward(params, **inp, point_mask=np.zeros_like(pmask), n_heads=M)
    assert np.allclose(none, params["output_proj.bias"][None], atol=1e-15)
    # Moving pruned points changes nothing; moving a kept one does.
    _, m, lvl, p = np.argwhere(~pmask)[0]
    moved = {k: v.copy() for k, v in params.items()}
    bias = moved["sampling_offsets.bias"].reshape(M, L, P, 2)  # a view: edits moved
    bias[m, lvl, p] += 1.7
    # Prune that (m, l, p) for every query, so the moved point is pruned everywhere.
    pm2 = pmask.copy()
    pm2[:, m, lvl, p] = False
    a = msdeform_attn_forward(params, **inp, point_mask=pm2, n_heads=M)
    b = msdeform_attn_forward(moved, **inp, point_mask=pm2, n_heads=M)
    assert np.allclose(a, b, atol=1e-14)
    c = msdeform_attn_forward(moved, **inp, point_mask=np.ones_like(pmask), n_heads=M)
    assert not np.allclose(c, msdeform_attn_forward(params, **inp, n_heads=M))


def test_block_rejects_bad_input():
    params, inp, M, _ = _workload()
    with pytest.raises(ValueError):
        msdeform_attn_forward(params, **inp, n_heads=3)  # 16 % 3
    with pytest.raises(ValueError):
        msdeform_attn_forward(params, **inp, n_heads=8)  # 24 attention rows: not a multiple of 8*2
    with pytest.raises(KeyError):
        msdeform_attn_forward({k: v for k, v in params.items() if k != "output_proj.bias"},
                              **inp, n_heads=M)
    with pytest.raises(ValueError):
        msdeform_attn_forward(params, **inp, fmap_mask=np.zeros(3, bool), n_heads=M)
    with pytest.raises(ValueError):
        msdeform_attn_forward(params, **dict(inp, reference_points=inp["reference_points"][..., :1]),
                              n_heads=M)


# ------------------------------------------------------------ random workload helpers


def test_random_params_match_deformable_detr_init():
    rng = np.random.default_rng(41)
    C, M, L, P = 32, 8, 4, 4
    p = random_params(rng, C, M, L, P, scale=0.0)
    assert set(p) == set(PARAM_NAMES)
    assert p["sampling_offsets.weight"].shape == (M * L * P * 2, C)
    assert np.all(p["sampling_offsets.weight"] == 0) and np.all(p["attention_weights.weight"] == 0)
    grid = p["sampling_offsets.bias"].reshape(M, L, P, 2)
    # Head 0 points along +x, head 2 along +y, head 4 along -x; point p sits p+1 px out.
    assert np.allclose(grid[0, :, :, 0], np.arange(1, P + 1)[None]) and np.allclose(grid[0, ..., 1], 0)
    assert np.allclose(grid[2, :, :, 1], np.arange(1, P + 1)[None], atol=1e-12)
    assert np.allclose(grid[4, :, :, 0], -np.arange(1, P + 1)[None])
    assert np.allclose(grid[1, :, 0], [1.0, 1.0])  # diagonal, max component 1
    bound = np.sqrt(6.0 / (2 * C))
    assert np.all(np.abs(p["value_proj.weight"]) <= bound)
    assert p["value_proj.weight"].std() > 0.4 * bound


def test_random_workload_is_realistic():
    rng = np.random.default_rng(42)
    shapes = np.array([[20, 34], [10, 17], [5, 9], [3, 5]])
    C, M, P = 32, 8, 4
    params = random_params(rng, C, M, len(shapes), P)
    inp = random_inputs(rng, shapes, 300, C, ref_jitter=1.0)
    assert inp["query"].shape == (300, C) and inp["reference_points"].shape == (300, 4, 2)
    assert np.all((inp["reference_points"] >= 0) & (inp["reference_points"] <= 1))
    _, it = msdeform_attn_forward(params, **inp, return_intermediates=True, n_heads=M)
    off = np.abs(it["offsets"])
    assert np.quantile(off, 0.99) < 8.0 and off.max() < 15.0  # a few pixels
    assert np.mean(it["attn"] < 0.01) > 0.2  # peaky softmax: many near-zero probabilities
    v = it["value"]
    assert 0.5 < v.std() < 2.0


def test_random_inputs_encoder_references():
    rng = np.random.default_rng(43)
    shapes = np.array([[3, 4], [2, 1]])
    inp = random_inputs(rng, shapes, None, 8)
    ref = inp["reference_points"]
    assert ref.shape == (14, 2, 2)
    assert np.array_equal(ref, encoder_reference_points(shapes))
    assert np.allclose(ref[5, 0], [(1 + 0.5) / 4, (1 + 0.5) / 3])  # token 5 = level 0, y=1, x=1
    assert np.allclose(ref[13, 1], [0.5, 0.75])  # token 13 = level 1, y=1, x=0
    jit = random_inputs(np.random.default_rng(43), shapes, None, 8, ref_jitter=1.0)
    d = np.abs(jit["reference_points"] - ref)[:, 0]
    pix = np.concatenate([np.tile([1 / 4, 1 / 3], (12, 1)), np.tile([1.0, 1 / 2], (2, 1))])
    assert np.all(d <= pix / 2 + 1e-15) and d.max() > 0

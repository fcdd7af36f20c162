"""Float64 NumPy reference of one MSDeformAttn block, with PyTorch's semantics.

This is the accuracy yardstick for the INT12 golden model and the RTL: it
reproduces Deformable DETR's ``MSDeformAttn.forward`` followed by
``ms_deform_attn_core_pytorch`` (``F.grid_sample`` with ``mode="bilinear"``,
``padding_mode="zeros"``, ``align_corners=False``), minus the batch dimension.
It adds the two DEFA pruning inputs: an fmap mask (pixels whose value row reads
zero, the same as PyTorch's ``input_padding_mask``) and a point mask (pruned
sampling points contribute nothing; probabilities are not renormalised).

``golden/make_vectors.py`` checks it against real PyTorch and stores the
results under ``golden/vectors/``.
"""

import numpy as np

__all__ = [
    "PARAM_NAMES",
    "level_start_index",
    "softmax",
    "ms_deform_attn_core",
    "msdeform_attn_forward",
    "random_params",
    "random_inputs",
    "encoder_reference_points",
]

#: ``state_dict`` names of the PyTorch module; weights are (out, in) like ``nn.Linear``.
PARAM_NAMES = (
    "value_proj.weight",
    "value_proj.bias",
    "sampling_offsets.weight",
    "sampling_offsets.bias",
    "attention_weights.weight",
    "attention_weights.bias",
    "output_proj.weight",
    "output_proj.bias",
)


def _shapes(spatial_shapes):
    """Validate ``spatial_shapes`` and return it as an (L, 2) int64 array of (H, W)."""
    shapes = np.asarray(spatial_shapes)
    if shapes.ndim != 2 or shapes.shape[1] != 2 or shapes.shape[0] < 1:
        raise ValueError(f"spatial_shapes must be (L, 2) (H, W), got shape {shapes.shape}")
    if not np.issubdtype(shapes.dtype, np.integer):
        if not np.all(shapes == np.round(shapes)):
            raise ValueError("spatial_shapes must be integers")
    shapes = shapes.astype(np.int64)
    if np.any(shapes < 1):
        raise ValueError(f"spatial_shapes must be positive, got {shapes.tolist()}")
    return shapes


def level_start_index(spatial_shapes):
    """Offset of each level's first pixel in the flattened map.

    Parameters
    ----------
    spatial_shapes : (L, 2) int array of (H, W).

    Returns
    -------
    (L,) int64 array; level ``l`` occupies rows ``start[l] : start[l] + H*W``,
    row-major (pixel (y, x) at ``start[l] + y*W + x``).
    """
    shapes = _shapes(spatial_shapes)
    sizes = shapes[:, 0] * shapes[:, 1]
    return np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)


def softmax(logits, axis=-1):
    """Numerically stable float64 softmax along ``axis``.

    Parameters
    ----------
    logits : array_like.
    axis : int, the axis that sums to one.
    """
    z = np.asarray(logits, dtype=np.float64)
    # Subtracting the max leaves the result unchanged and keeps exp() finite.
    e = np.exp(z - np.max(z, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def ms_deform_attn_core(value, spatial_shapes, sampling_locations, attention_weights):
    """Multi-scale bilinear sampling and aggregation (``ms_deform_attn_core_pytorch``).

    Parameters
    ----------
    value : (S, M, D) float, the projected multi-level map, levels concatenated
        row-major in ``spatial_shapes`` order.
    spatial_shapes : (L, 2) int, (H, W) per level.
    sampling_locations : (Lq, M, L, P, 2) float, normalised (x, y); pixel
        coordinates are ``x*W - 0.5``, ``y*H - 0.5`` (``align_corners=False``).
    attention_weights : (Lq, M, L, P) float, the weight of each sample.

    Returns
    -------
    (Lq, M*D) float64: ``sum_{l,p} A[q,m,l,p] * bilinear(value_l[:, m], loc)``.
    Neighbours outside the map contribute zero (``padding_mode="zeros"``).
    """
    value = np.asarray(value, dtype=np.float64)
    shapes = _shapes(spatial_shapes)
    locs = np.asarray(sampling_locations, dtype=np.float64)
    attn = np.asarray(attention_weights, dtype=np.float64)
    if value.ndim != 3:
        raise ValueError(f"value must be (S, M, D), got shape {value.shape}")
    S, M, D = value.shape
    L = shapes.shape[0]
    if locs.ndim != 5 or locs.shape[1] != M or locs.shape[2] != L or locs.shape[4] != 2:
        raise ValueError(f"sampling_locations must be (Lq, {M}, {L}, P, 2), got {locs.shape}")
    Lq, _, _, P, _ = locs.shape
    if attn.shape != (Lq, M, L, P):
        raise ValueError(f"attention_weights must be {(Lq, M, L, P)}, got {attn.shape}")
    if int(np.sum(shapes[:, 0] * shapes[:, 1])) != S:
        raise ValueError(f"value has {S} pixels but spatial_shapes sum to "
                         f"{int(np.sum(shapes[:, 0] * shapes[:, 1]))}")
    if not np.all(np.isfinite(locs)):
        # floor() of inf/nan has no integer meaning (PyTorch's result is undefined too).
        raise ValueError("sampling_locations must be finite")

    starts = level_start_index(shapes)
    out = np.zeros((Lq, M, D), dtype=np.float64)
    # Head index broadcast against (Lq, M, P) so each head gathers its own channels.
    head = np.arange(M)[None, :, None]
    for lvl in range(L):
        H, W = (int(v) for v in shapes[lvl])
        v_l = value[starts[lvl]:starts[lvl] + H * W]  # (H*W, M, D)
        x = locs[:, :, lvl, :, 0] * W - 0.5  # (Lq, M, P) pixel coordinates
        y = locs[:, :, lvl, :, 1] * H - 0.5
        x0f = np.floor(x)
        y0f = np.floor(y)
        tx = x - x0f
        ty = y - y0f
        # Clipping far-away points before the int cast keeps the cast safe; any
        # clipped neighbour lies outside the map and is dropped below anyway.
        x0 = np.clip(x0f, -2, W + 1).astype(np.int64)
        y0 = np.clip(y0f, -2, H + 1).astype(np.int64)
        sample = np.zeros((Lq, M, P, D), dtype=np.float64)
        for dy, wy in ((0, 1.0 - ty), (1, ty)):
            yi = y0 + dy
            for dx, wx in ((0, 1.0 - tx), (1, tx)):
                xi = x0 + dx
                inside = (xi >= 0) & (xi < W) & (yi >= 0) & (yi < H)
                idx = np.where(inside, yi * W + xi, 0)
                w = np.where(inside, wx * wy, 0.0)
                sample += w[..., None] * v_l[idx, head]
        out += np.einsum("qmp,qmpd->qmd", attn[:, :, lvl], sample)
    return out.reshape(Lq, M * D)


def _linear(x, params, name):
    """``x @ W^T + b`` with ``nn.Linear``'s (out, in) weight layout."""
    return x @ params[name + ".weight"].T + params[name + ".bias"]


def msdeform_attn_forward(params, query, reference_points, input_flatten, spatial_shapes,
                          fmap_mask=None, point_mask=None, return_intermediates=False, *,
                          n_heads, offset_bound=None):
    """One MSDeformAttn block (Deformable DETR ``MSDeformAttn.forward``), float64.

    Parameters
    ----------
    params : dict keyed by ``PARAM_NAMES``; weights (out, in), biases (out,).
    query : (Lq, C) float.
    reference_points : (Lq, L, 2) normalised (x, y); (Lq, L, 4) boxes
        (cx, cy, w, h) are accepted too, as in the PyTorch module (two-stage
        decoder: ``loc = ref[:2] + offset / P * ref[2:] * 0.5``).
    input_flatten : (S, C) float, the levels concatenated row-major.
    spatial_shapes : (L, 2) int, (H, W) per level.
    fmap_mask : optional (S,) bool, True = pixel masked: its value row reads
        zero after ``value_proj`` (bias included), like ``input_padding_mask``.
    point_mask : optional (Lq, M, L, P) bool, True = point kept; pruned points
        contribute zero and the kept probabilities are not renormalised.
    return_intermediates : bool, also return a dict of intermediates.
    n_heads : int, number of heads M (keyword only); L comes from
        ``spatial_shapes`` and P from the ``attention_weights`` rows / (M*L).
    offset_bound : optional (L,) pixels: clamp each offset component of level l
        to ``[-bound_l, bound_l]`` (DEFA's level-wise range reduction, 2-wide
        reference points only). ``None`` (default) is exactly PyTorch.

    Returns
    -------
    (Lq, C) float64 output, or ``(output, intermediates)`` where intermediates
    has "value" (S, M, D) after masking, "logits" (Lq, M, L*P), "attn"
    (Lq, M, L, P) softmax probabilities before point pruning, "offsets"
    (Lq, M, L, P, 2) in pixels of their level, "sampling_locations"
    (Lq, M, L, P, 2) normalised, and "sampled" (Lq, C), the aggregate before
    ``output_proj``.
    """
    missing = [k for k in PARAM_NAMES if k not in params]
    if missing:
        raise KeyError(f"params lacks {missing}")
    p = {k: np.asarray(params[k], dtype=np.float64) for k in PARAM_NAMES}
    query = np.asarray(query, dtype=np.float64)
    x_in = np.asarray(input_flatten, dtype=np.float64)
    ref = np.asarray(reference_points, dtype=np.float64)
    shapes = _shapes(spatial_shapes)

    if query.ndim != 2:
        raise ValueError(f"query must be (Lq, C), got shape {query.shape}")
    Lq, C = query.shape
    M = int(n_heads)
    if M < 1 or C % M:
        raise ValueError(f"d_model {C} is not divisible by n_heads {M}")
    D = C // M
    L = shapes.shape[0]
    S = int(np.sum(shapes[:, 0] * shapes[:, 1]))
    if x_in.shape != (S, C):
        raise ValueError(f"input_flatten must be {(S, C)}, got {x_in.shape}")
    n_att = p["attention_weights.weight"].shape[0]
    P = n_att // (M * L)
    if P < 1 or n_att != M * L * P:
        raise ValueError(f"attention_weights has {n_att} outputs, not a multiple of M*L={M * L}")
    expected = {
        "value_proj.weight": (C, C), "value_proj.bias": (C,),
        "sampling_offsets.weight": (M * L * P * 2, C), "sampling_offsets.bias": (M * L * P * 2,),
        "attention_weights.weight": (M * L * P, C), "attention_weights.bias": (M * L * P,),
        "output_proj.weight": (C, C), "output_proj.bias": (C,),
    }
    for name, shape in expected.items():
        if p[name].shape != shape:
            raise ValueError(f"{name} must be {shape}, got {p[name].shape}")
    if ref.ndim != 3 or ref.shape[:2] != (Lq, L) or ref.shape[2] not in (2, 4):
        raise ValueError(f"reference_points must be ({Lq}, {L}, 2 or 4), got {ref.shape}")

    value = _linear(x_in, p, "value_proj")
    if fmap_mask is not None:
        fmap_mask = np.asarray(fmap_mask, dtype=bool)
        if fmap_mask.shape != (S,):
            raise ValueError(f"fmap_mask must be ({S},), got {fmap_mask.shape}")
        # masked_fill after the projection: the bias is zeroed too.
        value = np.where(fmap_mask[:, None], 0.0, value)
    value = value.reshape(S, M, D)

    offsets = _linear(query, p, "sampling_offsets").reshape(Lq, M, L, P, 2)
    if offset_bound is not None:
        bound = np.asarray(offset_bound, dtype=np.float64).reshape(1, 1, L, 1, 1)
        offsets = np.clip(offsets, -bound, bound)
    logits = _linear(query, p, "attention_weights").reshape(Lq, M, L * P)
    # One softmax over all L*P points of a head, not per level.
    attn = softmax(logits, axis=-1).reshape(Lq, M, L, P)

    if ref.shape[2] == 2:
        # Offsets are in pixels of their level; (W, H) order matches (x, y).
        normalizer = shapes[:, ::-1].astype(np.float64)
        locs = ref[:, None, :, None, :] + offsets / normalizer[None, None, :, None, :]
    else:
        locs = (ref[:, None, :, None, :2]
                + offsets / P * ref[:, None, :, None, 2:] * 0.5)

    weights = attn
    if point_mask is not None:
        point_mask = np.asarray(point_mask, dtype=bool)
        if point_mask.shape != (Lq, M, L, P):
            raise ValueError(f"point_mask must be {(Lq, M, L, P)}, got {point_mask.shape}")
        weights = np.where(point_mask, attn, 0.0)

    sampled = ms_deform_attn_core(value, shapes, locs, weights)
    output = _linear(sampled, p, "output_proj")
    if not return_intermediates:
        return output
    return output, {
        "value": value,
        "logits": logits,
        "attn": attn,
        "offsets": offsets,
        "sampling_locations": locs,
        "sampled": sampled,
    }


def _xavier_uniform(rng, n_out, n_in):
    """Glorot uniform (out, in) matrix, as ``nn.init.xavier_uniform_``."""
    bound = np.sqrt(6.0 / (n_in + n_out))
    return rng.uniform(-bound, bound, size=(n_out, n_in))


def random_params(rng, d_model, n_heads, n_levels, n_points, scale=1.0, *,
                  offset_px=1.0, logit_std=2.0):
    """Random parameters resembling a trained MSDeformAttn block.

    The starting point is Deformable DETR's ``_reset_parameters``: xavier
    ``value_proj``/``output_proj``, zero offset weights with a bias of
    ``n_heads`` evenly spread directions times the point index ``p + 1``
    (pixels), zero attention weights. ``scale`` then adds the spread a trained
    model has: offset weights giving about ``offset_px`` pixels of std per
    unit-variance query, attention logits with about ``logit_std`` std (peaky
    softmax, many near-zero probabilities, as PAP relies on) and small biases.
    ``scale=0`` is the untrained initialisation.

    Parameters
    ----------
    rng : numpy.random.Generator.
    d_model, n_heads, n_levels, n_points : int, C, M, L, P.
    scale : float >= 0, multiplier on all trained-like perturbations.
    offset_px : float, std of the query-dependent part of the offsets (pixels).
    logit_std : float, std of the attention logits.

    Returns
    -------
    dict keyed by ``PARAM_NAMES`` of float64 arrays.
    """
    C, M, L, P = int(d_model), int(n_heads), int(n_levels), int(n_points)
    if C % M:
        raise ValueError(f"d_model {C} is not divisible by n_heads {M}")
    n_pts = M * L * P
    theta = np.arange(M, dtype=np.float64) * (2.0 * np.pi / M)
    grid = np.stack([np.cos(theta), np.sin(theta)], -1)
    # Normalised so the largest component is 1: the first point sits 1 px away.
    grid = grid / np.abs(grid).max(-1, keepdims=True)
    grid = np.tile(grid[:, None, None, :], (1, L, P, 1))
    grid *= np.arange(1, P + 1, dtype=np.float64)[None, None, :, None]

    # uniform(-a, a) has std a/sqrt(3); a dot product with C unit-variance
    # inputs then has std a*sqrt(C/3), hence a = target*sqrt(3/C).
    a_off = scale * offset_px * np.sqrt(3.0 / C)
    a_att = scale * logit_std * np.sqrt(3.0 / C)
    return {
        "value_proj.weight": _xavier_uniform(rng, C, C),
        "value_proj.bias": scale * rng.uniform(-0.1, 0.1, size=C),
        "sampling_offsets.weight": rng.uniform(-a_off, a_off, size=(2 * n_pts, C)),
        "sampling_offsets.bias": grid.reshape(-1) + scale * rng.normal(0.0, 0.25, size=2 * n_pts),
        "attention_weights.weight": rng.uniform(-a_att, a_att, size=(n_pts, C)),
        "attention_weights.bias": scale * rng.normal(0.0, 0.5, size=n_pts),
        "output_proj.weight": _xavier_uniform(rng, C, C),
        "output_proj.bias": scale * rng.uniform(-0.1, 0.1, size=C),
    }


def encoder_reference_points(spatial_shapes):
    """Encoder reference points: each token's own pixel centre, on every level.

    As Deformable DETR's ``get_reference_points`` with all valid ratios 1.

    Parameters
    ----------
    spatial_shapes : (L, 2) int, (H, W) per level.

    Returns
    -------
    (S, L, 2) float64 normalised (x, y), identical across the L axis.
    """
    shapes = _shapes(spatial_shapes)
    pts = []
    for H, W in shapes:
        yy, xx = np.meshgrid(np.arange(H) + 0.5, np.arange(W) + 0.5, indexing="ij")
        pts.append(np.stack([xx.reshape(-1) / W, yy.reshape(-1) / H], -1))
    ref = np.concatenate(pts, 0)
    return np.repeat(ref[:, None, :], shapes.shape[0], axis=1)


def random_inputs(rng, spatial_shapes, n_queries, d_model, *, ref_jitter=0.0,
                  query_noise=0.5):
    """A random encoder-style workload for ``msdeform_attn_forward``.

    Features are standard normal. Queries are the features of chosen tokens
    plus ``query_noise`` normal noise (a stand-in for the positional
    embedding); their reference points are those tokens' pixel centres
    (``encoder_reference_points``), moved by up to ``ref_jitter / 2`` pixels of
    the token's level, which keeps them inside [0, 1].

    Parameters
    ----------
    rng : numpy.random.Generator.
    spatial_shapes : (L, 2) int, (H, W) per level.
    n_queries : int or None; None means every token is a query (Lq = S, in
        order); otherwise tokens are drawn at random (with replacement when
        n_queries > S).
    d_model : int, C.
    ref_jitter : float in [0, 1], reference jitter in pixels (peak to peak).
    query_noise : float, std of the noise added to the query features.

    Returns
    -------
    dict with "query" (Lq, C), "reference_points" (Lq, L, 2), "input_flatten"
    (S, C) and "spatial_shapes" (L, 2) int64, ready for
    ``msdeform_attn_forward(params, **inputs, n_heads=M)``.
    """
    shapes = _shapes(spatial_shapes)
    if not 0.0 <= ref_jitter <= 1.0:
        raise ValueError(f"ref_jitter must be in [0, 1], got {ref_jitter}")
    C = int(d_model)
    sizes = shapes[:, 0] * shapes[:, 1]
    S = int(np.sum(sizes))
    x_in = rng.standard_normal((S, C))
    if n_queries is None:
        idx = np.arange(S)
    else:
        idx = rng.choice(S, size=int(n_queries), replace=int(n_queries) > S)
    ref = encoder_reference_points(shapes)[idx]
    if ref_jitter:
        # Each token's pixel size on its own level bounds the jitter.
        token_level = np.searchsorted(np.cumsum(sizes), idx, side="right")
        pix = 1.0 / shapes[token_level][:, ::-1].astype(np.float64)  # (Lq, 2) as (1/W, 1/H)
        jit = rng.uniform(-0.5, 0.5, size=(len(idx), 2)) * ref_jitter * pix
        ref = ref + jit[:, None, :]
    query = x_in[idx] + query_noise * rng.standard_normal((len(idx), C))
    return {
        "query": query,
        "reference_points": ref,
        "input_flatten": x_in,
        "spatial_shapes": shapes,
    }

"""Build the PyTorch cross-check vectors under ``golden/vectors/``.

Run as ``python -m golden.make_vectors`` (needs ``torch==2.13.0``, the
``oracle`` extra). Every case is computed by real PyTorch in float64: a
module with the same ``nn.Linear`` children and ``state_dict`` names as
Deformable DETR's ``MSDeformAttn``, and a verbatim port of
``ms_deform_attn_core_pytorch`` (``F.grid_sample``). NumPy only draws the
inputs. ``--check`` recomputes everything and compares it with the committed
files instead of writing.

Each ``<case>.npz`` holds ``kind`` ("core" or "block"), ``description`` and
the core arrays ``value``, ``spatial_shapes``, ``sampling_locations``,
``attention_weights`` and ``core_output``. Block cases add ``n_heads``,
``param.<name>`` for every ``PARAM_NAMES`` entry, ``query``,
``reference_points``, ``input_flatten``, optional ``fmap_mask`` and
``point_mask``, torch's ``output`` and its softmax ``attention_probs``; their
``attention_weights`` is what reached the core (after point pruning) and
``core_output`` is the aggregate before ``output_proj``.
"""

import argparse
import io
import pathlib
import sys
import zipfile

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from golden.reference import PARAM_NAMES, random_inputs, random_params

VECTOR_DIR = pathlib.Path(__file__).resolve().parent / "vectors"


def ms_deform_attn_core_pytorch(value, value_spatial_shapes, sampling_locations,
                                attention_weights):
    """Deformable DETR's ``ms_deform_attn_core_pytorch``, unchanged (batched tensors)."""
    N_, S_, M_, D_ = value.shape
    _, Lq_, M_, L_, P_, _ = sampling_locations.shape
    value_list = value.split([H_ * W_ for H_, W_ in value_spatial_shapes], dim=1)
    sampling_grids = 2 * sampling_locations - 1
    sampling_value_list = []
    for lid_, (H_, W_) in enumerate(value_spatial_shapes):
        # N_, H_*W_, M_, D_ -> N_, H_*W_, M_*D_ -> N_, M_*D_, H_*W_ -> N_*M_, D_, H_, W_
        value_l_ = value_list[lid_].flatten(2).transpose(1, 2).reshape(N_ * M_, D_, H_, W_)
        # N_, Lq_, M_, P_, 2 -> N_, M_, Lq_, P_, 2 -> N_*M_, Lq_, P_, 2
        sampling_grid_l_ = sampling_grids[:, :, :, lid_].transpose(1, 2).flatten(0, 1)
        # N_*M_, D_, Lq_, P_
        sampling_value_l_ = F.grid_sample(value_l_, sampling_grid_l_, mode="bilinear",
                                          padding_mode="zeros", align_corners=False)
        sampling_value_list.append(sampling_value_l_)
    # (N_, Lq_, M_, L_, P_) -> (N_, M_, Lq_, L_, P_) -> (N_*M_, 1, Lq_, L_*P_)
    attention_weights = attention_weights.transpose(1, 2).reshape(N_ * M_, 1, Lq_, L_ * P_)
    output = (torch.stack(sampling_value_list, dim=-2).flatten(-2)
              * attention_weights).sum(-1).view(N_, M_ * D_, Lq_)
    return output.transpose(1, 2).contiguous()


class TorchMSDeformAttn(nn.Module):
    """Deformable DETR's ``MSDeformAttn`` forward with the CUDA op replaced by
    ``ms_deform_attn_core_pytorch``, plus an optional point mask (True = kept)."""

    def __init__(self, d_model, n_levels, n_heads, n_points):
        super().__init__()
        self.d_model, self.n_levels, self.n_heads, self.n_points = d_model, n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)

    def forward(self, query, reference_points, input_flatten, input_spatial_shapes,
                input_padding_mask=None, point_mask=None):
        N, Len_q, _ = query.shape
        N, Len_in, _ = input_flatten.shape
        value = self.value_proj(input_flatten)
        if input_padding_mask is not None:
            value = value.masked_fill(input_padding_mask[..., None], float(0))
        value = value.view(N, Len_in, self.n_heads, self.d_model // self.n_heads)
        sampling_offsets = self.sampling_offsets(query).view(
            N, Len_q, self.n_heads, self.n_levels, self.n_points, 2)
        attention_weights = self.attention_weights(query).view(
            N, Len_q, self.n_heads, self.n_levels * self.n_points)
        attention_weights = F.softmax(attention_weights, -1).view(
            N, Len_q, self.n_heads, self.n_levels, self.n_points)
        if reference_points.shape[-1] == 2:
            offset_normalizer = torch.stack(
                [input_spatial_shapes[..., 1], input_spatial_shapes[..., 0]], -1)
            sampling_locations = (reference_points[:, :, None, :, None, :]
                                  + sampling_offsets / offset_normalizer[None, None, None, :, None, :])
        elif reference_points.shape[-1] == 4:
            sampling_locations = (reference_points[:, :, None, :, None, :2]
                                  + sampling_offsets / self.n_points
                                  * reference_points[:, :, None, :, None, 2:] * 0.5)
        else:
            raise ValueError("Last dim of reference_points must be 2 or 4")
        probs = attention_weights
        if point_mask is not None:
            attention_weights = attention_weights.masked_fill(~point_mask, 0.0)
        shapes_list = [(int(h), int(w)) for h, w in input_spatial_shapes]
        core = ms_deform_attn_core_pytorch(value, shapes_list, sampling_locations, attention_weights)
        output = self.output_proj(core)
        return output, {"value": value, "attention_probs": probs,
                        "sampling_locations": sampling_locations,
                        "attention_weights": attention_weights, "core_output": core}


def torch_core(value, spatial_shapes, sampling_locations, attention_weights):
    """``ms_deform_attn_core_pytorch`` on unbatched NumPy arrays, float64.

    Parameters
    ----------
    value : (S, M, D); spatial_shapes : (L, 2) (H, W);
    sampling_locations : (Lq, M, L, P, 2); attention_weights : (Lq, M, L, P).

    Returns
    -------
    (Lq, M*D) float64 NumPy array.
    """
    t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64))[None]  # noqa: E731
    shapes = [(int(h), int(w)) for h, w in np.asarray(spatial_shapes)]
    with torch.no_grad():
        out = ms_deform_attn_core_pytorch(t(value), shapes, t(sampling_locations),
                                          t(attention_weights))
    return out[0].numpy()


def torch_forward(params, query, reference_points, input_flatten, spatial_shapes,
                  fmap_mask=None, point_mask=None, *, n_heads):
    """Run ``TorchMSDeformAttn`` (float64) on unbatched NumPy inputs.

    Parameters
    ----------
    Same as ``golden.reference.msdeform_attn_forward``.

    Returns
    -------
    dict of NumPy arrays: "output" (Lq, C), "value" (S, M, D),
    "attention_probs" and "attention_weights" (Lq, M, L, P) (before / after
    point pruning), "sampling_locations" (Lq, M, L, P, 2), "core_output" (Lq, C).
    """
    query = np.asarray(query, dtype=np.float64)
    shapes = np.asarray(spatial_shapes, dtype=np.int64)
    C = query.shape[1]
    L = shapes.shape[0]
    P = np.asarray(params["attention_weights.weight"]).shape[0] // (n_heads * L)
    mod = TorchMSDeformAttn(C, L, n_heads, P).double()
    # strict=True proves the parameter names match the PyTorch module's state_dict.
    mod.load_state_dict({k: torch.as_tensor(np.asarray(params[k], dtype=np.float64))
                         for k in PARAM_NAMES}, strict=True)
    t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64))[None]  # noqa: E731
    fm = None if fmap_mask is None else torch.as_tensor(np.asarray(fmap_mask, dtype=bool))[None]
    pm = None if point_mask is None else torch.as_tensor(np.asarray(point_mask, dtype=bool))[None]
    with torch.no_grad():
        out, inter = mod(t(query), t(reference_points), t(input_flatten),
                         torch.as_tensor(shapes), fm, pm)
    res = {k: v[0].numpy() for k, v in inter.items()}
    res["output"] = out[0].numpy()
    return res


# ---------------------------------------------------------------- cases


def _directed_coords(n):
    """Pixel coordinates along an axis of size n that hit every bilinear corner case."""
    return np.array([-20.0, -1.0, -0.75, -0.5, 0.0, 0.5, 1.25, n - 1.0, n - 0.5, n - 0.25,
                     float(n), n + 3.7, (n - 1) / 2.0])


def case_core_directed():
    """Core only: locations on centres, borders (loc 0/1), half and fully outside."""
    rng = np.random.default_rng(1001)
    shapes = np.array([[3, 5], [4, 2], [1, 1]], dtype=np.int64)
    M, D, Lq, P = 2, 3, 9, 4
    L = len(shapes)
    S = int(np.sum(shapes[:, 0] * shapes[:, 1]))
    value = rng.standard_normal((S, M, D))
    locs = np.empty((Lq, M, L, P, 2))
    for lvl, (H, W) in enumerate(shapes):
        cx, cy = _directed_coords(W), _directed_coords(H)
        px = rng.choice(cx, size=(Lq, M, P))
        py = rng.choice(cy, size=(Lq, M, P))
        # Query 0: exact pixel centres; query 1: the four border lines (loc 0 and 1).
        px[0] = rng.integers(0, W, size=(M, P))
        py[0] = rng.integers(0, H, size=(M, P))
        px[1] = np.array([-0.5, W - 0.5, -0.5, W - 0.5])[None, :P]
        py[1] = np.array([-0.5, -0.5, H - 0.5, H - 0.5])[None, :P]
        locs[:, :, lvl, :, 0] = (px + 0.5) / W
        locs[:, :, lvl, :, 1] = (py + 0.5) / H
    # The normalised borders themselves, written exactly.
    locs[2, :, :, :2, :] = 0.0
    locs[2, :, :, 2:, :] = 1.0
    attn = rng.uniform(-1.0, 1.0, size=(Lq, M, L, P))  # the core is linear in A: any sign
    return {"kind": "core",
            "description": "core only; centres, loc 0/1 borders, half/fully outside, 1x1 level",
            "value": value, "spatial_shapes": shapes, "sampling_locations": locs,
            "attention_weights": attn}


def case_core_random():
    """Core only: continuous random locations straddling the map edges."""
    rng = np.random.default_rng(1002)
    shapes = np.array([[5, 3], [2, 7]], dtype=np.int64)
    M, D, Lq, P = 3, 2, 10, 3
    S = int(np.sum(shapes[:, 0] * shapes[:, 1]))
    return {"kind": "core",
            "description": "core only; random locations in [-0.25, 1.25]^2, H != W",
            "value": rng.standard_normal((S, M, D)), "spatial_shapes": shapes,
            "sampling_locations": rng.uniform(-0.25, 1.25, size=(Lq, M, len(shapes), P, 2)),
            "attention_weights": rng.uniform(0.0, 1.0, size=(Lq, M, len(shapes), P))}


def _block(rng, shapes, C, M, P, n_queries, description, *, scale=1.0, offset_px=1.0,
           ref_jitter=0.0, **extra):
    shapes = np.asarray(shapes, dtype=np.int64)
    inputs = random_inputs(rng, shapes, n_queries, C, ref_jitter=ref_jitter)
    params = random_params(rng, C, M, len(shapes), P, scale, offset_px=offset_px)
    case = {"kind": "block", "description": description, "n_heads": M, "params": params}
    case.update(inputs)
    case.update(extra)
    return case


def case_block_encoder():
    rng = np.random.default_rng(2001)
    return _block(rng, [[6, 4], [3, 2]], 8, 2, 2, None,
                  "encoder (Lq = S), 2 levels, 2 heads, 2 points")


def case_block_multilevel():
    rng = np.random.default_rng(2002)
    return _block(rng, [[6, 5], [3, 4], [2, 2], [1, 1]], 8, 4, 3, 8,
                  "4 levels incl. 1x1, 4 heads, 3 points, jittered references",
                  ref_jitter=1.0)


def case_block_outside():
    rng = np.random.default_rng(2003)
    return _block(rng, [[5, 7], [3, 2]], 8, 4, 4, 10,
                  "large offsets: many points half or fully outside the map",
                  offset_px=3.0, ref_jitter=0.5)


def case_block_border():
    """Zero offset weights and hand-set offset biases from corner/interior pixel centres."""
    rng = np.random.default_rng(2004)
    shapes = np.array([[4, 6], [3, 5]], dtype=np.int64)
    C, M, P = 8, 2, 4
    L = len(shapes)
    params = random_params(rng, C, M, L, P, 1.0)
    # One (dx, dy) pixel offset per (m, l, p): centre, half-pixel (border from a
    # corner, midpoint from inside), whole pixel (fully outside from a corner), ...
    off = np.array([[0, 0], [-0.5, 0], [0, -0.5], [-0.5, -0.5],
                    [0.5, 0.5], [1, 0], [0, 1], [-1, -1],
                    [-0.25, 0.75], [0.25, -0.25], [3, -3], [0.5, 0],
                    [0, 0.5], [1, 1], [-0.75, 0.5], [-2.5, 2.5]], dtype=np.float64)
    assert off.shape[0] == M * L * P
    params["sampling_offsets.weight"] = np.zeros((M * L * P * 2, C))
    params["sampling_offsets.bias"] = off.reshape(-1)
    # Reference points: each level's own corner pixels, then interior pixels.
    Lq = 6
    ref = np.empty((Lq, L, 2))
    for lvl, (H, W) in enumerate(shapes):
        pix = [(0, 0), (W - 1, 0), (0, H - 1), (W - 1, H - 1), (1, 1), (W - 2, H // 2)]
        for q, (i, j) in enumerate(pix):
            ref[q, lvl] = ((i + 0.5) / W, (j + 0.5) / H)
    S = int(np.sum(shapes[:, 0] * shapes[:, 1]))
    return {"kind": "block",
            "description": "hand-set offsets from corner pixel centres: loc 0/1 borders, "
                           "pixel -0.5 and W-0.5, half and fully outside",
            "n_heads": M, "params": params, "query": rng.standard_normal((Lq, C)),
            "reference_points": ref, "input_flatten": rng.standard_normal((S, C)),
            "spatial_shapes": shapes}


def case_block_fmap_mask():
    rng = np.random.default_rng(2005)
    case = _block(rng, [[4, 4], [2, 3]], 8, 2, 2, None,
                  "fmap mask (40% of pixels masked), encoder")
    S = case["input_flatten"].shape[0]
    case["fmap_mask"] = rng.uniform(size=S) < 0.4
    return case


def case_block_point_mask():
    rng = np.random.default_rng(2006)
    case = _block(rng, [[5, 3], [3, 3]], 8, 4, 2, 10,
                  "point mask (about 40% kept) together with an fmap mask")
    Lq, S = case["query"].shape[0], case["input_flatten"].shape[0]
    case["point_mask"] = rng.uniform(size=(Lq, 4, 2, 2)) < 0.4
    case["fmap_mask"] = rng.uniform(size=S) < 0.25
    return case


def case_block_boxref():
    rng = np.random.default_rng(2007)
    case = _block(rng, [[4, 5], [2, 3]], 8, 2, 3, 6,
                  "decoder-style box reference points (cx, cy, w, h)")
    Lq = case["query"].shape[0]
    centre = rng.uniform(0.1, 0.9, size=(Lq, 1, 2))
    size = rng.uniform(0.05, 0.6, size=(Lq, 1, 2))
    case["reference_points"] = np.repeat(np.concatenate([centre, size], -1), 2, axis=1)
    return case


CASES = {
    "core_directed": case_core_directed,
    "core_random": case_core_random,
    "block_encoder": case_block_encoder,
    "block_multilevel": case_block_multilevel,
    "block_outside": case_block_outside,
    "block_border": case_block_border,
    "block_fmap_mask": case_block_fmap_mask,
    "block_point_mask": case_block_point_mask,
    "block_boxref": case_block_boxref,
}


def build_case(name):
    """Compute one case with torch; returns the dict of arrays stored in its npz."""
    case = CASES[name]()
    arrays = {"kind": np.array(case["kind"]), "description": np.array(case["description"]),
              "spatial_shapes": np.asarray(case["spatial_shapes"], dtype=np.int64)}
    if case["kind"] == "core":
        for k in ("value", "sampling_locations", "attention_weights"):
            arrays[k] = np.asarray(case[k], dtype=np.float64)
        arrays["core_output"] = torch_core(case["value"], case["spatial_shapes"],
                                           case["sampling_locations"], case["attention_weights"])
        return arrays
    M = int(case["n_heads"])
    res = torch_forward(case["params"], case["query"], case["reference_points"],
                        case["input_flatten"], case["spatial_shapes"],
                        case.get("fmap_mask"), case.get("point_mask"), n_heads=M)
    arrays["n_heads"] = np.array(M, dtype=np.int64)
    for k in PARAM_NAMES:
        arrays["param." + k] = np.asarray(case["params"][k], dtype=np.float64)
    for k in ("query", "reference_points", "input_flatten"):
        arrays[k] = np.asarray(case[k], dtype=np.float64)
    for k in ("fmap_mask", "point_mask"):
        if case.get(k) is not None:
            arrays[k] = np.asarray(case[k], dtype=bool)
    arrays.update(res)
    return arrays


def write_npz(path, arrays):
    """Write ``arrays`` like ``np.savez_compressed`` but byte-reproducibly
    (sorted members, fixed timestamps), so regenerating leaves git clean."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            buf = io.BytesIO()
            # np.asarray, not ascontiguousarray: the latter turns 0-d scalars into shape (1,).
            np.lib.format.write_array(buf, np.asarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def load_case(path):
    """Load one vector file into a dict of arrays (no pickles)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def case_params(arrays):
    """The ``params`` dict of a block case, keyed by ``PARAM_NAMES``."""
    return {k: arrays["param." + k] for k in PARAM_NAMES}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=pathlib.Path, default=VECTOR_DIR, help="output folder")
    ap.add_argument("--check", action="store_true",
                    help="recompute and compare with the files in --out instead of writing")
    args = ap.parse_args(argv)
    torch.set_default_dtype(torch.float64)
    bad = 0
    if not args.check:
        args.out.mkdir(parents=True, exist_ok=True)
    for name in CASES:
        arrays = build_case(name)
        path = args.out / f"{name}.npz"
        if args.check:
            if not path.exists():
                print(f"{name}: missing {path}")
                bad += 1
                continue
            old = load_case(path)
            diff = set(old) ^ set(arrays)
            # Float results may differ in the last ulp between CPUs (vector paths).
            err = max((float(np.max(np.abs(old[k].astype(np.float64) - arrays[k]), initial=0.0))
                       for k in arrays if k in old and arrays[k].dtype.kind in "fib"),
                      default=0.0)
            same_text = all(np.array_equal(old[k], arrays[k]) for k in arrays
                            if k in old and arrays[k].dtype.kind == "U")
            ok = not diff and err <= 1e-12 and same_text
            bad += not ok
            print(f"{name}: {'ok' if ok else 'MISMATCH'} (max diff {err:.2e}"
                  f"{', keys ' + str(sorted(diff)) if diff else ''})")
        else:
            write_npz(path, arrays)
            print(f"{name}: wrote {path} ({path.stat().st_size} bytes)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

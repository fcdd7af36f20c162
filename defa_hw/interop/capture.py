"""Capture MSDeformAttn blocks from PyTorch modules into the ``defa-hw golden`` input contract.

Two interfaces are recognised by their ``forward`` parameter names:

* HuggingFace transformers' ``DeformableDetrMultiscaleDeformableAttention``:
  ``hidden_states`` (+ ``position_embeddings``) is the query, ``encoder_hidden_states``
  the feature map, ``attention_mask`` True = pixel kept.
* Deformable DETR's original ``MSDeformAttn``: ``query``, ``reference_points``,
  ``input_flatten``, ``input_spatial_shapes``, ``input_level_start_index``,
  ``input_padding_mask`` True = padding.

This project's ``fmap_mask`` is True = masked; the batch is split into one case per
element (the hardware runs one image at a time).
"""

import inspect
from pathlib import Path

import numpy as np
import torch

from golden.reference import PARAM_NAMES, level_start_index

__all__ = ["InteropError", "capture", "save", "module_shape"]

HF_PARAMS = ("hidden_states", "attention_mask", "encoder_hidden_states", "position_embeddings",
             "reference_points", "spatial_shapes", "level_start_index")
ORIGINAL_PARAMS = ("query", "reference_points", "input_flatten", "input_spatial_shapes",
                   "input_level_start_index", "input_padding_mask")
_LINEARS = ("value_proj", "sampling_offsets", "attention_weights", "output_proj")


class InteropError(ValueError):
    """A module or call that cannot be mapped onto the hardware's block; one line."""


def _interface(module):
    try:
        names = set(inspect.signature(module.forward).parameters)
    except (AttributeError, TypeError, ValueError):
        names = set()
    if set(HF_PARAMS) <= names:
        return "hf"
    if set(ORIGINAL_PARAMS) <= names:
        return "original"
    raise InteropError(
        f"{type(module).__name__} is not a recognised MSDeformAttn: its forward takes neither "
        f"HuggingFace's ({', '.join(HF_PARAMS)}) nor the original MSDeformAttn's "
        f"({', '.join(ORIGINAL_PARAMS)}); pass the attention module itself, "
        f"e.g. model.encoder.layers[0].self_attn")


def module_shape(module):
    """``(d_model, n_heads, n_levels, n_points)`` of a recognised module, checked against
    its four ``nn.Linear`` layers."""
    _interface(module)
    dims = []
    for attr in ("n_heads", "n_levels", "n_points"):
        v = getattr(module, attr, None)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InteropError(f"{type(module).__name__}.{attr} = {v!r}: expected a positive "
                               f"integer attribute, as MSDeformAttn has")
        dims.append(v)
    M, L, P = dims
    for name in _LINEARS:
        lin = getattr(module, name, None)
        if not isinstance(lin, torch.nn.Linear) or lin.bias is None:
            raise InteropError(f"{type(module).__name__}.{name} is not an nn.Linear with a bias; "
                               f"MSDeformAttn's parameters are {', '.join(PARAM_NAMES)}")
    C = module.value_proj.in_features
    expect = {"value_proj": (C, C), "output_proj": (C, C),
              "sampling_offsets": (M * L * P * 2, C), "attention_weights": (M * L * P, C)}
    for name, shape in expect.items():
        got = tuple(getattr(module, name).weight.shape)
        if got != shape:
            raise InteropError(f"{name}.weight has shape {got}; with n_heads {M}, n_levels {L}, "
                               f"n_points {P} expected {shape}")
    if C % M:
        raise InteropError(f"d_model {C} is not divisible by n_heads {M}")
    return C, M, L, P


def _np(t):
    a = t.detach().cpu()
    return a.double().numpy() if a.dtype == torch.float64 else a.float().numpy()


def _tensor(args, name, ndim, required=True):
    t = args.get(name)
    if t is None:
        if required:
            raise InteropError(f"{name} is None; the block needs it")
        return None
    if not isinstance(t, torch.Tensor) or t.ndim != ndim:
        got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise InteropError(f"{name} is {got}; expected a tensor with {ndim} dimensions "
                           f"(batch first)")
    return t


def _bool_mask(args, name, meaning):
    m = _tensor(args, name, 2, required=False)
    if m is not None and m.dtype != torch.bool:
        raise InteropError(f"{name} has dtype {m.dtype}; allowed: torch.bool ({meaning}); "
                           f"the module applies '~' or masked_fill, which need bool")
    return m


def _arrays(kind, args):
    """(query, reference_points, input_flatten, spatial_shapes, fmap_mask) of a bound call."""
    if kind == "hf":
        hs = _tensor(args, "hidden_states", 3)
        pos = _tensor(args, "position_embeddings", 3, required=False)
        query = hs if pos is None else hs + pos       # as the module does, in its dtype
        x = _tensor(args, "encoder_hidden_states", 3)
        keep = _bool_mask(args, "attention_mask", "True = pixel kept")
        mask = None if keep is None else ~keep
        names = ("spatial_shapes", "level_start_index")
    else:
        query = _tensor(args, "query", 3)
        x = _tensor(args, "input_flatten", 3)
        mask = _bool_mask(args, "input_padding_mask", "True = padding")
        names = ("input_spatial_shapes", "input_level_start_index")
    shapes = args.get(names[0])
    if not isinstance(shapes, torch.Tensor) or shapes.ndim != 2 or shapes.shape[1] != 2:
        raise InteropError(f"{names[0]} must be an (L, 2) tensor of (H, W), got "
                           f"{getattr(shapes, 'shape', type(shapes).__name__)}")
    shapes = shapes.detach().cpu().numpy().astype(np.int64)
    start = args.get(names[1])
    if start is not None and not np.array_equal(np.asarray(start.detach().cpu()).reshape(-1),
                                                level_start_index(shapes)):
        raise InteropError(f"{names[1]} {np.asarray(start.cpu()).tolist()} does not match "
                           f"{names[0]} (expected {level_start_index(shapes).tolist()})")
    return query, _tensor(args, "reference_points", 4), x, shapes, mask


def capture(module, *args, clip_reference_points=False, **kwargs):
    """Run ``module(*args, **kwargs)`` once; one input-contract dict per batch element.

    Each dict holds ``query``, ``reference_points``, ``input_flatten``,
    ``spatial_shapes``, ``fmap_mask`` (True = masked), the module's parameters by their
    ``state_dict`` names and ``torch_output``, the module's own output for that element.
    Reference points outside [0, 1] are refused unless ``clip_reference_points``.
    """
    kind = _interface(module)
    C, M, L, P = module_shape(module)
    sig = inspect.signature(module.forward)
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError as e:
        raise InteropError(f"the arguments do not fit {type(module).__name__}.forward: {e}") from None
    bound.apply_defaults()
    a = dict(bound.arguments)
    for p in sig.parameters.values():          # HF's forward ends in **kwargs
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            a.update(a.pop(p.name, None) or {})
    query, ref, x, shapes, mask = _arrays(kind, a)
    B, Lq = query.shape[:2]
    S = int(np.sum(shapes[:, 0] * shapes[:, 1]))
    if ref.shape[-1] == 4:
        raise InteropError("reference_points has last dimension 4 (boxes cx, cy, w, h, as in "
                           "two-stage and box-refinement decoders); the DEFA hardware supports "
                           "only 2-d reference points (x, y)")
    checks = (("query", tuple(query.shape), (B, Lq, C)),
              ("reference_points", tuple(ref.shape), (B, Lq, L, 2)),
              ("input_flatten (the feature map)", tuple(x.shape), (B, S, C)),
              ("spatial_shapes", shapes.shape, (L, 2)))
    for name, got, want in checks:
        if got != want:
            raise InteropError(f"{name} has shape {got}; expected {want} (batch {B}, {Lq} "
                               f"queries, {S} pixels, d_model {C}, {L} levels)")
    if mask is not None and tuple(mask.shape) != (B, S):
        raise InteropError(f"the padding mask has shape {tuple(mask.shape)}; expected {(B, S)}")
    with torch.no_grad():
        out = module(*args, **kwargs)
    out = out[0] if isinstance(out, (tuple, list)) else out
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (B, Lq, C):
        raise InteropError(f"the module returned {getattr(out, 'shape', type(out).__name__)}; "
                           f"expected an output of shape {(B, Lq, C)}")
    refs = _np(ref)
    outside = (refs < 0) | (refs > 1)
    if outside.any() and not clip_reference_points:
        b = int(np.argwhere(outside)[0][0])
        raise InteropError(
            f"reference_points of batch element {b} has {int(outside[b].sum())} values outside "
            f"[0, 1] (e.g. HF scales encoder reference points by valid_ratios, so queries on "
            f"padding reach past 1); the hardware holds [0, 1): pass "
            f"clip_reference_points=True to clip them (those queries then differ from torch_output)")
    refs = np.clip(refs, 0.0, 1.0)
    params = {name: _np(t) for name, t in module.state_dict().items() if name in PARAM_NAMES}
    q, xs, outs = _np(query), _np(x), _np(out)
    masks = np.zeros((B, S), dtype=bool) if mask is None else mask.detach().cpu().numpy()
    return [{**{k: v.copy() for k, v in params.items()}, "query": q[b],
             "reference_points": refs[b], "input_flatten": xs[b], "spatial_shapes": shapes.copy(),
             "fmap_mask": masks[b].copy(), "torch_output": outs[b]} for b in range(B)]


def save(cases, folder, *, prefix="block"):
    """Write each case as ``<folder>/<prefix>_<i>.npz`` (the folder is created); returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, case in enumerate(cases):
        missing = [k for k in (*PARAM_NAMES, "query", "reference_points", "input_flatten",
                               "spatial_shapes") if k not in case]
        if missing:
            raise InteropError(f"case {i} lacks {missing[0]!r}; save() writes what capture() returns")
        paths.append(folder / f"{prefix}_{i:03d}.npz")
        np.savez(paths[-1], **{k: np.asarray(v) for k, v in case.items()})
    return paths

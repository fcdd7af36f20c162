"""The input contract of ``defa-hw golden`` / ``simulate``: loading and validating an npz.

Arrays are named as PyTorch's MSDeformAttn (``query``, ``reference_points``,
``input_flatten``, ``spatial_shapes``, optional ``fmap_mask`` and the module's
``state_dict`` names), plus an optional ``torch_output`` (Lq, C): the float output of
the module the block was captured from (:mod:`defa_hw.interop`), to report SQNR
against.  Every problem raises :class:`InputError` with one line that names the array
and what is allowed.
"""

import zipfile

import numpy as np

from golden.reference import PARAM_NAMES

__all__ = ["InputError", "PARAM_NAMES", "load_workload", "validate_workload", "save_workload",
           "quantize_workload"]

_FLOAT_DTYPES = (np.float32, np.float64)


class InputError(ValueError):
    """Malformed workload input; the message is one line naming the array."""


def _need(cond, msg):
    if not cond:
        raise InputError(msg)


def _float_array(arrays, name, shape):
    _need(name in arrays, f"missing array {name!r}")
    a = arrays[name]
    _need(a.dtype.type in _FLOAT_DTYPES,
          f"array {name!r} has dtype {a.dtype}; allowed: float32 or float64")
    _need(a.shape == shape, f"array {name!r} has shape {a.shape}; expected {shape}")
    _need(bool(np.all(np.isfinite(a))), f"array {name!r} contains NaN or Inf")
    return a.astype(np.float64)


def validate_workload(arrays, cfg):
    """Check ``arrays`` (a name -> ndarray mapping) against the contract and ``cfg``.

    Returns ``(params, inputs)``: the float64 parameter dict and a dict with
    ``query``, ``reference_points``, ``input_flatten``, ``spatial_shapes`` (int64),
    ``fmap_mask`` (bool, True = masked; all False when absent) and, when present,
    ``torch_output`` (Lq, C) float64.
    """
    C, L = cfg.d_model, cfg.n_levels
    n_off = cfg.n_heads * L * cfg.n_points * 2
    n_att = cfg.n_heads * L * cfg.n_points
    allowed = set(PARAM_NAMES) | {"query", "reference_points", "input_flatten",
                                  "spatial_shapes", "fmap_mask", "torch_output"}
    extra = sorted(set(arrays) - allowed)
    _need(not extra, f"unexpected array {extra[0]!r}" if extra else "")

    _need("spatial_shapes" in arrays, "missing array 'spatial_shapes'")
    shapes = arrays["spatial_shapes"]
    _need(np.issubdtype(shapes.dtype, np.integer),
          f"array 'spatial_shapes' has dtype {shapes.dtype}; allowed: an integer dtype")
    _need(shapes.ndim == 2 and shapes.shape[1] == 2,
          f"array 'spatial_shapes' has shape {shapes.shape}; expected (L, 2) of (H, W)")
    _need(shapes.shape[0] == L,
          f"array 'spatial_shapes' has {shapes.shape[0]} levels; the config has n_levels = {L}")
    shapes = shapes.astype(np.int64)
    for l, ((h, w), (hmax, wmax)) in enumerate(zip(shapes, cfg.max_shapes)):
        _need(1 <= h <= hmax and 1 <= w <= wmax,
              f"array 'spatial_shapes' level {l} is {h}x{w}; allowed: 1..{hmax} x 1..{wmax} "
              f"(config max_shapes)")
    S = int(np.sum(shapes[:, 0] * shapes[:, 1]))

    _need("query" in arrays, "missing array 'query'")
    q = arrays["query"]
    _need(q.ndim == 2 and q.shape[0] >= 1,
          f"array 'query' has shape {q.shape}; expected (Lq, {C}) with Lq >= 1")
    Lq = q.shape[0]
    _need("input_flatten" in arrays, "missing array 'input_flatten'")
    x = arrays["input_flatten"]
    _need(x.ndim == 2 and x.shape[0] == S,
          f"array 'input_flatten' has shape {x.shape}; expected (S, {C}) with "
          f"S = sum(H*W) = {S}")
    inputs = {
        "query": _float_array(arrays, "query", (Lq, C)),
        "reference_points": _float_array(arrays, "reference_points", (Lq, L, 2)),
        "input_flatten": _float_array(arrays, "input_flatten", (S, C)),
        "spatial_shapes": shapes,
    }
    ref = inputs["reference_points"]
    _need(bool(np.all((ref >= 0.0) & (ref <= 1.0))),
          "array 'reference_points' has values outside [0, 1]; allowed: normalised (x, y) "
          "in [0, 1]")
    if "fmap_mask" in arrays:
        m = arrays["fmap_mask"]
        _need(m.shape == (S,), f"array 'fmap_mask' has shape {m.shape}; expected ({S},)")
        _need(m.dtype == np.bool_ or np.issubdtype(m.dtype, np.integer),
              f"array 'fmap_mask' has dtype {m.dtype}; allowed: bool or integer 0/1")
        _need(bool(np.all((m == 0) | (m == 1))), "array 'fmap_mask' must hold only 0/1")
        inputs["fmap_mask"] = m.astype(bool)
    else:
        inputs["fmap_mask"] = np.zeros(S, dtype=bool)
    if "torch_output" in arrays:
        inputs["torch_output"] = _float_array(arrays, "torch_output", (Lq, C))

    expect = {
        "value_proj.weight": (C, C), "value_proj.bias": (C,),
        "sampling_offsets.weight": (n_off, C), "sampling_offsets.bias": (n_off,),
        "attention_weights.weight": (n_att, C), "attention_weights.bias": (n_att,),
        "output_proj.weight": (C, C), "output_proj.bias": (C,),
    }
    params = {name: _float_array(arrays, name, shape) for name, shape in expect.items()}
    return params, inputs


def load_workload(path, cfg):
    """Load and validate an input npz; see :func:`validate_workload`."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise InputError(f"input file {path} does not exist") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise InputError(f"input file {path} is not a readable .npz archive "
                         f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    return validate_workload(arrays, cfg)


def save_workload(path, params, inputs):
    """Write a workload in the input contract's format (float32 arrays)."""
    arrays = {k: np.asarray(v, dtype=np.float32) for k, v in params.items()}
    for k in ("query", "reference_points", "input_flatten"):
        arrays[k] = np.asarray(inputs[k], dtype=np.float32)
    arrays["spatial_shapes"] = np.asarray(inputs["spatial_shapes"], dtype=np.int64)
    if inputs.get("fmap_mask") is not None:
        arrays["fmap_mask"] = np.asarray(inputs["fmap_mask"], dtype=bool)
    np.savez(path, **arrays)


def quantize_workload(cfg, params, inputs, *, quant=None):
    """The workload as golden and the RTL take it (:func:`golden.model.quantize_block`).

    ``quant``: ``None`` calibrates the activation scales on these inputs; a path to a
    ``quant.json`` (``defa-hw calibrate``) or a :class:`golden.calibration.StaticScales`
    fixes them.  A value that does not fit the INT12 formats raises :class:`InputError`
    (one line).
    """
    from golden.model import QuantizationError, quantize_block
    if quant is not None and not hasattr(quant, "frac_bits"):
        from defa_hw.model.calibrate import load_quant
        quant = load_quant(quant)
    try:
        return quantize_block(cfg, params, inputs["query"], inputs["reference_points"],
                              inputs["input_flatten"], inputs["spatial_shapes"],
                              inputs["fmap_mask"], scales=quant)
    except QuantizationError as e:
        raise InputError(str(e)) from None

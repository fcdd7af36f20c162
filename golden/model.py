"""The bit-exact INT12 golden model of one DEFA MSDeformAttn block.

Two stages:

* :func:`quantize_block` turns float inputs and parameters into integer codes and
  picks every power-of-two scale (max-abs; the activations' from the float reference
  on the same inputs, or fixed offline by :mod:`golden.calibration`).  This is the
  only place with floats.
* :func:`defa_block` runs the block in integers only, calling one golden function
  per hardware block in DEFA's dataflow order.
"""

from dataclasses import dataclass, asdict, field

import numpy as np

from . import reference
from .aggregate import aggregate_acc
from .bilinear import bilinear
from .calibration import activation_max_abs
from .fmap_mask import fmap_counts, fmap_mask
from .linear import linear, linear_acc
from .point_mask import point_mask
from .quant import (dequantize, frac_bits_for, n_saturated, quantize, quantize_unsigned,
                    round_shift, saturate)
from .sampling_address import sampling_address
from .softmax import softmax

__all__ = ["QuantizationError", "QuantParams", "QuantizedBlock", "quantize_block", "defa_block", "sqnr_db",
           "level_start"]


class QuantizationError(ValueError):
    """The inputs cannot be represented in the configured formats."""


@dataclass(frozen=True)
class QuantParams:
    """Fraction bits of every tensor (value = code * 2**-f) and the derived shifts."""

    query: int
    input: int
    w_value: int
    w_offset: int
    w_attn: int
    w_out: int
    value: int
    logit: int
    offset: int
    sampled: int
    output: int
    prob: int
    coord: int

    @property
    def value_shift(self):
        return self.input + self.w_value - self.value

    @property
    def logit_shift(self):
        return self.query + self.w_attn - self.logit

    @property
    def offset_shift(self):
        return self.query + self.w_offset - self.offset

    @property
    def agg_shift(self):
        return self.prob + self.coord + self.value - self.sampled

    @property
    def out_shift(self):
        return self.sampled + self.w_out - self.output

    def shifts(self):
        return {"value": self.value_shift, "logit": self.logit_shift,
                "offset": self.offset_shift, "agg": self.agg_shift, "out": self.out_shift}

    def to_dict(self):
        return asdict(self)


@dataclass(frozen=True)
class QuantizedBlock:
    """Integer codes of one block's inputs and parameters: what the hardware receives."""

    qp: QuantParams
    query: np.ndarray          # (Lq, C)
    ref: np.ndarray            # (Lq, L, 2) UQ0.ref_frac_bits, (x, y)
    input: np.ndarray          # (S, C)
    shapes: np.ndarray         # (L, 2) (H, W)
    fmap_mask: np.ndarray      # (S,) bool, True = masked
    w_value: np.ndarray
    b_value: np.ndarray        # biases at accumulator scale
    w_offset: np.ndarray
    b_offset: np.ndarray
    w_attn: np.ndarray
    b_attn: np.ndarray
    w_out: np.ndarray
    b_out: np.ndarray
    #: quantisation statistic, not hardware state: values of query / input_flatten
    #: (unmasked rows) that saturated.
    saturated: dict = field(default_factory=dict, compare=False)


def level_start(shapes):
    """Flattened index of each level's first pixel."""
    shapes = np.asarray(shapes, dtype=np.int64)
    return np.concatenate([[0], np.cumsum(shapes[:, 0] * shapes[:, 1])[:-1]])


def quantize_block(cfg, params, query, reference_points, input_flatten, spatial_shapes,
                   fmap_mask=None, *, scales=None):
    """Quantise float inputs and pick every scale (``docs/numerics.md``, quantisation).

    Weights: per-tensor power-of-two scale from their max-abs.  Activations (query,
    input, value, logits, aggregated samples, output): with ``scales=None`` the
    max-abs of the float reference's tensors on these same inputs (per-input
    calibration); with a :class:`golden.calibration.StaticScales` its fixed fraction
    bits, and out-of-range values saturate.  Either way capped so every requantisation
    shift is >= 0.  Offsets use the coordinate format Q.F directly.
    """
    bits = cfg.data_bits
    mask = (np.zeros(len(input_flatten), dtype=bool) if fmap_mask is None
            else np.asarray(fmap_mask, dtype=bool))
    if scales is None:
        act = {k: frac_bits_for(v, bits) for k, v in activation_max_abs(
            cfg, params, {"query": query, "reference_points": reference_points,
                          "input_flatten": input_flatten, "spatial_shapes": spatial_shapes,
                          "fmap_mask": mask}).items()}
    elif scales.data_bits != bits:
        raise QuantizationError(f"the static scales are for data_bits = {scales.data_bits}; "
                                f"the config has data_bits = {bits}")
    else:
        act = scales.frac_bits

    def f_of(a):
        return frac_bits_for(np.max(np.abs(a)) if np.size(a) else 0.0, bits)

    f_q, f_x = act["query"], act["input_flatten"]
    acc = cfg.mm_acc_bits - 1  # bias codes leave one bit of headroom for the sum

    def f_w(name, f_in):
        # The weight's max-abs scale, made coarser where its bias would not fit the
        # accumulator at f_in + f_w (an all-zero weight would otherwise get 32).
        b = params[name + ".bias"]
        fit = frac_bits_for(np.max(np.abs(b)) if np.size(b) else 0.0, acc, lo=-64, hi=64)
        return min(f_of(params[name + ".weight"]), fit - f_in)

    f_wv, f_ws = f_w("value_proj", f_x), f_w("sampling_offsets", f_q)
    f_wa = f_w("attention_weights", f_q)
    f_value = min(act["value"], f_x + f_wv)
    f_logit = max(0, min(act["logits"], f_q + f_wa))
    f_offset = min(cfg.coord_frac_bits, f_q + f_ws)
    if f_offset != cfg.coord_frac_bits:
        raise QuantizationError(
            f"query (2^{-f_q} per code) times sampling_offsets.weight (2^{-f_ws} per code) "
            f"is coarser than the coordinate format Q.{cfg.coord_frac_bits}; rescale the "
            f"inputs or lower coord_frac_bits")
    f_sampled = min(act["sampled"], cfg.prob_bits + cfg.coord_frac_bits + f_value)
    f_wo = f_w("output_proj", f_sampled)
    f_output = min(act["output"], f_sampled + f_wo)
    qp = QuantParams(query=f_q, input=f_x, w_value=f_wv, w_offset=f_ws, w_attn=f_wa,
                     w_out=f_wo, value=f_value, logit=f_logit, offset=f_offset,
                     sampled=f_sampled, output=f_output, prob=cfg.prob_bits,
                     coord=cfg.coord_frac_bits)

    def w(name, f):
        return quantize(params[name + ".weight"], f, bits)

    def b(name, f):
        return quantize(params[name + ".bias"], f, acc)

    return QuantizedBlock(
        qp=qp,
        saturated={"query": n_saturated(np.floor(np.asarray(query) * 2.0 ** f_q + 0.5), bits),
                   "input_flatten": n_saturated(
                       np.floor(np.asarray(input_flatten)[~mask] * 2.0 ** f_x + 0.5), bits)},
        query=quantize(query, f_q, bits),
        ref=quantize_unsigned(reference_points, cfg.ref_frac_bits, cfg.ref_frac_bits),
        input=quantize(input_flatten, f_x, bits),
        shapes=np.asarray(spatial_shapes, dtype=np.int64),
        fmap_mask=mask,
        w_value=w("value_proj", f_wv), b_value=b("value_proj", f_x + f_wv),
        w_offset=w("sampling_offsets", f_ws), b_offset=b("sampling_offsets", f_q + f_ws),
        w_attn=w("attention_weights", f_wa), b_attn=b("attention_weights", f_q + f_wa),
        w_out=w("output_proj", f_wo), b_out=b("output_proj", f_sampled + f_wo),
    )


def defa_block(cfg, qb, *, prune=True):
    """Run one block in integers only, in DEFA's dataflow order.

    Returns a dict: ``output_int`` (Lq, C) codes, ``output`` (dequantised float),
    ``next_fmap_mask`` (S,), every intermediate (for the per-block testbenches) and
    the statistics ``points_total``, ``points_pruned``, ``points_clamped``,
    ``pixels_total``, ``pixels_masked_in`` (value rows skipped),
    ``pixels_pruned_next`` and ``saturated`` (values per activation tensor that
    saturated to INT12; query and input_flatten from quantisation).
    """
    qp = qb.qp
    Lq, C = qb.query.shape
    M, L, P, D = cfg.n_heads, cfg.n_levels, cfg.n_points, cfg.head_dim
    S = qb.input.shape[0]
    shapes = qb.shapes
    saturated = dict(qb.saturated)

    def requant_counted(name, acc, shift, rows=slice(None)):
        # requant() with a count of the values that saturate (rows: those computed).
        r = round_shift(acc, shift)
        saturated[name] = n_saturated(r[rows], cfg.data_bits)
        return saturate(r, cfg.data_bits)

    # 1. attention logits, softmax, PAP point mask.
    logits = requant_counted("logits", linear_acc(qb.query, qb.w_attn, qb.b_attn, cfg),
                             qp.logit_shift).reshape(Lq, M, L * P)
    prob = softmax(logits, qp.logit, cfg)
    keep = point_mask(prob, cfg, enabled=prune)

    # 2. sampling offsets (the hardware computes them for kept points only).
    offsets = linear(qb.query, qb.w_offset, qb.b_offset, qp.offset_shift, cfg)
    offsets = offsets.reshape(Lq, M, L, P, 2)

    # 3. value projection; masked pixels are skipped and read as zero.
    value = requant_counted("value", linear_acc(qb.input, qb.w_value, qb.b_value, cfg),
                            qp.value_shift, ~qb.fmap_mask)
    value = np.where(qb.fmap_mask[:, None], 0, value).reshape(S, M, D)

    # 4. sampling addresses, bilinear in BA mode, aggregation, FWP counting.
    level = np.broadcast_to(np.arange(L)[None, None, :, None], (Lq, M, L, P))
    ref = np.broadcast_to(qb.ref[:, None, :, None, :], (Lq, M, L, P, 2))
    addr = sampling_address(ref, offsets, level, shapes, cfg)
    inb = addr["inb"]
    W = shapes[level, 1][..., None]
    pixel = level_start(shapes)[level][..., None] + addr["ny"] * W + addr["nx"]
    pixel = np.where(inb, pixel, 0)
    head = np.broadcast_to(np.arange(M)[None, :, None, None, None], pixel.shape)
    neigh = np.where(inb[..., None], value[pixel, head], 0)        # (Lq, M, L, P, 4, D)
    bil = bilinear(neigh[..., 0, :], neigh[..., 1, :], neigh[..., 2, :], neigh[..., 3, :],
                   addr["t0"][..., None], addr["t1"][..., None], addr["t01"][..., None], cfg)
    sampled = requant_counted("sampled", aggregate_acc(bil.reshape(Lq, M, L * P, D), prob, keep),
                              qp.agg_shift)
    sampled = sampled.reshape(Lq, C)
    counts = fmap_counts(pixel, inb, prob.reshape(Lq, M, L, P), keep.reshape(Lq, M, L, P),
                         S, cfg)
    next_mask = fmap_mask(counts, cfg, enabled=prune)

    # 5. output projection.
    out = requant_counted("output", linear_acc(sampled, qb.w_out, qb.b_out, cfg), qp.out_shift)

    kept = keep.reshape(Lq, M, L, P)
    return {
        "output_int": out,
        "output": dequantize(out, qp.output),
        "next_fmap_mask": next_mask,
        "logits": logits, "prob": prob, "keep": keep, "offsets": offsets, "value": value,
        "address": addr, "bilinear": bil, "sampled": sampled, "fwp_counts": counts,
        "points_total": int(keep.size),
        "points_pruned": int((~keep).sum()),
        "points_clamped": int((addr["clamped"] & kept).sum()),
        "pixels_total": int(S),
        "pixels_masked_in": int(qb.fmap_mask.sum()),
        "pixels_pruned_next": int(next_mask.sum()),
        "saturated": saturated,
    }


def sqnr_db(reference_out, test_out):
    """Signal-to-quantisation-noise ratio in dB of ``test_out`` against ``reference_out``."""
    ref = np.asarray(reference_out, dtype=np.float64)
    err = np.asarray(test_out, dtype=np.float64) - ref
    noise = np.sum(err * err)
    if noise == 0:
        return float("inf")
    return float(10.0 * np.log10(np.sum(ref * ref) / noise))

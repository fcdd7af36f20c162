"""Integer primitives shared by every golden block: rounding, saturation, quantisation.

Every rule here is stated in ``docs/numerics.md``; this is its one implementation.
All integer arrays are ``numpy.int64``.
"""

import math

import numpy as np

__all__ = [
    "round_shift", "saturate", "requant", "frac_bits_for", "quantize", "dequantize",
    "quantize_unsigned", "n_saturated",
]


def round_shift(x, shift):
    """Divide by ``2**shift`` rounding half up: ``floor(x / 2**shift + 1/2)``.

    A negative ``shift`` is an exact left shift.  ``shift`` may be an array.
    """
    x = np.asarray(x, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    right = np.maximum(shift, 0)
    half = np.where(right > 0, np.left_shift(np.int64(1), np.maximum(right - 1, 0)), 0)
    out_right = np.right_shift(x + half, right)
    out_left = np.left_shift(x, np.maximum(-shift, 0))
    return np.where(shift >= 0, out_right, out_left)


def saturate(x, bits):
    """Clamp to the signed ``bits``-bit range ``[-2**(bits-1), 2**(bits-1) - 1]``."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return np.clip(np.asarray(x, dtype=np.int64), lo, hi)


def n_saturated(x, bits):
    """How many of the (integer-valued) ``x`` lie outside the signed ``bits``-bit range."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    x = np.asarray(x)
    return int(np.count_nonzero((x < lo) | (x > hi)))


def requant(x, shift, bits):
    """Round-half-up shift right by ``shift``, then saturate to ``bits`` signed bits."""
    return saturate(round_shift(x, shift), bits)


def frac_bits_for(max_abs, bits, *, lo=-32, hi=32):
    """Largest fraction-bit count ``f`` with ``round(max_abs * 2**f) <= 2**(bits-1) - 1``.

    This is the per-tensor power-of-two scale from max-abs; an all-zero tensor gets
    ``hi``.  The result is limited to ``lo..hi``.
    """
    max_abs = float(max_abs)
    if not math.isfinite(max_abs):
        raise ValueError(f"cannot pick a scale for a non-finite max-abs {max_abs!r}")
    if max_abs == 0.0:
        return hi
    qmax = (1 << (bits - 1)) - 1
    f = math.floor(math.log2(qmax / max_abs))
    # log2 may be off by one ulp near powers of two: settle with exact checks.
    while math.floor(max_abs * 2.0 ** f + 0.5) > qmax:
        f -= 1
    while math.floor(max_abs * 2.0 ** (f + 1) + 0.5) <= qmax:
        f += 1
    return int(min(max(f, lo), hi))


def quantize(x, frac_bits, bits):
    """Float to signed codes: ``saturate(floor(x * 2**frac_bits + 1/2))``."""
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("cannot quantise NaN or Inf")
    scaled = np.floor(x * 2.0 ** frac_bits + 0.5)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return np.clip(scaled, lo, hi).astype(np.int64)


def quantize_unsigned(x, frac_bits, bits):
    """Float to unsigned codes: ``clip(floor(x * 2**frac_bits + 1/2), 0, 2**bits - 1)``."""
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("cannot quantise NaN or Inf")
    scaled = np.floor(x * 2.0 ** frac_bits + 0.5)
    return np.clip(scaled, 0, (1 << bits) - 1).astype(np.int64)


def dequantize(codes, frac_bits):
    """Codes to float: ``codes * 2**-frac_bits``."""
    return np.asarray(codes, dtype=np.float64) * 2.0 ** (-frac_bits)

"""Integer softmax over the L*P logits of a head (base-2 exp from a lookup table)."""

import math

import numpy as np

from .quant import round_shift

__all__ = ["EXP_ONE_BITS", "LOG2E_BITS", "LOG2E_CODE", "exp2_lut", "softmax_recip_shift",
           "softmax"]

#: exp values are UQ1.15: 1.0 is 2**15.
EXP_ONE_BITS = 15
#: log2(e) as UQ1.15.
LOG2E_BITS = 15
LOG2E_CODE = 47274  # round(log2(e) * 2**15)


def exp2_lut(cfg):
    """``2**(-k / 2**E)`` as UQ1.15 for ``k = 0 .. 2**E - 1`` (``E = cfg.exp_lut_bits``).

    A constant table, computed once at design time; the RTL ROM is built from it.
    """
    n = 1 << cfg.exp_lut_bits
    return np.array([math.floor(2.0 ** (EXP_ONE_BITS - k / n) + 0.5) for k in range(n)],
                    dtype=np.int64)


def softmax_recip_shift(cfg):
    """``K`` of the reciprocal ``floor(2**K / sum)``: keeps the reciprocal >= 2**16."""
    return 2 * EXP_ONE_BITS + 1 + (cfg.n_lp - 1).bit_length()


def softmax(logits, logit_frac_bits, cfg, *, return_intermediates=False):
    """Probabilities (UQ0.prob_bits codes) from INT logit codes over the last axis.

    Steps (``docs/numerics.md``, softmax): subtract the row max; scale by log2(e) into
    a UQ.E base-2 exponent ``u`` (round half up); ``e = LUT[u mod 2**E] >> (u >> E)``;
    ``recip = floor(2**K / sum(e))``; ``p = min(round_shift(e * recip, K - prob_bits),
    2**prob_bits - 1)``.
    """
    if not 0 <= logit_frac_bits <= 32:
        # The quantiser never picks more than 32 fraction bits; beyond that the
        # log2(e) product would need shifts past int64.
        raise ValueError(f"logit_frac_bits = {logit_frac_bits} is outside 0..32")
    x = np.asarray(logits, dtype=np.int64)
    E = cfg.exp_lut_bits
    d = x.max(axis=-1, keepdims=True) - x                       # >= 0
    u = round_shift(d * LOG2E_CODE, logit_frac_bits + LOG2E_BITS - E)
    n = u >> E
    r = u & ((1 << E) - 1)
    lut = exp2_lut(cfg)
    # Shifting right by more than 16 bits leaves 0 anyway; cap so the shift stays small.
    e = lut[r] >> np.minimum(n, EXP_ONE_BITS + 1)
    total = e.sum(axis=-1, keepdims=True)
    K = softmax_recip_shift(cfg)
    recip = (1 << K) // total
    p = np.minimum(round_shift(e * recip, K - cfg.prob_bits), (1 << cfg.prob_bits) - 1)
    if return_intermediates:
        return p, {"u": u, "e": e, "sum": total, "recip": recip}
    return p

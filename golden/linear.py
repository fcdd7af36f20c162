"""MM mode: INT12 x INT12 linear layers with exact wide accumulation (PE array, MM mode)."""

import numpy as np

from .quant import requant, saturate

__all__ = ["linear_acc", "linear"]


def linear_acc(x, w, bias_acc, cfg):
    """Exact accumulators ``x @ w.T + bias_acc``.

    Parameters
    ----------
    x : (N, Cin) int codes, ``cfg.data_bits`` wide.
    w : (Cout, Cin) int codes (``nn.Linear`` layout).
    bias_acc : (Cout,) bias already at the accumulator's scale.

    The result fits ``cfg.mm_acc_bits`` signed bits by construction (the bias is
    saturated to ``mm_acc_bits - 1`` bits when quantised), so nothing wraps.
    """
    x = np.asarray(x, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    acc = x @ w.T + np.asarray(bias_acc, dtype=np.int64)
    # Guard the width claim of docs/numerics.md rather than trusting it.
    assert np.array_equal(acc, saturate(acc, cfg.mm_acc_bits)), "MM accumulator overflow"
    return acc


def linear(x, w, bias_acc, shift, cfg):
    """A linear layer: exact accumulation, then round-half-up shift and INT12 saturation."""
    return requant(linear_acc(x, w, bias_acc, cfg), shift, cfg.data_bits)

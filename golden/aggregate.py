"""BA mode: attention-probability-weighted accumulation of bilinear samples."""

import numpy as np

from .quant import requant

__all__ = ["aggregate_acc", "aggregate"]


def aggregate_acc(bil, prob, keep):
    """Exact accumulators ``sum over points of prob * bil`` for kept points.

    ``bil`` (..., LP, D) bilinear values, ``prob`` (..., LP) UQ0.prob_bits codes,
    ``keep`` (..., LP) PAP keep-mask.  Pruned points contribute nothing.
    """
    bil = np.asarray(bil, dtype=np.int64)
    p = np.where(keep, np.asarray(prob, dtype=np.int64), 0)
    return np.einsum("...k,...kd->...d", p, bil)


def aggregate(bil, prob, keep, shift, cfg):
    """Aggregated head output: exact accumulation, round-half-up shift, saturation."""
    return requant(aggregate_acc(bil, prob, keep), shift, cfg.data_bits)

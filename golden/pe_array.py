"""PE array, cycle-level view: how golden results map onto a stream of array operations.

No arithmetic of its own: the results are :func:`golden.linear.linear_acc` and
:func:`golden.bilinear.bilinear` followed by :func:`golden.aggregate.aggregate_acc`;
this file only fixes which operands one PE-array operation carries
(``docs/pe_array.md``).
"""

import numpy as np

from .aggregate import aggregate_acc
from .bilinear import bilinear
from .linear import linear_acc

__all__ = ["mm_schedule", "pe_array_mm", "ba_schedule", "pe_array_ba"]


def mm_schedule(x, w, cfg):
    """MM operations for one output tile.

    ``x`` (K,) input codes and ``w`` (pe_cols, K) weights (``nn.Linear`` layout:
    one output per row), ``K`` a multiple of ``pe_rows``.  Returns ``(x_ops, w_ops)``:
    ``x_ops`` (T, pe_rows) and ``w_ops`` (T, pe_rows, pe_cols) with
    ``w_ops[t, i, j] = w[j, t * pe_rows + i]``, T = K / pe_rows.
    """
    x = np.asarray(x, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    R, C = cfg.pe_rows, cfg.pe_cols
    K = x.shape[0]
    assert K % R == 0 and w.shape == (C, K)
    return x.reshape(K // R, R), w.T.reshape(K // R, R, C)


def pe_array_mm(x, w, bias_acc, cfg):
    """Exact accumulators of one MM tile: ``linear_acc`` of one input row, (pe_cols,)."""
    return linear_acc(np.asarray(x)[None, :], w, bias_acc, cfg)[0]


def ba_schedule(neigh, t0, t1, t01, prob, keep, cfg):
    """BA operations for one head and one channel slice.

    Inputs in the golden model's point order (level-major, ``L * P`` points):
    ``neigh`` (L*P, 4, ba_channels) neighbour codes (out-of-map ones already 0),
    ``t0``, ``t1``, ``t01``, ``prob`` (L*P,) codes and ``keep`` (L*P,) bools.
    Operation ``p`` (of P) carries point ``p`` of every level: returns ``pix``
    (P, L, 4, ba_channels) and ``pt`` = dict of (P, L) arrays t0, t1, t01, prob, keep.
    """
    L, P = cfg.n_levels, cfg.n_points
    neigh = np.asarray(neigh, dtype=np.int64).reshape(L, P, 4, -1)
    pix = neigh.transpose(1, 0, 2, 3)
    pt = {k: np.asarray(v, dtype=np.int64).reshape(L, P).T
          for k, v in (("t0", t0), ("t1", t1), ("t01", t01), ("prob", prob), ("keep", keep))}
    return pix, pt


def pe_array_ba(neigh, t0, t1, t01, prob, keep, cfg):
    """Exact aggregation accumulators of a tile's points, (ba_channels,).

    ``golden.bilinear.bilinear`` per point and channel, then
    ``golden.aggregate.aggregate_acc`` over the given points (arguments as in
    :func:`ba_schedule`, any number of points).  The array returns one such tile per
    level (``ba_acc[l]``); a head's aggregate is the sum over its levels' tiles.
    """
    neigh = np.asarray(neigh, dtype=np.int64)
    col = (lambda t: np.asarray(t, dtype=np.int64)[:, None])
    bil = bilinear(neigh[:, 0], neigh[:, 1], neigh[:, 2], neigh[:, 3],
                   col(t0), col(t1), col(t01), cfg)
    return aggregate_acc(bil, prob, np.asarray(keep, dtype=bool))

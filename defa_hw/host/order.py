"""Query order: the host may run a block's queries in any order and restore the outputs.

The core is bit-exact for every order (``docs/architecture.md``, value windows); the
order only changes how often the value windows re-load rows.  ``locality`` (the
default of ``defa-hw simulate``) sorts the queries by reference row, in the spirit of
QUILL's distance-ordered querying, so every window sweeps its level once; ``given``
keeps the order of the input (for an encoder: ``input_flatten``, level 0 first).
"""

import dataclasses

import numpy as np

__all__ = ["QUERY_ORDERS", "DEFAULT_QUERY_ORDER", "query_order", "reorder_block",
           "restore_order", "encoder_reference_codes"]

QUERY_ORDERS = ("locality", "given")
DEFAULT_QUERY_ORDER = "locality"


def query_order(ref, order=DEFAULT_QUERY_ORDER):
    """The permutation that runs the queries of ``ref`` (Lq, L, 2 codes) in ``order``:
    ``run[i]`` is the input index of the ``i``-th query run.  ``locality``: by the sum of
    the reference rows over the levels (stable, so ties keep the input order)."""
    if order not in QUERY_ORDERS:
        raise ValueError(f"query order {order!r} is invalid: allowed "
                         + ", ".join(QUERY_ORDERS))
    ref = np.asarray(ref, dtype=np.int64)
    if order == "given":
        return np.arange(ref.shape[0])
    return np.argsort(ref[:, :, 1].sum(axis=1), kind="stable")


def reorder_block(qb, run):
    """The QuantizedBlock with its queries (codes and reference points) in run order."""
    run = np.asarray(run)
    return dataclasses.replace(qb, query=np.asarray(qb.query)[run], ref=np.asarray(qb.ref)[run])


def restore_order(values, run):
    """Per-query results in run order -> input order."""
    values = np.asarray(values)
    out = np.empty_like(values)
    out[np.asarray(run)] = values
    return out


def encoder_reference_codes(cfg, shapes):
    """Reference points of a Deformable DETR encoder (every pixel of every level is a
    query at its own centre, valid ratios 1): ``(S, L, 2)`` UQ0.R codes, ``input_flatten``
    order, the same normalised point at every level."""
    R = cfg.ref_frac_bits
    refs = []
    for h, w in np.asarray(shapes, dtype=np.int64):
        y, x = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        rx = np.minimum(((2 * x + 1) << R) // (2 * w), (1 << R) - 1)
        ry = np.minimum(((2 * y + 1) << R) // (2 * h), (1 << R) - 1)
        refs.append(np.stack([rx.ravel(), ry.ravel()], -1))
    ref = np.concatenate(refs)
    return np.repeat(ref[:, None, :], cfg.n_levels, axis=1)

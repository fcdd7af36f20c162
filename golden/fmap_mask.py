"""FWP: frequency-weighted fmap pruning (counters and the next block's fmap mask)."""

import numpy as np

__all__ = ["fwp_weight", "fmap_counts", "fmap_mask"]


def fwp_weight(prob, cfg):
    """Counter increment of one touch: ``1 + (prob >> (prob_bits - fwp_weight_bits))``."""
    return 1 + (np.asarray(prob, dtype=np.int64) >> (cfg.prob_bits - cfg.fwp_weight_bits))


def fmap_counts(pixel, inb, prob, keep, n_pixels, cfg):
    """Saturating per-pixel counters after one block.

    ``pixel`` (..., 4) flattened pixel index of each neighbour, ``inb`` (..., 4)
    in-bounds flags, ``prob``/``keep`` (...) per point.  Every in-bounds neighbour of
    every kept point adds ``fwp_weight(prob)``; counters saturate at
    ``2**fwp_counter_bits - 1`` (order-independent, since increments are positive).
    """
    w = np.broadcast_to(fwp_weight(prob, cfg)[..., None], np.shape(inb))
    hit = np.asarray(inb, dtype=bool) & np.asarray(keep, dtype=bool)[..., None]
    counts = np.zeros(n_pixels, dtype=np.int64)
    np.add.at(counts, np.asarray(pixel, dtype=np.int64)[hit], w[hit])
    return np.minimum(counts, (1 << cfg.fwp_counter_bits) - 1)


def fmap_mask(counts, cfg, *, enabled=True):
    """Next block's fmap mask (True = pixel masked): ``counts < fwp_threshold``."""
    counts = np.asarray(counts, dtype=np.int64)
    if not enabled:
        return np.zeros(counts.shape, dtype=bool)
    return counts < cfg.fwp_threshold

"""PAP: probability-aware point pruning."""

import numpy as np

__all__ = ["point_mask"]


def point_mask(prob, cfg, *, enabled=True):
    """Keep-mask of sampling points: ``prob >= cfg.pap_threshold_code`` (True = kept).

    ``prob`` holds UQ0.prob_bits codes, last axis the L*P points of a head.  With
    ``enabled=False`` (``--no-prune``) every point is kept.
    """
    prob = np.asarray(prob, dtype=np.int64)
    if not enabled:
        return np.ones(prob.shape, dtype=bool)
    return prob >= cfg.pap_threshold_code

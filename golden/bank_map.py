"""DEFA's conflict-free inter-level bank mapping of the feature-map buffer."""

import numpy as np

__all__ = ["bank_map", "bank_map_intra"]


def bank_map(level, y, x, cfg):
    """Bank id and in-bank word address of pixel ``(y, x)`` of level ``level``.

    Level ``l`` owns banks ``4l .. 4l+3``; the bank inside the group is the 2x2 parity
    ``2 * (y & 1) + (x & 1)``, so the 4 pixels of any 2x2 neighbourhood sit in 4
    different banks.  The word address is ``row_pair * ceil(W_max / 2) + (x >> 1)``
    where ``row_pair = (y >> 1) mod (buffer_rows / 2)`` (the on-chip row window is
    circular; ``buffer_rows`` comes from the config).  ``level`` may be an array.
    """
    level = np.asarray(level, dtype=np.int64)
    y = np.asarray(y, dtype=np.int64)
    x = np.asarray(x, dtype=np.int64)
    bank = 4 * level + 2 * (y & 1) + (x & 1)
    pairs = np.array([cfg.buffer_rows(l) // 2 for l in range(cfg.n_levels)], dtype=np.int64)
    pitch = np.array([(w + 1) // 2 for _, w in cfg.max_shapes], dtype=np.int64)
    addr = ((y >> 1) % pairs[level]) * pitch[level] + (x >> 1)
    return bank, addr


def bank_map_intra(y, x, cfg):
    """Baseline intra-level mapping DEFA argues against: 16 banks over one level.

    Bank ``(y & 3) * 4 + (x & 3)``: a 2x2 neighbourhood is conflict-free, but 4
    points of the same level (16 pixels) collide whenever two points share a
    ``(y, x) mod 4`` parity class.
    """
    y = np.asarray(y, dtype=np.int64)
    x = np.asarray(x, dtype=np.int64)
    return (y & 3) * 4 + (x & 3)

"""Golden model of the value windows: which rows a block loads, in which order.

``docs/numerics.md`` (value windows) is the specification.  Level ``l`` keeps
``n_l = min(buffer_rows(l) / 2, ceil(H_l / 2))`` row pairs on chip, pairs
``lo_l .. hi_l``.  Queries are taken in the order the core runs them.  Query ``q``
reaches rows ``fl - B_l .. fl + B_l + 1`` of level ``l`` (``fl = floor(ref_y * H_l -
1/2)`` in the sampling address's fixed point, offsets clamped to ``+-B_l``), clipped to
``0 .. H_l - 1``: pairs ``a .. b``.  It hits when every level holds its pairs.  On a
miss, every level that does not hold its pairs moves its window to start at ``a``
(or to end at the map's last pair, whichever is first), and loads the pairs of the
new window it did not hold, in level order; a load is one ``(level, row, rows)``
request, whole pairs (the last pair of an odd-height map is one row).
"""

import numpy as np

from .sampling_address import sampling_address

__all__ = ["reference_rows", "query_pairs", "window_schedule", "WindowSchedule"]


def reference_rows(cfg, ref, shapes):
    """``fl``: the reference row of each query at each level, ``(Lq, L)`` int64.

    ``ref`` (Lq, L, 2) reference codes (x, y), ``shapes`` (L, 2) runtime (H, W).
    """
    ref = np.asarray(ref, dtype=np.int64)
    L = cfg.n_levels
    lv = np.broadcast_to(np.arange(L), ref.shape[:2])
    sa = sampling_address(ref, np.zeros_like(ref), lv, np.asarray(shapes), cfg)
    return sa["y0"]


def query_pairs(cfg, ref, shapes):
    """Row pairs ``(a, b)`` each query reaches at each level: two ``(Lq, L)`` arrays."""
    fl = reference_rows(cfg, ref, shapes)
    H = np.asarray(shapes, dtype=np.int64)[:, 0]
    B = np.asarray(cfg.offset_bound, dtype=np.int64)
    lo = np.maximum(fl - B, 0)
    hi = np.minimum(fl + B + 1, H - 1)
    return lo >> 1, hi >> 1


class WindowSchedule:
    """The loads of one block.

    Attributes
    ----------
    misses : list of (query, [(level, row, rows), ...])
        The queries (in run order) that missed and the loads each asked for.
    loads : int
        ``fmap_req`` requests.
    rows_loaded, rows_refetched : int
        Rows loaded, and of those the rows loaded before in the block.
    rows_seen : list of bool arrays
        Per level, the rows loaded at least once.
    """

    def __init__(self, misses, rows_seen, rows_refetched):
        self.misses = misses
        self.loads = sum(len(ld) for _, ld in misses)
        self.rows_loaded = sum(r for _, ld in misses for _, _, r in ld)
        self.rows_refetched = rows_refetched
        self.rows_seen = rows_seen

    def rows_per_level(self, n_levels):
        """Rows loaded at each level (re-loads included)."""
        rows = [0] * n_levels
        for _, lds in self.misses:
            for l, _, r in lds:
                rows[l] += r
        return rows

    def pixels_loaded(self, shapes):
        """Pixel indices (``input_flatten`` order) of every load, in load order."""
        shapes = np.asarray(shapes, dtype=np.int64)
        start = np.concatenate([[0], np.cumsum(shapes[:, 0] * shapes[:, 1])[:-1]])
        out = []
        for _, lds in self.misses:
            for l, row, rows in lds:
                w = int(shapes[l, 1])
                out.append(start[l] + row * w + np.arange(rows * w))
        return np.concatenate(out) if out else np.zeros(0, np.int64)

    def load_groups(self, shapes):
        """Per miss, the pixel indices of its loads (list of arrays, one per load)."""
        shapes = np.asarray(shapes, dtype=np.int64)
        start = np.concatenate([[0], np.cumsum(shapes[:, 0] * shapes[:, 1])[:-1]])
        return [[start[l] + row * int(shapes[l, 1]) + np.arange(rows * int(shapes[l, 1]))
                 for l, row, rows in lds] for _, lds in self.misses]


def window_schedule(cfg, ref, shapes):
    """The loads of a block whose queries run in the order of ``ref`` (Lq, L, 2).

    Windows persist across the block's passes; START empties them.
    """
    shapes = np.asarray(shapes, dtype=np.int64)
    L = cfg.n_levels
    a_all, b_all = query_pairs(cfg, ref, shapes)
    H = shapes[:, 0]
    last = (H - 1) >> 1
    n = np.minimum([cfg.buffer_rows(l) // 2 for l in range(L)], last + 1)
    lo = [None] * L
    hi = [None] * L
    seen = [np.zeros(int(h), dtype=bool) for h in H]
    refetched = 0
    misses = []
    for q in range(a_all.shape[0]):
        loads = []
        for l in range(L):
            a, b = int(a_all[q, l]), int(b_all[q, l])
            if lo[l] is not None and lo[l] <= a and b <= hi[l]:
                continue
            new_lo = min(a, int(last[l] + 1 - n[l]))
            new_hi = new_lo + int(n[l]) - 1
            if lo[l] is None or new_hi < lo[l] or new_lo > hi[l]:
                p0, p1 = new_lo, new_hi
            elif new_lo > lo[l]:
                p0, p1 = hi[l] + 1, new_hi
            else:
                p0, p1 = new_lo, lo[l] - 1
            lo[l], hi[l] = new_lo, new_hi
            row = 2 * p0
            rows = min(2 * p1 + 2, int(H[l])) - row
            refetched += int(seen[l][row:row + rows].sum())
            seen[l][row:row + rows] = True
            loads.append((l, row, rows))
        if loads:
            misses.append((q, loads))
    return WindowSchedule(misses, seen, refetched)

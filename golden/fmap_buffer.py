"""Golden model of the banked feature-map buffer: storage, one read cycle, bank conflicts.

The buffer holds the value map of ONE head: each pixel is ``n_slices = head_dim /
ba_channels`` words of ``ba_channels`` channels, the slice index being the low part
of the in-bank address.  Where a pixel lives comes from :mod:`golden.bank_map`
(inter-level, DEFA) or, for the baseline only, :func:`golden.bank_map.bank_map_intra`
plus the intra-level word address defined here (``docs/architecture.md``).

A read cycle is ``n_req = 4 * n_levels`` neighbour requests.  Inter-level: request
``i`` is neighbour ``i % 4`` (order 00, 01, 10, 11) of the point of level ``i // 4``.
Intra-level: all requests belong to one level; request ``i`` is neighbour ``i % 4`` of
point ``i // 4``.  Out-of-map requests (``inb`` False) read as zero and occupy no bank.
"""

import numpy as np

from .bank_map import bank_map, bank_map_intra
from .sampling_address import sampling_address

__all__ = [
    "MAPPINGS", "n_slices", "intra_geometry", "bank_depths", "buffer_location",
    "new_banks", "fmap_buffer_write", "fmap_buffer", "request_levels",
    "conflict_model", "conflict_workload", "conflict_stats", "query_rows",
    "window_refills",
]

MAPPINGS = ("inter", "intra")


def _check_mapping(mapping, cfg):
    if mapping not in MAPPINGS:
        raise ValueError(f"mapping {mapping!r} is not one of {MAPPINGS}")
    if mapping == "intra" and cfg.n_banks != 16:
        raise ValueError("the intra-level baseline maps one level onto exactly 16 banks")


def n_slices(cfg):
    """Words per pixel: a head's channels in groups of ``ba_channels``."""
    return cfg.head_dim // cfg.ba_channels


def intra_geometry(cfg):
    """Intra-level baseline layout: per level row quads, quad pitch and base word.

    Level ``l`` keeps the same ``buffer_rows(l)`` rows as the inter mapping, spread over
    all 16 banks by ``(y & 3, x & 3)``: ``quads = ceil(buffer_rows / 4)`` row quads of
    ``pitch = ceil(W_max / 4)`` words, levels stacked from word ``base[l]`` on.
    Returns int64 arrays ``quads``, ``pitch``, ``base`` (in words, slices included) and
    the bank depth.
    """
    S = n_slices(cfg)
    quads = np.array([-(-cfg.buffer_rows(l) // 4) for l in range(cfg.n_levels)], np.int64)
    pitch = np.array([-(-w // 4) for _, w in cfg.max_shapes], np.int64)
    size = quads * pitch * S
    base = np.concatenate([[0], np.cumsum(size)[:-1]]).astype(np.int64)
    return {"quads": quads, "pitch": pitch, "base": base, "depth": int(size.sum())}


def bank_depths(cfg, mapping="inter"):
    """Words of each of the ``n_banks`` banks."""
    _check_mapping(mapping, cfg)
    if mapping == "intra":
        return [intra_geometry(cfg)["depth"]] * cfg.n_banks
    S = n_slices(cfg)
    return [cfg.bank_words(b // 4) * S for b in range(cfg.n_banks)]


def buffer_location(level, y, x, slc, cfg, mapping="inter"):
    """Bank and in-bank word of channel slice ``slc`` of pixel ``(y, x)`` of ``level``.

    Inter: ``bank_map`` gives the bank and the pixel word; the word address is
    ``pixel_word * n_slices + slc``.  Intra: bank ``bank_map_intra``; pixel word
    ``base[l] / n_slices + ((y >> 2) mod quads[l]) * pitch[l] + (x >> 2)``.
    Meaningful for in-map pixels only (``0 <= y < H_max``, ``0 <= x < W_max``).
    """
    _check_mapping(mapping, cfg)
    S = n_slices(cfg)
    level = np.asarray(level, np.int64)
    y = np.asarray(y, np.int64)
    x = np.asarray(x, np.int64)
    slc = np.asarray(slc, np.int64)
    if mapping == "inter":
        bank, word = bank_map(level, y, x, cfg)
        return bank, word * S + slc
    g = intra_geometry(cfg)
    bank = bank_map_intra(y, x, cfg)
    word = ((y >> 2) % g["quads"][level]) * g["pitch"][level] + (x >> 2)
    return bank, g["base"][level] + word * S + slc


def new_banks(cfg, mapping="inter"):
    """Zeroed bank contents (the RTL's reset state): a list of ``(depth, ba_channels)``."""
    return [np.zeros((d, cfg.ba_channels), np.int64) for d in bank_depths(cfg, mapping)]


def _in_max_shape(level, y, x, cfg):
    hmax = np.array([h for h, _ in cfg.max_shapes], np.int64)[level]
    wmax = np.array([w for _, w in cfg.max_shapes], np.int64)[level]
    return (y >= 0) & (y < hmax) & (x >= 0) & (x < wmax)


def fmap_buffer_write(banks, level, y, x, slc, data, cfg, mapping="inter"):
    """Apply fill-stream beats in order (in place; also returned).

    Each beat writes ``data`` (``ba_channels`` codes) to the word of ``(level, y, x,
    slc)``.  Beats outside the level's ``max_shapes`` are dropped (they have no word).
    """
    level = np.atleast_1d(np.asarray(level, np.int64))
    y = np.atleast_1d(np.asarray(y, np.int64))
    x = np.atleast_1d(np.asarray(x, np.int64))
    slc = np.atleast_1d(np.asarray(slc, np.int64))
    data = np.asarray(data, np.int64).reshape(len(level), cfg.ba_channels)
    ok = _in_max_shape(level, y, x, cfg)
    bank, addr = buffer_location(level, y, x, slc, cfg, mapping)
    for k in np.flatnonzero(ok):      # in order: a later beat to the same word wins
        banks[bank[k]][addr[k]] = data[k]
    return banks


def request_levels(cfg, mapping="inter", level=0):
    """Level of each of the ``4 * n_levels`` requests of one read cycle."""
    n_req = 4 * cfg.n_levels
    if mapping == "inter":
        return np.arange(n_req, dtype=np.int64) // 4
    return np.full(n_req, level, np.int64)


def fmap_buffer(banks, y, x, inb, slc, cfg, mapping="inter", level=0):
    """One read cycle: ``n_req`` requests -> ``(n_req, ba_channels)`` codes.

    ``y``, ``x``, ``inb``, ``slc`` have one entry per request (levels from
    :func:`request_levels`; ``level`` is the cycle's level for the intra mapping).
    An out-of-map request (``inb`` False) returns zeros and reads no bank.
    """
    lv = request_levels(cfg, mapping, level)
    y = np.asarray(y, np.int64)
    x = np.asarray(x, np.int64)
    inb = np.asarray(inb, bool)
    slc = np.asarray(slc, np.int64)
    out = np.zeros((len(lv), cfg.ba_channels), np.int64)
    ys, xs = np.where(inb, y, 0), np.where(inb, x, 0)
    bank, addr = buffer_location(lv, ys, xs, np.where(inb, slc, 0), cfg, mapping)
    for i in np.flatnonzero(inb):
        out[i] = banks[bank[i]][addr[i]]
    return out


def conflict_model(bank, inb, n_banks):
    """Extra cycles of read cycles: ``max(requests per bank) - 1`` (0 without requests).

    ``bank`` and ``inb`` are ``(..., n_req)``; out-of-map requests enable no bank and
    do not count.  Two requests for the same word of a bank still count twice (the
    banks are single-read-port SRAMs and nothing merges requests).
    """
    bank = np.asarray(bank, np.int64)
    inb = np.asarray(inb, bool)
    onehot = (bank[..., None] == np.arange(n_banks)) & inb[..., None]
    per_bank = onehot.sum(axis=-2)
    return np.maximum(per_bank.max(axis=-1) - 1, 0)


def conflict_workload(cfg, shapes, n_queries, mapping, rng):
    """Read cycles of a random sampling workload, grouped for ``mapping``.

    Every (query, head) gets a uniform random reference point (UQ0.R codes) and, per
    level and point, a uniform random offset in ``[-bound, +bound]`` pixels (Q.F); the
    sampling-address golden turns them into neighbours.  Inter: cycle ``(q, m, p)``
    takes point ``p`` of every level.  Intra: the points of one level, in ``(q, m, p)``
    order, are taken 4 at a time (a short last group is padded with out-of-map
    requests).  Both schedules read exactly the same points.

    Returns a dict of ``(n_cycles, n_req)`` arrays ``y``, ``x``, ``inb``, ``slc``
    (random slices), ``(n_cycles,)`` ``level`` and ``n_points``.
    """
    _check_mapping(mapping, cfg)
    M, L, P, F = cfg.n_heads, cfg.n_levels, cfg.n_points, cfg.coord_frac_bits
    ref = rng.integers(0, 1 << cfg.ref_frac_bits, size=(n_queries, M, 1, 1, 2))
    bound = (np.asarray(cfg.offset_bound, np.int64) << F)[None, None, :, None, None]
    off = np.floor(rng.uniform(-1.0, 1.0, size=(n_queries, M, L, P, 2)) * (bound + 1))
    off = np.clip(off.astype(np.int64), -bound, bound)
    lv = np.broadcast_to(np.arange(L, dtype=np.int64)[None, None, :, None], (n_queries, M, L, P))
    sa = sampling_address(np.broadcast_to(ref, off.shape), off, lv, shapes, cfg)
    ny, nx, inb = sa["ny"], sa["nx"], sa["inb"]           # (q, m, L, P, 4)
    if mapping == "inter":
        # (q, m, p, l, k) -> request 4l + k
        def order(a):
            return np.moveaxis(a, 3, 2).reshape(-1, 4 * L)
        y, x, ok = order(ny), order(nx), order(inb)
        level = np.zeros(len(y), np.int64)
    else:
        ys, xs, oks, levels = [], [], [], []
        for l in range(L):
            a_y = ny[:, :, l].reshape(-1, 4)
            a_x = nx[:, :, l].reshape(-1, 4)
            a_ok = inb[:, :, l].reshape(-1, 4)
            pad = (-len(a_y)) % 4
            if pad:
                a_y = np.concatenate([a_y, np.zeros((pad, 4), np.int64)])
                a_x = np.concatenate([a_x, np.zeros((pad, 4), np.int64)])
                a_ok = np.concatenate([a_ok, np.zeros((pad, 4), bool)])
            ys.append(a_y.reshape(-1, 16))
            xs.append(a_x.reshape(-1, 16))
            oks.append(a_ok.reshape(-1, 16))
            levels.append(np.full(len(ys[-1]), l, np.int64))
        y, x, ok = np.concatenate(ys), np.concatenate(xs), np.concatenate(oks)
        level = np.concatenate(levels)
    slc = rng.integers(0, n_slices(cfg), size=y.shape)
    return {"y": y, "x": x, "inb": ok, "slc": slc, "level": level,
            "n_points": n_queries * M * L * P}


def _request_banks(wl, cfg, mapping):
    n_req = wl["y"].shape[1]
    ys, xs = np.where(wl["inb"], wl["y"], 0), np.where(wl["inb"], wl["x"], 0)
    if mapping == "inter":
        lv = np.broadcast_to(np.arange(n_req, dtype=np.int64) // 4, ys.shape)
        return bank_map(lv, ys, xs, cfg)[0]
    return bank_map_intra(ys, xs, cfg)


def conflict_stats(wl, cfg, mapping):
    """Conflict figures of a workload from :func:`conflict_workload`.

    ``cycles`` (read cycles issued), ``conflict_cycles`` (cycles with two requests on
    one bank), ``lost_cycles`` (sum of :func:`conflict_model`), ``conflict_rate``
    (conflict cycles per read cycle) and ``lost_per_1000_points``.
    """
    extra = conflict_model(_request_banks(wl, cfg, mapping), wl["inb"], cfg.n_banks)
    cycles = len(extra)
    return {"cycles": cycles, "points": wl["n_points"],
            "conflict_cycles": int(np.count_nonzero(extra)),
            "lost_cycles": int(extra.sum()),
            "conflict_rate": float(np.count_nonzero(extra)) / cycles,
            "lost_per_1000_points": 1000.0 * float(extra.sum()) / wl["n_points"]}


def query_rows(cfg, shape_q, shape_l, level):
    """Rows of level ``level`` each query row of a ``shape_q`` query level can reach.

    Encoder queries are the pixels of a level in raster order; query row ``r`` has the
    reference ``y = (r + 1/2) / H_q`` (UQ0.R code, rounded), i.e. pixel row
    ``yc = ref * H_l - 1/2`` at level ``level``.  With offsets clamped to ``+-B`` the
    neighbours reach rows ``floor(yc) - B .. floor(yc) + B + 1``, clipped to the map.
    Returns ``(lo, hi)`` int64 arrays, one entry per query row.
    """
    hq, _ = shape_q
    hl, _ = shape_l
    R, F = cfg.ref_frac_bits, cfg.coord_frac_bits
    B = cfg.offset_bound[level]
    r = np.arange(hq, dtype=np.int64)
    ref = np.minimum(((2 * r + 1) << R) // (2 * hq), (1 << R) - 1)
    # Same fixed-point reference row as the sampling-address golden (offset 0).
    sa = sampling_address(np.stack([ref, ref], -1), np.zeros((hq, 2), np.int64),
                          np.full(hq, level), np.array([shape_l] * cfg.n_levels), cfg)
    y0 = sa["y0"]
    return np.maximum(y0 - B, 0), np.minimum(y0 + B + 1, hl - 1)


def window_refills(cfg, level, lo, hi, height, prefetch=True):
    """Row-pair loads of the reuse/refill policy for one raster sweep of query rows.

    ``lo``/``hi`` (from :func:`query_rows`) are the rows each query row reaches,
    non-decreasing.  A level whose ``buffer_rows`` cover the runtime ``height`` is
    loaded whole before the first query row and never again.  Otherwise the window
    holds ``P = buffer_rows / 2`` row pairs, pair ``p`` in slot ``p mod P``; before
    query row ``k`` the missing pairs up to ``hi[k] >> 1`` are loaded (``need``), and
    with ``prefetch`` the pairs up to ``(lo[k] >> 1) + P - 1`` may be loaded while row
    ``k`` is read (``ahead``): every load overwrites a pair below ``lo[k] >> 1``, which
    no later query row of the sweep needs.  Returns one ``(need, ahead)`` pair of pair
    lists per query row; each pair is loaded at most once per sweep.
    """
    pairs = cfg.buffer_rows(level) // 2
    last = (height - 1) >> 1
    out = []
    if 2 * pairs >= height:
        out.append((list(range(last + 1)), []))
        out.extend(([], []) for _ in range(len(lo) - 1))
        return out
    loaded = -1                         # highest pair loaded so far (loads are in order)
    for a, b in zip(np.asarray(lo) >> 1, np.asarray(hi) >> 1):
        if b - a + 1 > pairs:
            raise ValueError(f"level {level}: rows {2 * a}..{2 * b + 1} exceed the "
                             f"{2 * pairs}-row window")
        need = list(range(max(loaded + 1, a), b + 1))
        loaded = max(loaded, b)
        ahead = list(range(loaded + 1, min(a + pairs - 1, last) + 1)) if prefetch else []
        if ahead:
            loaded = ahead[-1]
        out.append((need, ahead))
    return out

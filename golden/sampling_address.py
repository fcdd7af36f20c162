"""Sampling-address unit: reference point + offset -> neighbours, fractions, banks."""

import numpy as np

from .bank_map import bank_map
from .quant import round_shift

__all__ = ["sampling_address"]


def sampling_address(ref, offset, level, shapes, cfg):
    """Fixed-point sampling addresses of points (broadcasting over leading axes).

    Parameters
    ----------
    ref : (..., 2) reference point codes (x, y), UQ0.``ref_frac_bits``.
    offset : (..., 2) offset codes (x, y) in pixels, Q.``coord_frac_bits``.
    level : (...) level index of each point.
    shapes : (L, 2) runtime spatial shapes (H, W).

    Returns a dict of int64 arrays (``docs/numerics.md``, sampling address):
    ``x``, ``y`` (pixel coordinates, Q.F), ``x0``, ``y0``, ``t1 = x - x0``,
    ``t0 = y - y0``, ``t01 = round(t0 * t1)`` (UQ0.F), ``clamped`` (bool: an offset
    component hit the level's bound), and per neighbour ``k`` in order 00, 01, 10, 11
    (``01`` = one pixel right, ``10`` = one pixel down) the arrays ``inb`` (..., 4),
    ``bank`` (..., 4) and ``addr`` (..., 4).  Out-of-map neighbours have ``addr`` 0.
    """
    F = cfg.coord_frac_bits
    ref = np.asarray(ref, dtype=np.int64)
    offset = np.asarray(offset, dtype=np.int64)
    level = np.asarray(level, dtype=np.int64)
    shapes = np.asarray(shapes, dtype=np.int64)
    H, W = shapes[level, 0], shapes[level, 1]
    bound = np.asarray(cfg.offset_bound, dtype=np.int64)[level] << F

    off_x = np.clip(offset[..., 0], -bound, bound)
    off_y = np.clip(offset[..., 1], -bound, bound)
    clamped = (off_x != offset[..., 0]) | (off_y != offset[..., 1])

    # Pixel coordinate of the reference: ref * W - 0.5 (grid_sample, align_corners=False).
    half = 1 << (F - 1)
    x = round_shift(ref[..., 0] * W, cfg.ref_frac_bits - F) - half + off_x
    y = round_shift(ref[..., 1] * H, cfg.ref_frac_bits - F) - half + off_y
    x0, y0 = x >> F, y >> F
    t1, t0 = x & ((1 << F) - 1), y & ((1 << F) - 1)
    t01 = round_shift(t0 * t1, F)

    ny = np.stack([y0, y0, y0 + 1, y0 + 1], axis=-1)
    nx = np.stack([x0, x0 + 1, x0, x0 + 1], axis=-1)
    lv = np.broadcast_to(level[..., None], ny.shape)
    inb = (ny >= 0) & (ny < H[..., None]) & (nx >= 0) & (nx < W[..., None])
    bank, addr = bank_map(lv, ny, nx, cfg)
    addr = np.where(inb, addr, 0)
    return {"x": x, "y": y, "x0": x0, "y0": y0, "t0": t0, "t1": t1, "t01": t01,
            "clamped": clamped, "ny": ny, "nx": nx, "inb": inb, "bank": bank, "addr": addr}

"""Bilinear interpolation in DEFA's 3-multiplier / 7-adder form."""

import numpy as np

__all__ = ["bilinear"]


def bilinear(v00, v01, v10, v11, t0, t1, t01, cfg):
    """Exact fixed-point bilinear value with ``cfg.coord_frac_bits`` fraction bits.

    ``v00 << F + t1*(v01 - v00) + t0*(v10 - v00) + t01*((v11 - v10) - (v01 - v00))``:
    4 subtractions, 3 multiplications, 3 additions.  ``v01`` is the right neighbour,
    ``v10`` the one below; out-of-map neighbours must already be 0.  No rounding:
    the result is ``cfg.bilinear_bits`` wide.
    """
    F = cfg.coord_frac_bits
    v00, v01, v10, v11 = (np.asarray(v, dtype=np.int64) for v in (v00, v01, v10, v11))
    t0, t1, t01 = (np.asarray(t, dtype=np.int64) for t in (t0, t1, t01))
    d_x = v01 - v00
    d_y = v10 - v00
    d_xy = (v11 - v10) - d_x
    return (v00 << F) + t1 * d_x + t0 * d_y + t01 * d_xy

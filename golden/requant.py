"""Requantiser (``docs/numerics.md``): round-half-up right shift, then saturation."""

from .quant import requant as _requant

__all__ = ["requant"]


def requant(acc, shift, cfg):
    """``saturate(round_shift(acc, shift), cfg.data_bits)``; the rule is ``quant.requant``."""
    return _requant(acc, shift, cfg.data_bits)

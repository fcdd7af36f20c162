"""Run captured cases through the INT12 golden model, with a config that fits the module."""

import numpy as np

from defa_hw.config import ConfigError
from defa_hw.model.workload import quantize_workload, validate_workload
from defa_hw.interop.capture import InteropError, module_shape

__all__ = ["config_for", "run_golden"]


def config_for(module, *, base, shapes=None):
    """``base`` with the module's d_model, heads and points; ``max_shapes`` grown to hold
    ``shapes`` ((L, 2) of (H, W)) when given.  The level count must match ``base``."""
    C, M, L, P = module_shape(module)
    if L != base.n_levels:
        raise InteropError(f"the module has {L} levels but config {base.name!r} has "
                           f"n_levels = {base.n_levels}; give a config with {L} levels")
    changes = {"d_model": C, "n_heads": M, "n_points": P}
    if shapes is not None:
        grown = np.maximum(np.asarray(base.max_shapes), np.asarray(shapes, dtype=np.int64))
        changes["max_shapes"] = tuple((int(h), int(w)) for h, w in grown)
    if all(getattr(base, k) == v for k, v in changes.items()):
        return base
    try:
        return base.replace(name=f"{base.name}-fitted", **changes)
    except ConfigError as e:
        raise InteropError(f"the module does not fit the hardware config: {e}") from None


def run_golden(case, cfg, *, prune=True, quant=None):
    """The INT12 golden result of one captured case (the dict of ``defa_block``), with
    ``sqnr_vs_torch_db`` added when the case holds ``torch_output``."""
    from golden.model import defa_block, sqnr_db
    params, inputs = validate_workload({k: np.asarray(v) for k, v in case.items()}, cfg)
    res = defa_block(cfg, quantize_workload(cfg, params, inputs, quant=quant), prune=prune)
    if "torch_output" in inputs:
        res["sqnr_vs_torch_db"] = sqnr_db(inputs["torch_output"], res["output"])
    return res

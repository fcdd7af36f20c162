"""``defa_core``: the DEFA accelerator top level and its units (docs/architecture.md).

Names are loaded on first use, so that a unit (e.g. ``controller.Phase``) can be
imported without elaborating the top's imports (the register table needs ``Phase``,
and the top needs the register table).
"""

import importlib

_EXPORTS = {"DefaCore": "top", "core_verilog": "top", "compact_memory_init": "top",
            "Phase": "controller", "CoreGeometry": "common", "DEFAULT_MAX_QUERIES": "common"}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)

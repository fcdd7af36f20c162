"""``defa_core``: the DEFA accelerator top level and its units (docs/architecture.md)."""

from defa_hw.rtl.core.top import (CoreGeometry, DEFAULT_MAX_QUERIES, DefaCore, Phase,
                                  compact_memory_init, core_verilog)

__all__ = ["DefaCore", "Phase", "CoreGeometry", "DEFAULT_MAX_QUERIES", "core_verilog",
           "compact_memory_init"]

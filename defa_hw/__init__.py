"""defa-hw: RTL generator for the DEFA multi-scale deformable attention accelerator."""

from defa_hw.config import DefaConfig, ConfigError, PRESETS, preset, load_config

__all__ = ["DefaConfig", "ConfigError", "PRESETS", "preset", "load_config"]

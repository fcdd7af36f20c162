"""Bring your own PyTorch model: capture MSDeformAttn blocks from real modules.

Needs the ``interop`` extra (``pip install -e '.[interop]'``: torch, transformers,
scikit-image); the rest of ``defa_hw`` does not import torch.
"""

try:
    import torch  # noqa: F401
except ImportError:                                  # pragma: no cover - depends on the extra
    raise ImportError("defa_hw.interop needs PyTorch: install the extra with "
                      "pip install -e '.[interop]'") from None

from defa_hw.interop.capture import InteropError, capture, module_shape, save
from defa_hw.interop.run import config_for, run_golden

__all__ = ["InteropError", "capture", "save", "module_shape", "config_for", "run_golden"]

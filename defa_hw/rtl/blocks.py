"""Registry of the RTL blocks that ``defa-hw generate --block`` can elaborate.

Each entry maps a block name (also the Verilog module name, the golden function's
module and the testbench's name) to the module and class that build it from a
:class:`~defa_hw.config.DefaConfig`.
"""

import importlib

__all__ = ["BLOCKS", "block_names", "build_block"]

#: name -> (module, class, one-line description)
BLOCKS = {
    "sampling_address": ("defa_hw.rtl.sampling_address", "SamplingAddress", "point -> neighbours, fractions, banks, addresses"),
    "fmap_buffer": ("defa_hw.rtl.fmap_buffer", "FmapBuffer", "16-bank multi-scale feature-map buffer, conflict-free inter-level mapping"),
    "softmax": ("defa_hw.rtl.softmax", "Softmax", "integer softmax over the L*P logits of a head"),
    "point_mask": ("defa_hw.rtl.point_mask", "PointMask", "PAP keep mask per (query, head) and compacted surviving points"),
    "fmap_mask": ("defa_hw.rtl.fmap_mask", "FmapMaskGenerator", "FWP per-pixel counters and next block's fmap mask"),
    "requant": ("defa_hw.rtl.requant", "Requant", "round-half-up shift and saturation to data_bits"),
    "bilinear": ("defa_hw.rtl.bilinear", "Bilinear", "bilinear interpolation, 3 multipliers / 7 adders, 3-stage pipeline"),
    "pe": ("defa_hw.rtl.pe", "ProcessingElement", "reconfigurable PE: MM multiply-accumulate or multiplier lent to a BA group"),
    "pe_array": ("defa_hw.rtl.pe_array", "PEArray", "reconfigurable PE array: MM vector x tile and BA bilinear + aggregation"),
    "defa_core": ("defa_hw.rtl.core", "DefaCore", "top level: the whole MSDeformAttn block on one shared PE array"),
}


def block_names():
    return sorted(BLOCKS)


def build_block(name, cfg):
    """Instantiate block ``name`` for ``cfg``; unknown names raise ``KeyError`` naming the allowed ones."""
    try:
        module, cls, _ = BLOCKS[name]
    except KeyError:
        raise KeyError(f"unknown block {name!r}; allowed blocks: "
                       f"{', '.join(block_names())}") from None
    return getattr(importlib.import_module(module), cls)(cfg)

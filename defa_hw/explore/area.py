"""Area of a sweep point: the leaf blocks synthesised, composed with the SRAM model.

Synthesising a whole core per point takes many minutes, so a point's area is composed:

* **synthesised** (generic or asic flow, one run per distinct RTLIL, cached on disk by
  :func:`synth.rtlil.canonical_key`): the registered blocks that the core instantiates as
  they are, times their count in the core (:data:`LEAVES`);
* **modelled**: every on-chip memory, ``CoreGeometry(cfg, max_queries).memory_bits()``
  times the flow's own SRAM macro model (``synth.SRAM_MODEL`` / ``ASIC_SRAM_MODEL``);
* **left out**: the rest of the core's logic (controller, MM issuer, offset gather, BA
  pipeline glue, the PE array's adders).  :func:`validate` states what that costs on the
  committed baselines, where the whole core was synthesised.
"""

import json
import os
import re
import tempfile
from pathlib import Path

from defa_hw.config import DefaConfig
from defa_hw.rtl.core import DEFAULT_MAX_QUERIES, CoreGeometry

__all__ = ["LEAVES", "TARGETS", "leaf_rtlil", "leaf_synth", "compose", "validate"]

#: Registered blocks the core instantiates unchanged -> (count rule, count(cfg)).
LEAVES = {
    "pe": ("4 * ba_lanes * ba_channels (the BA groups' PEs)",
           lambda cfg: 4 * cfg.ba_lanes * cfg.ba_channels),
    "pe_mm": ("pe_rows * pe_cols - the BA groups' PEs (role mm: MM only)",
              lambda cfg: cfg.pe_rows * cfg.pe_cols - 4 * cfg.ba_lanes * cfg.ba_channels),
    "fmap_buffer": ("n_heads (value buffers)", lambda cfg: cfg.n_heads),
    "sampling_address": ("ba_lanes (BA pipeline)", lambda cfg: cfg.ba_lanes),
    "softmax": ("1", lambda cfg: 1),
    "fmap_mask": ("1 (FWP)", lambda cfg: 1),
}

#: Per flow: the unit of its area, mm^2 per unit and the SRAM model's area per bit.
#: generic: NAND2-eq of ``synth/generic.lib``, whose NAND2 is NanGate45's NAND2_X1
#: (0.798 um^2, docs/synthesis.md); asic: um^2 of OSU 0.18 um cells.
TARGETS = {
    "generic": {"unit": "NAND2-eq", "mm2_per_unit": 0.798e-6, "logic": "area_nand2_logic",
                "total": "area_nand2_total_est", "node": "NanGate45 NAND2 = 0.798 um^2"},
    "asic": {"unit": "um^2", "mm2_per_unit": 1e-6, "logic": "area_um2",
             "total": "area_um2_total_est", "node": "OSU 0.18 um"},
}


def _sram_per_bit(target):
    from synth import ASIC_SRAM_MODEL, SRAM_MODEL
    return SRAM_MODEL["nand2_per_bit"] if target == "generic" else \
        ASIC_SRAM_MODEL["area_um2_per_bit"]


def leaf_rtlil(block, cfg_dict, target):
    """(key, RTLIL text) of a registered block for a config (``DefaConfig.to_dict``), or
    (the error, None) when the block does not elaborate."""
    from defa_hw.rtl.blocks import build_block
    from defa_hw.rtl.pe import ProcessingElement
    from synth.rtlil import canonical_key, to_rtlil
    try:
        cfg = DefaConfig.from_dict(cfg_dict)
        if block == "pe_mm":            # the PE of the MM-only role, not a registered block
            text = to_rtlil(ProcessingElement(cfg, role="mm"), name="pe_mm")
        else:
            text = to_rtlil(build_block(block, cfg), name=block)
    except Exception as e:      # that point's area is n/a, with the reason; not the sweep's end
        return f"elaboration failed: {type(e).__name__}: {str(e).splitlines()[0]}", None
    return canonical_key(target, text, block), text


def leaf_synth(block, key, text, target, cache_dir):
    """Synthesised logic area of one leaf (``{"logic", "sram_bits", "key", "cached"}``, or
    ``{"error"}``); the result is cached in ``cache_dir`` under its RTLIL key."""
    from synth import ToolError, run_asic, run_generic
    cache = Path(cache_dir) / (re.sub(r"[^\w-]", "-", key) + ".json")
    if cache.exists():
        return dict(json.loads(cache.read_text()), cached=True)
    with tempfile.TemporaryDirectory(prefix=f"explore-{block}-") as wd:
        try:
            if target == "generic":
                r = run_generic(text, name=block, workdir=wd, transistors=False)
            else:
                r = run_asic(text, name=block, workdir=wd)
        except ToolError as e:
            return {"block": block, "key": key, "error": e.head}
    out = {"block": block, "key": key, "logic": r[TARGETS[target]["logic"]],
           "sram_bits": r["sram_bits"]}
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(out, sort_keys=True))
    tmp.replace(cache)                  # atomic: concurrent workers never read half a file
    return dict(out, cached=False)


def compose(cfg, max_queries, leaves, target):
    """A point's area in the flow's unit: ``leaves`` maps each :data:`LEAVES` name to its
    ``{"logic": area}``; logic = sum of count x area, sram = memory bits x the SRAM model,
    total = logic + sram."""
    t = TARGETS[target]
    parts = {}
    for name, (_rule, count) in LEAVES.items():
        n = count(cfg)
        parts[name] = {"count": n, "each": leaves[name]["logic"],
                       "area": n * leaves[name]["logic"]}
    bits = sum(CoreGeometry(cfg, max_queries).memory_bits().values())
    logic = sum(p["area"] for p in parts.values())
    sram = bits * _sram_per_bit(target)
    total = logic + sram
    return {"unit": t["unit"], "parts": parts, "logic": logic, "sram_bits": bits,
            "sram": sram, "total": total, "mm2": total * t["mm2_per_unit"]}


def validate(reports=()):
    """The composition (:func:`compose` on a report's own leaf figures) against the whole
    core synthesised in that report, for every committed baseline and every ``reports``
    (``defa-hw synth`` report.json files) and flow that has the core: list of
    ``{reference, target, config, composed/synthesised logic and total, errors}`` (error =
    composed / synthesised - 1)."""
    from synth import SYNTH_DIR
    paths = [(f"synth/{p.name}", p) for p in sorted(SYNTH_DIR.glob("baseline_*.json"))]
    paths += [(Path(p).name if Path(p).is_absolute() else str(p), Path(p)) for p in reports]
    out = []
    for name, path in paths:
        data = json.loads(path.read_text())
        cfg = DefaConfig.from_dict(data["config"])
        blocks = data["blocks"]
        for target, t in TARGETS.items():
            core = blocks.get("defa_core", {}).get(target)
            # a leaf the config has none of (pe_mm on a one-tile array) may be missing
            used = [n for n, (_r, count) in LEAVES.items() if count(cfg)]
            if core is None or any(target not in blocks.get(n, {}) for n in used):
                continue
            leaves = {n: {"logic": blocks[n][target][t["logic"]] if n in used else 0.0}
                      for n in LEAVES}
            c = compose(cfg, DEFAULT_MAX_QUERIES, leaves, target)
            out.append({
                "reference": name, "target": target,
                "config": data["config_name"], "unit": t["unit"],
                "composed_logic": round(c["logic"], 1), "synthesised_logic": core[t["logic"]],
                "logic_error": round(c["logic"] / core[t["logic"]] - 1, 4),
                "composed_total": round(c["total"], 1), "synthesised_total": core[t["total"]],
                "total_error": round(c["total"] / core[t["total"]] - 1, 4)})
    return out

"""Which tool runs a design needs, and how their results add up.

A block is one flat run, or, for the top and for arrays of identical submodules, a
composition: the glue around the direct submodules plus one run per distinct
submodule.  Runs are keyed by their RTLIL up to naming (:func:`synth.rtlil.canonical_key`),
so identical hardware runs once; the top's parts that are registered blocks reuse
those blocks' runs.  The area sweep plans its points the same way.
"""

import json

from synth.asic import compose_asic
from synth.rtlil import (canonical_key, compose_parts, rename_text, safe_name,
                         structure_signature)
from synth.tools import progress_line

__all__ = ["COMPOSE_MIN_PARTS", "compose_results", "sweep_configs", "plan_unit",
           "finish_plan", "plan_sweep", "collect_sweep"]

#: A block is composed from its submodules (instead of flattened whole) when it has at
#: least this many direct submodules and at most half as many distinct ones (an array).
COMPOSE_MIN_PARTS = 8


def _worth_composing(text, root):
    _glue, parts = compose_parts(text, root)
    if len(parts) < COMPOSE_MIN_PARTS:
        return False
    classes = {canonical_key("generic", sub, r) for _i, r, sub in parts}
    return 2 * len(classes) <= len(parts)


def _holds_known(text, root, known):
    """True when a submodule at any depth below ``root`` is one of the ``known`` blocks."""
    if not known:
        return False
    _glue, parts = compose_parts(text, root)
    return any(structure_signature(sub) in known or _holds_known(sub, r, known)
               for _i, r, sub in parts)


_SUM_FIELDS = ("cell_count", "transistors_logic", "transistors_sram_bitcells",
               "area_nand2_logic", "area_nand2_comb", "area_nand2_seq", "sram_bits",
               "area_nand2_sram_est", "area_nand2_total_est")


def compose_results(glue, parts):
    """The top's figures: the glue's plus every part's (parts = [(instance, result)])."""
    out = {"method": "composed", "cells": {}, "rtl_cells": {}, "memories": [],
           "unmapped_cells": []}
    for k in _SUM_FIELDS:
        vals = [glue[k]] + [r[k] for _i, r in parts]
        out[k] = None if None in vals else sum(vals)
        if isinstance(out[k], float):
            out[k] = round(out[k], 2)
    for _i, r in [("", glue)] + list(parts):
        for field in ("cells", "rtl_cells"):
            for t, v in r[field].items():
                out[field][t] = out[field].get(t, 0) + v
        out["unmapped_cells"] = sorted(set(out["unmapped_cells"]) | set(r["unmapped_cells"]))
    for k in ("cells", "rtl_cells"):
        out[k] = dict(sorted(out[k].items()))
    out["memories"] = sorted(glue["memories"] + [dict(m, name=f"{i}.{m['name']}")
                                                 for i, r in parts for m in r["memories"]],
                             key=lambda m: m["name"])
    out["glue"] = {k: glue[k] for k in ("area_nand2_logic", "area_nand2_total_est",
                                         "sram_bits", "transistors_logic")}
    out["parts"] = {i: {k: r[k] for k in ("area_nand2_logic", "area_nand2_total_est",
                                          "sram_bits", "transistors_logic")}
                    for i, r in parts}
    return out


def sweep_configs(cfg):
    """Two 1-D sweeps around ``cfg``: PE array r x r (r = 4, 8, 16) and n_levels 2, 3, 4.

    Returns [(axis, label, params, cfg or None, reason)]; invalid points keep the
    ConfigError's message as the reason.
    """
    from defa_hw.config import ConfigError
    pts = []
    for r in (4, 8, 16):
        params = {"pe_rows": r, "pe_cols": r}
        pts.append(("pe", f"PE {r}x{r}", params))
    for n in (2, 3, 4):
        shapes = list(cfg.max_shapes[:n]) + [cfg.max_shapes[-1]] * max(0, n - cfg.n_levels)
        bounds = list(cfg.offset_bound[:n]) + [cfg.offset_bound[-1]] * max(0, n - cfg.n_levels)
        params = {"n_levels": n, "n_banks": 4 * n, "max_shapes": tuple(shapes),
                  "offset_bound": tuple(bounds)}
        pts.append(("levels", f"{n} levels / {4 * n} banks", params))
    out = []
    for axis, label, params in pts:
        try:
            c = cfg.replace(**params)
            out.append((axis, label, params, c, None))
        except ConfigError as e:
            out.append((axis, label, params, None, str(e)))
    return out


def plan_unit(text, root, tasks, wd, *, compose=False, known=None, transistors=True,
              kind="generic"):
    """Tasks of flow ``kind`` (generic or asic) for one design: a flat run (returns its
    key), or, for the top and for arrays of identical submodules, a composition
    {"kind": kind, "glue": key, "parts": [(inst, plan)]}.

    ``known`` maps :func:`structure_signature` -> plan of the blocks synthesised on their
    own: a part of the top that is such a block (e.g. ``pe``, the ``pe_array``) reuses
    that run instead of synthesising the same hardware a second time.  A part that holds
    such a block deeper down is composed too, so that the block is still reused (the
    defa ``pe_array`` took 1,098 s flattened, against 47-92 s composed on its own).
    ``transistors``: see :func:`run_generic` (a task already planned with transistors
    keeps them; the asic flow has none)."""
    root = root.lstrip("\\")
    extra = {"transistors": transistors} if kind == "generic" else {}
    if compose or _worth_composing(text, root) or _holds_known(text, root, known):
        glue_text, parts = compose_parts(text, root)
        glue_text = rename_text(glue_text, root)
        glue_key = canonical_key(f"{kind} glue", glue_text, safe_name(root))
        stubs = [f"{safe_name(root)}.{inst}" for inst, _r, _t in parts]
        tasks.setdefault(glue_key, (kind, safe_name(root), glue_text,
                                    dict(extra, ignore_types=stubs), wd / "glue"))
        plan = {"kind": kind, "glue": glue_key, "parts": []}
        for inst, sub_root, sub in parts:
            same = (known or {}).get(structure_signature(sub))
            plan["parts"].append((inst, same if same is not None else
                                  plan_unit(sub, sub_root, tasks, wd / inst, known=known,
                                            transistors=transistors, kind=kind)))
        return plan
    key = canonical_key(kind, text, root)
    tasks.setdefault(key, (kind, safe_name(root), rename_text(text, root), extra, wd))
    return key


def finish_plan(plan, results):
    """The result of a plan: a flat run's, or a composition of its parts'."""
    if not isinstance(plan, dict):
        return results[plan]
    glue = results[plan["glue"]]
    parts = [(i, finish_plan(p, results)) for i, p in plan["parts"]]
    errs = [r["error"] for r in [glue] + [r for _i, r in parts] if "error" in r]
    if errs:
        return {"error": errs[0]}
    out = (compose_asic if plan.get("kind") == "asic" else compose_results)(glue, parts)
    distinct = len({json.dumps(p, sort_keys=True) for _i, p in plan["parts"]})
    out["method"] = (f"composed: glue + {len(parts)} submodules ({distinct} distinct), "
                     "each synthesised flat")
    return out


def plan_sweep(points, sweep_texts, base, tasks, work, progress, times, *, base_cfg=None,
                top=None):
    """Sweep the blocks whose RTLIL changes between the sweep points (and the base); the
    point equal to the base config reuses the base's RTLIL (and so its tool runs)."""
    plan = []
    for i, (axis, label, params, c, reason) in enumerate(points):
        entry = {"axis": axis, "label": label, "params": _jsonable(params), "reason": reason,
                 "texts": {}}
        if c is not None and c == base_cfg:
            entry["texts"] = {n: t for n, t in base.items() if n != top}
        for (j, n), r in sorted(sweep_texts.items()):
            if j != i or n not in base:
                continue
            times["elaborate"][f"sweep{i} {n}"] = r["seconds"]
            if "error" in r:
                entry.setdefault("errors", {})[n] = r["error"]
            else:
                entry["texts"][n] = r["generic"]
        plan.append(entry)
    swept = sorted(n for n in base
                   if any(canonical_key("g", e["texts"].get(n, base[n]), n)
                          != canonical_key("g", base[n], n) for e in plan))
    for i, e in enumerate(plan):
        for n, text in sorted(e.pop("texts").items()):
            if n in swept:
                e.setdefault("keys", {})[n] = plan_unit(text, n, tasks, work / f"sweep{i}" / n,
                                                        transistors=False)
        e["errors"] = {n: m for n, m in e.get("errors", {}).items() if n in swept}
    progress_line(progress, f"[synth] sweep: {len(plan)} points, "
                  f"blocks {', '.join(swept) or '(none)'}")
    return {"blocks": swept, "points": plan}


def collect_sweep(plan, results):
    """The report's ``sweep`` part from a :func:`plan_sweep` plan and the tool results."""
    pts = []
    for e in plan["points"]:
        p = {"axis": e["axis"], "label": e["label"], "params": e["params"],
             "valid": e["reason"] is None}
        if e["reason"] is not None:
            p["reason"] = e["reason"]
        p["blocks"] = {}
        for n, unit in sorted(e.get("keys", {}).items()):
            r = finish_plan(unit, results)
            p["blocks"][n] = ({"error": r["error"]} if "error" in r else
                              {k: r[k] for k in ("area_nand2_logic", "area_nand2_sram_est",
                                                 "area_nand2_total_est", "sram_bits")})
        for n, msg in sorted(e.get("errors", {}).items()):
            p["blocks"][n] = {"error": msg}
        pts.append(p)
    return {"blocks": plan["blocks"], "points": pts}


def _jsonable(params):
    return {k: ([list(x) for x in v] if k == "max_shapes" else list(v) if isinstance(v, tuple)
                else v) for k, v in params.items()}

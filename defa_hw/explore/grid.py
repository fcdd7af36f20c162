"""Sweep axes, named grids, the points they expand to, and the Pareto front.

Every axis is one row of :data:`AXES`; a grid (:data:`GRIDS`) lists values per axis and
the sweep is their product.  ``BASE`` stands for the base config's own value.  A point
whose config the project rejects (``DefaConfig`` validation, or the core-only rules of
``check_core_config``) is kept with the error message instead of a config.
"""

import itertools
from dataclasses import dataclass

from defa_hw.config import ConfigError
from defa_hw.rtl.core import DEFAULT_MAX_QUERIES, CoreGeometry

__all__ = ["BASE", "Axis", "AXES", "GRIDS", "expand", "preset_points", "pareto_front",
           "point_label"]

#: The base config's own value of an axis.
BASE = "base"


@dataclass(frozen=True)
class Axis:
    """One sweep axis: ``apply(base_cfg, value)`` -> (config changes, core parameters)."""
    name: str
    doc: str
    apply: object


def _field(*names):
    """An axis setting config fields: one name takes the value, several a tuple of values."""
    def apply(_base, v):
        return (dict(zip(names, v)) if len(names) > 1 else {names[0]: v}), {}
    return apply


def _per_level(name):
    def apply(base, v):
        return {name: (v,) * base.n_levels}, {}
    return apply


def _core_param(name):
    def apply(_base, v):
        return {}, {name: v}
    return apply


#: The sweep axes, in label order.
AXES = (
    Axis("pe", "PE array (pe_rows, pe_cols); BA mode's ba_channels follows from it",
         _field("pe_rows", "pe_cols")),
    Axis("ba_heads", "BA parallelism: heads sampled per operation (lane sets of n_levels "
         "lanes; ba_channels = pe_rows * pe_cols / (4 * n_levels * ba_heads), at most "
         "head_dim)", _field("ba_heads")),
    Axis("max_queries", "queries per pass (a core parameter, not a config field)",
         _core_param("max_queries")),
    Axis("offset_bound", "sampling-offset bound in pixels, the same on every level "
         "(window rows follow: cfg.buffer_rows)", _per_level("offset_bound")),
    Axis("n_banks", "feature-map banks (the config requires 4 * n_levels today)",
         _field("n_banks")),
)

#: Named grids: values per axis (``BASE`` = the base config's value).  Offset bounds 13,
#: 5 and 1 are the largest with 32, 16 and 8 window rows (``cfg.buffer_rows``): a bound
#: between them costs accuracy for no memory.
GRIDS = {
    "small": {"pe": [BASE, (32, 32)], "ba_heads": [BASE], "max_queries": [DEFAULT_MAX_QUERIES],
              "offset_bound": [BASE, 4], "n_banks": [BASE]},
    "full": {"pe": [(16, 16), (16, 32), (32, 16), (32, 32), (32, 64), (64, 32), (64, 64)],
             "ba_heads": [1, 8],
             "max_queries": [64, 128, 256], "offset_bound": [13, 5, 1],
             "n_banks": [BASE, 32]},
}

#: Fields of the model shape: presets sharing them with the base appear as points.
MODEL_FIELDS = ("d_model", "n_heads", "n_levels", "n_points", "max_shapes")


def _build(base, values):
    """(cfg, max_queries, None) for axis values, or (None, max_queries, error message)."""
    changes, params = {}, {"max_queries": DEFAULT_MAX_QUERIES}
    for axis in AXES:
        v = values[axis.name]
        if v != BASE:
            c, p = axis.apply(base, v)
            changes.update(c)
            params.update(p)
    mq = params["max_queries"]
    if isinstance(mq, bool) or not isinstance(mq, int) or mq < 1:
        return None, mq, f"max_queries = {mq!r} is invalid: allowed an integer >= 1"
    try:
        cfg = base.replace(**changes) if changes else base
        CoreGeometry(cfg, mq)           # the core's own rules (check_core_config)
    except ConfigError as e:
        return None, mq, str(e)
    return cfg, mq, None


def point_label(cfg, mq):
    """Short label of a point: PE array, BA heads (when more than one), max_queries,
    offset bounds, banks."""
    ob = cfg.offset_bound
    ob = str(ob[0]) if len(set(ob)) == 1 else "/".join(map(str, ob))
    bh = f" bh {cfg.ba_heads}" if cfg.ba_heads > 1 else ""
    return f"pe {cfg.pe_rows}x{cfg.pe_cols}{bh} mq {mq} ob {ob} nb {cfg.n_banks}"


def _requested_label(values):
    def fmt(v):
        return "x".join(map(str, v)) if isinstance(v, tuple) else str(v)
    short = {"pe": "pe", "ba_heads": "bh", "max_queries": "mq", "offset_bound": "ob",
             "n_banks": "nb"}
    return " ".join(f"{short.get(a.name, a.name)} {fmt(values[a.name])}" for a in AXES)


def expand(base, grid):
    """The points of ``grid`` (a name of :data:`GRIDS` or a dict) around ``base``: a list
    of dicts with ``values`` (per axis as requested), ``label``, and either ``cfg`` and
    ``max_queries`` or ``skipped`` (the error message)."""
    grid = GRIDS[grid] if isinstance(grid, str) else grid
    unknown = sorted(set(grid) - {a.name for a in AXES})
    if unknown:
        raise KeyError(f"unknown sweep axis {unknown[0]!r}; allowed: "
                       f"{', '.join(a.name for a in AXES)}")
    points = []
    for combo in itertools.product(*(grid.get(a.name, [BASE]) for a in AXES)):
        values = dict(zip((a.name for a in AXES), combo))
        cfg, mq, err = _build(base, values)
        p = {"values": {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()},
             "presets": []}
        if err is None:
            p.update(cfg=cfg, max_queries=mq, label=point_label(cfg, mq))
        else:
            p.update(skipped=err, label=_requested_label(values))
        points.append(p)
    return points


def preset_points(base, points, presets):
    """Mark the ``presets`` (name -> config) with the base's model shape on ``points``: a
    preset equal to a point (at the default max_queries) labels it, any other is added
    as its own point.  Returns the names left out (another model shape)."""
    left_out = []
    for name, cfg in sorted(presets.items()):
        if any(getattr(cfg, f) != getattr(base, f) for f in MODEL_FIELDS):
            left_out.append(name)
            continue
        same = [p for p in points if p.get("cfg") == cfg
                and p["max_queries"] == DEFAULT_MAX_QUERIES]
        if same:
            same[0]["presets"].append(name)
            continue
        cfg_, mq, err = _build(cfg, {a.name: BASE for a in AXES})
        p = {"values": {a.name: BASE for a in AXES}, "presets": [name]}
        if err is None:
            p.update(cfg=cfg_, max_queries=mq, label=point_label(cfg_, mq))
        else:
            p.update(skipped=err, label=f"preset {name}")
        points.append(p)
    return left_out


def pareto_front(costs):
    """Indices of the non-dominated entries of ``costs`` (tuples, lower is better): no
    other entry is <= in every cost and < in one.  Equal entries are all kept."""
    front = []
    for i, a in enumerate(costs):
        dominated = any(all(y <= x for x, y in zip(a, b)) and any(y < x for x, y in zip(a, b))
                        for j, b in enumerate(costs) if j != i)
        if not dominated:
            front.append(i)
    return front

"""explore.json, explore.md and the two plots (deterministic: sorted keys, no times or
absolute paths)."""

import json
from pathlib import Path

__all__ = ["summarise", "write_outputs", "format_markdown", "pareto_table"]


def _r(x, nd=4):
    """Round to ``nd`` significant digits (stable JSON across runs)."""
    return None if x is None else float(f"{x:.{nd}g}")


def _ob(cfg):
    ob = cfg.offset_bound
    return str(ob[0]) if len(set(ob)) == 1 else "/".join(map(str, ob))


def summarise(points, meta, min_sqnr=None):
    """The explore.json dict: evaluated points with their Pareto mark, skipped points with
    the reason, and ``meta`` (run settings, area model, validation, accuracy).  With
    ``min_sqnr`` (dB) only the points that reach it compete for the front."""
    from defa_hw.explore.grid import pareto_front
    rows, skipped = [], []
    for i, p in enumerate(points):
        if "skipped" in p:
            skipped.append({"id": i, "label": p["label"], "values": p["values"],
                            "presets": p["presets"], "reason": p["skipped"]})
            continue
        c, r = p["cfg"], p["result"]
        a = r["area"]
        rows.append({
            "id": i, "label": p["label"], "values": p["values"], "presets": p["presets"],
            "pe_rows": c.pe_rows, "pe_cols": c.pe_cols, "ba_channels": c.ba_channels,
            "n_banks": c.n_banks, "offset_bound": list(c.offset_bound),
            "window_rows": [c.buffer_rows(l) for l in range(c.n_levels)],
            "max_queries": p["max_queries"], "latency_ms": _r(r["latency_ms"]),
            "cycles": r["cycles"], "ratio_to_ideal": _r(r["ratio_to_ideal"]),
            "area_mm2": _r(a.get("mm2")),
            "area": ({"error": a["error"]} if "error" in a else {
                "unit": a["unit"], "logic": _r(a["logic"], 6), "sram": _r(a["sram"], 6),
                "sram_bits": a["sram_bits"], "total": _r(a["total"], 6),
                "parts": {n: {"count": v["count"], "each": v["each"]}
                          for n, v in sorted(a["parts"].items())},
                "leaf_keys": a["leaf_keys"]}),
            "energy_mj": None if r["energy_j"] is None else _r(1e3 * r["energy_j"]),
            "sqnr_db": _r(r["sqnr_db"], 3), "sqnr_min_db": _r(r["sqnr_min_db"], 3),
            "points_clamped": _r(r["points_clamped"], 3)})
    ranked = [x for x in rows if x["area_mm2"] is not None
              and (min_sqnr is None or x["sqnr_db"] >= min_sqnr)]
    front = pareto_front([(x["latency_ms"], x["area_mm2"]) for x in ranked])
    front_ids = sorted(ranked[i]["id"] for i in front)
    for x in rows:
        x["pareto"] = x["id"] in front_ids
    return dict(meta, schema=1, points=rows, skipped=skipped, pareto=front_ids,
                min_sqnr_db=min_sqnr)


def _fmt(x, spec):
    return "n/a" if x is None else format(x, spec)


def pareto_table(rep):
    """Lines of the table of the Pareto points and the presets."""
    L = ["| point | presets | latency (ms) | area (mm^2) | energy (mJ) | on the front |",
         "|---|---|---:|---:|---:|---|"]
    for x in rep["points"]:
        if x["pareto"] or x["presets"]:
            L.append(f"| {x['label']} | {', '.join(x['presets']) or '-'} | "
                     f"{x['latency_ms']:.4g} | {_fmt(x['area_mm2'], '.4g')} | "
                     f"{_fmt(x['energy_mj'], '.4g')} | {'yes' if x['pareto'] else 'no'} |")
    return L


def format_markdown(rep):
    """The explore.md text: all points, the Pareto / preset table, skipped points."""
    m = rep
    L = [f"# Design-space exploration around `{m['base']['name']}` (grid `{m['grid']}`)", "",
         f"Latency: performance model, one layer at {m['shapes_text']}, pruning "
         f"`{m['pruning']}`, {m['clock_mhz']:g} MHz. Area: {m['area_model']['summary']} "
         f"Energy: {m['energy']['summary']} Accuracy: {m['accuracy']['summary']} Pareto "
         f"front: non-dominated in (latency, area)"
         + ("." if m["min_sqnr_db"] is None else
            f" among the points with SQNR >= {m['min_sqnr_db']:g} dB."), ""]
    L += ["| id | point | presets | BA ch | window rows | latency (ms) | area (mm^2) | "
          "energy (mJ) | SQNR (dB) | Pareto |", "|---|---|---|---:|---|---:|---:|---:|---:|---|"]
    for x in sorted(m["points"], key=lambda x: (x["latency_ms"], x["area_mm2"] or 0, x["id"])):
        L.append(f"| {x['id']} | {x['label']} | {', '.join(x['presets']) or '-'} | "
                 f"{x['ba_channels']} | {'/'.join(map(str, x['window_rows']))} | "
                 f"{x['latency_ms']:.4g} | {_fmt(x['area_mm2'], '.4g')} | "
                 f"{_fmt(x['energy_mj'], '.4g')} | {x['sqnr_db']:.1f} | "
                 f"{'**yes**' if x['pareto'] else ''} |")
    L += ["", "## Pareto front (latency, area) and presets", ""] + pareto_table(m)
    L += ["", "## Area model check (composition vs the whole core synthesised)", "",
          "| reference | flow | config | composed / synthesised logic | error | "
          "composed / synthesised total | error |", "|---|---|---|---:|---:|---:|---:|"]
    for v in m["area_model"]["validation"]:
        L.append(f"| {v['reference']} | {v['target']} | {v['config']} | "
                 f"{v['composed_logic']:,.0f} / {v['synthesised_logic']:,.0f} {v['unit']} | "
                 f"{100 * v['logic_error']:+.1f} % | {v['composed_total']:,.0f} / "
                 f"{v['synthesised_total']:,.0f} | {100 * v['total_error']:+.1f} % |")
    if m["skipped"]:
        L += ["", f"## Skipped points ({len(m['skipped'])})", "", "| id | point | reason |",
              "|---|---|---|"]
        L += [f"| {s['id']} | {s['label']} | {s['reason']} |" for s in m["skipped"]]
    if m["presets_left_out"]:
        L += ["", "Presets with another model shape, not shown: "
              + ", ".join(m["presets_left_out"]) + "."]
    return "\n".join(L) + "\n"


def _plot(rep, path, ykey, ylabel, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    pts = [x for x in rep["points"] if x["area_mm2"] is not None and x[ykey] is not None]
    fig, ax = plt.subplots(figsize=(7, 4.8))
    floor = rep["min_sqnr_db"]
    if pts:
        low = [x for x in pts if floor is not None and x["sqnr_db"] < floor]
        ok = [x for x in pts if x not in low]
        ax.scatter([x["area_mm2"] for x in ok], [x[ykey] for x in ok], s=22, c="0.45",
                   label="sweep point")
        if low:
            ax.scatter([x["area_mm2"] for x in low], [x[ykey] for x in low], s=22,
                       facecolors="none", edgecolors="0.55", label=f"SQNR < {floor:g} dB")
        front = sorted((x for x in pts if x["pareto"]), key=lambda x: x["area_mm2"])
        if front:
            ax.plot([x["area_mm2"] for x in front], [x[ykey] for x in front], "o-",
                    color="tab:red", label="Pareto front (latency, area)")
        for x in pts:
            if x["presets"]:
                ax.scatter([x["area_mm2"]], [x[ykey]], marker="*", s=160, c="tab:blue",
                           zorder=3)
                ax.annotate(", ".join(x["presets"]), (x["area_mm2"], x[ykey]),
                            textcoords="offset points", xytext=(6, 6), fontsize=8)
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, f"no point has {ylabel}", ha="center", transform=ax.transAxes)
    ax.set_xlabel(f"area (mm^2, {rep['area_model']['node']})")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def write_outputs(rep, out):
    """Write explore.json, explore.md, latency_area.png and energy_area.png into ``out``;
    returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "explore.json", out / "explore.md", out / "latency_area.png",
             out / "energy_area.png"]
    files[0].write_text(json.dumps(rep, indent=1, sort_keys=True) + "\n")
    files[1].write_text(format_markdown(rep))
    _plot(rep, files[2], "latency_ms", "latency per layer (ms)",
          f"{rep['base']['name']}: latency vs area ({rep['pruning']} pruning)")
    _plot(rep, files[3], "energy_mj", "energy per layer (mJ, 40 nm est.)",
          f"{rep['base']['name']}: energy per layer vs area")
    return files

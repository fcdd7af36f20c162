"""The reports of ``defa-hw synth``: ``report.json``, ``report.md`` and the PNG plots.
Deterministic: no paths, no time stamps (run times stay under ``run_times_s``)."""

import json
from pathlib import Path

__all__ = ["write_reports", "render_markdown"]


def write_reports(report, out, *, plots=True):
    """report.json, report.md and PNG plots in ``out``; returns the written paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "report.json", out / "report.md"]
    paths[0].write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    paths[1].write_text(render_markdown(report))
    if plots:
        paths += _plots(report, out)
    return paths


def _fmt(x, nd=0):
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:,.{nd}f}"
    return f"{x:,}"


def render_markdown(report):
    """Readable tables; deterministic (run times stay in report.json)."""
    L = []
    cfg = report["config"]
    L.append(f"# defa-hw synth: config `{report['config_name']}`\n")
    L.append(f"PE array {cfg['pe_rows']}x{cfg['pe_cols']}, {cfg['n_levels']} levels, "
             f"{cfg['n_banks']} banks, d_model {cfg['d_model']}, INT{cfg['data_bits']}. "
             f"Tools: " + ", ".join(f"{k} {v}" for k, v in sorted(report["tools"].items()))
             + ". Top: " + (f"`{report['top']}`" if report["top"] else "not registered yet")
             + ".\n")
    blocks = report["blocks"]
    if "generic" in report["targets"]:
        L.append("## ASIC-style area estimate (generic library, NAND2 = 1)\n")
        L.append("Logic area and transistors are Yosys/ABC results; SRAM area is the model "
                 f"{report['models']['sram']['nand2_per_bit']} NAND2-eq per bit applied to "
                 "tool-counted bits (estimate). Wires, clock tree and placement density are "
                 "not included (docs/synthesis.md).\n")
        L.append("| block | cells | transistors (logic) | logic NAND2-eq | of which flops | "
                 "SRAM bits | SRAM NAND2-eq (est.) | total NAND2-eq (est.) | $mul | method |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for n, b in blocks.items():
            g = b.get("generic")
            if g is None or "error" in g:
                L.append(f"| {n} | error | | | | | | | | |")
                continue
            method = g.get("method", "flat").split(",")[0]
            L.append(f"| {n} | {_fmt(g['cell_count'])} | {_fmt(g['transistors_logic'])} | "
                     f"{_fmt(g['area_nand2_logic'])} | {_fmt(g['area_nand2_seq'])} | "
                     f"{_fmt(g['sram_bits'])} | {_fmt(g['area_nand2_sram_est'])} | "
                     f"{_fmt(g['area_nand2_total_est'])} | {g['rtl_cells'].get('$mul', 0)} | "
                     f"{method} |")
        comp = [(n, b["generic"]) for n, b in blocks.items()
                if "composed" in (b.get("generic") or {}).get("method", "")]
        if comp:
            L.append("\n*composed*: the block's submodules are synthesised one by one (identical "
                     "ones once) and summed with the glue logic around them; no optimisation "
                     "across their boundaries.")
            for n, g in comp:
                L.append(f"`{n}`: {g['method']}; glue {_fmt(g['glue']['area_nand2_logic'])} "
                         f"NAND2-eq logic + {_fmt(g['glue']['sram_bits'])} SRAM bits.")
        mems = [(n, m) for n, b in blocks.items()
                for m in (b.get("generic") or {}).get("memories", [])]
        if mems:
            L.append("\n### Memories (kept as SRAM macros)\n")
            L.append("`*`: under 1 kbit; such memories would be flip-flops or latch arrays in "
                     "practice, and the per-bit SRAM model underestimates them.\n")
            L.append("| block | memory | words | width | bits | R/W ports | NAND2-eq (est.) |")
            L.append("|---|---|---:|---:|---:|---|---:|")
            for n, m in mems:
                small = " *" if m["bits"] < 1024 else ""
                L.append(f"| {n} | {m['name']}{small} | {m['depth']} | {m['width']} | "
                         f"{_fmt(m['bits'])} | {m['read_ports']}R/{m['write_ports']}W | "
                         f"{_fmt(m['sram_nand2'])} |")
        L.append("\n### Cells by type (generic library)\n")
        types = sorted({t for b in blocks.values()
                        for t in (b.get("generic") or {}).get("cells", {})})
        if types:
            L.append("| block | " + " | ".join(types) + " |")
            L.append("|---|" + "---:|" * len(types))
            for n, b in blocks.items():
                c = (b.get("generic") or {}).get("cells")
                if c is not None:
                    L.append(f"| {n} | " + " | ".join(_fmt(c.get(t, 0)) for t in types) + " |")
    if "ecp5" in report["targets"]:
        L.append("\n## FPGA: Lattice ECP5 (synth_ecp5 + nextpnr-ecp5)\n")
        L.append(f"Each block inside a register wrapper (inputs from a shift chain, outputs "
                 f"into kept registers; `wrapper FF` of the FFs are the wrapper's). Target "
                 f"{report['models']['ecp5']['freq_target_mhz']} MHz, seed "
                 f"{report['models']['ecp5']['seed']}.\n")
        L.append("| block | device | LUT (TRELLIS_COMB) | FF | wrapper FF | BRAM (DP16KD) | "
                 "DSP (MULT18X18D) | LUT RAM (RAMW) | Fmax MHz |")
        L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        notes = []
        for n, b in blocks.items():
            e = b.get("ecp5")
            if e is None and "error" not in b:
                L.append(f"| {n} | not run (--fpga-top) | | | | | | | |")
                continue
            if e is None or "error" in e:
                L.append(f"| {n} | error | | | | | | | |")
                continue
            L.append(f"| {n} | {e['device']} | {_fmt(e['lut'])} | {_fmt(e['ff'])} | "
                     f"{_fmt(e['wrapper_ff'])} | {e['bram']} | {e['dsp']} | "
                     f"{_fmt(e['lutram'])} | {_fmt(e['fmax_mhz'], 1)} |")
            if e.get("flow", "synth_ecp5") != "synth_ecp5":
                notes.append(f"`{n}`: {e['flow']}.")
        L.extend(["", *notes] if notes else [])
    if "asic" in report["targets"]:
        L.extend(_asic_markdown(report))
    if "sweep" in report:
        sw = report["sweep"]
        L.append("\n## Sweep: logic + SRAM (est.) NAND2-eq of the blocks that change\n")
        hdr = sw["blocks"]
        if not hdr:
            L.append("No block's RTL changes across the sweep points.\n")
        L.append("| point | " + " | ".join(hdr) + " | sum |")
        L.append("|---|" + "---:|" * (len(hdr) + 1))
        for p in sw["points"]:
            if not p["valid"]:
                L.append(f"| {p['label']} | invalid config: {p['reason']} |")
                continue
            vals = [p["blocks"].get(n, {}).get("area_nand2_total_est") for n in hdr]
            L.append(f"| {p['label']} | " + " | ".join(_fmt(v) for v in vals) + " | "
                     + _fmt(sum(v for v in vals if v is not None)) + " |")
    if report["errors"]:
        L.append("\n## Errors\n")
        for e in report["errors"]:
            L.append(f"- {e}")
    L.append("\nRun times: `run_times_s` in report.json.\n")
    return "\n".join(L) + "\n"


def _asic_markdown(report):
    m = report["models"]["asic"]
    L = ["\n## Standard cells: OSU 0.18 um (Yosys + ABC, OpenSTA)\n",
         f"Liberty {m['liberty']}, corner {m['corner']}; ABC delay target "
         f"{m['abc_delay_target_ps']} ps. Fmax = 1 / (the worst register-to-register path + "
         f"setup), ideal clock, no wire load. Power at {_fmt(m['power_clock_mhz'], 0)} MHz, "
         f"global activity {m['activity']} (transitions per clock period, duty 0.5), logic "
         "only. SRAM (macros, not synthesised): area "
         f"{m['sram']['area_um2_per_bit']} um^2/bit ({m['sram']['area_source']}); access time "
         f"and energy from {m['sram']['timing_energy_source']}. Not included: wires, clock "
         "tree, placement density; there is no layout.\n",
         "| block | cells | logic um^2 | of which flops | SRAM bits | SRAM um^2 (est.) | "
         "total um^2 (est.) | critical path (start -> end) | delay ns | Fmax MHz | power mW |",
         "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    for n, b in report["blocks"].items():
        a = b.get("asic")
        if a is None or "error" in a:
            L.append(f"| {n} | error | | | | | | | | | |")
            continue
        cp = a["critical_path"]
        path = "-" if cp is None else (f"`{cp['start_reg']}` ({cp['start_cell']}) -> "
                                       f"`{cp['end_reg']}` ({cp['end_cell']})"
                                       + (f" in {cp['part']}" if "part" in cp else ""))
        delay = "-" if cp is None else f"{cp['delay_ns']:.3f}"
        power = "-" if a["power_mw"] is None else f"{a['power_mw']:.3f}"
        L.append(f"| {n} | {_fmt(a['cell_count'])} | {_fmt(a['area_um2'])} | "
                 f"{_fmt(a['area_um2_seq'])} | {_fmt(a['sram_bits'])} | "
                 f"{_fmt(a['area_um2_sram_est'])} | {_fmt(a['area_um2_total_est'])} | {path} | "
                 f"{delay} | {_fmt(a['fmax_mhz'], 1)} | {power} |")
    mems = [(n, mm) for n, b in report["blocks"].items()
            for mm in (b.get("asic") or {}).get("memories", [])]
    if mems:
        L.append("\n| block | memory | bits | area um^2 (est.) | access ns | read pJ | write pJ |")
        L.append("|---|---|---:|---:|---:|---:|---:|")
        L.extend(f"| {n} | {mm['name']} | {_fmt(mm['bits'])} | {_fmt(mm['area_um2'])} | "
                 f"{mm['access_ns']} | {mm['read_pj']} | {mm['write_pj']} |" for n, mm in mems)
    L.extend(_scaled_markdown(report))
    return L


def _scaled_markdown(report):
    """The 40 nm estimate beside the 180 nm figures and DEFA's synthesis point."""
    from synth.scaling import DEFA_POINT, SCALE_TO_40NM, SOURCE, scale_block
    f = SCALE_TO_40NM
    target = DEFA_POINT["clock_mhz"]
    L = ["\n## 40 nm estimate (scaled from OSU 0.18 um; not synthesised at 40 nm)\n",
         f"**Estimate.** Factors 180 nm -> 40 nm: area x{f['area']:.4f}, delay "
         f"x{f['delay']:.4f}, energy per operation x{f['energy']:.4f} ({SOURCE}; "
         "synth/scaling.py). Power at the asic flow's clock and activity. DEFA's published "
         f"synthesis point: {DEFA_POINT['node_nm']} nm, {target:.0f} MHz (Design Compiler); "
         "its area and power are not in the project's sources. Not modelled at 40 nm: "
         "wires (a larger share of delay than at 180 nm), clock tree, placement, leakage "
         "(the energy fit is dynamic), SRAM macros of a 40 nm compiler.\n",
         f"| block | 180 nm logic um^2 | 180 nm Fmax MHz | 40 nm logic um^2 (est.) | 40 nm logic + "
         f"SRAM mm^2 (est.) | 40 nm Fmax MHz (est.) | {target:.0f} MHz at 40 nm | "
         "40 nm power mW (est.) |",
         "|---|---:|---:|---:|---:|---:|---|---:|"]
    for n, b in report["blocks"].items():
        a = b.get("asic")
        if a is None or "error" in a:
            continue
        sc = a.get("scaled_40nm") or scale_block(a)
        meets = ("-" if sc["meets_target"] is None else
                 ("meets" if sc["meets_target"] else "misses")
                 + f" ({sc['margin_pct']:+.0f} %)")
        power = "-" if sc["power_mw"] is None else f"{sc['power_mw']:.3f}"
        L.append(f"| {n} | {_fmt(a['area_um2'])} | {_fmt(a['fmax_mhz'], 1)} | "
                 f"{_fmt(sc['area_um2'])} | {sc['area_um2_total_est'] / 1e6:.3f} | "
                 f"{_fmt(sc['fmax_mhz'], 1)} | {meets} | {power} |")
    from synth.asic import ASIC_SRAM_MODEL
    sram_mhz = 1e3 / (ASIC_SRAM_MODEL["min_cycle_ns"] * f["delay"])
    L.append(f"| SRAM macro (model: {ASIC_SRAM_MODEL['min_cycle_ns']} ns min. cycle) | | "
             f"{1e3 / ASIC_SRAM_MODEL['min_cycle_ns']:.1f} | | | {sram_mhz:.1f} | "
             + ("meets" if sram_mhz >= target else "misses")
             + f" ({100 * (sram_mhz / target - 1):+.0f} %) | |")
    L.append(f"| DEFA (published) | | | | n/a | | {target:.0f} MHz | n/a |")
    L.append("\nFmax is the logic's: paths into and out of the SRAM macros are not timed. "
             "The macro model's cycle (a 5 V-periphery 180 nm macro) scaled the same way is "
             "in the SRAM row; a 40 nm SRAM compiler's macros would be faster.")
    return L


def _plots(report, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    paths = []
    meta = {"Software": None}
    rows = [(n, b["generic"]) for n, b in report["blocks"].items()
            if "error" not in b.get("generic", {"error": 1})]
    if rows:
        # Grouped (not stacked) bars: the blocks span five decades, so the axis is log.
        fig, ax = plt.subplots(figsize=(8.5, 0.6 * len(rows) + 1.8))
        names = [n for n, _ in rows][::-1]
        series = (("combinational logic", "area_nand2_comb"), ("flip-flops", "area_nand2_seq"),
                  ("SRAM (estimate)", "area_nand2_sram_est"))
        h = 0.27
        for j, (label, key) in enumerate(series):
            vals = [g[key] for _, g in rows][::-1]
            ax.barh([i + (1 - j) * h for i in range(len(names))], vals, height=h, label=label)
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels(names)
        ax.set_xscale("log")
        ax.set_xlim(left=10)
        ax.set_xlabel("area [NAND2 equivalents] (log scale; zero = no bar)")
        ax.set_title(f"Area per block, config {report['config_name']} (generic library)")
        ax.grid(True, axis="x", alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        p = out / "area_breakdown.png"
        fig.savefig(p, dpi=110, metadata=meta)
        plt.close(fig)
        paths.append(p)
    sw = report.get("sweep")
    if sw and sw["blocks"]:
        fig, axes = plt.subplots(1, 2, figsize=(11, 5.0))
        for ax, axis, xkey, xlabel in (
                (axes[0], "pe", lambda pr: pr["pe_rows"] * pr["pe_cols"], "PE count (rows x cols)"),
                (axes[1], "levels", lambda pr: pr["n_banks"], "SRAM banks (4 x levels)")):
            pts = [p for p in sw["points"] if p["axis"] == axis and p["valid"]]
            xs = [xkey(p["params"]) for p in pts]
            total = [0.0] * len(pts)
            for n in sw["blocks"]:
                ys = [p["blocks"].get(n, {}).get("area_nand2_total_est") for p in pts]
                if all(y is not None for y in ys) and ys:
                    ax.plot(xs, ys, marker="o", label=n)
                    total = [t + y for t, y in zip(total, ys)]
            if pts:
                ax.plot(xs, total, marker="s", color="k", linestyle="--", label="sum")
            skipped = [p["label"] for p in sw["points"] if p["axis"] == axis and not p["valid"]]
            ax.set_xlabel(xlabel + (f"\n(invalid, skipped: {', '.join(skipped)})" if skipped else ""))
            ax.set_ylabel("logic + SRAM est. [NAND2-eq]")
            ax.set_yscale("log")
            ax.set_xticks(xs)
            ax.grid(True, alpha=0.3)
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=8)
        fig.suptitle(f"Area sweep around config {report['config_name']}")
        fig.tight_layout(rect=(0, 0.12, 1, 1))
        p = out / "area_sweep.png"
        fig.savefig(p, dpi=110, metadata=meta)
        plt.close(fig)
        paths.append(p)
    return paths

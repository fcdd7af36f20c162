"""Energy per Deformable DETR encoder layer (an estimate): operation counts of the
performance model x per-operation energies derived from the synthesised blocks.

Sources of the figures (nothing here is measured on silicon):

* operation counts: :func:`defa_hw.model.perf.operation_counts` on the 800 x 1333 encoder
  layer (levels 100x167, 50x84, 25x42, 13x21; every pixel a query), with DEFA's reported
  pruning (84 % of the points, 43 % of the pixels; synthetic masks as
  :func:`defa_hw.model.perf.encoder_projection` draws them) or none; cycles from
  :func:`defa_hw.model.perf.model` (sliding-window organisation);
* logic energies: OpenSTA's power of the OSU 0.18 um netlists (``defa-hw synth --target
  asic``) at the flow's stated clock and global activity (``synth.asic.ASIC_POWER_MHZ``,
  ``ASIC_ACTIVITY``: 100 MHz, 0.1), read from ``synth/baseline_defa.json`` (or a
  ``report.json``);
* SRAM energies: the cited macro model ``synth.asic.ASIC_SRAM_MODEL`` (GF180MCU 512x8
  macro, energy per bit of the word read or written);
* external traffic: :func:`defa_hw.model.traffic.external_traffic` at DEFA's 1.2 pJ/bit
  (HBM2, as its paper assumes);
* 40 nm: the 180 nm energies x ``synth.scaling.SCALE_TO_40NM["energy"]`` (Stillmaker &
  Baas), applied once, in :func:`per_op_energies`; the external energy is not scaled
  (1.2 pJ/bit is DEFA's figure for the off-chip link, whatever the logic's node).

Left out: leakage (OpenSTA's is < 0.01 % of the OSU power; at 40 nm it would not be),
the clock tree, wires, the logic outside the PE array (softmax, address generation,
point and fmap mask, requantisation, control), idle cycles of the array, and every
SRAM access the rules of :func:`sram_bits` do not name.
"""

import json
from pathlib import Path

import numpy as np

__all__ = ["HBM2_PJ_PER_BIT", "OPS_PER_MAC", "OPS_PER_BILINEAR", "RTX3090",
           "synth_figures", "per_op_energies", "sram_bits", "layer_counts", "layer_energy",
           "energy_report", "format_energy", "plot_energy", "PRUNING_CHOICES"]

#: DEFA's off-chip energy (HBM2, 1.2 pJ/bit; its evaluation setting, defa-brief.md).
HBM2_PJ_PER_BIT = 1.2
#: Operation convention: one multiply-accumulate = 2 operations; one bilinear
#: interpolation in DEFA's form (3 multiplies, 7 additions) = 10 operations.
OPS_PER_MAC = 2
OPS_PER_BILINEAR = 10
#: The GPU comparison, as DEFA makes it (energy = board power x latency): an RTX 3090 runs
#: the MSDeformAttn CUDA forward kernel (fp32, N = 1, 15,200 queries, 8 heads, 4 levels,
#: 8 points) in 1.234 ms (DCNv4 repository, issue #106); its board power is 350 W
#: (NVIDIA's GeForce RTX 3090 specification, "graphics card power").
RTX3090 = {"latency_ms": 1.234, "board_power_w": 350.0, "queries": 15200,
           "source": "DCNv4 repository issue #106 (kernel time); NVIDIA RTX 3090 "
                     "specification (350 W board power)",
           "case": "MSDeformAttn CUDA forward, fp32, 15,200 queries, 8 heads, 4 levels, "
                   "8 points (the sampling kernel only: no projections)"}
PRUNING_CHOICES = ("none", "defa")


def synth_figures(path=None, *, config_name="defa"):
    """Per block ``{area_um2, fmax_mhz, power_mw}`` of the asic flow, and the power
    conditions: from a ``report.json`` of ``defa-hw synth --target asic`` (``path``), or
    the committed ``synth/baseline_<config_name>.json``.  ValueError (one line) when
    there is no ``pe_array`` power in it."""
    from synth.asic import ASIC_ACTIVITY, ASIC_POWER_MHZ
    from synth.baseline import baseline_path
    p = Path(path) if path else baseline_path(config_name)
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"synthesis figures {p} unreadable ({type(e).__name__}); give a "
                         "report.json of 'defa-hw synth --target asic'") from None
    blocks = {n: b["asic"] for n, b in data.get("blocks", {}).items()
              if isinstance(b, dict) and "asic" in b and "error" not in b["asic"]}
    if (blocks.get("pe_array") or {}).get("power_mw") is None:
        raise ValueError(f"{p.name} has no asic power of pe_array; run 'defa-hw synth "
                         "--target asic --blocks pe_array' and pass its report.json")
    cond = {"clock_mhz": ASIC_POWER_MHZ, "activity": ASIC_ACTIVITY}
    for b in blocks.values():
        cond = b.get("power_conditions", cond)
        break
    return {"source": p.name, "blocks": blocks,
            "power_clock_mhz": cond["clock_mhz"], "activity": cond["activity"]}


def per_op_energies(cfg, figures, *, node="180nm"):
    """Energies in pJ per operation at ``node`` (``180nm`` or ``40nm``).

    * ``mm_mac``: one MAC in MM mode = the PE array's power per clock cycle at the stated
      activity (``P_pe_array / f``), over the ``pe_rows * pe_cols`` MACs it does per
      cycle in MM mode;
    * ``ba_point_channel``: one (sampling point, channel) in BA mode, i.e. one bilinear
      interpolation (three lent PE multipliers, the array's adders) and one probability
      MAC: the same energy per cycle over the ``n_levels * ba_channels`` interpolations
      the array does per cycle in BA mode (four PEs each);
    * ``sram_read_bit`` / ``sram_write_bit``: the macro model's energy per bit of the word
      (``ASIC_SRAM_MODEL``);
    * ``external_bit``: :data:`HBM2_PJ_PER_BIT` (not scaled).

    At 40 nm every on-chip energy is multiplied by ``SCALE_TO_40NM["energy"]``, here only.
    """
    from synth.asic import ASIC_SRAM_MODEL
    from synth.scaling import SCALE_TO_40NM
    if node not in ("180nm", "40nm"):
        raise ValueError(f"node {node!r}; allowed: 180nm, 40nm")
    arr = figures["blocks"]["pe_array"]
    pj_per_cycle = arr["power_mw"] * 1e-3 / (figures["power_clock_mhz"] * 1e6) * 1e12
    k = SCALE_TO_40NM["energy"] if node == "40nm" else 1.0
    return {
        "mm_mac": k * pj_per_cycle / (cfg.pe_rows * cfg.pe_cols),
        "ba_point_channel": k * pj_per_cycle / (cfg.n_levels * cfg.ba_channels),
        "sram_read_bit": k * ASIC_SRAM_MODEL["read_pj_per_bit"],
        "sram_write_bit": k * ASIC_SRAM_MODEL["write_pj_per_bit"],
        "external_bit": HBM2_PJ_PER_BIT,
        "scale": k,
    }


def sram_bits(cfg, counts, traffic):
    """Bits read and written per on-chip memory group for the counted work (rules):

    * ``weights`` (``wstore``): every MM MAC reads its weight (one ``pe_rows x pe_cols``
      tile per cycle, ``data_bits`` per MAC); written once with the weight stream's codes
      and biases;
    * ``queries`` (``qbuf``): written once per query (codes and reference points); read in
      the ATTN and OFFSET phases, one ``pe_rows``-code chunk per array cycle (a lower
      bound: a macro reading its whole word per cycle would cost ``pe_cols`` times more);
    * ``value_buffer`` (``vbuf*``): each unmasked pixel's projected value written once
      (``d_model`` codes); each kept point reads its four neighbours' ``head_dim`` codes;
    * ``offsets`` (``ogather``): (x, y) of each kept point written and read once;
    * ``probabilities`` (``attn.prob*``): every point's probability written, each kept
      point's read;
    * ``sampled`` (``ba.sampled``): each query's aggregated row (``d_model`` codes) written
      and read once (the OUT phase's input);
    * ``fmap_mask`` (``fwp.bank*`` counters and ``vin.fmask*``): each kept point updates
      its four neighbours' ``fwp_counter_bits`` counters (read and write); each pixel's
      mask bit written once and read per neighbour access.
    """
    d = cfg.data_bits
    macs = counts["mm_macs"]
    kept, q = counts["kept_points"], counts["queries"]
    w_codes = traffic["weights"]["beats"] * (cfg.d_model * d + cfg.mm_acc_bits)
    q_bits = cfg.d_model * d + cfg.n_levels * 2 * cfg.ref_frac_bits
    head_dim = cfg.d_model // cfg.n_heads
    return {
        "weights": {"read": counts["mm_macs_total"] * d, "write": w_codes},
        "queries": {"read": (macs["attn"] + macs["offset"]) // cfg.pe_cols * d,
                    "write": q * q_bits},
        "value_buffer": {"read": kept * 4 * head_dim * d,
                         "write": counts["pixels_unmasked"] * cfg.d_model * d},
        "offsets": {"read": kept * 2 * d, "write": kept * 2 * d},
        "probabilities": {"read": kept * d, "write": counts["points"] * d},
        "sampled": {"read": q * cfg.d_model * d, "write": q * cfg.d_model * d},
        "fmap_mask": {"read": kept * 4 * (cfg.fwp_counter_bits + 1),
                      "write": kept * 4 * cfg.fwp_counter_bits + counts["pixels"]},
    }


def layer_counts(cfg, pruning, *, shapes=None, seed=0, order="locality"):
    """(operation counts, cycles, external traffic) of one encoder layer, its queries run
    in ``order`` (the value-window loads decide the fmap traffic)."""
    from defa_hw.model.perf import (ENCODER_SHAPES, encoder_schedule, model,
                                    operation_counts, pruning_masks)
    from defa_hw.model.traffic import external_traffic
    if pruning not in PRUNING_CHOICES:
        raise ValueError(f"pruning {pruning!r}; allowed: {', '.join(PRUNING_CHOICES)}")
    shapes = shapes or ENCODER_SHAPES
    S = int(sum(h * w for h, w in shapes))
    keep, mask, _ = pruning_masks(cfg, pruning, S, S, seed=seed)
    counts = operation_counts(cfg, keep, mask)
    ref, sched = encoder_schedule(cfg, shapes, order)
    cycles = model(cfg, keep, mask, shapes, ref, schedule=sched).cycles["total"]
    rows = sched.rows_per_level(len(shapes))
    return counts, cycles, external_traffic(cfg, shapes, S, fmap_rows_loaded=rows,
                                            window_loads=sched.loads)


def layer_energy(cfg, counts, traffic, e):
    """Energy in J per component for per-operation energies ``e`` (:func:`per_op_energies`);
    ``total`` is the sum of the components."""
    comp = {"mm_macs": counts["mm_macs_total"] * e["mm_mac"],
            "ba": counts["ba_point_channels"] * e["ba_point_channel"]}
    for name, rw in sram_bits(cfg, counts, traffic).items():
        comp[f"sram_{name}"] = rw["read"] * e["sram_read_bit"] + rw["write"] * e["sram_write_bit"]
    comp["external"] = traffic["total_bits"] * e["external_bit"]
    comp = {k: v * 1e-12 for k, v in comp.items()}
    comp["total"] = sum(comp.values())
    return comp


def _ops(counts):
    return (OPS_PER_MAC * counts["mm_macs_total"]
            + (OPS_PER_BILINEAR + OPS_PER_MAC) * counts["ba_point_channels"])


def energy_report(cfg, pruning="defa", *, figures=None, hbm_pj_per_bit=HBM2_PJ_PER_BIT):
    """Energy per encoder layer by component at 180 nm (at its Fmax) and 40 nm (400 MHz,
    estimate), GOPS, GOPS/W and the GPU comparison; a JSON-ready dict."""
    from synth.scaling import DEFA_POINT, SCALE_TO_40NM, SOURCE
    figures = figures or synth_figures()
    counts, cycles, traffic = layer_counts(cfg, pruning)
    ops = _ops(counts)
    core = figures["blocks"].get("defa_core")
    fmax180 = core["fmax_mhz"] if core else min(b["fmax_mhz"] for b in figures["blocks"].values())
    gpu_j = RTX3090["board_power_w"] * RTX3090["latency_ms"] * 1e-3
    gpu_j_scaled = gpu_j * counts["queries"] / RTX3090["queries"]
    nodes = {}
    for node, mhz in (("180nm", fmax180), ("40nm", DEFA_POINT["clock_mhz"])):
        e = per_op_energies(cfg, figures, node=node)
        e["external_bit"] = hbm_pj_per_bit
        en = layer_energy(cfg, counts, traffic, e)
        lat = cycles / (mhz * 1e6)
        nodes[node] = {
            "estimate": node == "40nm", "clock_mhz": mhz, "latency_ms": 1e3 * lat,
            "per_op_pj": e, "energy_j": en, "power_w": en["total"] / lat,
            "gops": ops / lat / 1e9, "gops_per_w": ops / en["total"] / 1e9,
            "gpu_energy_ratio": gpu_j_scaled / en["total"],
        }
    return {
        "config": cfg.name, "pruning": pruning, "queries": counts["queries"],
        "pixels": counts["pixels"], "cycles": cycles, "counts": counts, "ops": ops,
        "ops_convention": f"1 MAC = {OPS_PER_MAC} ops; a BA (point, channel) = one bilinear "
                          f"interpolation ({OPS_PER_BILINEAR} ops) + one MAC ({OPS_PER_MAC}); "
                          "only the work done after pruning is counted",
        "traffic": traffic, "sram_bits": sram_bits(cfg, counts, traffic),
        "synth": {"source": figures["source"], "power_clock_mhz": figures["power_clock_mhz"],
                  "activity": figures["activity"], "fmax_180nm_mhz": fmax180},
        "scaling": {"source": SOURCE, "energy_factor": SCALE_TO_40NM["energy"]},
        "nodes": nodes,
        "gpu": dict(RTX3090, energy_j=gpu_j, energy_j_scaled_to_queries=gpu_j_scaled,
                    note="energy = board power x latency; scaled linearly by queries "
                         f"({RTX3090['queries']} -> {counts['queries']})"),
    }


def format_energy(rep):
    n180, n40 = rep["nodes"]["180nm"], rep["nodes"]["40nm"]
    L = [f"Energy per encoder layer ({rep['queries']} queries, {rep['pixels']} pixels, "
         f"config {rep['config']}, pruning {rep['pruning']}); logic energies from "
         f"{rep['synth']['source']} at {rep['synth']['power_clock_mhz']:.0f} MHz, activity "
         f"{rep['synth']['activity']}; 40 nm = estimate", "",
         "| component | 180 nm uJ | 40 nm uJ (est.) | share at 40 nm |", "|---|---:|---:|---:|"]
    for k in n180["energy_j"]:
        if k == "total":
            continue
        L.append(f"| {k} | {1e6 * n180['energy_j'][k]:,.1f} | {1e6 * n40['energy_j'][k]:,.2f} | "
                 f"{100 * n40['energy_j'][k] / n40['energy_j']['total']:.1f} % |")
    L.append(f"| **total** | **{1e6 * n180['energy_j']['total']:,.1f}** | "
             f"**{1e6 * n40['energy_j']['total']:,.2f}** | 100 % |")
    L += ["", "| node | clock MHz | latency ms | power W | GOPS | GOPS/W | GPU energy / ours |",
          "|---|---:|---:|---:|---:|---:|---:|"]
    for name, n in rep["nodes"].items():
        L.append(f"| {name}{' (est.)' if n['estimate'] else ''} | {n['clock_mhz']:.1f} | "
                 f"{n['latency_ms']:.2f} | {n['power_w']:.3f} | {n['gops']:.1f} | "
                 f"{n['gops_per_w']:.1f} | {n['gpu_energy_ratio']:.1f}x |")
    g = rep["gpu"]
    L += ["", f"Ops: {rep['ops'] / 1e9:.3f} G ({rep['ops_convention']}).",
          f"GPU: RTX 3090, {g['latency_ms']} ms x {g['board_power_w']:.0f} W = "
          f"{1e3 * g['energy_j']:.0f} mJ for {g['queries']} queries ({g['case']}; "
          f"{g['source']}); {1e3 * g['energy_j_scaled_to_queries']:.0f} mJ scaled to "
          f"{rep['queries']} queries."]
    return "\n".join(L)


def plot_energy(reports, path):
    """Stacked bars: energy per layer by component, one bar per (pruning, node)."""
    try:
        import matplotlib
    except ImportError:         # a dependency, but the table does not need it
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    bars = [(f"{r['pruning']}\n{node}", n["energy_j"]) for r in reports
            for node, n in r["nodes"].items()]
    comps = [k for k in bars[0][1] if k != "total"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, node in zip(axes, ("180nm", "40nm")):
        sel = [(lbl, e) for lbl, e in bars if lbl.endswith(node)]
        bottom = np.zeros(len(sel))
        for c in comps:
            vals = np.array([1e3 * e[c] for _l, e in sel])
            ax.bar([lbl.split("\n")[0] for lbl, _e in sel], vals, bottom=bottom, label=c)
            bottom += vals
        ax.set_title(f"{node}{' (estimate)' if node == '40nm' else ''}")
        ax.set_ylabel("energy per encoder layer (mJ)")
        ax.set_xlabel("pruning")
    axes[1].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path

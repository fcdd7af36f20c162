"""180 nm -> 40 nm scaling of the asic flow's figures (an estimate): the one place where the
scaling factors live.

Source: A. Stillmaker and B. Baas, "Scaling equations for the accurate prediction of CMOS
device performance from 180 nm to 7 nm", Integration, the VLSI Journal 58 (2017) 74-81,
doi:10.1016/j.vlsi.2017.02.002.  The paper fits, per node, polynomials in the supply
voltage V to HSPICE results (PTM / ITRS models): delay ``d3 V^3 + d2 V^2 + d1 V + d0``,
energy per operation ``e2 V^2 + e1 V + e0`` and power ``p2 V^2 + p1 V + p0`` (its
coefficient tables; the energy coefficients are its Table 5, which the authors' erratum
on vcl.ece.ucdavis.edu quotes: HP32 = 0.8367, -0.4341, 0.1701, i.e. 0.4571 at 0.9 V), and
gives area scaling factors between nodes (its area table: 180 nm -> 45 nm 1/19,
-> 32 nm 1/40).  A factor between two nodes is the ratio of the fits, each at its node's
nominal voltage.  The coefficients below were transcribed from the MIT-licensed
``nodeScale`` tool (UCLA NanoCAD, github.com/wromaszkan/nodeScale), which implements the
paper, and checked against the erratum's worked example.

40 nm is not one of the paper's nodes (180, 130, 90, 65, 45, 32, 20, ... 7 nm).  The 40 nm
factors are interpolated between its 45 nm and 32 nm high-performance (HP) points,
linearly in log(factor) over log(feature size): ``t = ln(45/40) / ln(45/32) = 0.345``,
``f40 = f45 (f32 / f45)^t``.  Nominal voltages: 1.8 V (180 nm; the OSU 0.18 um liberty's
corner), 1.0 V (HP45) and 0.9 V (HP32); DEFA's 40 nm library voltage is not published.
"""

import math

__all__ = ["SOURCE", "SOURCE_NODE_NM", "TARGET_NODE_NM", "POLY", "NOMINAL_V",
           "AREA_FROM_180", "factors", "SCALE_TO_40NM", "scale_block", "DEFA_POINT"]

SOURCE = ("Stillmaker & Baas, Integration 58 (2017) 74-81, delay/energy/power "
          "polynomial fits at nominal voltage and area factors; 40 nm interpolated "
          "log-log between their HP45 and HP32 points")
SOURCE_NODE_NM = 180
TARGET_NODE_NM = 40

#: Fitted coefficients per node: delay (d3, d2, d1, d0), energy (e2, e1, e0),
#: power (p2, p1, p0); the paper's coefficient tables.
POLY = {
    "180": {"delay": (0.0, 97.09, -356.7, 406.5), "energy": (24.64, -17.98, 0.0),
            "power": (101000.0, -79720.0, 0.0)},
    "HP45": {"delay": (-501.6, 1567.0, -1619.0, 566.1), "energy": (1.018, -0.3107, 0.1539),
             "power": (5462.0, -1760.0, 522.4)},
    "HP32": {"delay": (-1047.0, 2982.0, -2797.0, 873.5), "energy": (0.8367, -0.4341, 0.1701),
             "power": (4001.0, -1733.0, 533.6)},
}
#: Nominal supply voltage of each fitted node (V).
NOMINAL_V = {"180": 1.8, "HP45": 1.0, "HP32": 0.9}
#: Area factors from 180 nm (the paper's area table: 180 -> 45 nm 1/19, 180 -> 32 nm 1/40).
AREA_FROM_180 = {"HP45": 1 / 19, "HP32": 1 / 40}
_NODE_NM = {"HP45": 45, "HP32": 32}


def _poly(c, v):
    return sum(a * v ** (len(c) - 1 - i) for i, a in enumerate(c))


def _ratio(node, metric):
    return _poly(POLY[node][metric], NOMINAL_V[node]) / _poly(POLY["180"][metric],
                                                             NOMINAL_V["180"])


def factors(target_nm=TARGET_NODE_NM):
    """Multiplicative factors 180 nm -> ``target_nm`` (32 <= target_nm <= 45): ``area``,
    ``delay`` (a path's delay; Fmax divides by it), ``energy`` (per operation, i.e. per
    access or per clock cycle at the same activity) and ``power`` (the paper's power fit,
    recorded, not used: power at a stated clock is energy x clock here)."""
    if not 32 <= target_nm <= 45:
        raise ValueError(f"target node {target_nm} nm outside the interpolated range 32-45 nm")
    t = math.log(45 / target_nm) / math.log(45 / 32)
    out = {}
    for metric in ("delay", "energy", "power"):
        f45, f32 = _ratio("HP45", metric), _ratio("HP32", metric)
        out[metric] = f45 * (f32 / f45) ** t
    a45, a32 = AREA_FROM_180["HP45"], AREA_FROM_180["HP32"]
    out["area"] = a45 * (a32 / a45) ** t
    return out


#: The factors the reports and the energy model use (180 nm -> 40 nm), computed once.
SCALE_TO_40NM = factors(TARGET_NODE_NM)

#: DEFA's published synthesis point (Lyu et al., DAC 2024, as ../shared/docs/defa-brief.md
#: quotes it): Design Compiler at 400 MHz in 40 nm.  Its area and power breakdowns are not
#: in the sources the project has (None).
DEFA_POINT = {"node_nm": 40, "clock_mhz": 400.0, "area_mm2": None, "power_mw": None}


def scale_block(asic, f=None, *, target_mhz=DEFA_POINT["clock_mhz"]):
    """The 40 nm estimate of one block's asic figures (a ``blocks.<name>.asic`` dict): logic,
    SRAM and total area, the critical path and Fmax, power at the asic flow's stated clock
    and activity, and whether Fmax reaches ``target_mhz`` (with the margin in %)."""
    f = f or SCALE_TO_40NM
    cp = asic.get("critical_path")
    delay = None if cp is None else cp["delay_ns"] * f["delay"]
    fmax = None if delay is None else 1e3 / delay
    p = asic.get("power_mw")
    return {
        "estimate": True,
        "node_nm": TARGET_NODE_NM,
        "area_um2": round(asic["area_um2"] * f["area"], 1),
        "area_um2_sram_est": round(asic.get("area_um2_sram_est", 0.0) * f["area"], 1),
        "area_um2_total_est": round(asic.get("area_um2_total_est", asic["area_um2"])
                                    * f["area"], 1),
        "delay_ns": None if delay is None else round(delay, 3),
        "fmax_mhz": None if fmax is None else round(fmax, 1),
        "power_mw": None if p is None else round(p * f["energy"], 4),
        "target_mhz": target_mhz,
        "meets_target": None if fmax is None else fmax >= target_mhz,
        "margin_pct": None if fmax is None else round(100 * (fmax / target_mhz - 1), 1),
    }

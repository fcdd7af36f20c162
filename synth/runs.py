"""The orchestration of ``defa-hw synth``: elaborate every block in worker processes,
plan the tool runs (:mod:`synth.plan`), run them largest first in a thread pool, and
collect the report dict."""

import functools
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from pathlib import Path

from synth.asic import asic_model, run_asic
from synth.scaling import scale_block
from synth.ecp5 import ECP5_PACKAGE, NEXTPNR_SEED, run_ecp5
from synth.generic import ABC_SCRIPT, SRAM_MODEL, liberty_cells, run_generic
from synth.plan import collect_sweep, finish_plan, plan_sweep, plan_unit, sweep_configs
from synth.rtlil import fpga_rtlil, structure_signature, task_key, to_rtlil
from synth.tools import SynthInputError, ToolError, ToolVersions, progress_line

__all__ = ["TOP_BLOCK", "TARGETS", "registered_blocks", "synthesize"]

#: The block reported as the whole accelerator, when it is registered.
TOP_BLOCK = "defa_core"
#: Every flow (``--target all``); :func:`synthesize` runs the first two unless told,
#: since ``asic`` needs two Debian packages (:func:`synth.asic.asic_tools`).
TARGETS = ("generic", "ecp5", "asic")


def registered_blocks():
    """name -> factory(cfg) for every block in the registry (``defa_hw/rtl/blocks.py``)."""
    from defa_hw.rtl.blocks import BLOCKS, build_block
    return {name: functools.partial(build_block, name) for name in sorted(BLOCKS)}


def _elaborate(factory, cfg, name, targets):
    """RTLIL of one block (and of its FPGA wrapper); runs in a worker process."""
    t0 = time.monotonic()
    out = {}
    try:
        if "generic" in targets or "asic" in targets:
            out["generic"] = to_rtlil(factory(cfg), name=name)
        if "ecp5" in targets:
            out["ecp5"] = fpga_rtlil(factory(cfg), name=name)
    except Exception as e:  # a block that does not elaborate is that block's error
        first = str(e).splitlines()[0] if str(e) else ""
        out = {"error": f"elaboration failed: {type(e).__name__}: {first}"}
    out["seconds"] = round(time.monotonic() - t0, 2)
    return out


class _Inline:
    """Executor stand-in that runs each call at once (``jobs=1``)."""

    def submit(self, fn, *args, **kw):
        from concurrent.futures import Future
        f = Future()
        try:
            f.set_result(fn(*args, **kw))
        except BaseException as e:      # pragma: no cover - _elaborate catches
            f.set_exception(e)
        return f

    def shutdown(self, wait=True):
        pass


def synthesize(cfg, out, *, targets=TARGETS[:2], blocks=None, only=None, jobs=2, sweep=False,
               freq_mhz=100, progress=sys.stderr, timeout=1800, top=TOP_BLOCK,
               fpga_top=False):
    """Run the flows for every block; return the report dict (also see :func:`write_reports`).

    ``blocks`` maps name -> factory(cfg) (default: the registry); ``only`` restricts
    the names.  The generic figures of ``top`` are composed from its direct submodules
    (each synthesised flat, identical ones once) plus the glue around them; the top's
    ECP5 run only happens with ``fpga_top`` (place and route of the whole accelerator
    takes tens of minutes even for the tiny preset).  ``asic`` figures are composed
    like the generic ones.  Tool
    failures are recorded per block (``{"error": ...}``) and printed as one line each;
    the caller decides the exit status.
    """
    t_start = time.monotonic()
    blocks = registered_blocks() if blocks is None else dict(blocks)
    if only:
        unknown = [n for n in only if n not in blocks]
        if unknown:
            raise SynthInputError(f"unknown block {unknown[0]!r}; allowed blocks: "
                                  f"{', '.join(sorted(blocks)) or '(none registered)'}")
        blocks = {n: blocks[n] for n in only}
    names = sorted(blocks)
    out = Path(out)
    work = out / "work"
    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SynthInputError(f"cannot create output folder {out}: {e.strerror}") from None

    versions = ToolVersions()   # compiles the tools' WebAssembly, if need be, meanwhile
    report = {
        "schema": 1,
        "config_name": cfg.name,
        "config": cfg.to_dict(),
        "targets": list(targets),
        "top": top if top in names else None,
        "fpga_top": bool(fpga_top),
        "tools": None,              # filled in before the first tool run
        "models": {"liberty": liberty_cells(), "sram": dict(SRAM_MODEL), "abc_script": ABC_SCRIPT,
                   "ecp5": {"package": ECP5_PACKAGE, "freq_target_mhz": freq_mhz,
                            "seed": NEXTPNR_SEED},
                   "asic": asic_model()},
        "blocks": {n: {} for n in names},
        "errors": [],
    }
    times = {"elaborate": {}, "generic": {}, "ecp5": {}, "asic": {}}
    flows = [k for k in ("generic", "asic") if k in targets]     # on the RTLIL as it is

    # Amaranth elaborates in worker processes (it is neither thread-safe nor fast on the
    # top); each block's tool runs start as soon as its RTLIL is there.  Tool tasks are
    # keyed by a hash of their RTLIL up to naming, so identical designs run once.
    tasks = {}          # key -> (kind, name, text, extra, workdir)
    wanted = []         # (name, target, key or composition plan)
    texts = {}
    elab = ProcessPoolExecutor(max_workers=jobs) if jobs > 1 else _Inline()
    order = sorted(names, key=lambda n: (n != top, n))      # the top first: the longest
    main_futs = {elab.submit(_elaborate, blocks[n], cfg, n,
                             tuple(t for t in targets
                                   if t != "ecp5" or n != top or fpga_top)): n
                 for n in order}
    points = sweep_configs(cfg) if sweep else []
    sweep_futs = {}
    for i, (_axis, _label, _params, c, _reason) in enumerate(points):
        if c is None or c == cfg:       # invalid, or the base config (already elaborated)
            continue
        for n in order:
            if n != top:            # the top: too slow to sweep
                sweep_futs[elab.submit(_elaborate, blocks[n], c, n, ("generic",))] = (i, n)

    results, running = {}, {}
    tools = ThreadPoolExecutor(max_workers=max(1, jobs))

    def submit_new():
        # largest design first: the long runs (an array's glue, pe_array's place and
        # route) then overlap the many short ones instead of trailing them
        for key in sorted(tasks, key=lambda k: -len(tasks[k][2])):
            if key not in running:
                running[key] = tools.submit(_run_task, key, tasks[key], freq_mhz=freq_mhz,
                                            timeout=timeout, out=out)

    try:
        for fut in as_completed(main_futs):
            n = main_futs[fut]
            r = fut.result()
            times["elaborate"][n] = r["seconds"]
            if "error" in r:
                msg = f"{n}: {r['error']}"
                report["blocks"][n]["error"] = msg
                report["errors"].append(msg)
                progress_line(progress, f"defa-hw synth: error: {msg}")
                continue
            progress_line(progress, f"[synth] elaborated {n:24s} {r['seconds']:7.1f} s")
            if "generic" in r:
                texts[n] = r["generic"]
                if n != top:        # planned below, when the blocks it may reuse are known
                    wanted.extend((n, k, plan_unit(r["generic"], n, tasks, work / k / n, kind=k))
                                  for k in flows)
            if "ecp5" in r:
                text, ftop, ib, ob = r["ecp5"]
                key = task_key(f"ecp5 {freq_mhz}", text)
                tasks.setdefault(key, ("ecp5", n, text, (ftop, ib, ob), work / "ecp5" / n))
                wanted.append((n, "ecp5", key))
        # Tool runs start once every block is elaborated (the slowest, the top, takes
        # ~30 s for defa while the other worker elaborates the rest and the sweep), so
        # that they can start largest first: the critical path (the top's glue) leads.
        for k in flows if top in texts else ():
            known = {structure_signature(texts[n]): plan
                     for n, target, plan in wanted if target == k}
            wanted.append((top, k, plan_unit(texts[top], top, tasks, work / k / top,
                                             compose=True, known=known, kind=k)))
        report["tools"] = versions.result()
        submit_new()
        sweep_plan = None
        if sweep:
            sweep_texts = {}
            for fut in as_completed(sweep_futs):
                i, n = sweep_futs[fut]
                sweep_texts[(i, n)] = fut.result()
            sweep_plan = plan_sweep(points, sweep_texts, texts, tasks, work, progress, times,
                                    base_cfg=cfg, top=top)
            submit_new()
        for fut in as_completed(list(running.values())):
            key, res, dt = fut.result()
            results[key] = res
            _report_task(tasks[key], res, dt, times, progress, out)
    finally:
        elab.shutdown(wait=True)
        tools.shutdown(wait=True)

    for n, target, plan in wanted:
        res = finish_plan(plan, results)
        if target == "asic" and "error" not in res:
            res["scaled_40nm"] = scale_block(res)      # an estimate (synth/scaling.py)
        report["blocks"][n][target] = res
        if "error" in res:
            report["errors"].append(f"{n} ({target}): {res['error']}")
    if sweep_plan is not None:
        report["sweep"] = collect_sweep(sweep_plan, results)
    report["run_times_s"] = {
        "note": "wall-clock seconds on this machine; not compared against baselines",
        "total": round(time.monotonic() - t_start, 1),
        "jobs": jobs,
        **{k: dict(sorted(v.items())) for k, v in times.items()},
    }
    return report


def _relative(path, root):
    if path is None:
        return "(no log)"
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return Path(path).name


def _run_task(key, task, *, freq_mhz, timeout, out):
    kind, n, text, extra, wd = task
    t0 = time.monotonic()
    try:
        if kind == "generic":
            res = run_generic(text, name=n, workdir=wd, timeout=timeout, **(extra or {}))
        elif kind == "asic":
            res = run_asic(text, name=n, workdir=wd, timeout=timeout, **(extra or {}))
        else:
            ftop, ib, ob = extra
            res = run_ecp5(text, top=ftop, workdir=wd, freq_mhz=freq_mhz, in_bits=ib,
                           out_bits=ob, timeout=timeout)
    except ToolError as e:
        # The report keeps the log path relative to DIR (no machine paths in it); the
        # progress line names the path as the user can open it.
        res = {"error": f"{e.head}; see {_relative(e.log, out)}", "_shown": str(e)}
    return key, res, time.monotonic() - t0


def _report_task(task, res, dt, times, progress, out):
    kind, _n, _text, _extra, wd = task
    label = _relative(wd, out / "work")
    times[kind][label] = round(dt, 2)
    if "error" in res:
        progress_line(progress, f"defa-hw synth: error: {res.pop('_shown')}")
    elif kind == "generic":
        progress_line(progress, f"[synth] {label:34s} {dt:7.1f} s  "
                  f"logic {res['area_nand2_logic']:.0f} NAND2-eq, {res['sram_bits']} SRAM bits")
    elif kind == "asic":
        fmax = "-" if res["fmax_mhz"] is None else f"{res['fmax_mhz']} MHz"
        progress_line(progress, f"[synth] {label:34s} {dt:7.1f} s  "
                      f"{res['area_um2']:.0f} um2 (OSU 0.18), {res['cell_count']} cells, "
                      f"Fmax {fmax}")
    else:
        progress_line(progress, f"[synth] {label:34s} {dt:7.1f} s  "
                  f"{res['lut']} LUT, {res['ff']} FF, {res['dsp']} DSP, {res['bram']} BRAM, "
                  f"Fmax {res['fmax_mhz']} MHz")

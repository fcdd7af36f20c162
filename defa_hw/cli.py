"""The ``defa-hw`` command line.

Every user error (bad config, malformed input, unknown block) ends with one line on
stderr naming the problem and exit status 2, never a traceback.
"""

import argparse
import json
import os
import sys
from pathlib import Path

from defa_hw.config import ConfigError, load_config

__all__ = ["main"]


class UsageError(Exception):
    """A user error reported as one line with exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # argparse's own errors follow the same one-line, exit-2 rule.
        self.exit(2, f"{self.prog}: error: {message}\n")


def _add_config_args(p):
    g = p.add_mutually_exclusive_group()
    g.add_argument("--preset", metavar="NAME", help="built-in config: tiny or defa (default: defa)")
    g.add_argument("--config", metavar="FILE", help="config JSON file (as written by generate)")


def _config(args):
    return load_config(preset_name=args.preset, path=args.config)


def _cmd_golden(args):
    import numpy as np
    from golden.model import defa_block
    from defa_hw.model.calibrate import summary_fields
    from defa_hw.model.workload import load_workload, quantize_workload

    cfg = _config(args)
    params, inputs = load_workload(args.inputs, cfg)
    qb = quantize_workload(cfg, params, inputs, quant=args.quant)
    res = defa_block(cfg, qb, prune=not args.no_prune)
    stats = _stats(res)
    out = Path(args.out)
    if out.parent and not out.parent.exists():
        raise UsageError(f"output folder {out.parent} does not exist")
    np.savez(out, output=res["output"].astype(np.float32),
             output_int=res["output_int"].astype(np.int16),
             output_frac_bits=np.int64(qb.qp.output),
             next_fmap_mask=res["next_fmap_mask"],
             **{k: np.int64(v) for k, v in stats.items()})
    print(json.dumps({"config": cfg.name, "queries": int(qb.query.shape[0]),
                      "pixels": int(qb.input.shape[0]), "prune": not args.no_prune,
                      **stats, **summary_fields(inputs, res["output"], res), "out": str(out)},
                     sort_keys=False))
    return 0


def _stats(res):
    return {k: res[k] for k in ("points_total", "points_pruned", "points_clamped",
                                "pixels_total", "pixels_masked_in", "pixels_pruned_next")}


def _parse_shapes(text, cfg):
    try:
        shapes = [tuple(int(v) for v in item.lower().split("x")) for item in text.split(",")]
    except ValueError:
        shapes = None
    if not shapes or any(len(s) != 2 for s in shapes):
        raise UsageError(f"--shapes {text!r} is invalid: expected HxW per level, comma separated, "
                         f"e.g. {','.join(f'{h}x{w}' for h, w in cfg.max_shapes)}")
    return shapes


def _cmd_make_inputs(args):
    import numpy as np
    from golden.accuracy import random_workload
    from defa_hw.model.workload import save_workload, validate_workload

    cfg = _config(args)
    shapes = _parse_shapes(args.shapes, cfg) if args.shapes else list(cfg.max_shapes)
    if args.queries == "all":
        n_queries = None                  # an encoder: every token, input_flatten order
    elif not args.queries.isdigit() or int(args.queries) < 1:
        raise UsageError(f"--queries {args.queries} is invalid: allowed an integer >= 1 "
                         "or 'all'")
    else:
        n_queries = int(args.queries)
    params, inputs = random_workload(cfg, args.seed, shapes=shapes, n_queries=n_queries)
    arrays = {**params, **{k: np.asarray(v) for k, v in inputs.items()}}
    validate_workload(arrays, cfg)   # shapes against the config, before writing anything
    save_workload(args.out, params, inputs)
    print(f"wrote {args.out}: {len(inputs['query'])} queries, shapes "
          f"{','.join(f'{h}x{w}' for h, w in shapes)}, seed {args.seed}")
    return 0


def _cmd_config(args):
    cfg = _config(args)
    if args.derived:
        d = cfg.to_dict()
        d["derived"] = cfg.derived()
        print(json.dumps(d, indent=2, sort_keys=True))
    else:
        print(cfg.to_json(), end="")
    return 0


def _cmd_generate(args):
    from defa_hw.rtl.blocks import block_names, build_block
    from defa_hw.flow.generate import to_verilog

    if args.list_blocks:
        from defa_hw.rtl.blocks import BLOCKS
        for name in block_names():
            print(f"{name:18s} {BLOCKS[name][2]}")
        return 0
    cfg = _config(args)
    if args.out is None:
        raise UsageError("--out DIR is required")
    out = Path(args.out)
    name = args.block or "defa_core"          # without --block: the whole core (top level)
    try:
        comp = build_block(name, cfg)
    except KeyError as e:
        raise UsageError(e.args[0]) from None
    out.mkdir(parents=True, exist_ok=True)
    written = [out / f"{name}.v", out / "config.json"]
    if name == "defa_core":
        from defa_hw.host.registers import c_header
        from defa_hw.rtl.core import compact_memory_init       # same logic, 4x less Verilog
        written[0].write_text(compact_memory_init(to_verilog(comp, name=name)))
        written.append(out / "defa_core_regs.h")               # firmware's register map
        written[-1].write_text(c_header(cfg, max_queries=comp.geom.mq))
    else:
        written[0].write_text(to_verilog(comp, name=name))
    written[1].write_text(cfg.to_json())
    print("wrote " + ", ".join(str(f) for f in written))
    return 0


#: Exit status of ``simulate`` when the build or the simulation failed or the core got stuck.
EXIT_SIM_FAILED = 3


def _cmd_simulate(args):
    # RTL simulation of one block, checked bit for bit against golden (defa_hw/flow/simulate.py).
    import defa_hw.flow.simulate as simulate
    cfg = _config(args)
    try:
        return simulate.main(cfg, args)
    except simulate.SimulateError as e:
        raise UsageError(str(e)) from None
    except simulate.SimulationFailed as e:
        # The simulator's own output (tracebacks included) is in the logs it names.
        print(f"defa-hw simulate: error: {e}", file=sys.stderr)
        return EXIT_SIM_FAILED


def _cmd_calibrate(args):
    # Static activation scales over a calibration set (defa_hw/model/calibrate.py).
    import defa_hw.model.calibrate as calibrate
    return calibrate.main(_config(args), args)


def _add_quant_arg(p):
    p.add_argument("--quant", metavar="QUANT.json", help="static activation scales from "
                   "'defa-hw calibrate' (default: calibrated on this input)")


def _cmd_synth(args):
    # Area / gate-count / FPGA reports; the flow is the top-level synth package.
    import synth
    cfg = _config(args)
    try:
        return synth.main(cfg, args)
    except synth.SynthInputError as e:
        raise UsageError(str(e)) from None


def _cmd_energy(args):
    # Energy per encoder layer from the asic flow's figures (defa_hw/model/energy.py).
    from defa_hw.model import energy
    cfg = _config(args)
    try:
        figures = energy.synth_figures(args.synth_report, config_name=cfg.name)
    except ValueError as e:
        raise UsageError(str(e)) from None
    cases = energy.PRUNING_CHOICES if args.pruning == "both" else (args.pruning,)
    reps = [energy.energy_report(cfg, p, figures=figures) for p in cases]
    out = Path(args.out) if args.out else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "energy.json").write_text(json.dumps(reps, indent=1, default=float) + "\n")
        (out / "energy.md").write_text("\n\n".join(energy.format_energy(r) for r in reps)
                                       + "\n")
        energy.plot_energy(reps, out / "energy.png")
    if args.json:
        print(json.dumps(reps, indent=1, default=float))
    else:
        print("\n\n".join(energy.format_energy(r) for r in reps))
    return 0


#: Named spatial shapes of ``defa-hw perf --shapes``.  Deformable DETR, DN-DETR and DINO
#: share the 800x1333 four-scale encoder (strides 8, 16, 32, 64).
NAMED_SHAPES = {"encoder-800x1333": ((100, 167), (50, 84), (25, 42), (13, 21))}


def _layer_shapes(text, cfg):
    """Spatial shapes of ``--shapes`` (a NAMED_SHAPES name or HxW,...) within max_shapes."""
    shapes = NAMED_SHAPES[text] if text in NAMED_SHAPES else _parse_shapes(text, cfg)
    if len(shapes) != cfg.n_levels:
        raise UsageError(f"--shapes {text!r} is invalid: {cfg.name} has {cfg.n_levels} "
                         f"levels, the shapes give {len(shapes)}")
    for l, ((h, w), (hm, wm)) in enumerate(zip(shapes, cfg.max_shapes)):
        if not (1 <= h <= hm and 1 <= w <= wm):
            raise UsageError(f"--shapes: level {l} is {h}x{w}; allowed 1x1 .. {hm}x{wm} "
                             f"(config max_shapes)")
    return shapes


def _check_clock(mhz):
    if mhz <= 0:
        raise UsageError(f"--clock-mhz {mhz} is invalid: allowed > 0")


def _cmd_perf(args):
    # Projected latency of one encoder layer (defa_hw/model/perf.py).
    from defa_hw.model.perf import layer_projection
    cfg = _config(args)
    shapes = _layer_shapes(args.shapes, cfg)
    _check_clock(args.clock_mhz)
    r = layer_projection(cfg, pruning=args.pruning, shapes=shapes, order=args.order,
                         clock_hz=args.clock_mhz * 1e6)
    out = {"config": cfg.name, "pruning": r["pruning"], "case": r["case"],
           "order": r["order"], "shapes": r["shapes"], "queries": r["queries"],
           "clock_mhz": args.clock_mhz, "latency_ms": round(r["latency_ms"], 4),
           "cycles": int(r["cycles"]["total"]), "ideal_cycles": round(r["ideal"]["total"]),
           "cycles_per_phase": {k: int(v) for k, v in r["cycles"].items() if k != "total"},
           "ideal_cycles_per_phase": {k: round(v) for k, v in r["ideal"].items()
                                      if k != "total"},
           "points_pruned": round(r["points_pruned"], 4),
           "pixels_pruned": round(r["pixels_pruned"], 4),
           "window_loads": r["window_loads"], "rows_loaded": r["rows_loaded"],
           "rows_refetched": r["rows_refetched"], "traffic_bits": r["traffic_bits"],
           "bandwidth_gb_s": round(r["bandwidth_gb_s"], 3)}
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{cfg.name}, {r['case']}, {r['order']} order, {r['queries']} queries at "
          f"{args.clock_mhz:g} MHz: {out['latency_ms']:.2f} ms ({out['cycles']:,} cycles, "
          f"ideal {out['ideal_cycles']:,}, ratio {r['ratio_to_ideal']:.3f})")
    for k, v in out["cycles_per_phase"].items():
        print(f"  {k:7s} {v:>12,} cycles (ideal {out['ideal_cycles_per_phase'][k]:,})")
    print(f"  windows: {out['window_loads']} loads, {out['rows_loaded']} rows "
          f"({out['rows_refetched']} again); traffic {out['traffic_bits'] / 1e6:.1f} Mbit, "
          f"{out['bandwidth_gb_s']:.2f} GB/s")
    return 0


def _cmd_explore(args):
    # Design-space sweep: performance model x synthesised area (defa_hw/explore/).
    from defa_hw.explore import ExploreError, explore
    cfg = _config(args)
    shapes = _layer_shapes(args.shapes, cfg) if args.shapes else None
    _check_clock(args.clock_mhz)
    if args.workers < 1:
        raise UsageError(f"--workers {args.workers} is invalid: allowed an integer >= 1")
    for path in args.area_check:
        try:
            json.loads(Path(path).read_text())["blocks"]["defa_core"]
        except (OSError, ValueError, KeyError, TypeError):
            raise UsageError(f"--area-check {path}: not a readable report.json of 'defa-hw "
                             "synth' with defa_core") from None
    if args.target == "asic":
        from synth import SynthInputError, asic_tools
        try:
            asic_tools()
        except SynthInputError as e:
            raise UsageError(str(e)) from None
    try:
        rep = explore(cfg, grid=args.points, pruning=args.pruning, shapes=shapes,
                      clock_hz=args.clock_mhz * 1e6, target=args.target, out=args.out,
                      scheduler=args.scheduler, workers=args.workers, min_sqnr=args.min_sqnr,
                      area_checks=args.area_check)
    except ExploreError as e:
        raise UsageError(str(e)) from None
    from defa_hw.explore.report import pareto_table
    print("\n".join(pareto_table(rep)))
    print(f"{len(rep['points'])} points evaluated, {len(rep['skipped'])} skipped; wrote "
          f"{args.out}/explore.json, explore.md, latency_area.png, energy_area.png")
    return 0


def _build_parser():
    p = _Parser(prog="defa-hw", description="DEFA MSDeformAttn accelerator: RTL generator, "
                "bit-exact INT12 golden model and reports.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    g = sub.add_parser("golden", help="run the bit-exact INT12 golden model on an input npz")
    g.add_argument("--inputs", required=True, metavar="IN.npz",
                   help="float32 arrays named as PyTorch's MSDeformAttn (see README)")
    g.add_argument("--out", required=True, metavar="OUT.npz")
    _add_config_args(g)
    g.add_argument("--no-prune", action="store_true", help="turn PAP and FWP off")
    _add_quant_arg(g)
    g.set_defaults(func=_cmd_golden)

    ca = sub.add_parser("calibrate", help="fix static activation scales over a calibration set",
                        description="Max-abs of each activation (query, input_flatten, value, "
                        "logits, sampled, output) over all inputs, as power-of-two scales "
                        "(docs/numerics.md). The inputs must share one block's weights.")
    ca.add_argument("--inputs", required=True, nargs="+", metavar="IN.npz")
    ca.add_argument("--out", required=True, metavar="QUANT.json")
    _add_config_args(ca)
    ca.set_defaults(func=_cmd_calibrate)

    mk = sub.add_parser("make-inputs", help="write a random workload npz (input contract)")
    _add_config_args(mk)
    mk.add_argument("--out", required=True, metavar="IN.npz")
    mk.add_argument("--queries", default="64", metavar="N|all",
                    help="number of queries, drawn at random among the tokens (default 64); "
                    "'all': every token is a query, in input_flatten order (an encoder)")
    mk.add_argument("--shapes", metavar="HxW,...", help="spatial shapes per level "
                    "(default: the config's max_shapes)")
    mk.add_argument("--seed", type=int, default=0)
    mk.set_defaults(func=_cmd_make_inputs)

    c = sub.add_parser("config", help="validate a config and print it as JSON")
    _add_config_args(c)
    c.add_argument("--derived", action="store_true",
                   help="also print derived widths and buffer sizes")
    c.set_defaults(func=_cmd_config)

    gen = sub.add_parser("generate", help="write Verilog for a block")
    _add_config_args(gen)
    gen.add_argument("--block", metavar="NAME", help="one block (see --list-blocks); "
                     "default: the top level defa_core")
    gen.add_argument("--list-blocks", action="store_true", help="name the blocks and exit")
    gen.add_argument("--out", metavar="DIR")
    gen.set_defaults(func=_cmd_generate)

    si = sub.add_parser("simulate", help="run one block through the defa_core RTL (cocotb) "
                        "and check it bit for bit against golden",
                        description="Same inputs and quantisation as 'golden'. Writes the "
                        "golden arrays plus cycle counters (cycles, ideal_cycles, per phase, "
                        "utilization, bank_conflicts); exit status 1 if any output bit "
                        "differs from golden, 3 if the simulation fails or the core is stuck "
                        "(one line naming its phase). Any feature map up to the config's "
                        "max_shapes; the value windows load rows as the queries need them.")
    si.add_argument("--inputs", required=True, metavar="IN.npz")
    si.add_argument("--out", required=True, metavar="OUT.npz")
    _add_config_args(si)
    si.add_argument("--sim", choices=("icarus", "verilator"), default="icarus",
                    help="simulator (default: icarus)")
    si.add_argument("--no-prune", action="store_true", help="turn PAP and FWP off")
    si.add_argument("--query-order", choices=("locality", "given"), default="locality",
                    help="order the core runs the queries in (outputs are restored to the "
                    "input order): locality = by reference row, each window sweeps its "
                    "level once (default); given = the input's order")
    _add_quant_arg(si)
    si.add_argument("--build-dir", metavar="DIR",
                    help="build folder root (default: build/simulate in the repository)")
    si.add_argument("--max-cycles", type=int, metavar="N",
                    help="cycle limit of the block (default: twice the performance model's "
                    "cycles plus 1000); past it the core counts as stuck")
    si.set_defaults(func=_cmd_simulate)

    sy = sub.add_parser("synth", help="area, transistor, standard-cell and FPGA (ECP5) "
                        "reports per block",
                        description="Synthesise every registered block (and defa_core, the top, "
                        "when registered): generic-library area in NAND2 equivalents, "
                        "transistor estimate, SRAM bits, ECP5 LUT/FF/BRAM/DSP/Fmax, and "
                        "OSU 0.18 um standard-cell area, critical path, Fmax and power "
                        "(OpenSTA). See docs/synthesis.md.")
    _add_config_args(sy)
    sy.add_argument("--target", choices=("generic", "ecp5", "asic", "all"), default="all",
                    help="which flow(s) to run; asic: OSU 0.18 um cells + OpenSTA, needs the "
                    "Debian packages opensta and qflow-tech-osu018 (default: all)")
    sy.add_argument("--out", required=True, metavar="DIR",
                    help="folder for report.json, report.md, plots and tool logs")
    sy.add_argument("--blocks", metavar="A,B", help="only these blocks (default: all registered)")
    sy.add_argument("--sweep", action="store_true",
                    help="also sweep area over PE-array size and level/bank count")
    sy.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), metavar="N",
                    help="tool runs in parallel (default: 2)")
    sy.add_argument("--no-top", action="store_true",
                    help="leave out defa_core (the top), the slowest part of the generic run")
    sy.add_argument("--fpga-top", action="store_true",
                    help="also place and route defa_core on the ECP5 (slow: tens of minutes)")
    sy.add_argument("--timeout", type=int, default=1800, metavar="S",
                    help="limit per Yosys/nextpnr run in seconds (default: 1800)")
    sy.add_argument("--freq", type=float, default=100.0, metavar="MHZ",
                    help="ECP5 clock target for nextpnr (default: 100)")
    sy.add_argument("--check-baseline", action="store_true",
                    help="compare with synth/baseline_<preset>.json; exit 1 on area +/-5%% or "
                    "Fmax -10%%")
    sy.add_argument("--update-baseline", action="store_true",
                    help="write synth/baseline_<preset>.json from this run")
    sy.set_defaults(func=_cmd_synth)

    en = sub.add_parser("energy", help="energy per 800x1333 encoder layer by component, GOPS, "
                        "GOPS/W, GPU comparison (180 nm and a 40 nm estimate)",
                        description="Operation counts of the performance model x per-operation "
                        "energies from the asic flow's OpenSTA power (synth/baseline_<preset>"
                        ".json, or --synth-report), the SRAM macro model and 1.2 pJ/bit "
                        "external traffic. See docs/synthesis.md, 'Energy per layer'.")
    _add_config_args(en)
    en.add_argument("--pruning", choices=("none", "defa", "both"), default="both",
                    help="none, defa (84%% of points, 43%% of pixels pruned) or both "
                    "(default)")
    en.add_argument("--json", action="store_true", help="print JSON instead of tables")
    en.add_argument("--out", metavar="DIR", help="also write energy.json, energy.md and "
                    "energy.png (stacked bars) there")
    en.add_argument("--synth-report", metavar="REPORT.json", help="asic figures from this "
                    "report.json of 'defa-hw synth --target asic' (default: the committed "
                    "baseline of the preset)")
    en.set_defaults(func=_cmd_energy)

    pf = sub.add_parser("perf", help="projected latency of one encoder layer (performance "
                        "model)", description="Cycles per phase, ideal cycles and latency of "
                        "one encoder layer (every token a query) from the performance model, "
                        "which equals the RTL on the full 800x1333 layer (make bench-layer).")
    _add_config_args(pf)
    pf.add_argument("--shapes", default="encoder-800x1333", metavar="NAME|HxW,...",
                    help="spatial shapes per level, or a name: "
                    + ", ".join(NAMED_SHAPES) + " (default; Deformable DETR, DN-DETR and "
                    "DINO share it)")
    pf.add_argument("--pruning", choices=("none", "defa", "golden"), default="defa",
                    help="none; defa = DEFA's reported 84%% of points and 43%% of pixels "
                    "(default); golden = the golden model's pruning on a random workload")
    pf.add_argument("--order", choices=("locality", "given"), default="locality",
                    help="query order (default locality: by reference row)")
    pf.add_argument("--clock-mhz", type=float, default=400.0, help="clock (default 400)")
    pf.add_argument("--json", action="store_true", help="one JSON line")
    pf.set_defaults(func=_cmd_perf)

    from defa_hw.explore.grid import GRIDS
    ex = sub.add_parser("explore", help="design-space sweep: latency (performance model), "
                        "area (synthesised leaf blocks + SRAM model), energy, SQNR; Pareto "
                        "front", description="Sweeps PE array, max_queries, offset bound and "
                        "banks around the base config as dask.distributed jobs; writes "
                        "explore.json, explore.md and two plots. See docs/explore.md.")
    _add_config_args(ex)
    ex.add_argument("--points", choices=sorted(GRIDS), default="small",
                    help="named sweep grid (default: small)")
    ex.add_argument("--pruning", choices=("none", "defa", "golden"), default="defa",
                    help="pruning of the performance model (default: defa); energy is n/a "
                    "for golden")
    ex.add_argument("--shapes", metavar="NAME|HxW,...", help="spatial shapes of the layer: "
                    + ", ".join(NAMED_SHAPES) + " or HxW per level (default: the config's "
                    "max_shapes)")
    ex.add_argument("--clock-mhz", type=float, default=400.0, help="clock (default 400)")
    ex.add_argument("--target", choices=("generic", "asic"), default="generic",
                    help="synthesis flow of the leaf blocks (default: generic)")
    ex.add_argument("--scheduler", metavar="ADDRESS", help="run on this dask scheduler "
                    "(default: a LocalCluster of --workers processes)")
    ex.add_argument("--workers", type=int, default=2, metavar="N",
                    help="LocalCluster worker processes (default: 2)")
    ex.add_argument("--min-sqnr", type=float, metavar="DB", help="only points with at least "
                    "this SQNR (the offset bound's accuracy cost) compete for the Pareto front "
                    "(default: all)")
    ex.add_argument("--area-check", action="append", default=[], metavar="REPORT.json",
                    help="also check the area composition against the defa_core of this "
                    "'defa-hw synth' report (e.g. out/synth/defa/report.json of make); "
                    "the committed baselines always are")
    ex.add_argument("--out", default="out/explore", metavar="DIR",
                    help="output folder (default: out/explore; synthesis cache in DIR/cache)")
    ex.set_defaults(func=_cmd_explore)
    return p


def main(argv=None):
    from defa_hw.model.workload import InputError
    args = _build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, InputError, UsageError) as e:
        print(f"defa-hw {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        os._exit(1)


if __name__ == "__main__":
    sys.exit(main())

"""The synthesis flow of ``defa-hw synth`` (area, transistor, standard-cell and FPGA figures
per block), shipped with the files it reads: ``generic.lib`` (the area library) and
``baseline_<preset>.json`` (the regression baselines).  See ``docs/synthesis.md``.

Layout, in the order a run goes through it:

========================  =================================================================
``command.py``            ``defa-hw synth``: options, run, reports, baseline check/update
``runs.py``               :func:`synthesize`: elaborate blocks in worker processes, run the
                          planned tool runs largest first, collect the report dict
``plan.py``               which tool runs a design needs (generic, asic): flat, or composed
                          from its parts (the top, arrays); identical hardware runs once;
                          the area sweep
``rtlil.py``              Amaranth -> RTLIL, the FPGA register wrapper, splitting a design
                          into parts, keys that recognise the same hardware under other names
``generic.py``            the generic (ASIC-style) flow: Yosys + ABC area in ``generic.lib``,
                          transistor estimate, SRAM bits and the SRAM area model
``ecp5.py``               the ECP5 flow: ``synth_ecp5`` + nextpnr-ecp5 (LUT/FF/BRAM/DSP/Fmax)
``asic.py``               the ASIC flow: OSU 0.18 um cells (Yosys + ABC), OpenSTA paths, Fmax
                          and power, the SRAM macro model (Debian opensta, qflow-tech-osu018)
``report.py``             ``report.json``, ``report.md`` and the PNG plots
``baseline.py``           ``baseline_<preset>.json``: what it keeps and the regression check
``tools.py``              the package folder, the two errors, running the YoWASP tools
``main_job.py``           ``make``'s main job (three ``defa-hw`` runs in parallel); a script
========================  =================================================================

The names below are the package's interface (``import synth``).
"""

from synth.tools import SYNTH_DIR, SynthInputError, ToolError
from synth.rtlil import FpgaWrapper, compose_parts, structure_signature, to_rtlil
from synth.generic import LIBERTY, SRAM_MODEL, liberty_cells, parse_memories, run_generic
from synth.ecp5 import run_ecp5
from synth.asic import ASIC_LIBERTY, ASIC_SRAM_MODEL, asic_tools, run_asic
from synth.runs import TARGETS, TOP_BLOCK, registered_blocks, synthesize
from synth.report import write_reports
from synth.baseline import baseline_from_report, baseline_path, compare_to_baseline
from synth.command import main

__all__ = [
    "SynthInputError", "ToolError", "SYNTH_DIR", "LIBERTY", "SRAM_MODEL",
    "TOP_BLOCK", "TARGETS", "registered_blocks", "run_generic", "run_ecp5",
    "FpgaWrapper", "synthesize", "write_reports", "compare_to_baseline",
    "baseline_from_report", "baseline_path", "main", "to_rtlil", "compose_parts",
    "structure_signature", "parse_memories", "liberty_cells", "ASIC_LIBERTY",
    "ASIC_SRAM_MODEL", "asic_tools", "run_asic",
]

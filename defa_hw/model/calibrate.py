"""``defa-hw calibrate`` and ``quant.json``: static activation scales for ``golden`` /
``simulate --quant``, plus the summary fields both commands add (SQNR against a
captured ``torch_output``, saturated values).

The numeric rule is :mod:`golden.calibration` (``docs/numerics.md``).
"""

import json
from pathlib import Path

from defa_hw.model.workload import InputError

__all__ = ["load_quant", "write_quant", "summary_fields", "main"]


def load_quant(path):
    """Read a ``quant.json``; every problem is one :class:`InputError` line naming the field."""
    from golden.calibration import CalibrationError, StaticScales
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(f"quant file {path}: cannot read it ({e.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"quant file {path} is not valid JSON (line {e.lineno}: {e.msg})") from None
    try:
        return StaticScales.from_dict(data)
    except CalibrationError as e:
        raise InputError(f"quant file {path}: {e}") from None


def write_quant(path, scales):
    """Write ``scales`` (a :class:`golden.calibration.StaticScales`) as JSON."""
    Path(path).write_text(json.dumps(scales.to_dict(), indent=2) + "\n", encoding="utf-8")


def summary_fields(inputs, output, res):
    """JSON summary fields: values saturated per tensor and in total, and the SQNR of the
    dequantised ``output`` against ``inputs["torch_output"]`` when the input has one."""
    from golden.model import sqnr_db
    sat = {k: int(v) for k, v in res["saturated"].items()}
    fields = {"saturated": sat, "values_saturated": sum(sat.values())}
    if "torch_output" in inputs:
        fields["sqnr_vs_torch_db"] = round(sqnr_db(inputs["torch_output"], output), 2)
    return fields


def main(cfg, args):
    """``defa-hw calibrate``: max-abs over the ``--inputs`` set, written to ``--out``."""
    from golden.calibration import calibrate
    from defa_hw.model.workload import load_workload

    out = Path(args.out)
    if not out.parent.exists():
        raise InputError(f"output folder {out.parent} does not exist")
    workloads = [load_workload(p, cfg) for p in args.inputs]
    weights = workloads[0][0]
    for path, (params, _) in zip(args.inputs[1:], workloads[1:]):
        differ = [k for k in weights if not (params[k] == weights[k]).all()]
        if differ:
            raise InputError(f"input file {path} has other weights than {args.inputs[0]} "
                             f"(first: {differ[0]!r}); a calibration set is one block's inputs")
    scales = calibrate(cfg, workloads)
    write_quant(out, scales)
    print(json.dumps({"config": cfg.name, "inputs": scales.n_inputs,
                      "frac_bits": scales.frac_bits, "out": str(out)}))
    return 0

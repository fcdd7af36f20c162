"""Register block of ``defa_core``, decoded from the one register table.

Every address, field, legal range and reset value comes from
:data:`defa_hw.host.registers.REGISTERS`; nothing about a register is written here.
"""

from amaranth import C, Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from defa_hw.host.registers import (REG_ADDR_BITS, REG_BITS, ErrorCause, field_range,
                                    field_reset, registers_for)

__all__ = ["RegisterBlock"]

#: Registers whose read-only fields the block makes itself (not core inputs).
_OWN = ("CTRL", "ERROR", "CONFIG0", "CONFIG1")


def _port(reg, f):
    """Port name of a field: the register's name when it has one such field."""
    same = [g for g in reg.fields if g.access == f.access]
    if reg.name == "CTRL":
        return f.name
    return reg.name.lower() if len(same) == 1 else f"{reg.name.lower()}_{f.name}"


class RegisterBlock(wiring.Component):
    """The core's registers: write decode with range checks, read multiplexer, ERROR.

    A write that the core cannot take changes nothing and sets the sticky ERROR
    (:class:`~defa_hw.host.registers.ErrorCause`, first cause wins): a field outside its
    legal range or bits outside every field (RANGE), a read-only or unmapped address
    (READ_ONLY), a configuration write or START while busy (BUSY), START with NQ = 0
    (NO_QUERIES).  START is refused while ERROR is set; CTRL.CLEAR_ERROR clears it.

    Parameters
    ----------
    cfg : DefaConfig
    max_queries : int, keyword-only
        The core's queries per pass (read back in CONFIG1).

    Attributes
    ----------
    csr_addr, csr_wdata, csr_we : In
        Register write port (word address).
    csr_rdata : Out(32)
        The register at ``csr_addr``, one cycle later.
    start : Out(1)
        An accepted START (one cycle).
    <register> / <register>_<field> : Out
        Every configuration field (e.g. ``nq``, ``shift_value``, ``shape0_h``), as wide
        as its largest legal value; ``<register>_we`` pulses on an accepted write.
    busy, done, ready, <counter>, phase : In
        Status the core drives (CTRL bits, counters, PHASE).
    error : Out(1)
        ERROR is set.
    """

    def __init__(self, cfg, *, max_queries):
        self.cfg, self.max_queries = cfg, max_queries
        self.registers = registers_for(cfg)
        members = {"csr_addr": In(REG_ADDR_BITS), "csr_wdata": In(REG_BITS), "csr_we": In(1),
                   "csr_rdata": Out(REG_BITS), "start": Out(1), "error": Out(1)}
        for reg in self.registers:
            for f in reg.fields:
                if f.access == "rw":
                    lo, hi = field_range(f, cfg, max_queries)
                    members[_port(reg, f)] = Out(bits_for(hi),
                                                 init=field_reset(f, cfg, max_queries))
                elif f.access == "r" and (reg.name not in _OWN or
                                          (reg.name == "CTRL" and f.name != "error")):
                    members[_port(reg, f)] = In(f.width)
            if reg.config:
                members[f"{reg.name.lower()}_we"] = Out(1)
        super().__init__(members)

    def elaborate(self, platform):
        cfg, mq = self.cfg, self.max_queries
        m = Module()
        wdata = self.csr_wdata
        cause = Signal(4)
        err_addr = Signal(REG_ADDR_BITS)
        refuse = Signal(ErrorCause)                  # this write's cause (NONE: accepted)

        ctrl = next(r for r in self.registers if r.name == "CTRL")
        strobe = {f.name: f for f in ctrl.fields if f.access == "w"}
        with m.If(self.csr_we):
            with m.Switch(self.csr_addr):
                with m.Case(ctrl.addr):
                    stray = wdata & ~C(sum(1 << f.lsb for f in strobe.values()), REG_BITS)
                    go = wdata[strobe["start"].lsb]
                    with m.If(stray.any()):
                        m.d.comb += refuse.eq(ErrorCause.RANGE)
                    with m.Elif(go & self.busy):
                        m.d.comb += refuse.eq(ErrorCause.BUSY)
                    with m.Elif(go & (self.nq == 0)):
                        m.d.comb += refuse.eq(ErrorCause.NO_QUERIES)
                    m.d.comb += self.start.eq(go & ~self.busy & ~self.error & (self.nq != 0) &
                                              ~stray.any())
                    with m.If(wdata[strobe["clear_error"].lsb] & ~stray.any()):
                        m.d.sync += [self.error.eq(0), cause.eq(0), err_addr.eq(0)]
                for reg in self.registers:
                    if not reg.config:
                        continue
                    with m.Case(reg.addr):
                        ok = self._write(m, reg, wdata)
                        with m.If(self.busy):
                            m.d.comb += refuse.eq(ErrorCause.BUSY)
                        with m.Elif(~ok):
                            m.d.comb += refuse.eq(ErrorCause.RANGE)
                        with m.Else():
                            m.d.comb += getattr(self, f"{reg.name.lower()}_we").eq(1)
                with m.Default():
                    m.d.comb += refuse.eq(ErrorCause.READ_ONLY)
        # First cause wins; the clear above is ordered before this, so a refused write in
        # the cycle ERROR is cleared is still recorded.
        with m.If((refuse != ErrorCause.NONE) & ~self.error):
            m.d.sync += [self.error.eq(1), cause.eq(refuse), err_addr.eq(self.csr_addr)]

        rd = Signal(REG_BITS)
        own = {"error": self.error, "cause": cause, "addr": err_addr}
        with m.Switch(self.csr_addr):
            for reg in self.registers:
                with m.Case(reg.addr):
                    word = C(0, REG_BITS)
                    for f in reg.fields:
                        if f.access == "w":
                            continue
                        if reg.name in ("CONFIG0", "CONFIG1"):
                            val = C(field_reset(f, cfg, mq), f.width)
                        elif f.name in own and reg.name in ("CTRL", "ERROR"):
                            val = own[f.name]
                        else:
                            val = getattr(self, _port(reg, f))
                        word = word | (val.as_unsigned() << f.lsb)
                    m.d.comb += rd.eq(word)
        m.d.sync += self.csr_rdata.eq(rd)
        return m

    def _write(self, m, reg, wdata):
        """Write ``reg``'s fields when every one is legal; returns the legality."""
        ok = C(1, 1)
        known = 0
        for f in reg.fields:
            lo, hi = field_range(f, self.cfg, self.max_queries)
            v = wdata[f.lsb:f.lsb + f.width]
            # Only the bounds the field's width does not already enforce (lint-clean).
            if lo > 0:
                ok = ok & (v >= lo)
            if hi < (1 << f.width) - 1:
                ok = ok & (v <= hi)
            known |= ((1 << f.width) - 1) << f.lsb
        ok = ok & ~(wdata & ~C(known, REG_BITS)).any()
        with m.If(ok & ~self.busy):
            for f in reg.fields:
                port = getattr(self, _port(reg, f))
                m.d.sync += port.eq(wdata[f.lsb:f.lsb + f.width])
        return ok

"""The register table and the RTL register block decoded from it.

Expected values come from the config and the issue's defect list (e.g. SHAPE0 with
H = 20 on tiny, NQ = 70000, SHIFT = 69), never from the RTL.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from amaranth.back import rtlil
from amaranth.sim import Simulator

from defa_hw.config import LIMITS, DefaConfig, preset
from defa_hw.host.registers import (CTRL, MAX_QUERIES_LIMIT, REGISTERS, ErrorCause, Reg,
                                    RegisterError, c_header, decode, encode, markdown_table,
                                    registers_for)
from defa_hw.rtl.core.registers import RegisterBlock

REPO = Path(__file__).resolve().parent.parent


# ---- the table ----------------------------------------------------------------------

def test_addresses_unique_and_fields_disjoint():
    addrs = [r.addr for r in REGISTERS]
    assert len(addrs) == len(set(addrs))
    for r in REGISTERS:
        for access in ("r", "w", "rw"):
            used = 0
            for f in r.fields:
                if f.access == access or (access == "r" and f.access == "rw"):
                    m = ((1 << f.width) - 1) << f.lsb
                    assert not used & m, f"{r.name}.{f.name} overlaps"
                    assert f.lsb + f.width <= 32
                    used |= m


def _readback(reg_name, word):
    return decode(reg_name, word)


@pytest.mark.parametrize("name", ["CONFIG0", "CONFIG1"])
def test_config_readback_holds_every_legal_value(name):
    # The largest legal value of every structural field (d_model 4096 needed 13 bits; the
    # old CONFIG0 packed it into 12, so 4096 read back as 0 and overlapped n_heads).
    reg = next(r for r in REGISTERS if r.name == name)
    limits = dict(LIMITS, max_queries=(1, MAX_QUERIES_LIMIT))
    for pick in (0, 1):
        word = 0
        want = {}
        for f in reg.fields:
            v = limits[f.name][pick]
            want[f.name] = v
            word |= v << f.lsb
        assert _readback(name, word) == want


def test_encode_refuses_out_of_range_with_one_line():
    cfg = preset("tiny")
    with pytest.raises(RegisterError, match=r"SHAPE0\.h = 20 is outside its legal range 1\.\.12"):
        encode(cfg, "SHAPE0", h=20, w=1)
    with pytest.raises(RegisterError, match="NQ.nq = 0"):
        encode(cfg, "NQ", nq=0)
    with pytest.raises(RegisterError, match="SHIFT_VALUE.shift = 69"):
        encode(cfg, "SHIFT_VALUE", shift=69)
    assert encode(cfg, "SHAPE1", h=3, w=5) == 3 | 5 << 16


def test_docs_register_table_is_generated():
    text = (REPO / "docs" / "architecture.md").read_text()
    m = re.search(r"<!-- register-table:begin -->\n(.*?)<!-- register-table:end -->", text, re.S)
    assert m, "docs/architecture.md lacks the register-table markers"
    assert m.group(1) == markdown_table(), (
        "docs/architecture.md's register table differs from the table in "
        "defa_hw/host/registers.py: paste `python -m defa_hw.host.registers` between the markers")


@pytest.mark.skipif(not shutil.which("gcc"), reason="no C compiler")
def test_c_header_compiles_and_states_the_config(tmp_path):
    cfg = preset("tiny")
    (tmp_path / "defa_core_regs.h").write_text(c_header(cfg, max_queries=64))
    (tmp_path / "t.c").write_text(
        '#include <stdio.h>\n#include "defa_core_regs.h"\n'
        "int main(void) { printf(\"%u %u %u %u %u\\n\", DEFA_REG_SHAPE1, DEFA_SHAPE1_H_MAX, "
        "DEFA_SHAPE1_W_MAX, DEFA_NQ_NQ_MAX, DEFA_ERROR_CAUSE_RANGE); return 0; }\n")
    subprocess.run(["gcc", "-Wall", "-Werror", "-o", "t", "t.c"], cwd=tmp_path, check=True)
    out = subprocess.run([str(tmp_path / "t")], capture_output=True, text=True, check=True)
    h, w = cfg.max_shapes[1]
    assert out.stdout.split() == [str(0x11), str(h), str(w), "65535", "1"]


# ---- the RTL block ------------------------------------------------------------------

class _Bus:
    def __init__(self, ctx, dut):
        self.ctx, self.dut = ctx, dut

    async def write(self, addr, value):
        c, d = self.ctx, self.dut
        c.set(d.csr_addr, int(addr))
        c.set(d.csr_wdata, value)
        c.set(d.csr_we, 1)
        started = c.get(d.start) if isinstance(d, RegisterBlock) else None
        await c.tick()
        c.set(d.csr_we, 0)
        return started

    async def read(self, addr):
        self.ctx.set(self.dut.csr_addr, int(addr))
        await self.ctx.tick()
        return self.ctx.get(self.dut.csr_rdata)

    async def error(self):
        return (await self.read(Reg.CTRL)) & CTRL.ERROR, _readback("ERROR", await self.read(Reg.ERROR))


def _run(cfg, body, max_queries=64):
    dut = RegisterBlock(cfg, max_queries=max_queries)
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def tb(ctx):
        await body(_Bus(ctx, dut), ctx, dut)

    sim.add_testbench(tb)
    sim.run()


def test_reset_values_and_legal_writes_read_back():
    cfg = preset("tiny")

    async def body(bus, ctx, dut):
        for l, (h, w) in enumerate(cfg.max_shapes):
            assert await bus.read(Reg.SHAPE0 + l) == h | w << 16
        assert await bus.read(Reg.PAP_THRESHOLD) == cfg.pap_threshold_code
        assert await bus.read(Reg.FWP_THRESHOLD) == cfg.fwp_threshold
        assert await bus.read(Reg.FLAGS) == 1
        assert await bus.read(Reg.NQ) == 0
        for addr, v in ((Reg.NQ, 65535), (Reg.SHIFT_AGG, 63), (Reg.LOGIT_FRAC, 32),
                        (Reg.SHAPE0, 1 | 1 << 16), (Reg.PAP_THRESHOLD, 1 << cfg.prob_bits)):
            await bus.write(addr, v)
            assert await bus.read(addr) == v
        assert await bus.error() == (0, {"cause": 0, "addr": 0})
        c0 = _readback("CONFIG0", await bus.read(Reg.CONFIG0))
        assert c0 == {"d_model": cfg.d_model, "n_heads": cfg.n_heads,
                      "n_levels": cfg.n_levels, "n_points": cfg.n_points}
        c1 = _readback("CONFIG1", await bus.read(Reg.CONFIG1))
        assert c1 == {"pe_rows": cfg.pe_rows, "pe_cols": cfg.pe_cols, "max_queries": 64}

    _run(cfg, body)


@pytest.mark.parametrize("addr, value, cause", [
    (Reg.SHAPE0, 20 | 5 << 16, ErrorCause.RANGE),       # H = 20 > max 12 (read back 4 before)
    (Reg.SHAPE0, 0 | 5 << 16, ErrorCause.RANGE),        # H = 0
    (Reg.NQ, 70000, ErrorCause.RANGE),                  # read back 4464 before
    (Reg.NQ, 0, ErrorCause.RANGE),
    (Reg.SHIFT_VALUE, 69, ErrorCause.RANGE),            # read back 5 before
    (Reg.LOGIT_FRAC, 33, ErrorCause.RANGE),
    (Reg.FLAGS, 2, ErrorCause.RANGE),                   # a bit outside every field
    (Reg.CYCLES, 1, ErrorCause.READ_ONLY),
    (0x3A, 1, ErrorCause.READ_ONLY),                    # unmapped
])
def test_refused_write_changes_nothing_sets_error_and_blocks_start(addr, value, cause):
    cfg = preset("tiny")

    async def body(bus, ctx, dut):
        before = await bus.read(addr)
        await bus.write(Reg.NQ, 3)
        await bus.write(addr, value)
        assert await bus.read(addr) == (before if addr != Reg.NQ else 3)
        assert await bus.error() == (CTRL.ERROR, {"cause": cause, "addr": addr})
        assert not await bus.write(Reg.CTRL, CTRL.START), "START accepted with ERROR set"
        await bus.write(Reg.SHIFT_OUT, 99)                 # a second error keeps the first
        assert (await bus.error())[1] == {"cause": cause, "addr": addr}
        await bus.write(Reg.CTRL, CTRL.CLEAR_ERROR)
        assert await bus.error() == (0, {"cause": 0, "addr": 0})
        assert await bus.write(Reg.CTRL, CTRL.START), "START refused after CLEAR_ERROR"

    _run(cfg, body)


def test_start_with_no_queries_is_refused():
    async def body(bus, ctx, dut):
        assert not await bus.write(Reg.CTRL, CTRL.START)       # NQ = 0 after reset
        assert await bus.error() == (CTRL.ERROR, {"cause": ErrorCause.NO_QUERIES,
                                                  "addr": Reg.CTRL})

    _run(preset("tiny"), body)


def test_writes_while_busy_are_refused():
    async def body(bus, ctx, dut):
        await bus.write(Reg.NQ, 5)
        ctx.set(dut.busy, 1)
        await bus.write(Reg.NQ, 6)
        assert await bus.read(Reg.NQ) == 5
        assert (await bus.error())[1] == {"cause": ErrorCause.BUSY, "addr": Reg.NQ}

    _run(preset("tiny"), body)


def test_every_preset_builds_and_has_its_levels():
    for name in ("tiny", "defa"):
        cfg = preset(name)
        names = {r.name for r in registers_for(cfg)}
        assert {f"SHAPE{l}" for l in range(cfg.n_levels)} <= names
        assert f"SHAPE{cfg.n_levels}" not in names
        rtlil.convert(RegisterBlock(cfg, max_queries=64))


def test_largest_config_reads_back_exactly():
    big = DefaConfig(d_model=4096, n_heads=4, n_levels=1, max_shapes=((4, 4),),
                     offset_bound=(1,), n_banks=4, pe_rows=64, pe_cols=64)

    async def body(bus, ctx, dut):
        assert _readback("CONFIG0", await bus.read(Reg.CONFIG0)) == {
            "d_model": 4096, "n_heads": 4, "n_levels": 1, "n_points": big.n_points}
        assert _readback("CONFIG1", await bus.read(Reg.CONFIG1)) == {
            "pe_rows": 64, "pe_cols": 64, "max_queries": MAX_QUERIES_LIMIT}

    _run(big, body, max_queries=MAX_QUERIES_LIMIT)


# ---- the whole core (the defects of issue #10, driven through defa_core's own port) ----

def test_core_refuses_what_it_cannot_do():
    from defa_hw.rtl.core import DefaCore, Phase
    cfg = preset("tiny")
    dut = DefaCore(cfg, max_queries=4)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    h0, w0 = cfg.max_shapes[0]

    async def tb(ctx):
        bus = _Bus(ctx, dut)
        # NQ = 0 (its reset value): START is refused instead of leaving the core busy.
        await bus.write(Reg.CTRL, CTRL.START)
        for _ in range(4):
            await ctx.tick()
            assert not ctx.get(dut.busy)
        assert decode("PHASE", await bus.read(Reg.PHASE))["phase"] == Phase.IDLE.value
        assert (await bus.error())[1] == {"cause": ErrorCause.NO_QUERIES, "addr": Reg.CTRL}
        await bus.write(Reg.CTRL, CTRL.CLEAR_ERROR)
        # Out-of-range writes change nothing (they were truncated: 4, 4464, 5).
        for addr, value, kept in ((Reg.SHAPE0, 20 | 5 << 16, h0 | w0 << 16),
                                  (Reg.NQ, 70000, 0), (Reg.SHIFT_VALUE, 69, 0)):
            await bus.write(addr, value)
            assert await bus.read(addr) == kept
            assert (await bus.error())[1] == {"cause": ErrorCause.RANGE, "addr": addr}
            await bus.write(Reg.CTRL, CTRL.CLEAR_ERROR)
        assert decode("CONFIG0", await bus.read(Reg.CONFIG0))["d_model"] == cfg.d_model

    sim.add_testbench(tb)
    sim.run()

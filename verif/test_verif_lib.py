"""The verification library itself (``verif/lib``) on a stream FIFO.

A FIFO passes beats through unchanged, so the sink must collect exactly what the
source sent, in order, under random stalls on both sides; the source must keep a
stalled beat valid and stable (AXI-Stream rule); and every wait must end at its
cycle limit with one line instead of hanging.
"""

import hashlib
import itertools

import cocotb
import pytest
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from cocotb.triggers import RisingEdge
from cocotb.utils import get_sim_time

from verif.lib.clock import PERIOD_NS, Stuck, clock_and_reset, wait_until
from verif.lib.runner import run_cocotb
from verif.lib.stream import StreamSink, StreamSource, random_pause, run_agents

WIDTH, DEPTH = 8, 4


class StreamFifo(wiring.Component):
    """``inp`` -> a ``DEPTH``-beat FIFO -> ``out`` (``WIDTH``-bit payloads)."""

    def __init__(self):
        super().__init__({"inp": In(stream.Signature(WIDTH)),
                          "out": Out(stream.Signature(WIDTH))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=WIDTH, depth=DEPTH)
        m.d.comb += [fifo.w_data.eq(self.inp.payload), fifo.w_en.eq(self.inp.valid),
                     self.inp.ready.eq(fifo.w_rdy),
                     self.out.payload.eq(fifo.r_data), self.out.valid.eq(fifo.r_rdy),
                     fifo.r_en.eq(self.out.ready)]
        return m


async def _start(dut):
    dut.inp__payload.value = 0
    await clock_and_reset(dut, low=("inp__valid", "out__ready"))


@cocotb.test()
async def lib_random_stalls(dut):
    """Random valid and ready stalls: every beat arrives once, in order; a beat the FIFO
    does not take stays valid with the same payload."""
    await _start(dut)
    beats = [(i * 37 + 11) % (1 << WIDTH) for i in range(300)]
    src = StreamSource(dut, "inp", pause=random_pause(0.4, seed=1))
    src.send(beats)
    sink = StreamSink(dut, "out", pause=random_pause(0.6, seed=2))
    held = []                              # payload of a beat left waiting last cycle

    def check_hold():
        valid, ready = dut.inp__valid.value == 1, dut.inp__ready.value == 1
        payload = dut.inp__payload.value.to_unsigned()
        if held:
            assert valid and payload == held[0], "a waiting beat was dropped or changed"
        held[:] = [payload] if valid and not ready else []

    await run_agents(dut.clk, [src, sink], until=lambda: sink.count == len(beats),
                     limit=20 * len(beats), what="fifo", each_cycle=check_hold)
    assert sink.beats == beats
    assert src.stalled > 0, "the FIFO never pushed back: the hold rule went unchecked"


@cocotb.test()
async def lib_waits_are_bounded(dut):
    """A sink that never takes a beat: the source's wait fails at its limit with one
    line, after exactly that many cycles; so does wait_until on a condition that never
    holds."""
    await _start(dut)
    src = StreamSource(dut, "inp")
    src.send(range(DEPTH + 3))
    sink = StreamSink(dut, "out", pause=itertools.repeat(True))
    t0 = get_sim_time("ns")
    try:
        await run_agents(dut.clk, [src, sink], until=lambda: src.done, limit=50,
                         what="inp")
    except Stuck as e:
        assert str(e) == "inp: not done in 50 cycles", str(e)
    else:
        raise AssertionError("a source whose beats cannot all be taken finished")
    assert (get_sim_time("ns") - t0) // PERIOD_NS in (50, 51)
    assert src.sent == DEPTH, f"the FIFO took {src.sent} beats, holds {DEPTH}"
    await RisingEdge(dut.clk)
    try:
        await wait_until(dut.clk, lambda: dut.out__valid.value == 0, limit=5,
                         what="FIFO empty")
    except Stuck as e:
        assert str(e) == "FIFO empty: not reached in 5 cycles", str(e)
    else:
        raise AssertionError("a full FIFO without ready emptied")


def test_verif_lib():
    run_cocotb(component=StreamFifo(), toplevel="stream_fifo", test_module="test_verif_lib",
               build_name="stream_fifo")


def test_build_cache(tmp_path):
    """An unchanged design is not rebuilt (the defa core build takes minutes); a changed
    one is, and the runner's tests run on the cached build."""
    from defa_hw.flow.generate import to_verilog
    from verif.lib.runner import build, run_tests, simulator
    sim = simulator()
    text = to_verilog(StreamFifo(), name="stream_fifo")
    kw = dict(toplevel="stream_fifo", build_dir=tmp_path, sim=sim)
    assert build(verilog=text, **kw) is True
    binary = next(p for p in tmp_path.iterdir() if p.name in ("sim.vvp", "stream_fifo"))
    stamp = binary.stat().st_mtime_ns
    # With the same digest even the (lazy) Verilog is not asked for again.
    digest = hashlib.sha256(text.encode()).hexdigest()
    assert build(verilog=lambda: pytest.fail("elaborated again"), digest=digest, **kw) is False
    assert build(verilog=text, **kw) is False and binary.stat().st_mtime_ns == stamp
    res = run_tests(test_module="test_verif_lib", testcase="lib_waits_are_bounded", **kw)
    assert (res.total, res.failed) == (1, 0)
    assert build(verilog=text + "\n// changed\n", **kw) is True

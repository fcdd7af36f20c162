"""cocotb driver / monitor layer of ``defa_core`` (used by ``test_core.py`` and ``defa-hw simulate``).

:class:`CoreTB` owns the clock and reset, the register port and one cycle loop that
drives every input stream (``weights``, ``fmap``, ``queries``; random valid stalls)
and monitors ``results`` (random ready back-pressure).  One loop instead of one
coroutine per stream keeps the Python cost at two triggers per clock.

The cocotb test :func:`simulate_entry` at the bottom is what ``defa-hw simulate``
runs: it reads a QuantizedBlock from ``DEFA_SIM_IN`` and writes the results to
``DEFA_SIM_OUT`` (see :mod:`defa_hw.flow.simulate`).
"""

import json
import os
import random
import sys
import time

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from defa_hw.host.registers import COUNTER_REGS, CTRL, Reg, decode, register_values
from defa_hw.host.packing import HostPacker
from defa_hw.rtl.core.interface import ResultKind

__all__ = ["CoreTB", "BlockResult", "simulate_entry"]


class BlockResult(dict):
    """``output_int``, ``next_fmap_mask``, the counters, and ``aborted``."""


class _Source:
    """A valid/ready source of a list of payload integers with random valid stalls."""

    def __init__(self, dut, name, beats, rng, p_stall):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.beats = beats
        self.i = 0
        self.rng = rng
        self.p_stall = p_stall
        self.shown = -1            # index of the beat currently on the payload
        self.v = 0

    def done(self):
        return self.i >= len(self.beats)

    def drive(self):
        v = int(self.i < len(self.beats) and
                not (self.p_stall and self.rng.random() < self.p_stall))
        if v and self.shown != self.i:
            self.payload.value = self.beats[self.i]
            self.shown = self.i
        if v != self.v:
            self.valid.value = v
            self.v = v

    def sample(self):
        if self.v and self.ready.value == 1:
            self.i += 1

    def idle(self):
        self.valid.value = 0
        self.v = 0


class CoreTB:
    """Host model of ``defa_core``: registers, streams, result collection.

    Parameters
    ----------
    dut : the cocotb handle of ``defa_core``.
    cfg : DefaConfig.
    seed : random seed of the stalls.
    p_stall : probability that a source drops valid / the sink drops ready in a cycle.
    """

    def __init__(self, dut, cfg, *, seed=0, p_stall=0.0, progress=False):
        self.dut = dut
        self.cfg = cfg
        self.pk = HostPacker(cfg)
        self.rng = random.Random(seed)
        self.p_stall = p_stall
        self.progress = progress
        self.cycle = 0

    async def start(self):
        cocotb.start_soon(Clock(self.dut.clk, 10, unit="ns").start())
        for name in ("weights", "fmap", "queries"):
            getattr(self.dut, f"{name}__valid").value = 0
            getattr(self.dut, f"{name}__payload").value = 0
        self.dut.results__ready.value = 0
        self.dut.csr_we.value = 0
        self.dut.csr_addr.value = 0
        self.dut.csr_wdata.value = 0
        await self.reset()

    async def reset(self, cycles=3):
        self.dut.rst.value = 1
        for name in ("weights", "fmap", "queries"):
            getattr(self.dut, f"{name}__valid").value = 0
        self.dut.results__ready.value = 0
        self.dut.csr_we.value = 0
        for _ in range(cycles):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)
        # After reset the FWP counters are cleared (CTRL.READY); a block started earlier
        # would wait for it in its BA phase.
        while not (await self.read_reg(Reg.CTRL)) & CTRL.READY:
            for _ in range(64):
                await RisingEdge(self.dut.clk)

    async def write_reg(self, addr, value):
        self.dut.csr_addr.value = int(addr)
        self.dut.csr_wdata.value = int(value) & 0xFFFFFFFF
        self.dut.csr_we.value = 1
        await RisingEdge(self.dut.clk)
        self.dut.csr_we.value = 0

    async def read_reg(self, addr):
        self.dut.csr_addr.value = int(addr)
        await RisingEdge(self.dut.clk)
        await RisingEdge(self.dut.clk)
        await ReadOnly()
        v = self.dut.csr_rdata.value.to_unsigned()
        await RisingEdge(self.dut.clk)
        return v

    async def read_counters(self):
        res = {name: await self.read_reg(reg) for name, reg in COUNTER_REGS.items()}
        res["max_queries"] = decode("CONFIG1", await self.read_reg(Reg.CONFIG1))["max_queries"]
        return res

    async def load_weights(self, qb):
        """Stream every weight and bias of ``qb`` (the core must be idle)."""
        src = _Source(self.dut, "weights", self.pk.weight_beats(qb), self.rng, self.p_stall)
        while not src.done():
            await RisingEdge(self.dut.clk)
            src.drive()
            await ReadOnly()
            src.sample()
        await RisingEdge(self.dut.clk)
        src.idle()

    async def configure(self, qb, *, prune=True):
        for addr, value in register_values(self.cfg, qb, prune=prune).items():
            await self.write_reg(addr, value)

    async def run_block(self, qb, *, prune=True, abort_after=None, max_cycles=None):
        """Configure, start and run one block; collect and decode its results.

        ``abort_after``: stop driving after that many cycles (the caller then resets),
        returning a result with ``aborted=True``.
        """
        cfg, dut = self.cfg, self.dut
        await self.configure(qb, prune=prune)
        await self.write_reg(Reg.CTRL, CTRL.START)
        srcs = [_Source(dut, "queries", self.pk.query_beats(qb), self.rng, self.p_stall),
                _Source(dut, "fmap", self.pk.fmap_beats(qb), self.rng, self.p_stall)]
        n_out = qb.query.shape[0] * (cfg.d_model // cfg.pe_cols)
        outs, masks = [], []
        last_out = last_mask = False
        ready = 0
        cyc = 0
        t0 = time.monotonic()
        t_report = t0 + 5.0
        while True:
            await RisingEdge(dut.clk)
            cyc += 1
            for s in srcs:
                s.drive()
            r = int(not (self.p_stall and self.rng.random() < self.p_stall))
            if r != ready:
                dut.results__ready.value = r
                ready = r
            await ReadOnly()
            for s in srcs:
                s.sample()
            if ready and dut.results__valid.value == 1:
                v = dut.results__payload.value.to_unsigned()
                kind, last, payload = self.pk.decode_result(v)
                if kind == ResultKind.OUTPUT:
                    outs.append(payload)
                    last_out |= bool(last)
                else:
                    masks.extend(payload)
                    last_mask |= bool(last)
            if abort_after is not None and cyc >= abort_after:
                break
            if last_out and last_mask and dut.done.value == 1:
                break
            if max_cycles is not None and cyc >= max_cycles:
                raise AssertionError(f"block did not finish in {max_cycles} cycles")
            if self.progress and time.monotonic() > t_report:
                t_report = time.monotonic() + 5.0
                print(f"simulate: {cyc} cycles, {len(outs)}/{n_out} output beats, "
                      f"{len(masks)}/{len(qb.fmap_mask)} mask bits, "
                      f"{time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
        await RisingEdge(dut.clk)
        for s in srcs:
            s.idle()
        dut.results__ready.value = 0
        res = BlockResult(aborted=abort_after is not None, cycles_driven=cyc)
        if res["aborted"]:
            return res
        assert len(outs) == n_out, f"got {len(outs)} output beats, expected {n_out}"
        assert len(masks) == len(qb.fmap_mask), \
            f"got {len(masks)} mask bits, expected {len(qb.fmap_mask)}"
        for s in srcs:
            assert s.done(), "the core finished without consuming every input beat"
        res["output_int"] = np.concatenate(outs).reshape(qb.query.shape[0], cfg.d_model)
        res["next_fmap_mask"] = np.array(masks, dtype=bool)
        res.update(await self.read_counters())
        return res


@cocotb.test()
async def simulate_entry(dut):
    """``defa-hw simulate``: one block from ``DEFA_SIM_IN`` to ``DEFA_SIM_OUT``."""
    from defa_hw.config import DefaConfig
    from defa_hw.flow.simulate import load_qblock
    cfg = DefaConfig.from_dict(json.loads(os.environ["DEFA_CONFIG"]))
    qb = load_qblock(os.environ["DEFA_SIM_IN"])
    prune = os.environ.get("DEFA_SIM_PRUNE", "1") == "1"
    tb = CoreTB(dut, cfg, progress=True)
    await tb.start()
    t0 = time.monotonic()
    await tb.load_weights(qb)
    print(f"simulate: weights loaded ({time.monotonic() - t0:.1f} s)", file=sys.stderr,
          flush=True)
    res = await tb.run_block(qb, prune=prune)
    np.savez(os.environ["DEFA_SIM_OUT"], output_int=res["output_int"],
             next_fmap_mask=res["next_fmap_mask"],
             counters=json.dumps({k: int(v) for k, v in res.items()
                                  if k in COUNTER_REGS or k == "max_queries"}))

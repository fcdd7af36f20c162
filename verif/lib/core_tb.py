"""cocotb driver / monitor layer of ``defa_core`` (``test_core.py``, ``defa-hw simulate``).

:class:`CoreTB` owns the clock and reset, the register port, one
:class:`~verif.lib.stream.StreamSource` per input stream (``weights``, ``fmap``,
``queries``) and a :class:`~verif.lib.stream.StreamSink` on ``results``, stepped by the
shared cycle loop.  During a block the register port is parked on ``Reg.PHASE``, so
every cycle shows the controller's phase for free: a block that runs past its cycle
limit (from the performance model) fails with one line naming the phase it is stuck
in, and a block can be aborted when a chosen phase shows.

The cocotb test :func:`simulate_entry` at the bottom is what ``defa-hw simulate``
runs: it reads a QuantizedBlock from ``DEFA_SIM_IN`` and writes the results to
``DEFA_SIM_OUT``, or its one-line failure to ``DEFA_SIM_ERROR``
(see :mod:`defa_hw.flow.simulate`).
"""

import itertools
import json
import os
import random
import sys
import time

import numpy as np

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from defa_hw.host.packing import HostPacker
from defa_hw.host.registers import COUNTER_REGS, CTRL, Reg, decode, register_values
from defa_hw.rtl.core import Phase
from defa_hw.rtl.core.interface import ResultKind
from verif.lib.clock import Stuck, reset, start_clock, wait_until
from verif.lib.stream import StreamSink, StreamSource, random_pause, run_agents

__all__ = ["CoreTB", "BlockResult", "Stuck", "phase_name", "simulate_entry"]

INPUTS = ("weights", "fmap", "queries")
#: Cycles allowed for the FWP counters to clear after a reset (CTRL.READY); the tiny
#: core needs its largest level's pixel count, the defa core a few thousand.
READY_LIMIT = 100_000


def phase_name(code):
    """The name of a ``Reg.PHASE`` value (``Phase`` member, or the raw code)."""
    try:
        return Phase(code).name
    except ValueError:
        return f"code {code}"


class BlockResult(dict):
    """``output_int``, ``next_fmap_mask``, the counters, ``aborted``, ``cycles_driven``
    and ``phase`` (the phase shown when the loop stopped)."""


class CoreTB:
    """Host model of ``defa_core``: registers, streams, result collection.

    Parameters
    ----------
    dut : the cocotb handle of ``defa_core``.
    cfg : DefaConfig.
    seed : random seed of the stalls.
    p_stall : probability that a source drops valid / the sink drops ready in a cycle.
    progress : print a progress line to stderr every 5 s of a block.
    """

    def __init__(self, dut, cfg, *, seed=0, p_stall=0.0, progress=False):
        if not 0.0 <= p_stall < 1.0:
            raise ValueError(f"p_stall {p_stall!r} is invalid: allowed 0 <= p_stall < 1")
        self.dut = dut
        self.cfg = cfg
        self.pk = HostPacker(cfg)
        self.rng = random.Random(seed)
        self.p_stall = p_stall
        self.progress = progress
        self.max_queries = None

    def _pause(self):
        return random_pause(self.p_stall, rng=self.rng) if self.p_stall else None

    async def start(self):
        """Start the clock, reset, and read the build's max_queries."""
        start_clock(self.dut)
        for name in INPUTS:
            getattr(self.dut, f"{name}__payload").value = 0
        self.dut.csr_addr.value = 0
        self.dut.csr_wdata.value = 0
        await self.reset()
        self.max_queries = decode("CONFIG1", await self.read_reg(Reg.CONFIG1))["max_queries"]

    async def reset(self, cycles=3, *, ready_limit=READY_LIMIT):
        """Reset, then wait until CTRL.READY, at most ``ready_limit`` cycles (else
        :class:`Stuck`): the FWP counters are cleared after reset, and a block started
        earlier would wait for it in its BA phase."""
        await reset(self.dut, cycles=cycles,
                    low=[f"{n}__valid" for n in INPUTS] + ["results__ready", "csr_we"])
        self.dut.csr_addr.value = int(Reg.CTRL)
        rdata = self.dut.csr_rdata
        await wait_until(self.dut.clk, lambda: rdata.value.to_unsigned() & CTRL.READY,
                         limit=ready_limit, what="CTRL.READY after reset")
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
        src = StreamSource(self.dut, "weights", pause=self._pause())
        src.send(self.pk.weight_beats(qb))
        # The weight port takes a beat per cycle when idle: 4x the beats covers the stalls.
        await src.wait(self.dut.clk, limit=int(self._stall_factor() * 4 * len(src.beats)) + 100)

    async def configure(self, qb, *, prune=True):
        for addr, value in register_values(self.cfg, qb, prune=prune).items():
            await self.write_reg(addr, value)

    def _stall_factor(self):
        # Stalls on a source and on the sink each slow a stream-bound phase by 1/(1-p).
        return 1.0 / (1.0 - self.p_stall) ** 2

    def cycle_limit(self, qb, *, prune=True):
        """2x the performance model's cycles plus a margin, scaled up for random stalls:
        a block that needs more is stuck."""
        from defa_hw.flow.simulate import cycle_limit
        from golden.model import defa_block
        gold = defa_block(self.cfg, qb, prune=prune)
        return int(cycle_limit(self.cfg, qb, gold, prune=prune, max_queries=self.max_queries)
                   * self._stall_factor())

    async def run_block(self, qb, *, prune=True, abort_in=None, max_cycles=None, hold=()):
        """Configure, start and run one block; collect and decode its results.

        ``abort_in``: a :class:`Phase`; stop driving in the first cycle ``Reg.PHASE``
        shows it (the caller then resets), returning ``aborted=True`` and ``phase``.
        ``max_cycles``: the cycle limit (default: :meth:`cycle_limit`); past it the
        block fails with :class:`Stuck` naming the phase it is stuck in.
        ``hold``: names of input streams that never deliver (a stuck-core check).
        """
        cfg, dut = self.cfg, self.dut
        if not set(hold) <= {"queries", "fmap"}:
            raise ValueError(f"hold {tuple(hold)!r} is invalid: allowed queries, fmap")
        limit = max_cycles if max_cycles is not None else self.cycle_limit(qb, prune=prune)
        await self.configure(qb, prune=prune)
        await self.write_reg(Reg.CTRL, CTRL.START)
        # Parked on PHASE, csr_rdata shows the phase of the previous cycle.
        dut.csr_addr.value = int(Reg.PHASE)
        srcs = [StreamSource(dut, name, pause=itertools.repeat(True) if name in hold
                             else self._pause()) for name in ("queries", "fmap")]
        srcs[0].send(self.pk.query_beats(qb))
        # The fmap stream serves the core's window loads (fmap_req), in request order.
        fmap_table = self.pk.fmap_beats(qb)
        loads = []

        def on_request(v):
            level, row, rows = self.pk.decode_fmap_request(v)
            loads.append((level, row, rows))
            srcs[1].send(fmap_table[i] for i in
                         self.pk.fmap_request_pixels(qb.shapes, level, row, rows))

        req_sink = StreamSink(dut, "fmap_req", pause=self._pause(), on_beat=on_request)
        outs, masks = [], []
        seen = {"out": False, "mask": False, "phase": None}

        def on_result(v):
            kind, last, payload = self.pk.decode_result(v)
            if kind == ResultKind.OUTPUT:
                outs.append(payload)
                seen["out"] |= bool(last)
            else:
                masks.extend(payload)
                seen["mask"] |= bool(last)

        sink = StreamSink(dut, "results", pause=self._pause(), on_beat=on_result)
        n_out = qb.query.shape[0] * (cfg.d_model // cfg.pe_cols)
        t0 = time.monotonic()
        report = [t0 + 5.0]

        def each_cycle():
            seen["phase"] = dut.csr_rdata.value.to_unsigned()
            if self.progress and time.monotonic() > report[0]:
                report[0] = time.monotonic() + 5.0
                print(f"simulate: {sink.cycle} cycles, phase {phase_name(seen['phase'])}, "
                      f"{len(outs)}/{n_out} output beats, {len(masks)}/{len(qb.fmap_mask)} "
                      f"mask bits, {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)

        def until():
            if abort_in is not None and seen["phase"] == abort_in.value:
                return True
            return seen["out"] and seen["mask"] and dut.done.value == 1

        try:
            cyc = await run_agents(dut.clk, srcs + [req_sink, sink], until=until, limit=limit,
                                   what="block", each_cycle=each_cycle)
        except Stuck:
            raise Stuck(f"the core is stuck in phase {phase_name(seen['phase'])}: the block "
                        f"did not finish in {limit} cycles ({len(outs)}/{n_out} output "
                        f"beats, {len(masks)}/{len(qb.fmap_mask)} mask bits, inputs "
                        + ", ".join(f"{s.name} {s.sent}/{len(s.beats)}" for s in srcs)
                        + f", {len(loads)} window loads)") from None
        await RisingEdge(dut.clk)
        for a in srcs + [req_sink, sink]:
            a.idle()
        res = BlockResult(aborted=abort_in is not None and seen["phase"] == abort_in.value,
                          cycles_driven=cyc, phase=seen["phase"])
        if res["aborted"]:
            return res
        assert abort_in is None, f"the block finished without showing phase {abort_in.name}"
        assert len(outs) == n_out, f"got {len(outs)} output beats, expected {n_out}"
        assert len(masks) == len(qb.fmap_mask), \
            f"got {len(masks)} mask bits, expected {len(qb.fmap_mask)}"
        for s in srcs:
            assert s.done, f"the core finished without consuming every {s.name} beat"
        res["output_int"] = np.concatenate(outs).reshape(qb.query.shape[0], cfg.d_model)
        res["next_fmap_mask"] = np.array(masks, dtype=bool)
        res["loads"] = loads
        res.update(await self.read_counters())
        return res


@cocotb.test()
async def simulate_entry(dut):
    """``defa-hw simulate``: one block from ``DEFA_SIM_IN`` to ``DEFA_SIM_OUT``; a failure
    is written as one line to ``DEFA_SIM_ERROR`` (the CLI reports it) and fails the test."""
    from defa_hw.config import DefaConfig
    from defa_hw.flow.simulate import load_qblock
    try:
        cfg = DefaConfig.from_dict(json.loads(os.environ["DEFA_CONFIG"]))
        qb = load_qblock(os.environ["DEFA_SIM_IN"])
        prune = os.environ.get("DEFA_SIM_PRUNE", "1") == "1"
        max_cycles = int(os.environ["DEFA_SIM_MAX_CYCLES"])
        tb = CoreTB(dut, cfg, progress=True)
        await tb.start()
        t0 = time.monotonic()
        await tb.load_weights(qb)
        print(f"simulate: weights loaded ({time.monotonic() - t0:.1f} s)", file=sys.stderr,
              flush=True)
        res = await tb.run_block(qb, prune=prune, max_cycles=max_cycles)
    except Exception as e:
        with open(os.environ["DEFA_SIM_ERROR"], "w") as f:
            f.write(" ".join(str(e).split()) or type(e).__name__)
        raise
    np.savez(os.environ["DEFA_SIM_OUT"], output_int=res["output_int"],
             next_fmap_mask=res["next_fmap_mask"],
             counters=json.dumps({k: int(v) for k, v in res.items()
                                  if k in COUNTER_REGS or k == "max_queries"}))

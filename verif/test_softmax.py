"""cocotb testbench: Softmax vs golden.softmax, every probability code bit for bit.

A driver sends heads of ``n_lp`` logits with random valid gaps (valid held until
accepted), a monitor takes probabilities with random ready back-pressure and checks
each one against the golden model the moment it arrives, plus the per-head sum
(~2**prob_bits) as a sanity check.  Random heads (>= 10,000 logits) with various
spreads and logit fraction bits; directed heads (all equal, one dominant, INT12
extremes, fraction bits 0/4/8/11 and beyond); and a no-stall run that measures
the steady-state throughput and the latency against the documented figures.
"""

import os
import random

import cocotb
import numpy as np
import pytest
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly

from defa_hw.rtl.softmax import FRAC_MAX, Softmax
from golden.softmax import softmax
try:
    from verif.lib.runner import cocotb_config, run_cocotb
except ImportError:                        # inside the cocotb process: verif/ is on the path
    from verif.lib.runner import cocotb_config, run_cocotb


try:
    from verif.configs import config_by_name as _config
except ImportError:                        # inside the cocotb process: verif/ is on the path
    from configs import config_by_name as _config


# -- stimulus -----------------------------------------------------------------------------------

def random_heads(cfg, rng, n_heads):
    """Heads of random spread (from near-equal to the full INT12 range) and f_a."""
    heads = []
    for _ in range(n_heads):
        spread = rng.choice([0, 1, 3, 16, 64, 256, 1024, 4096])
        centre = rng.randint(cfg.data_min, cfg.data_max)
        x = [min(max(centre + rng.randint(-spread, spread), cfg.data_min), cfg.data_max)
             for _ in range(cfg.n_lp)]
        r = rng.random()
        fa = rng.randint(0, 11) if r < 0.85 else rng.randint(12, 24) if r < 0.97 else \
            rng.randint(25, FRAC_MAX)
        heads.append((x, fa))
    return heads


def directed_heads(cfg, rng):
    n, lo, hi = cfg.n_lp, cfg.data_min, cfg.data_max
    heads = []
    for fa in (0, 4, 8, 11, 12, 20, 27, FRAC_MAX):
        cases = [
            [0] * n, [hi] * n, [lo] * n,                        # all equal
            [hi] + [lo] * (n - 1), [lo] * (n - 1) + [hi],       # one dominant, extremes
            [hi, lo] * (n // 2) + [hi] * (n % 2),               # alternating extremes
            [lo + 1] + [lo] * (n - 1),                          # one LSB above the rest
            [hi - k for k in range(n)],                         # a ramp of 1 LSB steps
            [rng.choice([lo, hi]) for _ in range(n)],
            [rng.randint(-8, 8) for _ in range(n)],
        ]
        heads += [(c, fa) for c in cases]
    return heads


def golden_probs(cfg, heads):
    return [softmax(np.array(x), fa, cfg).tolist() for x, fa in heads]


# -- driver / monitor ---------------------------------------------------------------------------

class Driver:
    """Sends every head's logits; ``logit_frac_bits`` is held over each head."""

    def __init__(self, dut, heads, rng, p_valid):
        self.dut, self.heads, self.rng, self.p_valid = dut, heads, rng, p_valid
        self.accepted_cycles = []          # cycle of every accepted last logit
        self.saw_backpressure = False

    async def run(self):
        dut, cycle = self.dut, 0
        for x, fa in self.heads:
            for k, v in enumerate(x):
                while True:
                    await FallingEdge(dut.clk)
                    cycle += 1
                    if self.rng.random() < self.p_valid:
                        break
                    dut.logits__valid.value = 0
                dut.logits__payload.value = v & ((1 << len(dut.logits__payload)) - 1)
                dut.logit_frac_bits.value = fa
                dut.logits__valid.value = 1
                # Valid stays up (payload stable) until the beat is taken.
                while True:
                    await ReadOnly()
                    if int(dut.logits__ready.value):
                        break
                    self.saw_backpressure = True
                    await FallingEdge(dut.clk)
                    cycle += 1
                if k == len(x) - 1:
                    self.accepted_cycles.append(cycle)
        await FallingEdge(dut.clk)
        dut.logits__valid.value = 0


class Monitor:
    """Takes probabilities with random ready; checks each code against golden at once."""

    def __init__(self, dut, cfg, heads, rng, p_ready):
        self.dut, self.cfg, self.rng, self.p_ready = dut, cfg, rng, p_ready
        self.heads = heads
        self.want = golden_probs(cfg, heads)
        self.got = []
        self.cycles = []                   # cycle at which each probability was taken
        self.first_valid = []              # cycle each head's first probability became valid

    async def run(self):
        dut, cfg, n = self.dut, self.cfg, self.cfg.n_lp
        total = len(self.heads) * n
        cycle = 0
        while len(self.got) < total:
            await FallingEdge(dut.clk)
            cycle += 1
            ready = int(self.rng.random() < self.p_ready)
            dut.probs__ready.value = ready
            await ReadOnly()
            valid = int(dut.probs__valid.value)
            if valid and len(self.got) == n * len(self.first_valid):
                self.first_valid.append(cycle)
            if valid and ready:
                h, k = divmod(len(self.got), n)
                p = dut.probs__payload.value.to_unsigned()
                want = self.want[h][k]
                assert p == want, (f"head {h} logit {k}: rtl {p} != golden {want} "
                                   f"(logits {self.heads[h][0]}, f_a {self.heads[h][1]})")
                self.got.append(p)
                self.cycles.append(cycle)
                if k == n - 1:
                    s = sum(self.got[-n:])
                    # Sanity: floor of the reciprocal, n roundings, saturation at 1.0.
                    assert abs(s - (1 << cfg.prob_bits)) <= n, f"head {h}: probabilities sum {s}"


async def start(dut):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.logits__valid.value = 0
    dut.logits__payload.value = 0
    dut.logit_frac_bits.value = 0
    dut.probs__ready.value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    await FallingEdge(dut.clk)
    dut.rst.value = 0


async def run_heads(dut, cfg, heads, rng, p_valid, p_ready):
    drv = Driver(dut, heads, rng, p_valid)
    mon = Monitor(dut, cfg, heads, rng, p_ready)
    cocotb.start_soon(drv.run())
    await mon.run()
    return drv, mon


def _rng():
    return random.Random(int(os.environ.get("SEED", "1")))


@cocotb.test()
async def directed_heads_test(dut):
    """All equal, one dominant, extremes, several logit fraction bits.

    Runs first so that the very first head (all zeros) meets registers still at their
    initial values.
    """
    cfg = cocotb_config()
    rng = _rng()
    await start(dut)
    heads = directed_heads(cfg, rng)
    _, mon = await run_heads(dut, cfg, heads, rng, p_valid=0.7, p_ready=0.5)
    dut._log.info(f"{len(mon.got)} probabilities in {len(heads)} directed heads bit-exact")


@cocotb.test()
async def random_heads_test(dut):
    """Random heads with random valid and ready stalls, bit-exact."""
    cfg = cocotb_config()
    rng = _rng()
    await start(dut)
    n_logits = int(os.environ.get("SM_LOGITS", "10000"))
    heads = random_heads(cfg, rng, -(-n_logits // cfg.n_lp))
    drv, mon = await run_heads(dut, cfg, heads, rng, p_valid=0.8, p_ready=0.7)
    dut._log.info(f"{len(mon.got)} probabilities in {len(heads)} random heads bit-exact")
    assert len(mon.got) >= n_logits and drv.saw_backpressure


def _softmax(cfg):
    bits = os.environ.get("SM_DIV_BITS")
    return Softmax(cfg, div_bits_per_cycle=int(bits) if bits else None)


@cocotb.test()
async def throughput_test(dut):
    """No stalls: steady-state cycles per head and latency as documented."""
    cfg = cocotb_config()
    n = cfg.n_lp
    rng = _rng()
    await start(dut)
    heads = random_heads(cfg, rng, 48)
    drv, mon = await run_heads(dut, cfg, heads, rng, p_valid=1.0, p_ready=1.0)
    sm = _softmax(cfg)
    # Last logit taken at the clock edge after falling edge a; first probability
    # registered valid by the edge before falling edge f.
    lat = [f - a - 1 for f, a in zip(mon.first_valid, drv.accepted_cycles)]
    period = np.diff(mon.first_valid[4:]).tolist()
    dut._log.info(f"steady state {sorted(set(period))} cycles/head (n_lp = {n}), latency last "
                  f"logit -> first probability {lat[0]} cycles (first head)")
    assert set(period) == {sm.CYCLES_PER_HEAD}, f"cycles per head {sorted(set(period))}"
    assert lat[0] == sm.LATENCY_FIRST, f"latency {lat[0]} != {sm.LATENCY_FIRST}"
    if sm.CYCLES_PER_HEAD == n:
        # One logit per cycle: never back-pressured, outputs back to back, and every
        # head sees the first head's latency.
        assert not drv.saw_backpressure
        gaps = set(np.diff(mon.cycles).tolist())
        assert gaps == {1}, f"output gaps {sorted(gaps)}"
        assert set(lat) == {sm.LATENCY_FIRST}, f"latencies {sorted(set(lat))}"


# -- pytest entry ------------------------------------------------------------------------------

def _run(name, div_bits=None, **env):
    cfg = _config(name)
    build_name = f"softmax_{name}_{div_bits or 'auto'}" + ("_long" if env else "")
    if div_bits:
        env["SM_DIV_BITS"] = div_bits
    run_cocotb(component=Softmax(cfg, div_bits_per_cycle=div_bits), toplevel="softmax",
               test_module="test_softmax", build_name=build_name, cfg=cfg, env=env)


# The odd config also runs a one-bit-per-cycle divider, slower than n_lp cycles per head.
@pytest.mark.parametrize("name,div_bits", [("tiny", None), ("defa", None), ("odd", 1)])
def test_softmax(name, div_bits):
    _run(name, div_bits)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny", "defa"])
def test_softmax_long(name):
    _run(name, SM_LOGITS=200_000, SEED=7)

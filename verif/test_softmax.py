"""cocotb testbench: Softmax vs golden.softmax, every probability code bit for bit.

A stream source sends heads of ``n_lp`` logits with random valid gaps (valid held
until accepted), a sink takes probabilities with random ready back-pressure and a
checker compares each one with the golden model the moment it arrives, plus the per-head sum
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

from defa_hw.rtl.softmax import DIVIDERS, FRAC_MAX, Softmax
from golden.softmax import softmax
from verif.configs import config_by_name as _config
from verif.lib.clock import clock_and_reset
from verif.lib.runner import cocotb_config, run_cocotb
from verif.lib.stream import StreamSink, StreamSource, random_pause, run_agents


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

class Checker:
    """Checks each probability against golden the moment it arrives (a StreamSink's
    ``on_beat``), plus the per-head sum."""

    def __init__(self, cfg, heads):
        self.cfg, self.heads = cfg, heads
        self.want = golden_probs(cfg, heads)
        self.got = []

    def __call__(self, p):
        cfg, n = self.cfg, self.cfg.n_lp
        h, k = divmod(len(self.got), n)
        want = self.want[h][k]
        assert p == want, (f"head {h} logit {k}: rtl {p} != golden {want} "
                           f"(logits {self.heads[h][0]}, f_a {self.heads[h][1]})")
        self.got.append(p)
        if k == n - 1:
            s = sum(self.got[-n:])
            # Sanity: floor of the reciprocal, n roundings, saturation at 1.0.
            assert abs(s - (1 << cfg.prob_bits)) <= n, f"head {h}: probabilities sum {s}"


async def start(dut):
    dut.logits__payload.value = 0
    dut.logit_frac_bits.value = 0
    await clock_and_reset(dut, low=("logits__valid", "probs__ready"))


async def run_heads(dut, cfg, heads, rng, p_valid, p_ready):
    """Send every head's logits (``logit_frac_bits`` held with each of its beats) and
    check every probability; returns the source and the sink."""
    mask = (1 << len(dut.logits__payload)) - 1
    src = StreamSource(dut, "logits", pause=random_pause(1.0 - p_valid, rng=rng))
    src.send({"payload": v & mask, "logit_frac_bits": fa} for x, fa in heads for v in x)
    chk = Checker(cfg, heads)
    sink = StreamSink(dut, "probs", pause=random_pause(1.0 - p_ready, rng=rng), on_beat=chk)
    total = len(src.beats)
    # The slowest divider (1 bit per cycle) takes a few tens of cycles per logit.
    await run_agents(dut.clk, [src, sink], until=lambda: sink.count >= total,
                     limit=100 * total + 1000, what="softmax")
    return src, sink, chk


def first_valid_per_head(sink, n):
    """Cycle at which each head's first probability was valid: the first valid cycle
    after the previous head's last probability was taken."""
    out = []
    for h in range(len(sink.accepted_at) // n):
        after = sink.accepted_at[h * n - 1] if h else 0
        out.append(next(c for c in sink.valid_at if c > after))
    return out


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
    _, _, chk = await run_heads(dut, cfg, heads, rng, p_valid=0.7, p_ready=0.5)
    dut._log.info(f"{len(chk.got)} probabilities in {len(heads)} directed heads bit-exact")


@cocotb.test()
async def random_heads_test(dut):
    """Random heads with random valid and ready stalls, bit-exact."""
    cfg = cocotb_config()
    rng = _rng()
    await start(dut)
    n_logits = int(os.environ.get("SM_LOGITS", "10000"))
    heads = random_heads(cfg, rng, -(-n_logits // cfg.n_lp))
    src, _, chk = await run_heads(dut, cfg, heads, rng, p_valid=0.8, p_ready=0.7)
    dut._log.info(f"{len(chk.got)} probabilities in {len(heads)} random heads bit-exact")
    assert len(chk.got) >= n_logits and src.stalled > 0


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
    src, sink, _ = await run_heads(dut, cfg, heads, rng, p_valid=1.0, p_ready=1.0)
    sm = _softmax(cfg)
    # Last logit taken at the clock edge ending cycle a; first probability registered
    # valid by the edge starting cycle f.
    first_valid = first_valid_per_head(sink, n)
    lat = [f - a - 1 for f, a in zip(first_valid, src.accepted_at[n - 1::n])]
    period = np.diff(first_valid[4:]).tolist()
    dut._log.info(f"steady state {sorted(set(period))} cycles/head (n_lp = {n}), latency last "
                  f"logit -> first probability {lat[0]} cycles (first head)")
    if sm.CYCLES_PER_HEAD == n:
        assert set(period) == {n}, f"cycles per head {sorted(set(period))}"
    else:
        # Divider-bound: the DIVIDERS dividers take turns, each 1 + div_steps cycles per
        # head, so every DIVIDERS consecutive heads take exactly that long.
        spans = {sum(period[i:i + DIVIDERS]) for i in range(len(period) - DIVIDERS + 1)}
        assert spans == {1 + sm.div_steps}, f"cycles per {DIVIDERS} heads {sorted(spans)}"
    assert lat[0] == sm.LATENCY_FIRST, f"latency {lat[0]} != {sm.LATENCY_FIRST}"
    if sm.CYCLES_PER_HEAD == n:
        # One logit per cycle: never back-pressured, outputs back to back, and every
        # head sees the first head's latency.
        assert src.stalled == 0
        gaps = set(np.diff(sink.accepted_at).tolist())
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

"""cocotb testbench: Requant vs golden.requant, bit for bit.

One vector (``lanes`` accumulators and a shift) per clock with random bubbles; the
checker expects each result exactly ``LATENCY`` cycles later.  Stimulus: every
shift the port can hold (0 .. acc_bits - 1 and beyond), accumulators of random
magnitude across the full width, the width's extremes, exact rounding ties and the
values just inside / at / beyond both saturation limits for every shift.
"""

import os
import random
from collections import deque

import cocotb
import numpy as np
import pytest
from cocotb.triggers import FallingEdge

from defa_hw.rtl.requant import Requant
from golden.requant import requant
from verif.configs import config_by_name as _config
from verif.lib.clock import clock_and_reset
from verif.lib.runner import cocotb_config, run_cocotb


def make_vectors(cfg, acc_bits, shift_max, rng, n_random):
    """(acc, shift) pairs: directed corners for every shift, then random ones."""
    amin, amax = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
    lo, hi = cfg.data_min, cfg.data_max

    def ok(v):
        return amin <= v <= amax

    vec = []
    for s in range(shift_max + 1):
        cand = [0, 1, -1, amin, amax, amin + 1, amax - 1]
        if s > 0:
            half = 1 << (s - 1)
            # Saturation limits: hi + 1/2 rounds up past hi, hi + 1/2 - 1 LSB does not;
            # lo - 1/2 rounds up to lo (half up), one LSB less goes below.
            for edge in ((hi << s) + half, (lo << s) - half):
                cand += [edge - 2, edge - 1, edge, edge + 1]
            # Exact ties away from the limits, both signs.
            cand += [half, -half, 3 * half, -3 * half, (5 << s) + half, (-5 << s) - half]
        else:
            cand += [hi, hi + 1, lo, lo - 1]
        vec += [(v, s) for v in cand if ok(v)]
    for _ in range(n_random):
        k = rng.randint(1, acc_bits)                   # log-uniform magnitude
        v = rng.randint(-(1 << (k - 1)), (1 << (k - 1)) - 1)
        vec.append((v, rng.randint(0, acc_bits - 1) if rng.random() < 0.95
                    else rng.randint(0, shift_max)))
    rng.shuffle(vec)
    return vec


@cocotb.test()
async def requant_test(dut):
    cfg = cocotb_config()
    acc_bits, lanes = int(os.environ["RQ_ACC_BITS"]), int(os.environ["RQ_LANES"])
    rng = random.Random(int(os.environ.get("SEED", "1")))
    rq = Requant(cfg, acc_bits=acc_bits, lanes=lanes)
    acc_layout = rq.signature.members["acc"].shape
    q_layout = rq.signature.members["q"].shape
    shift_max = (1 << len(dut.shift)) - 1
    lat = Requant.LATENCY

    # Every lane gets its own (acc, shift) stream; all lanes share the shift port, so
    # vectors are grouped by shift and the lanes hold different accumulators.
    pairs = make_vectors(cfg, acc_bits, shift_max, rng, int(os.environ.get("RQ_RANDOM", "10000")))
    by_shift = {}
    for v, s in pairs:
        by_shift.setdefault(s, []).append(v)
    vectors = []
    for s, vals in by_shift.items():
        for i in range(0, len(vals), lanes):
            chunk = vals[i:i + lanes]
            chunk += [rng.choice(vals) for _ in range(lanes - len(chunk))]
            vectors.append((chunk, s))
    rng.shuffle(vectors)
    want = [requant(np.array(a), s, cfg).tolist() for a, s in vectors]

    await clock_and_reset(dut, low=("in_valid",))

    pending = deque()
    cycle = i = checked = sat = 0
    while i < len(vectors) or pending:
        await FallingEdge(dut.clk)
        valid = int(dut.out_valid.value)
        due = bool(pending) and pending[0][0] + lat == cycle
        assert valid == due, f"cycle {cycle}: out_valid={valid}, expected {int(due)}"
        if due:
            j = pending.popleft()[1]
            got = [int(x) for x in q_layout.from_bits(dut.q.value.to_unsigned())]
            assert got == want[j], (f"vector {j}: acc {vectors[j][0]} shift {vectors[j][1]}: "
                                    f"rtl {got} != golden {want[j]}")
            sat += sum(w in (cfg.data_min, cfg.data_max) for w in want[j])
            checked += 1
        if i < len(vectors) and rng.random() >= 0.1:
            acc, s = vectors[i]
            dut.acc.value = acc_layout.const(acc).as_bits()
            dut.shift.value = s
            dut.in_valid.value = 1
            pending.append((cycle, i))
            i += 1
        else:
            dut.acc.value = rng.getrandbits(acc_layout.size)
            dut.shift.value = rng.randint(0, shift_max)
            dut.in_valid.value = 0
        cycle += 1
    shifts = {s for _, s in vectors}
    dut._log.info(f"{checked} vectors x {lanes} lanes bit-exact, {len(shifts)} shifts, "
                  f"{sat} saturated codes")
    assert checked == len(vectors) and shifts == set(range(shift_max + 1)) and sat > 0


CASES = [("tiny", None, 1), ("defa", None, 1), ("defa", None, "pe_cols"),
         ("defa", "agg_acc_bits", 3), ("odd", None, "pe_cols")]


@pytest.mark.parametrize("name,acc,lanes", CASES)
def test_requant(name, acc, lanes):
    cfg = _config(name)
    acc_bits = getattr(cfg, acc) if acc else cfg.mm_acc_bits
    lanes = getattr(cfg, lanes) if isinstance(lanes, str) else lanes
    run_cocotb(component=Requant(cfg, acc_bits=acc_bits, lanes=lanes), toplevel="requant",
               test_module="test_requant",
               build_name=f"requant_{name}_{acc_bits}b_{lanes}l", cfg=cfg,
               env={"RQ_ACC_BITS": acc_bits, "RQ_LANES": lanes})

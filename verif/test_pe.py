"""cocotb testbench of one reconfigurable processing element.

One operation per clock.  Streams of operations form back-to-back MAC chains
(``first`` on the first one, bias preloaded) checked against
``golden.linear.linear_acc`` (MM) and, for the full-width role, against
``golden.aggregate.aggregate_acc`` of ``golden.bilinear.bilinear`` values
(the probability MAC of BA mode).  LEND operations (BA: the multiplier lent to a
bilinear group) are interleaved inside the chains: their product must appear on
``prod`` and the accumulator must not move.  Every cycle the checker compares
``prod``/``prod_valid`` (PROD_LATENCY after each operation) and ``acc_valid``;
each chain's final ``acc`` is compared LATENCY cycles after its last MAC.
"""

import cocotb
import numpy as np
import pytest

from defa_hw.config import preset

N_OPS = 4000


def _chains(cfg, role, rng, n_ops):
    """Operation list and expected chain results.

    Each op: (mode, first, a, b, preload); mode 0 = MAC, 1 = LEND.  Returns
    ``ops`` and ``chains`` = list of (index of the chain's last MAC, expected acc).
    """
    from golden.aggregate import aggregate_acc
    from golden.bilinear import bilinear
    from golden.linear import linear_acc
    from defa_hw.rtl.pe import pe_widths
    lo, hi = cfg.data_min, cfg.data_max
    lim = 1 << (cfg.mm_acc_bits - 2)
    F = cfg.coord_frac_bits
    ops, chains = [], []

    def lend_op():
        # A bilinear-difference x fraction product, as in BA mode.
        dmax = 2 * (hi - lo)                          # (v11-v10)-(v01-v00)
        return (1, int(rng.integers(0, 2)), int(rng.integers(-dmax, dmax + 1)),
                int(rng.integers(0, 1 << F)), int(rng.integers(-lim, lim)))

    def emit(a, b, preload, expected):
        for k, (av, bv) in enumerate(zip(a.tolist(), b.tolist())):
            while role != "mm" and rng.random() < 0.1:      # an "mm" PE never lends
                ops.append(lend_op())
            while rng.random() < 0.05:
                ops.append(None)                      # idle cycle
            ops.append((0, int(k == 0), av, bv, int(preload) if k == 0 else 0))
        chains.append((len(ops) - 1, int(expected)))

    def mm_chain(x, w, bias):
        emit(x, w, bias, linear_acc(x[None, :], w[None, :], [bias], cfg)[0, 0])

    K = cfg.d_model
    mm_chain(np.full(K, lo), np.full(K, lo), lim - 1)                  # largest positive
    mm_chain(np.full(K, lo), np.full(K, hi), -lim)                     # largest negative
    mm_chain(np.full(K, hi), np.full(K, hi), 0)
    mm_chain(np.zeros(4, dtype=np.int64), np.zeros(4, dtype=np.int64), 0)
    mm_chain(np.array([hi]), np.array([lo]), -lim)                     # one-op chain
    corners = np.array([lo, hi, lo + 1, 0, -1, 1])
    a_bits, b_bits, _ = pe_widths(cfg, role)
    while len(ops) < n_ops:
        if role == "full" and rng.random() < 0.3:
            # BA probability MAC: bilinear values x PAP-gated probabilities.
            n = cfg.n_lp
            v = rng.integers(lo, hi + 1, size=(4, n))
            v = np.where(rng.random((4, n)) < 0.2, rng.choice([lo, hi, 0], (4, n)), v)
            t0, t1, t01 = (rng.integers(0, 1 << F, n) for _ in range(3))
            bil = bilinear(*v, t0, t1, t01, cfg)
            prob = rng.integers(0, 1 << cfg.prob_bits, n)
            prob = np.where(rng.random(n) < 0.2, (1 << cfg.prob_bits) - 1, prob)
            keep = rng.random(n) < 0.6
            exp = aggregate_acc(bil[:, None], prob, keep)[0]
            emit(bil, np.where(keep, prob, 0), 0, exp)
        else:
            k = int(rng.integers(1, K + 1))
            x = rng.integers(lo, hi + 1, k)
            w = rng.integers(lo, hi + 1, k)
            x = np.where(rng.random(k) < 0.2, rng.choice(corners, k), x)
            w = np.where(rng.random(k) < 0.2, rng.choice(corners, k), w)
            bias = int(rng.integers(-lim, lim)) if rng.random() < 0.8 else int(
                rng.choice([-lim, lim - 1]))
            mm_chain(x, w, bias)
    for op in ops:
        if op is not None:
            assert -(1 << (a_bits - 1)) <= op[2] < (1 << (a_bits - 1))
            assert -(1 << (b_bits - 1)) <= op[3] < (1 << (b_bits - 1))
    return ops, chains


@cocotb.test()
async def pe_mac_and_lend(dut):
    """MAC chains (MM, and BA probability MAC for the full role) with LEND ops interleaved."""
    import os
    from cocotb.triggers import FallingEdge
    from verif.lib.clock import clock_and_reset
    from verif.lib.runner import cocotb_config
    from defa_hw.rtl.pe import ProcessingElement
    cfg = cocotb_config()
    role = os.environ["PE_ROLE"]
    rng = np.random.default_rng(3)
    ops, chains = _chains(cfg, role, rng, N_OPS)
    lat, plat = ProcessingElement.LATENCY, ProcessingElement.PROD_LATENCY
    acc_due = {n + lat: exp for n, exp in chains}
    mac_at = {n + lat for n, op in enumerate(ops) if op is not None and op[0] == 0}
    prod_due = {n + plat: op[2] * op[3] for n, op in enumerate(ops) if op is not None}

    await clock_and_reset(dut, low=("valid",))

    ports = (dut.mode, dut.first, dut.a, dut.b, dut.preload)
    checked = 0
    for n in range(len(ops) + lat + 1):
        await FallingEdge(dut.clk)
        pv = int(dut.prod_valid.value)
        if n in prod_due:
            assert pv == 1, f"cycle {n}: prod_valid low"
            got = dut.prod.value.to_signed()
            assert got == prod_due[n], f"cycle {n}: prod {got}, expected {prod_due[n]}"
        else:
            assert pv == 0, f"cycle {n}: unexpected prod_valid"
        assert int(dut.acc_valid.value) == (n in mac_at), f"cycle {n}: acc_valid wrong"
        if n in acc_due:
            got = dut.acc.value.to_signed()
            assert got == acc_due[n], f"cycle {n}: acc {got}, expected {acc_due[n]}"
            checked += 1
        op = ops[n] if n < len(ops) else None
        if op is None:
            dut.valid.value = 0
            dut.first.value = int(rng.integers(0, 2))          # garbage while idle
        else:
            dut.valid.value = 1
            for p, v in zip(ports, op):
                p.value = v
    assert checked == len(chains)
    dut._log.info(f"{cfg.name}/{role}: {len(ops)} cycles, {len(chains)} MAC chains, "
                  f"{sum(op is not None and op[0] == 0 for op in ops)} MACs, "
                  f"{sum(op is not None and op[0] == 1 for op in ops)} LEND ops")


@pytest.mark.parametrize("role", ["full", "interp", "mm"])
@pytest.mark.parametrize("name", ["tiny", "defa"])
def test_pe(name, role):
    from verif.lib.runner import run_cocotb
    from defa_hw.rtl.pe import ProcessingElement
    cfg = preset(name)
    run_cocotb(component=ProcessingElement(cfg, role=role), toplevel="pe",
               test_module="test_pe", build_name=f"pe_{name}_{role}", cfg=cfg,
               env={"PE_ROLE": role})


@pytest.mark.parametrize("role", ["full", "interp", "mm"])
def test_pe_structure(role, tmp_path):
    """One multiplier and one adder (the accumulator), nothing else arithmetic."""
    from test_bilinear import HIDDEN_ARITH, yosys_cells
    from defa_hw.flow.generate import to_verilog
    from defa_hw.rtl.pe import ProcessingElement
    cells = yosys_cells(to_verilog(ProcessingElement(preset("defa"), role=role), name="pe"),
                        "pe", tmp_path)
    assert cells.get("$mul", 0) == 1 and cells.get("$add", 0) == 1, cells
    assert cells.get("$sub", 0) == 0, cells
    for hidden in HIDDEN_ARITH:
        assert cells.get(hidden, 0) == 0, f"unexpected {hidden} cells: {cells}"

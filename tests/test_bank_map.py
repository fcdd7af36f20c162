"""The RTL-side bank map (``defa_hw.rtl.levels.BankMap``) against the golden spec.

Its Amaranth expressions are evaluated in Amaranth's simulator on every pixel of every
level and compared with :func:`golden.bank_map.bank_map`.
"""

import numpy as np
import pytest
from amaranth import Const, Module, Signal
from amaranth.sim import Simulator

from defa_hw.config import preset
from defa_hw.rtl.levels import BankMap
from golden.bank_map import bank_map

PRESETS = ("tiny", "defa")


class _WholeLevels:
    """A config view whose row window holds every row, the FWP counters' storage."""

    def __init__(self, cfg):
        self.n_levels, self.max_shapes = cfg.n_levels, cfg.max_shapes

    def buffer_rows(self, level):
        h, _ = self.max_shapes[level]
        return h + (h & 1)


def _evaluate(cfg, bm):
    """Bank and word of every pixel, per level, as ``(H_max, W_max)`` arrays.

    One simulation step per row: the row is an input, each column a constant.
    """
    m = Module()
    ys, outs = [], []
    for l, (h, w) in enumerate(cfg.max_shapes):
        y = Signal(range(h), name=f"y{l}")
        ys.append(y)
        row = []
        for x in range(w):
            xc = Const(x, range(w))
            bank = Signal(bm.bank_bits, name=f"bank{l}_{x}")
            word = Signal(bm.word_bits, name=f"word{l}_{x}")
            m.d.comb += [bank.eq(bm.bank(Const(l, range(cfg.n_levels)), y, xc)),
                         word.eq(bm.word(l, y, xc))]
            row.append((bank, word))
        outs.append(row)
    got = [np.zeros((2, h, w), np.int64) for h, w in cfg.max_shapes]

    async def bench(ctx):
        for yy in range(max(h for h, _ in cfg.max_shapes)):
            for l, (h, _) in enumerate(cfg.max_shapes):
                if yy < h:
                    ctx.set(ys[l], yy)
            for l, (h, _) in enumerate(cfg.max_shapes):
                if yy < h:
                    for x, (bank, word) in enumerate(outs[l]):
                        got[l][:, yy, x] = ctx.get(bank), ctx.get(word)

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    return got


@pytest.mark.parametrize("window", [True, False], ids=["window", "whole"])
@pytest.mark.parametrize("name", PRESETS)
def test_bank_map_matches_golden_on_every_pixel(name, window):
    cfg = preset(name)
    bm = BankMap(cfg, window=window)
    spec_cfg = cfg if window else _WholeLevels(cfg)
    got = _evaluate(cfg, bm)
    for l, (h, w) in enumerate(cfg.max_shapes):
        y, x = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        bank, word = bank_map(l, y, x, spec_cfg)
        np.testing.assert_array_equal(got[l][0], bank, err_msg=f"bank, level {l}")
        np.testing.assert_array_equal(got[l][1], word, err_msg=f"word, level {l}")
        # Every word fits its bank, and the bank map's sizes are the spec's.
        assert word.max() < bm.depth[l] == spec_cfg.buffer_rows(l) // 2 * ((w + 1) // 2)
        assert bm.depth[l] <= 1 << bm.word_bits


@pytest.mark.parametrize("name", PRESETS)
def test_window_depths_are_the_config_bank_words(name):
    cfg = preset(name)
    assert BankMap(cfg).depth == [cfg.bank_words(l) for l in range(cfg.n_levels)]


def test_route_sends_each_neighbour_to_its_parity_bank():
    """Every 2x2 neighbourhood of every tiny level, neighbours in a rotated order, one
    of them disabled: each bank gets the golden word of its neighbour or nothing."""
    cfg = preset("tiny")
    bm = BankMap(cfg)
    m = Module()
    y0 = [Signal(range(h), name=f"y0_{l}") for l, (h, _) in enumerate(cfg.max_shapes)]
    x0 = [Signal(range(w), name=f"x0_{l}") for l, (_, w) in enumerate(cfg.max_shapes)]
    off = Signal(range(4))
    hits, words, nbs = [], [], []
    for l in range(cfg.n_levels):
        order = [(1, 0), (1, 1), (0, 0), (0, 1)]        # not the parity order
        ys = [y0[l] + dy for dy, _ in order]
        xs = [x0[l] + dx for _, dx in order]
        nbs.append(order)
        for j, (hit, word) in enumerate(bm.route(l, ys, xs, [off != k for k in range(4)])):
            hs, ws = Signal(name=f"hit{l}_{j}"), Signal(bm.word_bits, name=f"word{l}_{j}")
            m.d.comb += [hs.eq(hit), ws.eq(word)]
            hits.append(hs)
            words.append(ws)
    checked = []

    async def bench(ctx):
        for l, (h, w) in enumerate(cfg.max_shapes):
            for yy in range(h - 1):
                for xx in range(w - 1):
                    for k in range(4):
                        ctx.set(y0[l], yy)
                        ctx.set(x0[l], xx)
                        ctx.set(off, k)
                        for n, (dy, dx) in enumerate(nbs[l]):
                            bank, word = bank_map(l, yy + dy, xx + dx, cfg)
                            assert ctx.get(hits[bank]) == (n != k)
                            assert ctx.get(words[bank]) == (word if n != k else 0)
                            checked.append(bank)

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    # Each neighbourhood covers the 4 banks of its level.
    assert sorted(set(checked)) == list(range(bm.n_banks))
    assert len(checked) == 16 * sum((h - 1) * (w - 1) for h, w in cfg.max_shapes)


@pytest.mark.parametrize("name", PRESETS)
def test_intra_baseline_bank_matches_golden(name):
    """The buffer's intra-level baseline bank on every (y, x) parity class."""
    from defa_hw.rtl.fmap_buffer import FmapGeometry
    from golden.bank_map import bank_map_intra
    cfg = preset(name)
    g = FmapGeometry(cfg, "intra")
    m = Module()
    y, x = Signal(4), Signal(4)
    bank = Signal(4)
    m.d.comb += bank.eq(g.intra_bank(y, x))
    seen = set()

    async def bench(ctx):
        for yy in range(16):
            for xx in range(16):
                ctx.set(y, yy)
                ctx.set(x, xx)
                assert ctx.get(bank) == bank_map_intra(yy, xx, cfg)
                seen.add(ctx.get(bank))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert seen == set(range(16))


@pytest.mark.parametrize("name", PRESETS)
def test_any_level_column_is_x_half(name):
    """``column(None, x)``, shared by all levels, is ``x >> 1`` for every column of the
    widest level (so an in-map column of any level)."""
    cfg = preset(name)
    bm = BankMap(cfg)
    wmax = max(w for _, w in cfg.max_shapes)
    m = Module()
    x = Signal(range(wmax))
    col = Signal(16)
    m.d.comb += col.eq(bm.column(None, x))
    got = []

    async def bench(ctx):
        for xx in range(wmax):
            ctx.set(x, xx)
            got.append(ctx.get(col))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert got == [xx >> 1 for xx in range(wmax)]


def test_window_must_be_a_bool():
    with pytest.raises(TypeError, match="window must be a bool"):
        BankMap(preset("tiny"), window="whole")

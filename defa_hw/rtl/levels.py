"""The levels of the multi-scale feature map on the RTL side: runtime shapes and bank map.

Every block that stores or addresses pixels takes these from here, so the bank map is
written once: the sampling-address unit, the feature-map buffer, the FWP mask
generator and the core's incoming-mask banks.  The independent spec is
:func:`golden.bank_map.bank_map` (``docs/numerics.md``, bank mapping);
``tests/test_bank_map.py`` checks this map against it on every pixel.
"""

from amaranth import Cat, Mux
from amaranth.hdl import unsigned
from amaranth.lib import data
from amaranth.utils import bits_for, ceil_log2

__all__ = ["level_shape", "shapes_layout", "BankMap"]


def level_shape(cfg):
    """Shape of a level index ``0 .. n_levels - 1`` (at least 1 bit)."""
    return unsigned(bits_for(cfg.n_levels - 1))


def shapes_layout(cfg):
    """Runtime spatial shapes ``(h, w)`` per level (``1 <= h <= H_max``, ``1 <= w <= W_max``)."""
    return data.ArrayLayout(data.StructLayout({
        "h": unsigned(bits_for(max(h for h, _ in cfg.max_shapes))),
        "w": unsigned(bits_for(max(w for _, w in cfg.max_shapes))),
    }), cfg.n_levels)


class BankMap:
    """DEFA's conflict-free inter-level bank map: the bank and word of pixel ``(l, y, x)``.

    Level ``l`` owns banks ``4l .. 4l+3``; inside the group the bank is the 2x2 parity
    ``2 (y & 1) + (x & 1)``, so the 4 neighbours of a sampling point sit in 4 banks.
    The word is ``row_pair * pitch + (x >> 1)`` with ``row_pair = (y >> 1) mod pairs``
    and ``pitch = ceil(W_max / 2)``.  Coordinates are raw bits of non-negative in-map
    values; other values give don't-care words (callers gate them).

    Parameters
    ----------
    cfg : DefaConfig
    window : bool, keyword-only
        ``True`` (default): the buffer's circular row window of ``cfg.buffer_rows(l)``
        rows (a power of two row pairs when smaller than the level, so ``mod`` is a
        truncation), as the feature-map buffer and the core's incoming-mask banks.
        ``False``: the whole level (``ceil(H_max / 2)`` row pairs), as FWP's counters.

    Attributes
    ----------
    n_banks : ``4 * n_levels``.
    pairs, pair_bits, pitch, col_bits, depth : per level: row pairs, row-pair index
        bits, words per row pair, column index bits, words per bank.
    depths : words of each bank.
    word_bits : width of the deepest bank's word address (at least 1).
    bank_bits : width of a bank number.
    """

    def __init__(self, cfg, *, window=True):
        if not isinstance(window, bool):
            raise TypeError(f"window must be a bool, not {window!r}")
        self.cfg, self.window = cfg, window
        L = cfg.n_levels
        self.n_banks = 4 * L
        self.pairs = [cfg.buffer_rows(l) // 2 if window else (h + 1) // 2
                      for l, (h, _) in enumerate(cfg.max_shapes)]
        # cfg.buffer_rows keeps a power of two row pairs whenever it is less than the
        # level, so the circular index is the low bits of y >> 1; a level kept whole
        # needs no modulo, as an in-map y >> 1 is below ``pairs`` anyway.
        self.pair_bits = [ceil_log2(p) for p in self.pairs]
        self.pitch = [cfg.bank_pitch(l) for l in range(L)]
        self.col_bits = [ceil_log2(p) for p in self.pitch]
        self.depth = [p * w for p, w in zip(self.pairs, self.pitch)]
        self.depths = [self.depth[b // 4] for b in range(self.n_banks)]
        self.word_bits = max(1, max(ceil_log2(d) for d in self.depth))
        self.bank_bits = ceil_log2(self.n_banks)

    def group_bank(self, y, x):
        """Bank inside the level's group of 4: the 2x2 parity ``2 (y & 1) + (x & 1)``."""
        return Cat(x[0], y[0])

    def bank(self, level, y, x):
        """Bank number ``4 level + 2 (y & 1) + (x & 1)``; ``level`` is a Value."""
        return Cat(self.group_bank(y, x), level)

    def row_pair(self, level, y):
        """Row-pair index ``(y >> 1) mod pairs`` of the Python-int ``level``."""
        return y[1:1 + self.pair_bits[level]]

    def column(self, level, x):
        """Column index ``x >> 1`` of the Python-int ``level``; ``None``: the widest level."""
        bits = max(self.col_bits) if level is None else self.col_bits[level]
        return x[1:1 + bits]

    def word_at(self, level, row_pair, column):
        """Word of a row pair and column of the Python-int ``level``."""
        return row_pair * self.pitch[level] + column

    def word(self, level, y, x):
        """In-bank word of pixel ``(y, x)`` of the Python-int ``level``."""
        return self.word_at(level, self.row_pair(level, y), self.column(level, x))

    def route(self, level, ys, xs, enables=None):
        """Per bank ``j`` of ``level``'s group, ``(hit, word)`` of a 2x2 neighbourhood.

        ``ys``, ``xs``: the 4 neighbours' coordinates (any order); ``enables``: which of
        them take part (default all).  The 4 parities of a 2x2 neighbourhood differ, so
        each bank gets at most one neighbour; ``word`` is 0 when it gets none.
        """
        words = [self.word(level, y, x) for y, x in zip(ys, xs)]
        out = []
        for j in range(4):
            sel = [self.group_bank(y, x) == j for y, x in zip(ys, xs)]
            if enables is not None:
                sel = [en & s for en, s in zip(enables, sel)]
            word = 0
            for k in reversed(range(len(sel))):
                word = Mux(sel[k], words[k], word)
            out.append((Cat(*sel).any(), word))
        return out

"""Formal harness of the feature-map buffer's bank select (``BankSelect``).

Free inputs: one 2x2 neighbourhood per point (the top-left pixel ``(y0, x0)`` is any
value of the coordinate width), any in-bounds flags and slices, ``valid``.  The only
assumptions are the read contract: a request flagged in-bounds lies inside its
level's ``max_shapes`` and its slice exists.  The assertions are combinational, so a
depth-1 induction proof covers every cycle.

Inter mapping (DEFA, one point per level): ASSERT
  1. no bank is requested twice (per-bank request count <= 1);
  2. an out-of-map request hits and is granted no bank;
  3. every in-map request hits exactly one bank, inside its level's group, and with
     ``valid`` it is granted in this cycle;
  4. a bank read is enabled exactly when one of its requests is granted
     (so never by an out-of-map request, never without ``valid``);
  5. an enabled bank's address is below that bank's depth;
  6. the ``served`` flags and the conflict counter's per-bank counts agree with the
     grants and hits (so the counter of the inter mapping stays 0).
Intra baseline (four points of one level) is checked against property 1 only to show
that it conflicts (the proof must FAIL).
"""

from amaranth import Cat, Module, Signal, signed
from amaranth.hdl import Assert, Assume
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In

from defa_hw.rtl.fmap_buffer import BankSelect

__all__ = ["BankSelectProps", "BrokenBankBankSelect", "BrokenEnableBankSelect", "VARIANTS"]


class BrokenBankBankSelect(BankSelect):
    """Deliberately broken mapping: bank = 4l + 2 * (x & 1) + (x & 1) ignores y."""

    def group_bank(self, y, x):
        return Cat(x[0], x[0])


class BrokenEnableBankSelect(BankSelect):
    """Deliberately broken gating: out-of-map neighbours enable their bank."""

    def request_enable(self, req):
        return 1


#: variant -> (BankSelect class, mapping, the proof is expected to pass)
VARIANTS = {
    "inter": (BankSelect, "inter", True),
    "broken-bank": (BrokenBankBankSelect, "inter", False),
    "broken-enable": (BrokenEnableBankSelect, "inter", False),
    "intra": (BankSelect, "intra", False),
}


class BankSelectProps(wiring.Component):
    """Assumptions and assertions around one ``BankSelect``.

    Parameters
    ----------
    cfg : DefaConfig
    variant : a key of :data:`VARIANTS` (keyword-only).
    """

    def __init__(self, cfg, *, variant="inter"):
        self._cfg = cfg
        self._cls, self._mapping, _ = VARIANTS[variant]
        self._dut = self._cls(cfg, mapping=self._mapping)
        g = self._dut.geometry
        n_pts = cfg.n_levels                     # points per read cycle
        members = {
            "valid": In(1),
            "y0": In(data.ArrayLayout(signed(cfg.coord_int_bits), n_pts)),
            "x0": In(data.ArrayLayout(signed(cfg.coord_int_bits), n_pts)),
            "inb": In(g.n_req),
            "slc": In(data.ArrayLayout(max(1, (g.n_slices - 1).bit_length()), g.n_req)),
        }
        if self._mapping == "intra":
            members["level"] = In(range(cfg.n_levels))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        m.submodules.dut = dut = self._dut
        g = dut.geometry
        n_banks, n_req = cfg.n_banks, g.n_req
        intra = self._mapping == "intra"

        # -- stimulus: 2x2 neighbourhoods, neighbour order 00, 01, 10, 11 --------------------
        m.d.comb += dut.valid.eq(self.valid)
        if intra:
            m.d.comb += dut.req.level.eq(self.level)
            m.d.comb += dut.pending.eq(self.inb)       # first cycle of a read
        for i in range(n_req):
            p, k = i // 4, i % 4
            r = dut.req.req[i]
            m.d.comb += [
                r.y.eq(self.y0[p] + (k >> 1)),
                r.x.eq(self.x0[p] + (k & 1)),
                r.inb.eq(self.inb[i]),
            ]
            if g.n_slices > 1:
                m.d.comb += r.slice.eq(self.slc[i])
                m.d.comb += Assume(self.slc[i] < g.n_slices)
            # The read contract: in-bounds means inside the level's max_shapes.
            if intra:
                for l, (h, w) in enumerate(cfg.max_shapes):
                    with m.If(self.level == l):
                        m.d.comb += Assume(~self.inb[i] | ((r.y >= 0) & (r.y < h) &
                                                           (r.x >= 0) & (r.x < w)))
            else:
                h, w = cfg.max_shapes[p]
                m.d.comb += Assume(~self.inb[i] | ((r.y >= 0) & (r.y < h) &
                                                   (r.x >= 0) & (r.x < w)))

        # -- 1. one request per bank -----------------------------------------------------------
        for b in range(n_banks):
            count = sum(dut.hit[i][b] for i in range(n_req))
            m.d.comb += Assert(count <= 1, f"bank {b} requested twice in one cycle")
        if intra:
            return m
        for b in range(n_banks):
            # The conflict counter's per-bank count is the same column sum (so it reads 0).
            count = sum(dut.hit[i][b] for i in range(n_req))
            m.d.comb += Assert(dut.count[b] == count, f"bank {b} request count is wrong")

        for i in range(n_req):
            group = ((1 << 4) - 1) << (4 * (i // 4))
            hit, grant = dut.hit[i], dut.grant[i]
            n_hit = sum(hit[b] for b in range(n_banks))
            # -- 2. out-of-map requests occupy nothing ----------------------------------------
            m.d.comb += Assert(self.inb[i] | ((hit == 0) & (grant == 0)),
                               f"out-of-map request {i} selects a bank")
            # -- 3. in-map requests hit exactly one bank of their group, granted at once ------
            m.d.comb += Assert(~self.inb[i] | ((n_hit == 1) & ((hit & ~group) == 0)),
                               f"in-map request {i} does not hit exactly one bank of its group")
            m.d.comb += Assert(grant == (hit & Cat([self.valid] * n_banks)),
                               f"request {i} is not served in its cycle")
            m.d.comb += Assert(dut.served[i] == grant.any(), f"served flag {i} is wrong")
        for b in range(n_banks):
            any_grant = Cat(dut.grant[i][b] for i in range(n_req)).any()
            # -- 4. bank enables come from granted requests only -------------------------------
            m.d.comb += Assert(dut.bank_en[b] == any_grant, f"bank {b} enable without a grant")
            m.d.comb += Assert(~dut.bank_en[b] | self.valid, f"bank {b} enabled without valid")
            # -- 5. enabled addresses stay inside the bank ----------------------------------------
            m.d.comb += Assert(~dut.bank_en[b] | (dut.bank_addr[b] < g.depths[b]),
                               f"bank {b} address beyond its depth {g.depths[b]}")
        return m

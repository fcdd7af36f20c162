"""Multi-scale banked feature-map buffer with DEFA's conflict-free inter-level mapping.

``cfg.n_banks`` single-read-port SRAM banks (one read port and one write port each)
hold ONE head's value map: pixel ``(y, x)`` of level ``l`` is ``n_slices = head_dim /
ba_channels`` words of ``ba_channels`` channels.  A read cycle is ``4 * n_levels``
neighbour requests.  With the inter-level mapping (DEFA, ``docs/numerics.md``, bank
mapping) request ``i`` is neighbour ``i % 4`` of the point of level ``i // 4`` and the
mapping guarantees one request per bank (proved in ``verif/formal``), so a read cycle
never stalls.  The intra-level mapping is kept only as the baseline: its conflicting
requests are served over several cycles (``rd.ready`` low).  See
``docs/architecture.md``, feature-map buffer.
"""

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from defa_hw.rtl.levels import BankMap

__all__ = ["MAPPINGS", "FmapGeometry", "BankSelect", "FmapBuffer"]

MAPPINGS = ("inter", "intra")


def _struct(fields):
    # Fields of one value (range(1)) carry no information; leaving them out avoids
    # zero-width ports, which Verilog cannot express.
    return data.StructLayout({k: v for k, v in fields.items()
                              if not (isinstance(v, range) and len(v) == 1)})


class FmapGeometry:
    """Sizes and layouts of the buffer for one config and mapping (all config-derived).

    Parameters
    ----------
    cfg : DefaConfig
    mapping : ``"inter"`` (DEFA) or ``"intra"`` (baseline, needs 16 banks).

    Attributes
    ----------
    n_req : read requests per cycle, ``4 * n_levels`` (= ``n_banks``).
    n_slices : words per pixel, ``head_dim / ba_channels``.
    word_bits : bank word width, ``ba_channels * data_bits``.
    depths : words of each bank.
    addr_bits : width of the widest bank address.
    sel_bits : width of a request's bank select (in-group index, or bank number).
    max_per_bank : most requests that can address one bank (4 inter, n_req intra).
    bank_map : the inter mapping's :class:`~defa_hw.rtl.levels.BankMap` (windowed).
    pair_bits, pitch : per level, inter mapping: row-pair index bits and the word pitch
        of a row pair (``bank_map``'s).
    quad_bits, pitch4, base : per level, intra mapping: row-quad index bits, word pitch
        ``ceil(W_max / 4)`` of a row quad and first word of the level.
    request_layout, read_layout, response_layout, write_layout : stream payloads.
    """

    def __init__(self, cfg, mapping="inter"):
        if mapping not in MAPPINGS:
            raise ValueError(f"mapping {mapping!r} is not one of {MAPPINGS}")
        if mapping == "intra" and cfg.n_banks != 16:
            raise ValueError("the intra-level baseline maps one level onto exactly 16 banks")
        self.cfg, self.mapping = cfg, mapping
        L = cfg.n_levels
        self.n_req = 4 * L
        self.n_slices = S = cfg.head_dim // cfg.ba_channels
        self.word_bits = cfg.ba_channels * cfg.data_bits
        self.bank_map = bm = BankMap(cfg)
        self.pair_bits, self.pitch = bm.pair_bits, bm.pitch
        self.quad_bits, self.pitch4, self.base = [], [], []
        base = 0
        for l, (_, w) in enumerate(cfg.max_shapes):
            # A window is a power of two row pairs (cfg.buffer_rows), so also of row
            # quads: the intra row index is the low bits of y >> 2.
            quads = -(-cfg.buffer_rows(l) // 4)
            self.quad_bits.append(ceil_log2(quads))
            self.pitch4.append(-(-w // 4))
            self.base.append(base)
            base += quads * self.pitch4[-1] * S
        if mapping == "inter":
            self.depths = [d * S for d in bm.depths]
        else:
            self.depths = [base] * cfg.n_banks
        self.addr_bits = max(ceil_log2(d) for d in self.depths)
        self.sel_bits = 2 if mapping == "inter" else ceil_log2(cfg.n_banks)
        self.max_per_bank = 4 if mapping == "inter" else self.n_req

        ci = cfg.coord_int_bits
        self.request_layout = _struct({
            "y": signed(ci), "x": signed(ci), "inb": unsigned(1), "slice": range(S)})
        read = {"req": data.ArrayLayout(self.request_layout, self.n_req)}
        if mapping == "intra":
            read["level"] = range(L)
        self.read_layout = _struct(read)
        self.word_layout = data.ArrayLayout(signed(cfg.data_bits), cfg.ba_channels)
        self.response_layout = data.ArrayLayout(self.word_layout, self.n_req)
        self.write_layout = _struct({
            "level": range(L),
            "y": range(max(h for h, _ in cfg.max_shapes)),
            "x": range(max(w for _, w in cfg.max_shapes)),
            "slice": range(S),
            "data": self.word_layout,
        })

    def pixel_address(self, level, y, x, slc):
        """In-bank word address of a pixel slice of the Python-int ``level``.

        ``y``, ``x`` are the raw bits of a non-negative in-map coordinate; ``slc`` the
        slice (``None`` when there is one slice).  Out-of-map inputs give don't-care
        addresses (their reads are never enabled, their writes dropped).
        """
        S = self.n_slices
        if self.mapping == "inter":
            word = self.bank_map.word(level, y, x)
            base = 0
        else:
            # word = base + ((y >> 2) mod quads) * ceil(W/4) + (x >> 2)
            row = y[2:2 + self.quad_bits[level]]
            col = x[2:2 + ceil_log2(self.pitch4[level])]
            word = row * self.pitch4[level] + col
            base = self.base[level]
        addr = word * S if slc is None else word * S + slc
        return (addr + base)[:self.addr_bits]

    def level_address(self, m, addr, level, y, x, slc):
        """Drive ``addr`` with :meth:`pixel_address` of the runtime ``level`` (a Value)."""
        with m.Switch(level):
            for l in range(self.cfg.n_levels):
                with m.Case(l):
                    m.d.comb += addr.eq(self.pixel_address(l, y, x, slc))

    def intra_bank(self, y, x):
        """Intra baseline: bank ``(y & 3) * 4 + (x & 3)`` (``golden.bank_map.bank_map_intra``)."""
        return Cat(x[0:2], y[0:2])


class BankSelect(wiring.Component):
    """Combinational bank select of one read cycle: requests -> bank enables/addresses.

    Separate from the memories so that ``verif/formal`` proves its properties (one
    request per bank, out-of-map requests enable nothing) on the RTL itself.

    Parameters
    ----------
    cfg : DefaConfig
    mapping : ``"inter"`` or ``"intra"`` (keyword-only).

    Attributes
    ----------
    valid : In(1), a read cycle is issued.
    req : In(read_layout), the ``n_req`` requests (and the level, intra).
    pending : In(n_req), intra only: requests not served in earlier cycles.
    sel : Out(n_req x sel_bits), bank of every request: inside its level's group
        (inter) or the bank number (intra); the read data returns through it.
    hit : Out(n_req x n_banks), one-hot bank of every in-map request (no arbitration).
    grant : Out(n_req x n_banks), the bank each request reads in this cycle.
    served : Out(n_req), the request reads a bank in this cycle.
    bank_en, bank_addr : Out, per bank read enable and word address.
    count : Out(n_banks), requests per bank before arbitration (``hit`` column sums);
        the conflict counter's input.
    """

    def __init__(self, cfg, *, mapping="inter"):
        self.geometry = g = FmapGeometry(cfg, mapping)
        self._cfg, self._mapping = cfg, mapping
        members = {
            "valid": In(1),
            "req": In(g.read_layout),
            "sel": Out(data.ArrayLayout(g.sel_bits, g.n_req)),
            "hit": Out(data.ArrayLayout(cfg.n_banks, g.n_req)),
            "grant": Out(data.ArrayLayout(cfg.n_banks, g.n_req)),
            "served": Out(g.n_req),
            "bank_en": Out(cfg.n_banks),
            "bank_addr": Out(data.ArrayLayout(g.addr_bits, cfg.n_banks)),
            "count": Out(data.ArrayLayout(range(g.max_per_bank + 1), cfg.n_banks)),
        }
        if mapping == "intra":
            members["pending"] = In(g.n_req)
        super().__init__(members)

    # The two hooks below are the whole mapping decision; verif/formal overrides them to
    # show that the proof catches a broken mapping.
    def group_bank(self, y, x):
        """Inter: bank inside the level's group (the bank map's 2x2 parity)."""
        return self.geometry.bank_map.group_bank(y, x)

    def request_enable(self, req):
        """A request occupies a bank only when its neighbour is in the map."""
        return req.inb

    def _slice(self, req):
        return req.slice if self.geometry.n_slices > 1 else None

    def elaborate(self, platform):
        m = Module()
        cfg, g = self._cfg, self.geometry
        n_banks, n_req = cfg.n_banks, g.n_req
        inter = self._mapping == "inter"
        # One signal per request and per bank, gathered into the wide ports at the end:
        # logic that reads slices of a wide vector driven piecewise makes event-driven
        # simulators (Icarus) re-evaluate everything on every bit change.
        addr = [Signal(g.addr_bits, name=f"addr{i}") for i in range(n_req)]
        sel = [Signal(g.sel_bits, name=f"sel{i}") for i in range(n_req)]
        hit = [Signal(n_banks, name=f"hit{i}") for i in range(n_req)]
        grant = [Signal(n_banks, name=f"grant{i}") for i in range(n_req)]
        # Inter: only the 4 requests of a bank's level can reach it.
        cand = [[i for i in range(n_req) if not inter or i // 4 == b // 4]
                for b in range(n_banks)]

        level = self.req.level if not inter and cfg.n_levels > 1 else Const(0)
        for i in range(n_req):
            r = self.req.req[i]
            en = self.request_enable(r)
            if inter:
                l = i // 4
                m.d.comb += [
                    addr[i].eq(g.pixel_address(l, r.y, r.x, self._slice(r))),
                    sel[i].eq(self.group_bank(r.y, r.x)),
                    hit[i].eq(Cat(Const(0, 4 * l), Cat(en & (sel[i] == j) for j in range(4)))),
                    # Conflict-free by construction: every request is served at once.
                    grant[i].eq(Mux(self.valid, hit[i], 0)),
                ]
            else:
                g.level_address(m, addr[i], level, r.y, r.x, self._slice(r))
                m.d.comb += [
                    sel[i].eq(g.intra_bank(r.y, r.x)),
                    hit[i].eq(Cat(en & (sel[i] == b) for b in range(n_banks))),
                ]
        if not inter:
            # Fixed priority per bank: the lowest pending request wins, the rest wait.
            first = []
            for b in range(n_banks):
                want = Signal(n_req, name=f"want{b}")
                m.d.comb += want.eq(Cat(self.valid & self.pending[i] & hit[i][b]
                                        for i in range(n_req)))
                # want & -want isolates the lowest set bit (two's complement).
                first.append(Signal(n_req, name=f"first{b}"))
                m.d.comb += first[b].eq(want & (-want)[:n_req])
            for i in range(n_req):
                m.d.comb += grant[i].eq(Cat(first[b][i] for b in range(n_banks)))

        bank_en, bank_addr, count = [], [], []
        for b in range(n_banks):
            bank_en.append(Signal(name=f"bank_en{b}"))
            bank_addr.append(Signal(g.addr_bits, name=f"bank_addr{b}"))
            count.append(Signal(range(len(cand[b]) + 1), name=f"count{b}"))
            a = Const(0, g.addr_bits)
            for i in cand[b]:
                # AND-OR multiplexer: at most one grant per bank.
                a = a | Mux(grant[i][b], addr[i], 0)
            m.d.comb += [
                bank_en[b].eq(Cat(grant[i][b] for i in cand[b]).any()),
                bank_addr[b].eq(a),
                count[b].eq(sum(hit[i][b] for i in cand[b])),
            ]
        m.d.comb += [
            self.sel.eq(Cat(sel)), self.hit.eq(Cat(hit)), self.grant.eq(Cat(grant)),
            self.served.eq(Cat(grant[i].any() for i in range(n_req))),
            self.bank_en.eq(Cat(bank_en)), self.bank_addr.eq(Cat(bank_addr)),
            self.count.eq(Cat(count)),
        ]
        return m


class FmapBuffer(wiring.Component):
    """Banked multi-scale feature-map buffer of one head.

    Read: ``rd`` takes one read cycle of ``n_req`` neighbour requests; ``rsp`` returns
    their ``n_req`` words ``LATENCY`` cycles after ``rd`` is accepted (no back-pressure;
    out-of-map requests read zero).  Inter mapping: ``rd.ready`` is always 1.  Intra
    baseline: a cycle whose requests share banks is served over ``max per bank``
    cycles with ``rd.ready`` low until the last one (``rd`` must stay stable, as the
    stream rules require).  Writes land at the clock edge; a read accepted in the same
    cycle reads the SRAM a cycle later and sees the new word.

    Write: ``wr`` takes one pixel word per cycle (always ready: the write port is
    separate from the read port); beats outside the level's ``max_shapes`` are dropped.

    Statistics (reset by ``rst``, wrap around; two cycles behind the reads):
    ``stat_reads`` read cycles accepted,
    ``stat_conflict_reads`` of them with two requests on one bank, ``stat_lost_cycles``
    the sum of ``max(requests per bank) - 1``.

    Parameters
    ----------
    cfg : DefaConfig
    mapping : ``"inter"`` (default) or ``"intra"``, keyword-only.
    stat_bits : width of the statistics counters, keyword-only.

    Attributes
    ----------
    LATENCY : cycles from ``rd`` accepted to ``rsp.valid`` (3: bank enables and
        addresses registered, SRAM read, then the bank-to-request crossbar into the
        output register).
    geometry : :class:`FmapGeometry`.
    """

    LATENCY = 3

    def __init__(self, cfg, *, mapping="inter", stat_bits=32):
        self.geometry = g = FmapGeometry(cfg, mapping)
        self._cfg, self._mapping = cfg, mapping
        super().__init__({
            "rd": In(stream.Signature(g.read_layout)),
            "rsp": Out(wiring.Signature({"valid": Out(1), "payload": Out(g.response_layout)})),
            "wr": In(stream.Signature(g.write_layout)),
            "stat_reads": Out(stat_bits),
            "stat_conflict_reads": Out(stat_bits),
            "stat_lost_cycles": Out(stat_bits),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, g = self._cfg, self.geometry
        n_banks, n_req = cfg.n_banks, g.n_req
        intra = self._mapping == "intra"

        m.submodules.bank_select = bs = BankSelect(cfg, mapping=self._mapping)
        m.d.comb += [bs.valid.eq(self.rd.valid), bs.req.eq(self.rd.payload)]

        # -- s0: bank select, SRAM read issue, stall control ------------------------------
        inb = Cat(self.rd.payload.req[i].inb for i in range(n_req))
        served = bs.served
        s0_first = Signal()                 # first serving cycle of the current read
        if intra:
            s0_done = Signal(n_req)         # requests served in earlier stall cycles
            pending = inb & ~s0_done
            m.d.comb += [
                bs.pending.eq(pending),
                self.rd.ready.eq(~(pending & ~served).any()),
                s0_first.eq(self.rd.valid & ~s0_done.any()),
            ]
            with m.If(self.rd.valid):
                m.d.sync += s0_done.eq(Mux(self.rd.ready, 0, s0_done | served))
        else:
            m.d.comb += [self.rd.ready.eq(1), s0_first.eq(self.rd.valid)]
        accept = self.rd.valid & self.rd.ready

        # -- s1: bank enables and addresses registered: the address arithmetic and the
        # bank multiplexer get a cycle of their own, off the SRAM input path.
        s1_en = Signal(n_banks)
        s1_addr = Signal(bs.bank_addr.shape())
        m.d.sync += [s1_en.eq(bs.bank_en), s1_addr.eq(bs.bank_addr)]
        rdata, wps = [], []
        for b in range(n_banks):
            mem = Memory(shape=g.word_bits, depth=g.depths[b], init=[])
            m.submodules[f"bank{b}"] = mem
            rp = mem.read_port()
            m.d.comb += [rp.en.eq(s1_en[b]), rp.addr.eq(s1_addr[b])]
            rdata.append(rp.data)
            wps.append(mem.write_port())
        self._write_ports(m, wps)

        # -- s2: SRAM data out; route each bank to the request it served -------------------
        def delayed(name, value, n):
            for k in range(n):
                r = Signal(value.shape(), name=f"s{k + 1}_{name}")
                m.d.sync += r.eq(value)
                value = r
            return value

        s2_sel = delayed("sel", bs.sel.as_value(), 2)
        s2_got = delayed("got", served, 2)
        s2_first = delayed("first", s0_first, 2)
        s2_last = delayed("last", accept, 2)

        # -- s3: output register, one per request ---------------------------------------
        s3_data = [Signal(g.word_bits, name=f"s3_data{i}") for i in range(n_req)]
        s3_valid = Signal()
        m.d.sync += s3_valid.eq(s2_last)
        sel_w = g.sel_bits
        for i in range(n_req):
            # Inter: a request can only be served by the 4 banks of its level.
            banks = rdata[4 * (i // 4):4 * (i // 4) + 4] if not intra else rdata
            with m.If(s2_got[i]):
                m.d.sync += s3_data[i].eq(Array(banks)[s2_sel[i * sel_w:(i + 1) * sel_w]])
            with m.Elif(s2_first):
                # Out-of-map requests (never served) read zero.
                m.d.sync += s3_data[i].eq(0)
        m.d.comb += [self.rsp.valid.eq(s3_valid), self.rsp.payload.eq(Cat(s3_data))]

        self._statistics(m, bs, accept)
        return m

    def _write_ports(self, m, wps):
        """One pixel word per cycle to the bank its (level, y, x) maps to."""
        g, cfg = self.geometry, self._cfg
        w = self.wr.payload
        m.d.comb += self.wr.ready.eq(1)
        level = w.level if cfg.n_levels > 1 else Const(0)
        slc = w.slice if g.n_slices > 1 else None
        # Beats outside the level's max shape have no word; drop them.
        fits = Signal()
        with m.Switch(level):
            for l, (h, wd) in enumerate(cfg.max_shapes):
                with m.Case(l):
                    m.d.comb += fits.eq((w.y < h) & (w.x < wd))
        if self._mapping == "inter":
            sel = g.bank_map.group_bank(w.y, w.x)
            for l in range(cfg.n_levels):
                # The 4 banks of a level share one address.
                addr = Signal(g.addr_bits, name=f"wr_addr{l}")
                m.d.comb += addr.eq(g.pixel_address(l, w.y, w.x, slc))
                for j in range(4):
                    wp = wps[4 * l + j]
                    m.d.comb += [wp.en.eq(self.wr.valid & fits & (level == l) & (sel == j)),
                                 wp.addr.eq(addr), wp.data.eq(w.data)]
        else:
            sel = g.intra_bank(w.y, w.x)
            addr = Signal(g.addr_bits, name="wr_addr")
            g.level_address(m, addr, level, w.y, w.x, slc)
            for b, wp in enumerate(wps):
                m.d.comb += [wp.en.eq(self.wr.valid & fits & (sel == b)),
                             wp.addr.eq(addr), wp.data.eq(w.data)]

    def _statistics(self, m, bs, accept):
        cfg, g = self._cfg, self.geometry
        # Two register stages keep the statistics off the read path (they were ECP5's
        # critical path): the per-bank counts, then the most requests on one bank (a
        # balanced max tree); the counters lag the reads by two cycles.
        st_count = Signal(bs.count.shape())
        st_accept = Signal()
        m.d.sync += [st_count.eq(bs.count), st_accept.eq(accept)]
        level = [st_count[b] for b in range(cfg.n_banks)]
        depth = 0
        while len(level) > 1:
            nxt = []
            for i in range(0, len(level) - 1, 2):
                a, b = level[i], level[i + 1]
                step = Signal(range(g.max_per_bank + 1), name=f"most{depth}_{i // 2}")
                m.d.comb += step.eq(Mux(b > a, b, a))
                nxt.append(step)
            if len(level) % 2:
                nxt.append(level[-1])
            level, depth = nxt, depth + 1
        most = level[0]
        st_extra = Signal(range(g.n_req))
        st_accept2 = Signal()
        m.d.sync += [st_extra.eq(Mux(most > 1, most - 1, 0)), st_accept2.eq(st_accept)]
        with m.If(st_accept2):
            m.d.sync += [
                self.stat_reads.eq(self.stat_reads + 1),
                self.stat_conflict_reads.eq(self.stat_conflict_reads + (st_extra != 0)),
                self.stat_lost_cycles.eq(self.stat_lost_cycles + st_extra),
            ]

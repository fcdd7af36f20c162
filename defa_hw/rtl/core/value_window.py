"""Value windows of ``defa_core``: which rows of each level the value buffers hold, the
residency check of the next query, and the row loads a miss asks for on ``fmap_req``.

The policy is specified in ``docs/numerics.md`` (value windows) and modelled by
:func:`golden.value_window.window_schedule`; the cycle model is :mod:`defa_hw.model.perf`.
"""

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import enum, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from defa_hw.rtl.core.common import check_geometry, read_signature, rng
from defa_hw.rtl.core.controller import Phase
from defa_hw.rtl.core.interface import fmap_request_layout
from defa_hw.rtl.sampling_address import shapes_layout

__all__ = ["WindowState", "ValueWindow"]


class WindowState(enum.Enum, shape=3):
    """The check of query ``w_q``: read its reference, compute its rows, compare; then
    either resident (``OK``) or a miss, loaded in VALUE (``LOAD``, then ``LOADED``)."""
    READ = 0
    CALC = 1
    CMP = 2
    OK = 3
    MISS = 4
    LOAD = 5
    LOADED = 6
    DONE = 7


class ValueWindow(wiring.Component):
    """Row windows of the value buffers (DEFA's feature-map reuse).

    Level ``l`` holds ``n_l = min(buffer_rows(l) / 2, ceil(H / 2))`` row pairs, pairs
    ``lo_l .. hi_l``.  Query ``q`` reaches rows ``fl - B .. fl + B + 1`` of level ``l``
    (``fl``: its reference row, ``B``: the offset bound), clipped to the map.  The unit
    checks the queries of a pass in BA order, one ahead of the BA sequencer; a query
    whose rows are not all resident is a miss: the controller drains BA and enters
    VALUE, where the unit asks for the missing pairs of every level on ``fmap_req``
    (level order) and the window moves to start at the query's first pair (or ends at
    the last pair of the map).

    Signal prefix: ``w_``.

    Parameters
    ----------
    geom : CoreGeometry

    Attributes
    ----------
    phase : In(Phase)
    start, pass_start : In(1)
        START clears the windows; a pass restarts the check at its query 0.
    half : In(1), nq_pass : In
        Query-memory half and queries of the pass.
    shapes : In(shapes layout)
    ref_rd : In(read port)
        The reference points (``half * max_queries + q``).
    take : In(1)
        The BA sequencer issues the first operation of query ``q`` (the checked one).
    ingest_busy : In(1)
        The value ingest still takes beats of the previous request.
    req : Out(stream of :func:`~defa_hw.rtl.core.interface.fmap_request_layout`)
        The loads (the core's ``fmap_req``).
    q : Out, ok : Out(1)
        Query ``q`` of the pass is resident (the sequencer may start it).
    miss : Out(1)
        Query ``q`` is not: BA drains, then VALUE loads its rows.
    loaded : Out(1)
        Every load of the miss has been asked for (VALUE ends once its pixels are in).
    rows : Out
        Rows of the request on ``req`` (counts ``Reg.ROWS_LOADED`` at its handshake).

    Constants
    ---------
    CHECK : int
        Cycles from a query's check start (``READ``) to ``ok`` / ``miss``.
    """

    CHECK = 3

    def __init__(self, geom):
        self.geom = g = check_geometry(geom)
        cfg = g.cfg
        self.req_layout = fmap_request_layout(cfg)
        super().__init__({
            "phase": In(Phase), "start": In(1), "pass_start": In(1),
            "half": In(1), "nq_pass": In(rng(g.mq + 1)),
            "shapes": In(shapes_layout(cfg)),
            "ref_rd": In(read_signature(g.L * 2 * cfg.ref_frac_bits, 2 * g.mq)),
            "take": In(1), "ingest_busy": In(1),
            "req": Out(stream.Signature(self.req_layout)),
            "q": Out(rng(g.mq)), "ok": Out(1), "miss": Out(1), "loaded": Out(1),
        })

    def elaborate(self, platform):
        g = self.geom
        cfg = g.cfg
        L, MQ = g.L, g.mq
        R, F = cfg.ref_frac_bits, cfg.coord_frac_bits
        m = Module()
        state = Signal(WindowState)
        w_q = self.q
        in_ba = self.phase == Phase.BA

        h_bits = bits_for(max(h for h, _ in cfg.max_shapes))
        pair = unsigned(max(1, h_bits - 1))
        sy = signed(h_bits + 2)

        # ---- READ: the reference of query w_q ------------------------------------------
        m.d.comb += [self.ref_rd.addr.eq(self.half * MQ + w_q),
                     self.ref_rd.en.eq((state == WindowState.READ) & in_ba)]

        # ---- CALC: rows the query reaches, in row pairs ---------------------------------
        need_a = [Signal(pair, name=f"w_need_a{l}") for l in range(L)]
        need_b = [Signal(pair, name=f"w_need_b{l}") for l in range(L)]
        rb = cfg.ref_frac_bits
        for l in range(L):
            H = self.shapes[l].h
            B = cfg.offset_bound[l]
            ref_y = self.ref_rd.data[(2 * l + 1) * rb:(2 * l + 2) * rb]
            prod = ref_y * H
            if R - F > 0:
                yc = (prod + (1 << (R - F - 1))) >> (R - F)
            else:
                yc = prod << (F - R)
            # The reference row: floor(ref * H - 1/2), as the sampling address computes it.
            fl = Signal(sy, name=f"w_fl{l}")
            m.d.comb += fl.eq((yc[:h_bits + F + 1].as_signed() - (1 << (F - 1))) >> F)
            lo_row = Signal(sy, name=f"w_lo_row{l}")
            hi_row = Signal(sy, name=f"w_hi_row{l}")
            m.d.comb += [lo_row.eq(Mux(fl - B < 0, 0, fl - B)),
                         hi_row.eq(Mux(fl + B + 1 > H - 1, H - 1, fl + B + 1))]
            with m.If(state == WindowState.CALC):
                m.d.sync += [need_a[l].eq(lo_row[1:]), need_b[l].eq(hi_row[1:])]

        # ---- CMP: residency and the loads of a miss ---------------------------------------
        lo = [Signal(pair, name=f"w_lo{l}") for l in range(L)]
        hi = [Signal(pair, name=f"w_hi{l}") for l in range(L)]
        valid = Signal(L)
        ld_en = Signal(L)
        ld_lo = [Signal(pair, name=f"w_ld_lo{l}") for l in range(L)]
        ld_hi = [Signal(pair, name=f"w_ld_hi{l}") for l in range(L)]
        hit = Signal(L)
        for l in range(L):
            P = cfg.buffer_rows(l) // 2
            last = Signal(pair, name=f"w_last{l}")
            n = Signal(pair, name=f"w_n{l}")
            m.d.comb += [last.eq((self.shapes[l].h - 1) >> 1),
                         n.eq(Mux(last + 1 > P, P, last + 1))]
            a, b = need_a[l], need_b[l]
            m.d.comb += hit[l].eq(valid[l] & (lo[l] <= a) & (b <= hi[l]))
            top = last + 1 - n
            new_lo = Signal(pair, name=f"w_new_lo{l}")
            new_hi = Signal(pair, name=f"w_new_hi{l}")
            m.d.comb += [new_lo.eq(Mux(a > top, top, a)), new_hi.eq(new_lo + n - 1)]
            with m.If((state == WindowState.CMP) & ~hit[l]):
                m.d.sync += [lo[l].eq(new_lo), hi[l].eq(new_hi), valid[l].eq(1)]
                with m.If(~valid[l] | (new_hi < lo[l]) | (new_lo > hi[l])):
                    m.d.sync += [ld_lo[l].eq(new_lo), ld_hi[l].eq(new_hi)]
                with m.Elif(new_lo > lo[l]):           # forward: the pairs after the window
                    m.d.sync += [ld_lo[l].eq(hi[l] + 1), ld_hi[l].eq(new_hi)]
                with m.Else():                          # backward: the pairs before it
                    m.d.sync += [ld_lo[l].eq(new_lo), ld_hi[l].eq(lo[l] - 1)]

        # ---- LOAD: one request per level with pairs to load, in level order ---------------
        w_l = Signal(rng(L))
        req = self.req
        rows_end = Signal(unsigned(h_bits + 1))
        row0 = Signal(unsigned(h_bits + 1))
        H_cur = Signal(unsigned(h_bits))
        for l in range(L):
            with m.If(w_l == l):
                m.d.comb += [row0.eq(ld_lo[l] << 1), H_cur.eq(self.shapes[l].h),
                             rows_end.eq(Mux((ld_hi[l] << 1) + 2 > self.shapes[l].h,
                                             self.shapes[l].h, (ld_hi[l] << 1) + 2))]
        m.d.comb += [req.payload.level.eq(w_l), req.payload.row.eq(row0),
                     req.payload.rows.eq(rows_end - row0),
                     req.valid.eq((state == WindowState.LOAD) & ld_en.bit_select(w_l, 1) &
                                  ~self.ingest_busy)]
        level_done = ~ld_en.bit_select(w_l, 1) | (req.valid & req.ready)

        m.d.comb += [self.ok.eq(state == WindowState.OK),
                     self.miss.eq(state == WindowState.MISS),
                     self.loaded.eq(state == WindowState.LOADED)]

        with m.Switch(state):
            with m.Case(WindowState.READ):
                with m.If(in_ba):
                    m.d.sync += state.eq(WindowState.CALC)
            with m.Case(WindowState.CALC):
                m.d.sync += state.eq(WindowState.CMP)
            with m.Case(WindowState.CMP):
                with m.If(hit.all()):
                    m.d.sync += state.eq(WindowState.OK)
                with m.Else():
                    m.d.sync += [state.eq(WindowState.MISS), ld_en.eq(~hit), w_l.eq(0)]
            with m.Case(WindowState.OK):
                with m.If(self.take):
                    with m.If(w_q + 1 >= self.nq_pass):
                        m.d.sync += state.eq(WindowState.DONE)
                    with m.Else():
                        m.d.sync += [w_q.eq(w_q + 1), state.eq(WindowState.READ)]
            with m.Case(WindowState.MISS):
                with m.If(self.phase == Phase.VALUE):
                    m.d.sync += state.eq(WindowState.LOAD)
            with m.Case(WindowState.LOAD):
                for l in range(L):
                    with m.If(req.valid & req.ready & (w_l == l)):
                        m.d.sync += ld_en[l].eq(0)
                with m.If(level_done):
                    with m.If(w_l == L - 1):
                        m.d.sync += state.eq(WindowState.LOADED)
                    with m.Else():
                        m.d.sync += w_l.eq(w_l + 1)
            with m.Case(WindowState.LOADED):
                with m.If(in_ba):
                    m.d.sync += state.eq(WindowState.OK)
        with m.If(self.pass_start):
            m.d.sync += [w_q.eq(0), state.eq(WindowState.READ)]
        with m.If(self.start):
            m.d.sync += valid.eq(0)
        return m

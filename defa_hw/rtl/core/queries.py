"""Query buffer of ``defa_core``: double-buffered query and reference-point memories."""

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from defa_hw.rtl.core.common import check_geometry, add_memory, lend_read_port, read_signature, rng
from defa_hw.rtl.core.interface import query_beat_layout

__all__ = ["QueryBuffer"]


class QueryBuffer(wiring.Component):
    """Stores the queries of a block in two halves of ``max_queries`` slots: pass ``p``
    uses half ``p mod 2``, and the next pass's queries load while this one runs.

    Signal prefix: ``load_`` the write side (slot and pass of the next beat).

    Parameters
    ----------
    geom : CoreGeometry

    Attributes
    ----------
    queries : In(stream of :func:`~defa_hw.rtl.core.interface.query_beat_layout`)
        Taken while a block runs, up to ``nq`` beats, at most one pass ahead.
    busy, start : In(1)
        A block is running; START accepted (clears the load counters).
    nq : In(16)
    pass_index : In(16)
        The pass the core is running.
    loaded : Out(16)
        Queries of the block stored so far.
    query_rd, ref_rd, ref_rd_window : Out(read port)
        Query codes / reference points (BA, value windows) at word
        ``half * max_queries + slot``.
    idle, drained : Out(1)
        No query offered / every query of the block stored.
    """

    def __init__(self, geom):
        self.geom = g = check_geometry(geom)
        super().__init__({
            "queries": In(stream.Signature(query_beat_layout(g.cfg))),
            "busy": In(1), "start": In(1), "nq": In(16), "pass_index": In(16),
            "loaded": Out(16),
            "query_rd": Out(read_signature(g.C * g.cfg.data_bits, 2 * g.mq)),
            "ref_rd": Out(read_signature(g.L * 2 * g.cfg.ref_frac_bits, 2 * g.mq)),
            "ref_rd_window": Out(read_signature(g.L * 2 * g.cfg.ref_frac_bits, 2 * g.mq)),
            "idle": Out(1), "drained": Out(1),
        })

    def elaborate(self, platform):
        g = self.geom
        MQ = g.mq
        m = Module()
        qm = add_memory(m, "queries", g.C * g.cfg.data_bits, 2 * MQ)
        lend_read_port(m, qm, self.query_rd)
        qm_w = qm.write_port()
        rm = add_memory(m, "refs", g.L * 2 * g.cfg.ref_frac_bits, 2 * MQ)
        lend_read_port(m, rm, self.ref_rd)
        lend_read_port(m, rm, self.ref_rd_window)
        rm_w = rm.write_port()

        n_loaded = self.loaded
        load_slot = Signal(rng(MQ))
        load_pass = Signal(16)
        qbeat = self.queries.payload
        m.d.comb += self.queries.ready.eq(self.busy & (n_loaded < self.nq) &
                                          (load_pass <= self.pass_index + 1))
        q_acc = self.queries.valid & self.queries.ready
        q_waddr = load_pass[0] * MQ + load_slot
        m.d.comb += [
            qm_w.addr.eq(q_waddr), qm_w.data.eq(qbeat.query.as_value()), qm_w.en.eq(q_acc),
            rm_w.addr.eq(q_waddr), rm_w.data.eq(qbeat.ref.as_value()), rm_w.en.eq(q_acc),
            self.idle.eq(~self.queries.valid), self.drained.eq(n_loaded == self.nq),
        ]
        with m.If(q_acc):
            m.d.sync += n_loaded.eq(n_loaded + 1)
            with m.If(load_slot == MQ - 1):
                m.d.sync += [load_slot.eq(0), load_pass.eq(load_pass + 1)]
            with m.Else():
                m.d.sync += load_slot.eq(load_slot + 1)
        with m.If(self.start):
            m.d.sync += [n_loaded.eq(0), load_slot.eq(0), load_pass.eq(0)]
        return m

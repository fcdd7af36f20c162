"""Result merger of ``defa_core``: output tiles and the next fmap mask on one stream."""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from defa_hw.rtl.core.common import check_geometry, MMKind, rng
from defa_hw.rtl.core.interface import ResultKind, result_beat_layout
from defa_hw.rtl.core.mm_issue import mm_result_signature
from defa_hw.rtl.fmap_mask import mask_bit_layout

__all__ = ["ResultMerger"]


class ResultMerger(wiring.Component):
    """OUT tiles wait in a FIFO of ``out_cap`` beats (the OUT issuer's credit, returned
    on ``out_pop``) and have priority on ``results``; the FWP generator's mask bits are
    packed ``pe_cols * data_bits`` to a beat, so its sweep (one pixel per cycle) never
    waits for the output beats it shares the stream with.

    Signal prefixes: ``mk_`` the mask packer; ``mask_sent`` the last mask beat is out.

    Parameters
    ----------
    geom : CoreGeometry

    Attributes
    ----------
    start : In(1)
        START (a new block's mask is still to come).
    res : In(MM results)
        OUT tiles (other kinds are ignored).
    mask : In(stream of :func:`~defa_hw.rtl.fmap_mask.mask_bit_layout`)
        The next fmap mask, one pixel per beat.
    results : Out(stream of :func:`~defa_hw.rtl.core.interface.result_beat_layout`)
    out_pop : Out(1)
        An output beat is sent (returns an OUT issue credit).
    blocked : Out(1)
        A beat waits for ``results.ready``.
    idle, drained : Out(1)
        Nothing to send / that, and the block's last mask beat has been sent.

    Constants
    ---------
    OUT_DRAIN : int
        Last OUT result -> sent: the result FIFO (2) and the send (1).
    MASK_DRAIN : int
        FWP finish accepted -> last mask beat sent, besides the generator's
        ``UPDATE_LATENCY`` and its one-pixel-per-cycle sweep: the finish handshake, the
        sweep start, the packer, the mask FIFO and the send (the sum is what the core
        regression checks against the RTL's TAIL counter).
    """

    OUT_DRAIN = 3
    MASK_DRAIN = 6

    def __init__(self, geom):
        self.geom = g = check_geometry(geom)
        super().__init__({
            "start": In(1),
            "res": In(mm_result_signature(g)),
            "mask": In(stream.Signature(mask_bit_layout(g.cfg))),
            "results": Out(stream.Signature(result_beat_layout(g.cfg))),
            "out_pop": Out(1), "blocked": Out(1), "idle": Out(1), "drained": Out(1),
        })

    def elaborate(self, platform):
        g = self.geom
        Cc, d = g.Cc, g.cfg.data_bits
        m = Module()
        res = self.res
        m.submodules.res_fifo = rfifo = SyncFIFOBuffered(width=Cc * d + 1, depth=g.out_cap)
        m.d.comb += [rfifo.w_data.eq(Cat(res.codes, res.tag.last)),
                     rfifo.w_en.eq(res.valid & (res.tag.kind == MMKind.OUT))]
        out = self.results.payload
        MB = Cc * d
        m.submodules.mask_fifo = mfifo = SyncFIFOBuffered(width=MB + bits_for(MB) + 1, depth=2)
        mk_bits = Signal(MB)
        mk_cnt = Signal(rng(MB + 1))
        mask = self.mask
        mk_acc = mask.valid & mask.ready
        mk_word = mk_bits | (mask.payload.masked << mk_cnt)[:MB]
        mk_push = mk_acc & ((mk_cnt == MB - 1) | mask.payload.last)
        m.d.comb += [mask.ready.eq(mfifo.w_rdy), mfifo.w_en.eq(mk_push),
                     mfifo.w_data.eq(Cat(mk_word, (mk_cnt + 1)[:bits_for(MB)],
                                         mask.payload.last))]
        with m.If(mk_acc):
            m.d.sync += [mk_bits.eq(Mux(mk_push, 0, mk_word)),
                         mk_cnt.eq(Mux(mk_push, 0, mk_cnt + 1))]
        mask_sent = Signal()
        with m.If(rfifo.r_rdy):
            m.d.comb += [self.results.valid.eq(1), out.kind.eq(ResultKind.OUTPUT),
                         out.data.eq(rfifo.r_data[:Cc * d]), out.last.eq(rfifo.r_data[-1]),
                         rfifo.r_en.eq(self.results.ready)]
        with m.Else():
            m.d.comb += [self.results.valid.eq(mfifo.r_rdy), out.kind.eq(ResultKind.MASK),
                         out.data.eq(mfifo.r_data[:MB]),
                         out.count.eq(mfifo.r_data[MB:MB + bits_for(MB)]),
                         out.last.eq(mfifo.r_data[-1]),
                         mfifo.r_en.eq(self.results.ready)]
        with m.If(mfifo.r_rdy & self.results.ready & ~rfifo.r_rdy & mfifo.r_data[-1]):
            m.d.sync += mask_sent.eq(1)
        m.d.comb += [
            self.out_pop.eq(rfifo.r_rdy & self.results.ready),
            self.blocked.eq(self.results.valid & ~self.results.ready),
            self.idle.eq(~self.results.valid),
            self.drained.eq(mask_sent & (rfifo.level == 0)),
        ]
        with m.If(self.start):
            m.d.sync += mask_sent.eq(0)
        return m

"""Value ingest of ``defa_core``: fmap stream -> incoming-mask bits + pixel FIFO, and the
value projection's results -> value-buffer writes."""

from amaranth import Array, Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from defa_hw.rtl.core.common import check_geometry, MMKind, add_memory, divmod_const, lend_read_port, pixel_layout, read_signature, rng
from defa_hw.rtl.core.controller import Phase
from defa_hw.rtl.core.interface import fmap_beat_layout, fmap_request_layout
from defa_hw.rtl.core.mm_issue import mm_result_signature
from defa_hw.rtl.fmap_buffer import FmapGeometry
from defa_hw.rtl.sampling_address import shapes_layout

__all__ = ["ValueIngest", "mask_read_signature"]


def mask_read_signature(cfg):
    """Read ports of the ``4 n_levels`` incoming-mask banks, members ``b0`` ... (each
    bank as deep as the value buffers' banks of its level)."""
    return wiring.Signature({f"b{b}": Out(read_signature(1, cfg.bank_words(b // 4)))
                             for b in range(4 * cfg.n_levels)})


class ValueIngest(wiring.Component):
    """Takes the fmap beats of each value-window load in VALUE (``rows * W`` beats after a
    ``load``): each beat's masked bit goes to the incoming-mask banks (BA reads a masked
    pixel as zero), each unmasked pixel to the pixel FIFO for the VALUE issuer.  VALUE results (``pe_cols`` codes of one pixel)
    become ``pe_cols / ba_channels`` value-buffer writes, one per cycle, to the buffer
    of the head they belong to.

    Signal prefixes: ``in_`` the fmap input position (level, y, x) of the current load;
    ``vw_`` the value-buffer writer.

    Parameters
    ----------
    geom : CoreGeometry

    Attributes
    ----------
    fmap : In(stream of :func:`~defa_hw.rtl.core.interface.fmap_beat_layout`)
        Taken in VALUE, the beats of the current load.
    phase : In(Phase)
    start : In(1)
        START (forgets the rows loaded).
    shapes : In(:func:`~defa_hw.rtl.sampling_address.shapes_layout`)
    load_valid : In(1), load : In(:func:`~defa_hw.rtl.core.interface.fmap_request_layout`)
        A load is asked for on ``fmap_req`` (its handshake).
    res : In(MM results)
        VALUE tiles (other kinds are ignored).
    pix : Out(stream of :func:`~defa_hw.rtl.core.common.pixel_layout`)
        Unmasked pixels for the VALUE issuer.
    wr : Out(stream of the value buffers' write layout) x n_heads
        Value-buffer writes (no back-pressure: ``ready`` is ignored).
    mask_rd : Out(:func:`mask_read_signature`) x ba_heads
        Incoming-mask bits, bank and word by the value buffers' ``BankMap`` (one set of
        read ports per BA lane set).
    masked : Out(1)
        A masked beat of a row loaded for the first time is taken (``Reg.PIXELS_MASKED_IN``).
    beat : Out(1)
        A fmap beat is taken (``Reg.FMAP_BEATS``).
    row_refetched : Out(1)
        The first beat of a row loaded before in this block (``Reg.ROWS_REFETCHED``).
    in_done, busy : Out(1)
        Every beat of the current load is taken / not yet.
    in_drained : Out(1)
        ``in_done`` and the pixel FIFO is empty.
    wr_busy : Out(1)
        A value tile is being written to the buffers.
    idle, drained : Out(1)
        No beat offered / ``in_drained`` and nothing being written.

    Constants
    ---------
    PIXEL_FIFO_LATENCY : int
        A beat taken -> readable by the VALUE issuer (SyncFIFOBuffered).
    WRITE_LATENCY : int
        A VALUE result -> its first value-buffer write (the ``vw_`` register).
    """

    PIXEL_FIFO_LATENCY = 2
    WRITE_LATENCY = 1

    def __init__(self, geom):
        self.geom = g = check_geometry(geom)
        cfg = g.cfg
        self.buffer_geometry = geo = FmapGeometry(cfg)
        super().__init__({
            "fmap": In(stream.Signature(fmap_beat_layout(cfg))),
            "phase": In(Phase), "start": In(1),
            "shapes": In(shapes_layout(cfg)),
            "load_valid": In(1), "load": In(fmap_request_layout(cfg)),
            "res": In(mm_result_signature(g)),
            "pix": Out(stream.Signature(pixel_layout(g))),
            "wr": Out(stream.Signature(geo.write_layout)).array(g.M),
            "mask_rd": Out(mask_read_signature(cfg)).array(cfg.ba_heads),
            "masked": Out(1), "beat": Out(1), "row_refetched": Out(1),
            "in_done": Out(1), "in_drained": Out(1), "busy": Out(1), "wr_busy": Out(1),
            "idle": Out(1), "drained": Out(1),
        })

    def elaborate(self, platform):
        g = self.geom
        cfg, geo = g.cfg, self.buffer_geometry
        L, Cc, CH, D, d = g.L, g.Cc, cfg.ba_channels, g.D, cfg.data_bits
        shapes = self.shapes
        m = Module()
        mask_banks = []
        for b in range(4 * L):
            mb = add_memory(m, f"fmask{b}", 1, cfg.bank_words(b // 4))
            for rd in self.mask_rd:                     # a read port per BA lane set
                lend_read_port(m, mb, getattr(rd, f"b{b}"))
            mask_banks.append(mb.write_port())

        # ---- fmap stream -> mask bits + pixel FIFO -------------------------------------
        # One load at a time: rows in_y .. in_y_end of level in_lvl, in raster order.
        pl = pixel_layout(g)
        m.submodules.pix_fifo = pix_fifo = SyncFIFOBuffered(width=pl.size, depth=2)
        m.d.comb += [self.pix.valid.eq(pix_fifo.r_rdy), self.pix.payload.eq(pix_fifo.r_data),
                     pix_fifo.r_en.eq(self.pix.ready)]
        in_active = Signal()
        in_lvl = Signal(rng(L))
        in_y = Signal(pl["y"].shape)
        in_y_end = Signal(pl["y"].shape)
        in_x = Signal(pl["x"].shape)
        fbeat = self.fmap.payload
        m.d.comb += self.fmap.ready.eq((self.phase == Phase.VALUE) & in_active &
                                       pix_fifo.w_rdy)
        f_acc = self.fmap.valid & self.fmap.ready
        # Rows loaded before in this block (their masked pixels and rows are counted once).
        seen = [Signal(h, name=f"in_seen{l}") for l, (h, _) in enumerate(cfg.max_shapes)]
        seen_now = Signal()
        for l in range(L):
            with m.If(in_lvl == l):
                m.d.comb += seen_now.eq(seen[l].bit_select(in_y, 1))
        in_row_new = Signal()
        row_new = Mux(in_x == 0, ~seen_now, in_row_new)
        m.d.comb += [
            pix_fifo.w_data.eq(Cat(fbeat.pixel.as_value(), in_lvl, in_y, in_x)),
            pix_fifo.w_en.eq(f_acc & ~fbeat.masked),
            self.masked.eq(f_acc & fbeat.masked & row_new),
            self.beat.eq(f_acc),
            self.row_refetched.eq(f_acc & (in_x == 0) & seen_now),
        ]
        lw = Array(shapes[l].w for l in range(L))
        with m.If(self.load_valid):
            m.d.sync += [in_active.eq(1), in_lvl.eq(self.load.level), in_y.eq(self.load.row),
                         in_y_end.eq(self.load.row + self.load.rows - 1), in_x.eq(0)]
        with m.If(f_acc):
            with m.If(in_x == 0):
                m.d.sync += in_row_new.eq(~seen_now)
                for l in range(L):
                    with m.If(in_lvl == l):
                        m.d.sync += seen[l].bit_select(in_y, 1).eq(1)
            with m.If(in_x == lw[in_lvl] - 1):
                m.d.sync += in_x.eq(0)
                with m.If(in_y == in_y_end):
                    m.d.sync += in_active.eq(0)
                with m.Else():
                    m.d.sync += in_y.eq(in_y + 1)
            with m.Else():
                m.d.sync += in_x.eq(in_x + 1)
        for b in range(4 * L):
            l = b // 4
            mw = mask_banks[b]
            m.d.comb += [mw.addr.eq(geo.bank_map.word(l, in_y, in_x)), mw.data.eq(fbeat.masked),
                         mw.en.eq(f_acc & (in_lvl == l) & (geo.bank_map.group_bank(in_y, in_x) == b % 4))]
        m.d.comb += [self.in_done.eq(~in_active), self.busy.eq(in_active),
                     self.in_drained.eq(~in_active & (pix_fifo.level == 0))]

        # ---- VALUE results: pe_cols codes -> pe_cols / ba_channels buffer writes --------
        res = self.res
        vw_valid = Signal()
        vw_idx = Signal(rng(g.wr_beats))
        vw_codes = Signal(Cc * d)
        vw_jt = Signal(rng(g.t_c))
        vw_lvl = Signal(rng(L))
        vw_y = Signal(pl["y"].shape)
        vw_x = Signal(pl["x"].shape)
        with m.If(res.valid & (res.tag.kind == MMKind.VALUE)):
            m.d.sync += [vw_valid.eq(1), vw_idx.eq(0), vw_codes.eq(res.codes),
                         vw_jt.eq(res.tag.jt), vw_lvl.eq(res.tag.level), vw_y.eq(res.tag.y),
                         vw_x.eq(res.tag.x)]
        with m.Elif(vw_valid):
            with m.If(vw_idx == g.wr_beats - 1):
                m.d.sync += vw_valid.eq(0)
            with m.Else():
                m.d.sync += vw_idx.eq(vw_idx + 1)
        ch_base = vw_jt * Cc + vw_idx * CH
        vw_head, vw_rem = divmod_const(ch_base, D)
        vw_slice = divmod_const(vw_rem, CH)[0]
        for h, wr in enumerate(self.wr):
            wl = wr.payload
            m.d.comb += [wr.valid.eq(vw_valid & (vw_head == h)),
                         wl.y.eq(vw_y), wl.x.eq(vw_x),
                         wl.data.eq(vw_codes.word_select(vw_idx, CH * d))]
            if "level" in geo.write_layout.members:
                m.d.comb += wl.level.eq(vw_lvl)
            if "slice" in geo.write_layout.members:
                m.d.comb += wl.slice.eq(vw_slice)
        m.d.comb += [self.wr_busy.eq(vw_valid), self.idle.eq(~self.fmap.valid),
                     self.drained.eq(self.in_drained & ~vw_valid)]
        with m.If(self.start):
            m.d.sync += [in_active.eq(0)] + [sn.eq(0) for sn in seen]
        return m

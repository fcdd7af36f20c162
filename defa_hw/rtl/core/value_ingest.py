"""Value ingest of ``defa_core``: fmap stream -> incoming-mask bits + pixel FIFO, and the
value projection's results -> value-buffer writes."""

from amaranth import Array, C, Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from defa_hw.rtl.core.common import check_geometry, MMKind, add_memory, divmod_const, lend_read_port, pixel_layout, read_signature, rng
from defa_hw.rtl.core.controller import Phase
from defa_hw.rtl.core.interface import fmap_beat_layout
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
    """Takes the block's fmap beats in VALUE: each beat's masked bit goes to the
    incoming-mask banks (BA reads a masked pixel as zero), each unmasked pixel to the
    pixel FIFO for the VALUE issuer.  VALUE results (``pe_cols`` codes of one pixel)
    become ``pe_cols / ba_channels`` value-buffer writes, one per cycle, to the buffer
    of the head they belong to.

    Signal prefixes: ``in_`` the fmap input position (level, y, x); ``v_in_cnt`` beats
    taken; ``vw_`` the value-buffer writer.

    Parameters
    ----------
    geom : CoreGeometry

    Attributes
    ----------
    fmap : In(stream of :func:`~defa_hw.rtl.core.interface.fmap_beat_layout`)
        Taken in VALUE, ``sum(h * w)`` beats per block.
    phase : In(Phase)
    start : In(1)
        START (clears the input position).
    shapes : In(:func:`~defa_hw.rtl.sampling_address.shapes_layout`)
    res : In(MM results)
        VALUE tiles (other kinds are ignored).
    pix : Out(stream of :func:`~defa_hw.rtl.core.common.pixel_layout`)
        Unmasked pixels for the VALUE issuer.
    wr : Out(stream of the value buffers' write layout) x n_heads
        Value-buffer writes (no back-pressure: ``ready`` is ignored).
    mask_rd : Out(:func:`mask_read_signature`)
        Incoming-mask bits, bank and word by the value buffers' ``BankMap``.
    masked : Out(1)
        A masked beat is taken (counts ``Reg.PIXELS_MASKED_IN``).
    in_done : Out(1)
        Every fmap beat of the block is taken.
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
            "res": In(mm_result_signature(g)),
            "pix": Out(stream.Signature(pixel_layout(g))),
            "wr": Out(stream.Signature(geo.write_layout)).array(g.M),
            "mask_rd": Out(mask_read_signature(cfg)),
            "masked": Out(1), "in_done": Out(1), "in_drained": Out(1), "wr_busy": Out(1),
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
            lend_read_port(m, mb, getattr(self.mask_rd, f"b{b}"))
            mask_banks.append(mb.write_port())

        # ---- fmap stream -> mask bits + pixel FIFO -------------------------------------
        pl = pixel_layout(g)
        m.submodules.pix_fifo = pix_fifo = SyncFIFOBuffered(width=pl.size, depth=2)
        m.d.comb += [self.pix.valid.eq(pix_fifo.r_rdy), self.pix.payload.eq(pix_fifo.r_data),
                     pix_fifo.r_en.eq(self.pix.ready)]
        npix = Signal(rng(cfg.max_pixels + 1))
        m.d.comb += npix.eq(sum(shapes[l].h * shapes[l].w for l in range(L)))
        v_in_cnt = Signal(rng(cfg.max_pixels + 1))   # fmap beats consumed
        in_lvl = Signal(rng(L))
        in_y = Signal(pl["y"].shape)
        in_x = Signal(pl["x"].shape)
        fbeat = self.fmap.payload
        m.d.comb += self.fmap.ready.eq((self.phase == Phase.VALUE) & (v_in_cnt < npix) &
                                       pix_fifo.w_rdy)
        f_acc = self.fmap.valid & self.fmap.ready
        m.d.comb += [
            pix_fifo.w_data.eq(Cat(fbeat.pixel.as_value(), in_lvl, in_y, in_x)),
            pix_fifo.w_en.eq(f_acc & ~fbeat.masked),
            self.masked.eq(f_acc & fbeat.masked),
        ]
        lw = Array(shapes[l].w for l in range(L))
        lh = Array(shapes[l].h for l in range(L))
        with m.If(f_acc):
            m.d.sync += v_in_cnt.eq(v_in_cnt + 1)
            with m.If(in_x == lw[in_lvl] - 1):
                m.d.sync += in_x.eq(0)
                with m.If(in_y == lh[in_lvl] - 1):
                    m.d.sync += [in_y.eq(0), in_lvl.eq(in_lvl + 1)]
                with m.Else():
                    m.d.sync += in_y.eq(in_y + 1)
            with m.Else():
                m.d.sync += in_x.eq(in_x + 1)
        for b in range(4 * L):
            l = b // 4
            mw = mask_banks[b]
            m.d.comb += [mw.addr.eq(geo.bank_map.word(l, in_y, in_x)), mw.data.eq(fbeat.masked),
                         mw.en.eq(f_acc & (in_lvl == l) & (geo.bank_map.group_bank(in_y, in_x) == b % 4))]
        m.d.comb += [self.in_done.eq(v_in_cnt == npix),
                     self.in_drained.eq(self.in_done & (pix_fifo.level == 0))]

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
            m.d.sync += [v_in_cnt.eq(0), in_lvl.eq(0), in_y.eq(0), in_x.eq(0)]
        return m

"""FWP: frequency-weighted fmap mask generator (``docs/numerics.md``, FWP fmap mask).

Golden model: :func:`golden.fmap_mask.fmap_counts` and :func:`golden.fmap_mask.fmap_mask`.
Interface, timing and storage: ``docs/masks.md``.
"""

from amaranth import *
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from defa_hw.rtl.levels import BankMap, shapes_layout

__all__ = ["FmapMaskGenerator", "bundle_layout", "mask_bit_layout"]


def bundle_layout(cfg):
    """One input beat: one point per BA lane (point ``j * n_levels + l`` belongs to
    level ``l``; ``ba_heads`` points per level).

    Per point: ``keep`` (point survived PAP; 0 also marks an empty slot), ``prob``
    (UQ0.prob_bits) and its 4 neighbours ``(y, x, inb)`` as produced by the sampling
    address unit (signed pixel coordinates; only in-bounds ones are used).
    """
    coord = signed(cfg.coord_int_bits)
    neighbour = data.StructLayout({"y": coord, "x": coord, "inb": 1})
    point = data.StructLayout({
        "keep": 1,
        "prob": unsigned(cfg.prob_bits),
        "nb": data.ArrayLayout(neighbour, 4),
    })
    return data.ArrayLayout(point, cfg.ba_lanes)


def mask_bit_layout(cfg):
    """One pixel of the next block's fmap mask (True = masked); ``last`` ends the map."""
    return data.StructLayout({"masked": 1, "last": 1})


class State(enum.Enum, shape=2):
    INIT = 0    # after reset: zero every counter (SRAM has no reset)
    ACCUM = 1   # count neighbour touches; accepts points and finish
    DRAIN = 2   # let the read-modify-write pipeline write its last updates
    SWEEP = 3   # stream the mask out, clearing each counter as it is read


class FmapMaskGenerator(wiring.Component):
    """Per-pixel saturating FWP counters and the sweep that turns them into a mask.

    Counter storage: ``4 * n_levels`` banks (``lib.memory.Memory``, one non-transparent
    read port and one write port each), placed by the whole-level
    :class:`~defa_hw.rtl.levels.BankMap` (``bank_map``): pixel ``(y, x)`` of level ``l``
    lives in bank ``4l + 2 (y & 1) + (x & 1)`` at word ``(y >> 1) * ceil(W_max/2) +
    (x >> 1)``, so the 4 neighbours of the 4 points of a beat hit 16 different banks.
    With ``ba_heads`` > 1 a beat has a point per level and head: every head set has its
    own copy of the counters (``ba_heads`` x the banks), and the sweep adds the copies
    (saturated, like one counter: every increment is positive).

    Parameters
    ----------
    cfg : DefaConfig

    Attributes
    ----------
    points : In(stream of :func:`bundle_layout`)
        One point per BA lane per beat; ready whenever the block is accumulating.
    finish : In(stream of :func:`shapes_layout`)
        Ends the block: carries the runtime shapes of the map being counted; starts
        the sweep once the pipeline has drained.
    mask : Out(stream of :func:`mask_bit_layout`)
        The next block's fmap mask, one pixel per beat in ``input_flatten`` order
        ``level_start[l] + y * W + x``.
    enable : In(1)
        FWP on; 0 makes every mask bit 0.  Sampled when ``finish`` is accepted.
    threshold, threshold_we : In
        Runtime threshold register (``fwp_counter_bits`` wide, reset value
        ``cfg.fwp_threshold``): a pixel is masked iff its count is below it.
        Sampled when ``finish`` is accepted.
    busy : Out(1)
        Not accumulating (clearing after reset, draining or sweeping).
    pixels_masked : Out
        Masked pixels of the current/last sweep (restarts at each ``finish``).
    bank_map : :class:`~defa_hw.rtl.levels.BankMap`
        Where each pixel's counter lives (whole levels).
    storage_bits : int
        Counter SRAM bits (all banks, including the padding of odd ``H_max``/``W_max``).
    """

    #: Clock edges after the accepting edge until the counters are written (read, write).
    UPDATE_LATENCY = 2

    def __init__(self, cfg):
        self.cfg = cfg
        # FWP counts every pixel of the block, so its banks hold whole levels.
        self.bank_map = BankMap(cfg, window=False)
        self.n_banks = self.bank_map.n_banks
        self.depths = self.bank_map.depths
        super().__init__({
            "points": In(stream.Signature(bundle_layout(cfg))),
            "finish": In(stream.Signature(shapes_layout(cfg))),
            "mask": Out(stream.Signature(mask_bit_layout(cfg))),
            "enable": In(1, init=1),
            "threshold": In(cfg.fwp_counter_bits),
            "threshold_we": In(1),
            "busy": Out(1),
            "pixels_masked": Out(bits_for(cfg.max_pixels)),
        })

    @property
    def storage_bits(self):
        return sum(self.depths) * self.cfg.fwp_counter_bits * self.cfg.ba_heads

    def elaborate(self, platform):
        cfg = self.cfg
        L = cfg.n_levels
        cb = cfg.fwp_counter_bits
        cmax = (1 << cb) - 1
        max_depth = max(self.depths)
        m = Module()

        state = Signal(State)
        m.d.comb += self.busy.eq(state != State.ACCUM)

        thr = Signal(cb, init=cfg.fwp_threshold)
        with m.If(self.threshold_we):
            m.d.sync += thr.eq(self.threshold)

        # One counter copy per head sampled at once (``ba_heads``): copy j counts lane
        # set j's points, the sweep adds the copies.  Global bank ``j * n_banks + b``.
        J, NB = cfg.ba_heads, self.n_banks
        depth = [self.depths[gb % NB] for gb in range(J * NB)]
        banks = []
        for gb in range(J * NB):
            mem = Memory(shape=cb, depth=depth[gb], init=[])
            m.submodules[f"bank{gb}"] = mem
            # Non-transparent read: maps onto any 1R1W SRAM; the RMW hazard is handled
            # by explicit forwarding below.
            banks.append((mem.read_port(), mem.write_port()))

        # ---- accumulate: s0 = routed update registered, s1 = read data back -------------
        m.d.comb += [
            self.points.ready.eq(state == State.ACCUM),
            self.finish.ready.eq(state == State.ACCUM),
        ]
        accept = self.points.valid & self.points.ready

        inc_bits = cfg.fwp_weight_bits + 1
        NL = cfg.ba_lanes
        s0_valid = [Signal(name=f"s0_valid{b}") for b in range(J * NB)]
        s0_addr = [Signal(range(depth[b]), name=f"s0_addr{b}") for b in range(J * NB)]
        s0_inc = [Signal(inc_bits, name=f"s0_inc{l}") for l in range(NL)]
        s1_valid = [Signal(name=f"s1_valid{b}") for b in range(J * NB)]
        s1_addr = [Signal(range(depth[b]), name=f"s1_addr{b}") for b in range(J * NB)]
        s1_inc = [Signal(inc_bits, name=f"s1_inc{l}") for l in range(NL)]
        # The write of the previous cycle: a non-transparent read issued in that cycle
        # missed it, so s1 takes the value from here on an address match.
        s2_valid = [Signal(name=f"s2_valid{b}") for b in range(J * NB)]
        s2_addr = [Signal(range(depth[b]), name=f"s2_addr{b}") for b in range(J * NB)]
        s2_data = [Signal(cb, name=f"s2_data{b}") for b in range(J * NB)]
        s1_new = [Signal(cb, name=f"s1_new{b}") for b in range(J * NB)]

        for ln in range(NL):
            pt = self.points.payload[ln]
            l = ln % L
            # Weight: 1 + the top fwp_weight_bits of the probability.
            weight = 1 + (pt.prob >> (cfg.prob_bits - cfg.fwp_weight_bits))
            m.d.sync += s0_inc[ln].eq(weight)
            # Each in-bounds neighbour to the bank of its 2x2 parity.  A 2x2
            # neighbourhood has exactly one per bank (precondition of the input).
            nbs = pt.nb
            routed = self.bank_map.route(l, [nbs[k].y for k in range(4)],
                                         [nbs[k].x for k in range(4)],
                                         [nbs[k].inb for k in range(4)])
            for j, (hit, addr) in enumerate(routed):
                gb = (ln // L) * NB + 4 * l + j
                m.d.sync += [
                    s0_valid[gb].eq(accept & pt.keep & hit),
                    s0_addr[gb].eq(addr),
                ]

        m.d.sync += [s1_inc[l].eq(s0_inc[l]) for l in range(NL)]
        for b in range(J * NB):
            rd, _ = banks[b]
            old = Mux(s2_valid[b] & (s2_addr[b] == s1_addr[b]), s2_data[b], rd.data)
            total = old + s1_inc[(b // NB) * L + (b % NB) // 4]
            m.d.comb += s1_new[b].eq(Mux(total > cmax, cmax, total))
            m.d.sync += [
                s1_valid[b].eq(s0_valid[b]),
                s1_addr[b].eq(s0_addr[b]),
                s2_valid[b].eq(s1_valid[b]),
                s2_addr[b].eq(s1_addr[b]),
                s2_data[b].eq(s1_new[b]),
            ]

        # ---- sweep: issue (level, y, x) in flattened order, r1 = data back ----------------
        sh = Signal(shapes_layout(cfg))
        sw_enable = Signal()
        sw_thr = Signal(cb)
        lvl = Signal(range(L))
        y = Signal(shapes_layout(cfg).elem_shape["h"].shape)
        x = Signal(shapes_layout(cfg).elem_shape["w"].shape)
        row_base = Signal(range(max_depth))    # (y >> 1) * pitch, kept incrementally
        issuing = Signal()
        r1_valid = Signal()
        r1_bank = Signal(range(self.n_banks))
        r1_last = Signal()
        cur_h = sh[lvl].h
        cur_w = sh[lvl].w
        # A Mux chain, not an Array of constants: Icarus never evaluates a combinational
        # block whose inputs keep their time-0 values, which would leave this X.
        pitch = self.bank_map.pitch
        pitch_of_lvl = C(pitch[0], range(max_depth + 1))
        for l in range(1, L):
            pitch_of_lvl = Mux(lvl == l, pitch[l], pitch_of_lvl)
        # The bank map's word, with its row-pair product kept incrementally in row_base.
        sw_bank = self.bank_map.bank(lvl, y, x)
        sw_addr = row_base + self.bank_map.column(None, x)
        last_x = x == cur_w - 1
        last_y = y == cur_h - 1
        last_pixel = last_x & last_y & (lvl == L - 1)

        mask_free = ~self.mask.valid | self.mask.ready
        issue = (state == State.SWEEP) & issuing & mask_free
        with m.If(mask_free & (state == State.SWEEP)):
            m.d.sync += [
                r1_valid.eq(issue),
                r1_bank.eq(sw_bank),
                r1_last.eq(last_pixel),
            ]

        # Output register: the pixel read last cycle (or earlier, if stalled: a read port
        # with en low keeps its data).
        copies = [Array(rd.data for rd, _ in banks[j * NB:(j + 1) * NB])[r1_bank]
                  for j in range(J)]
        r1_sum = sum(copies)                        # saturated copies: saturate the sum
        r1_data = Mux(r1_sum > cmax, cmax, r1_sum) if J > 1 else copies[0]
        r1_masked = sw_enable & (r1_data < sw_thr)
        with m.If(mask_free):
            m.d.sync += [
                self.mask.valid.eq(r1_valid),
                self.mask.payload.masked.eq(r1_masked),
                self.mask.payload.last.eq(r1_last),
            ]
            with m.If(r1_valid & r1_masked):
                m.d.sync += self.pixels_masked.eq(self.pixels_masked + 1)

        with m.If(issue):
            with m.If(last_x):
                m.d.sync += x.eq(0)
                with m.If(last_y):
                    m.d.sync += [y.eq(0), row_base.eq(0), lvl.eq(lvl + 1)]
                    with m.If(lvl == L - 1):
                        m.d.sync += issuing.eq(0)
                with m.Else():
                    m.d.sync += y.eq(y + 1)
                    with m.If(y[0]):
                        m.d.sync += row_base.eq(row_base + pitch_of_lvl)
            with m.Else():
                m.d.sync += x.eq(x + 1)

        # ---- memory ports per state ------------------------------------------------------
        # Plain multiplexers rather than a Switch: every port value is then a continuous
        # assignment, defined from time 0 in every simulator (see pitch_of_lvl).
        clr_addr = Signal(range(max_depth))
        in_init = state == State.INIT
        in_sweep = state == State.SWEEP
        for b in range(J * NB):
            rd, wr = banks[b]
            # SWEEP reads a counter and zeroes it in the same cycle (the non-transparent
            # read returns the old value), so the counters are clear for the next block.
            hit = issue & (sw_bank == b % NB)
            m.d.comb += [
                rd.addr.eq(Mux(in_sweep, sw_addr, s0_addr[b])),
                rd.en.eq(Mux(in_sweep, hit, s0_valid[b])),
                wr.addr.eq(Mux(in_init, clr_addr, Mux(in_sweep, sw_addr, s1_addr[b]))),
                wr.data.eq(Mux(in_init | in_sweep, 0, s1_new[b])),
                wr.en.eq(Mux(in_init, clr_addr < depth[b], Mux(in_sweep, hit, s1_valid[b]))),
            ]

        # ---- control --------------------------------------------------------------------
        with m.Switch(state):
            with m.Case(State.INIT):
                m.d.sync += clr_addr.eq(clr_addr + 1)
                with m.If(clr_addr == max_depth - 1):
                    m.d.sync += state.eq(State.ACCUM)
            with m.Case(State.ACCUM):
                with m.If(self.finish.valid):
                    m.d.sync += [
                        sh.eq(self.finish.payload),
                        sw_enable.eq(self.enable),
                        sw_thr.eq(thr),
                        lvl.eq(0), y.eq(0), x.eq(0), row_base.eq(0),
                        self.pixels_masked.eq(0),
                        state.eq(State.DRAIN),
                    ]
            with m.Case(State.DRAIN):
                # s0 may still hold the beat accepted with finish; s1 writes at the end
                # of its cycle, and a sweep read issued after that sees it.
                busy_pipe = Cat(*s0_valid, *s1_valid).any()
                with m.If(~busy_pipe):
                    m.d.sync += [state.eq(State.SWEEP), issuing.eq(1)]
            with m.Case(State.SWEEP):
                # Back to counting once every pixel is issued and the last read has left
                # the read ports (the final mask beat may still wait in the output register).
                with m.If(~issuing & ~r1_valid):
                    m.d.sync += state.eq(State.ACCUM)

        return m

"""Integer softmax over the ``L*P`` logits of a head (base-2 exp from a ROM, one divide).

Golden model: :func:`golden.softmax.softmax` (``docs/numerics.md``, softmax).
Interface and timing: ``docs/units.md``.
"""

from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from golden.softmax import EXP_ONE_BITS, LOG2E_BITS, LOG2E_CODE, exp2_lut, softmax_recip_shift

__all__ = ["Softmax"]

#: Largest logit fraction-bit count (``golden.quant.frac_bits_for`` never gives more).
#: Any larger value would give u = 0 for every logit, i.e. equal probabilities.
FRAC_MAX = 32

#: Heads in flight between the exp stage and the output stage (e-buffer slots).
SLOTS = 4
#: Dividers working in turn (each takes every DIVIDERS-th head; divides SLOTS).
DIVIDERS = 2


def _ceil_div(a, b):
    return -(-a // b)


class Softmax(wiring.Component):
    """Integer softmax of ``cfg.n_lp`` logits per head, exactly as the golden model.

    Four overlapped phases, each working on a different head: *load* (store the
    logits in a 2-slot buffer, track the max), *exp* (``d = max - x``, ``u``, exp2
    ROM and shift, store ``e`` in a 4-slot buffer, sum), *divide* (one restoring
    division ``floor(2**K / sum)`` per head, ``div_bits_per_cycle`` quotient bits
    per cycle) and *output* (``e * recip``, rounding shift, saturation).

    Throughput: one logit in and one probability out per cycle in steady state,
    i.e. ``n_lp`` cycles per head with no bubbles between heads, as long as the
    dividers' ``1 + div_steps`` cycles per head do not exceed ``DIVIDERS * n_lp`` (the
    default ``div_bits_per_cycle`` guarantees it; tiny: 8, defa: 16 cycles).
    Latency from a head's last logit accepted to its first probability valid:
    ``n_lp + div_steps + 8`` cycles (``LATENCY_FIRST``) when the output is not
    busy; see ``docs/units.md``.  Registers are named by phase and stage:
    ``l_`` (load), ``e1_``, ``e2_``, ``e2b_``, ``e3_`` (exp), ``d<j>_`` (divider j), ``o1_``, ``o2_`` (output).

    Parameters
    ----------
    cfg : DefaConfig
    div_bits_per_cycle : int, keyword-only
        Restoring-division steps unrolled per cycle; default
        ``ceil(qbits / max(1, DIVIDERS * n_lp - 1))``, the fewest that keep up with one
        logit per cycle (``1 + div_steps <= DIVIDERS * n_lp``).

    Attributes
    ----------
    logits : In(stream.Signature(signed(data_bits)))
        Logit codes, ``n_lp`` consecutive beats per head (point order).
    probs : Out(stream.Signature(unsigned(prob_bits)))
        Probability codes UQ0.``prob_bits``, ``n_lp`` beats per head, in order.
    logit_frac_bits : In(range(FRAC_MAX + 1))
        Fraction bits ``f_a`` of the logits; sampled with each head's last logit
        (keep it stable over a head).
    div_steps : int
        Cycles of one division (``ceil(qbits / div_bits_per_cycle)``).
    CYCLES_PER_HEAD : int
        Steady-state cycles per head without stalls: ``max(n_lp, ceil((1 + div_steps) /
        DIVIDERS))``.
    LATENCY_FIRST : int
        Cycles from the handshake of a head's last logit to its first probability
        being valid when nothing stalls.
    """

    @staticmethod
    def _division(cfg, div_bits_per_cycle):
        """``(K, qbits, div_bits, div_steps)`` of the divider for ``cfg``."""
        K = softmax_recip_shift(cfg)
        # floor(2^K / sum) with sum >= 2^EXP_ONE_BITS (the max logit alone gives 1.0).
        qbits = K - EXP_ONE_BITS + 1
        if div_bits_per_cycle is None:
            # the fewest bits per cycle with which the dividers keep up with the heads
            div_bits_per_cycle = _ceil_div(qbits, max(1, DIVIDERS * cfg.n_lp - 1))
        return K, qbits, div_bits_per_cycle, _ceil_div(qbits, div_bits_per_cycle)

    @classmethod
    def latency_first(cls, cfg, *, div_bits_per_cycle=None):
        """``LATENCY_FIRST`` for ``cfg``, without building the block (for cycle models).

        Last logit taken -> its head's first probability valid: n_lp exp reads, 4 exp
        stages and the sum flag, divider load and steps, 3 output stages."""
        return cfg.n_lp + 4 + 1 + cls._division(cfg, div_bits_per_cycle)[3] + 3

    def __init__(self, cfg, *, div_bits_per_cycle=None):
        self.cfg = cfg
        n = cfg.n_lp
        self.K, self.qbits, self.div_bits, self.div_steps = self._division(
            cfg, div_bits_per_cycle)
        div_bits_per_cycle = self.div_bits
        if not 1 <= self.div_bits <= self.qbits or self.div_steps * self.div_bits > self.K:
            raise ValueError(f"div_bits_per_cycle = {div_bits_per_cycle} is invalid: allowed "
                             f"range is 1..{self.qbits} with ceil({self.qbits} / bits) * bits "
                             f"<= {self.K}")
        self.LATENCY_FIRST = self.latency_first(cfg, div_bits_per_cycle=self.div_bits)
        # Steady state: every phase takes n_lp cycles per head except the dividers, each
        # of which takes its load cycle plus div_steps per head it serves.
        self.CYCLES_PER_HEAD = max(n, _ceil_div(1 + self.div_steps, DIVIDERS))
        super().__init__({
            "logits": In(stream.Signature(signed(cfg.data_bits))),
            "probs": Out(stream.Signature(unsigned(cfg.prob_bits))),
            "logit_frac_bits": In(range(FRAC_MAX + 1)),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        n = cfg.n_lp
        ib = ceil_log2(n)                                    # index bits inside a slot
        E = cfg.exp_lut_bits
        e_bits = EXP_ONE_BITS + 1                         # e <= 2^15
        sum_bits = (n << EXP_ONE_BITS).bit_length()
        K, qbits = self.K, self.qbits
        m = Module()

        # ---- load: logits into a 2-slot buffer, running max ---------------------------------
        m.submodules.lmem = lmem = Memory(shape=signed(cfg.data_bits), depth=2 << ib, init=[])
        lwr = lmem.write_port()
        lrd = lmem.read_port()
        l_ptr = Signal()
        l_idx = Signal(range(n))
        l_max = Signal(signed(cfg.data_bits))
        lfull = Signal(2)                                 # slot holds a whole head
        # Per-slot registers are read through Mux / word_select, not Array: those become
        # continuous assigns, which Icarus (-g2012) evaluates at time 0, while a comb
        # `always @*` whose inputs keep their initial value would stay X there.
        lmax = [Signal(signed(cfg.data_bits), name=f"lmax{s}") for s in range(2)]
        # Shift of u minus one, per slot: u = ((d * log2e) >> (s - 1) + 1) >> 1 rounds half
        # up with a variable shift only (no variable rounding constant).
        lsm1 = [Signal(range(FRAC_MAX + LOG2E_BITS), name=f"lsm1{s}") for s in range(2)]

        x = self.logits.payload
        m.d.comb += self.logits.ready.eq(~lfull.bit_select(l_ptr, 1))
        l_acc = self.logits.valid & self.logits.ready
        l_last = l_acc & (l_idx == n - 1)
        new_max = Mux((l_idx == 0) | (x > l_max), x, l_max)
        m.d.comb += [lwr.addr.eq(Cat(l_idx, l_ptr)), lwr.data.eq(x), lwr.en.eq(l_acc)]
        with m.If(l_acc):
            m.d.sync += l_max.eq(new_max)
            with m.If(l_last):
                m.d.sync += [l_idx.eq(0), l_ptr.eq(~l_ptr)]
                for s_ in range(2):
                    with m.If(l_ptr == s_):
                        m.d.sync += [
                            lmax[s_].eq(new_max),
                            lsm1[s_].eq(self.logit_frac_bits + (LOG2E_BITS - E - 1)),
                        ]
            with m.Else():
                m.d.sync += l_idx.eq(l_idx + 1)

        # ---- exp: e = LUT[u mod 2^E] >> min(u >> E, 16), sum -----------------------------------
        m.submodules.rom = rom = Memory(shape=unsigned(e_bits), depth=1 << E,
                                        init=[int(v) for v in exp2_lut(cfg)])
        rom_rd = rom.read_port()
        m.submodules.emem = emem = Memory(shape=unsigned(e_bits), depth=SLOTS << ib, init=[])
        ewr = emem.write_port()
        erd = emem.read_port()

        e_ptr = Signal()                                  # logit slot being read
        e_idx = Signal(range(n))
        e_slot = Signal(range(SLOTS))                     # e-buffer slot being written
        used = Signal(range(SLOTS + 1))                   # e slots from exp start to output end
        e_issue = lfull.bit_select(e_ptr, 1) & ((e_idx != 0) | (used < SLOTS))
        e_last = e_issue & (e_idx == n - 1)
        m.d.comb += lrd.addr.eq(Cat(e_idx, e_ptr))
        with m.If(e_issue):
            with m.If(e_last):
                m.d.sync += [e_idx.eq(0), e_ptr.eq(~e_ptr), e_slot.eq(e_slot + 1)]
            with m.Else():
                m.d.sync += e_idx.eq(e_idx + 1)
        # The exp phase frees a logit slot when it issues its last read; load sets it.
        for s in range(2):
            m.d.sync += lfull[s].eq((lfull[s] | (l_last & (l_ptr == s))) &
                                    ~(e_last & (e_ptr == s)))

        def tags(prefix):
            return {k: Signal(shape, name=f"{prefix}_{k}") for k, shape in
                    (("v", 1), ("first", 1), ("last", 1), ("idx", range(n)),
                     ("slot", range(SLOTS)), ("sm1", range(FRAC_MAX + LOG2E_BITS)))}

        # e1: logit from the buffer.
        e1 = tags("e1")
        e1_max = Signal(signed(cfg.data_bits))
        m.d.sync += [
            e1["v"].eq(e_issue), e1["first"].eq(e_idx == 0), e1["last"].eq(e_idx == n - 1),
            e1["idx"].eq(e_idx), e1["slot"].eq(e_slot),
            e1["sm1"].eq(Mux(e_ptr, lsm1[1], lsm1[0])),
            e1_max.eq(Mux(e_ptr, lmax[1], lmax[0])),
        ]
        # e2: d * log2(e), d = max - x >= 0 (data_bits + 1 bits).
        e2 = tags("e2")
        e2_prod = Signal((cfg.data_bits + 1) + LOG2E_CODE.bit_length())
        d = (e1_max - lrd.data).as_unsigned()[:cfg.data_bits + 1]
        m.d.sync += [e2[k].eq(e1[k]) for k in e1]
        m.d.sync += e2_prod.eq(d * LOG2E_CODE)
        # e2b: the variable shift on its own stage (with the rounding after it, it was
        # ECP5's critical path).
        e2b = tags("e2b")
        e2b_shr = Signal(len(e2_prod))
        m.d.sync += [e2b[k].eq(e2[k]) for k in e2]
        m.d.sync += e2b_shr.eq(e2_prod >> e2["sm1"])
        # e3: u rounded half up; ROM address u mod 2^E, shift min(u >> E, 16).
        e3 = tags("e3")
        e3_sh = Signal(range(EXP_ONE_BITS + 2))
        u = (e2b_shr + 1) >> 1
        m.d.comb += rom_rd.addr.eq(u[:E])
        m.d.sync += [e3[k].eq(e2b[k]) for k in e2b]
        m.d.sync += e3_sh.eq(Mux((u >> E) > EXP_ONE_BITS + 1, EXP_ONE_BITS + 1, u >> E))
        # e3 -> buffer and sum.
        e_val = rom_rd.data >> e3_sh
        acc = Signal(sum_bits)
        total = Mux(e3["first"], 0, acc) + e_val
        m.d.comb += [ewr.addr.eq(Cat(e3["idx"], e3["slot"])), ewr.data.eq(e_val),
                     ewr.en.eq(e3["v"])]
        with m.If(e3["v"]):
            m.d.sync += acc.eq(total)

        # ---- divide: recip = floor(2^K / sum), restoring, div_bits per cycle ---------------------
        # Sums and reciprocals live in per-slot registers: heads are in order and never
        # more than SLOTS are in flight, so slot s is only rewritten after its head left.
        sum_reg = [Signal(sum_bits, name=f"sum_reg{s}") for s in range(SLOTS)]
        rec_reg = [Signal(qbits, name=f"rec_reg{s}") for s in range(SLOTS)]
        sum_ok = Signal(SLOTS)                            # sum of slot s waits for the divider
        rec_ok = Signal(SLOTS)                            # recip of slot s waits for output
        e_push = e3["v"] & e3["last"]
        for s_ in range(SLOTS):
            with m.If(e_push & (e3["slot"] == s_)):
                m.d.sync += sum_reg[s_].eq(total)

        pq = self.div_steps * self.div_bits               # quotient bits produced
        # DIVIDERS dividers take the heads in turn (divider j: slots j, j + DIVIDERS, ...),
        # so each has DIVIDERS * n_lp cycles per head: fewer bits per cycle, a shorter path.
        d_load, d_done, d_slot = [], [], []
        for j in range(DIVIDERS):
            slot = Signal(range(SLOTS), init=j, name=f"d{j}_slot")
            busy = Signal(name=f"d{j}_busy")
            cnt = Signal(range(self.div_steps), name=f"d{j}_cnt")
            dsum = Signal(sum_bits, name=f"d{j}_sum")
            drem = Signal(sum_bits, name=f"d{j}_rem")    # partial remainder < sum
            dquo = Signal(pq, name=f"d{j}_quo")
            # 2^K = 2^(K - pq) * 2^pq: the remainder starts at 2^(K - pq) < 2^15 <= sum
            # and shifts in pq zero dividend bits, so the quotient fits in pq bits.
            rem, quo = drem, dquo
            for _ in range(self.div_bits):
                rem2 = Cat(C(0, 1), rem)                 # 2 * rem (< 2 * sum)
                diff = rem2 - dsum                       # one carry chain: its sign is ">="
                ge = ~diff[sum_bits + 1]
                rem = Mux(ge, diff, rem2)[:sum_bits]
                quo = Cat(ge, quo)[:pq]
            load = ~busy & sum_ok.bit_select(slot, 1)
            done = busy & (cnt == self.div_steps - 1)
            with m.If(load):
                m.d.sync += [busy.eq(1), cnt.eq(0),
                             dsum.eq(Cat(*sum_reg).word_select(slot, sum_bits)),
                             drem.eq(1 << (K - pq)), dquo.eq(0)]
            with m.If(busy):
                m.d.sync += [drem.eq(rem), dquo.eq(quo), cnt.eq(cnt + 1)]
            with m.If(done):
                m.d.sync += [busy.eq(0), slot.eq(slot + DIVIDERS)]
                for s_ in range(SLOTS):
                    with m.If(slot == s_):
                        m.d.sync += rec_reg[s_].eq(quo[:qbits])
            d_load.append(load)
            d_done.append(done)
            d_slot.append(slot)

        # ---- output: p = min(round_shift(e * recip, K - prob_bits), 2^prob_bits - 1) -------------
        # The whole output pipeline advances when its last register is empty or taken.
        o_adv = ~self.probs.valid | self.probs.ready
        o_idx = Signal(range(n))
        o_slot = Signal(range(SLOTS))
        o_issue = o_adv & ((o_idx != 0) | rec_ok.bit_select(o_slot, 1))
        o_last = o_issue & (o_idx == n - 1)
        m.d.comb += [erd.addr.eq(Cat(o_idx, o_slot)), erd.en.eq(o_adv)]
        with m.If(o_issue):
            with m.If(o_last):
                m.d.sync += [o_idx.eq(0), o_slot.eq(o_slot + 1)]
            with m.Else():
                m.d.sync += o_idx.eq(o_idx + 1)
        m.d.sync += used.eq(used + (e_issue & (e_idx == 0)) - o_last)

        # Set / clear of the per-slot flags (a set and a clear never hit the same slot in
        # one cycle: the divider only takes a slot whose flag is already set, and so on).
        for s_ in range(SLOTS):
            m.d.sync += [
                sum_ok[s_].eq((sum_ok[s_] | (e_push & (e3["slot"] == s_))) &
                              ~(d_load[s_ % DIVIDERS] & (d_slot[s_ % DIVIDERS] == s_))),
                rec_ok[s_].eq((rec_ok[s_] | (d_done[s_ % DIVIDERS] &
                                             (d_slot[s_ % DIVIDERS] == s_))) &
                              ~(o_last & (o_slot == s_))),
            ]

        o1_v = Signal()
        o1_recip = Signal(qbits)
        o2_v = Signal()
        o2_prod = Signal(e_bits + qbits)
        sh = K - cfg.prob_bits
        pmax = (1 << cfg.prob_bits) - 1
        p = (o2_prod + (1 << (sh - 1))) >> sh
        with m.If(o_adv):
            m.d.sync += [
                o1_v.eq(o_issue), o1_recip.eq(Cat(*rec_reg).word_select(o_slot, qbits)),
                o2_v.eq(o1_v), o2_prod.eq(erd.data * o1_recip),
                self.probs.valid.eq(o2_v), self.probs.payload.eq(Mux(p > pmax, pmax, p)),
            ]
        return m

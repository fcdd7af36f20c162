"""Performance counters of ``defa_core``: cycles per phase, stalls, operations, passes."""

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from defa_hw.host.registers import PHASES, REG_BITS
from defa_hw.rtl.core.controller import Phase

__all__ = ["Counters"]


class Counters(wiring.Component):
    """The counters the register block reads back (``CYCLES``, ``CYC_*``, ``STALL_CYCLES``,
    ``MM_OPS``, ``BA_OPS``, ``PIXELS_MASKED_IN``, ``POINTS_CLAMPED``, ``PASSES``,
    ``BANK_CONFLICTS``).  START clears them; they hold their values after the block.

    Parameters
    ----------
    n_conflict_sources : int, keyword-only
        Value buffers whose conflict counters are summed.

    Attributes
    ----------
    start, busy : In(1)
    phase : In(Phase)
    stall, mm_op, ba_op, masked, next_pass : In(1)
        One-cycle events: an issuer waits for a stream; an MM / BA operation enters the
        array; a masked fmap pixel is taken; a pass that is not the last ends.
    clamped : In(8)
        Kept points whose offset hit the level bound this cycle.
    window_load, row_refetched, query_beat, fmap_beat, result_beat, weight_beat : In(1)
        A value-window load is asked for; a re-loaded row starts; a beat moves on a stream.
    rows : In(16)
        Rows of this cycle's window load.
    conflicts : In(REG_BITS)
        Sum of the value buffers' free-running conflict counters.
    cycles, cyc_<phase>, stall_cycles, mm_ops, ba_ops, pixels_masked_in,
    points_clamped, passes, bank_conflicts, window_loads, rows_loaded, rows_refetched,
    query_beats, fmap_beats, result_beats, weight_beats : Out(REG_BITS)
        ``weight_beats``: the beats taken while idle before the last START (the block's
        weights); the others count from START.
    """

    def __init__(self):
        members = {"start": In(1), "busy": In(1), "phase": In(Phase), "stall": In(1),
                   "mm_op": In(1), "ba_op": In(1), "masked": In(1), "next_pass": In(1),
                   "clamped": In(8), "conflicts": In(REG_BITS),
                   "window_load": In(1), "rows": In(16), "row_refetched": In(1),
                   "query_beat": In(1), "fmap_beat": In(1), "result_beat": In(1),
                   "weight_beat": In(1)}
        for name in ("cycles", *(f"cyc_{p}" for p, _ in PHASES), "stall_cycles", "mm_ops",
                     "ba_ops", "pixels_masked_in", "points_clamped", "passes",
                     "bank_conflicts", "window_loads", "rows_loaded", "rows_refetched",
                     "query_beats", "fmap_beats", "result_beats", "weight_beats"):
            members[name] = Out(REG_BITS)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        base = Signal(REG_BITS)                      # conflict count at START
        events = ((self.mm_ops, self.mm_op), (self.ba_ops, self.ba_op),
                  (self.pixels_masked_in, self.masked), (self.points_clamped, self.clamped),
                  (self.window_loads, self.window_load),
                  (self.rows_loaded, self.rows & self.window_load.replicate(16)),
                  (self.rows_refetched, self.row_refetched),
                  (self.query_beats, self.query_beat), (self.fmap_beats, self.fmap_beat),
                  (self.result_beats, self.result_beat))
        weights_pending = Signal(REG_BITS)
        m.d.sync += weights_pending.eq(weights_pending + self.weight_beat)
        m.d.sync += [c.eq(c + e) for c, e in events]
        with m.If(self.busy):
            m.d.sync += [self.cycles.eq(self.cycles + 1),
                         self.stall_cycles.eq(self.stall_cycles + self.stall)]
            for name, _ in PHASES:
                c = getattr(self, f"cyc_{name}")
                with m.If(self.phase == Phase[name.upper()]):
                    m.d.sync += c.eq(c + 1)
        with m.If(self.next_pass):
            m.d.sync += self.passes.eq(self.passes + 1)
        m.d.comb += self.bank_conflicts.eq(self.conflicts - base)
        # Last, so that it wins over every increment above.
        with m.If(self.start):
            m.d.sync += [base.eq(self.conflicts), self.passes.eq(1),
                         self.weight_beats.eq(weights_pending + self.weight_beat),
                         weights_pending.eq(0)]
            m.d.sync += [c.eq(0) for c, _ in events]
            m.d.sync += [self.cycles.eq(0), self.stall_cycles.eq(0)]
            m.d.sync += [getattr(self, f"cyc_{n}").eq(0) for n, _ in PHASES]
        return m

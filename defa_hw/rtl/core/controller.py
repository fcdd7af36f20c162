"""Phase controller of ``defa_core``: the one :class:`Phase` enum and the pass bookkeeping."""

from amaranth import Module, Mux, Signal
from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

from defa_hw.rtl.core.common import check_geometry, rng

__all__ = ["Phase", "Controller"]


class Phase(enum.Enum, shape=3):
    """Controller state; one cycle counter per phase (``Reg.CYC_*``)."""
    IDLE = 0
    ATTN = 1
    OFFSET = 2
    VALUE = 3
    BA = 4
    OUT = 5
    TAIL = 6


class Controller(wiring.Component):
    """Walks a block through its passes: per pass of at most ``max_queries`` queries
    ATTN -> OFFSET -> BA -> OUT, then the next pass's ATTN or, after the last pass,
    TAIL -> IDLE.  BA leaves for VALUE whenever the next query's value rows are not
    resident (a value-window miss, once BA has drained) and comes back when they are
    loaded.

    Every exit reads the ``done`` / ``drained`` outputs of the units, never their
    internals; the units clear their per-pass state on ``pass_start``.

    Parameters
    ----------
    geom : CoreGeometry

    Attributes
    ----------
    start : In(1)
        START accepted (only while ``phase`` is IDLE).
    nq : In(16)
        Queries of the block (the NQ register).
    attn_done, offset_done, ba_done, out_done : In(1)
        The phase's unit has finished the pass (its last operation issued / its
        results written, as each unit documents).
    window_miss, ba_idle : In(1)
        BA -> VALUE: the next query misses the value windows, and no BA operation is
        in flight.
    window_loaded, value_in_drained, value_issue_idle : In(1)
        VALUE exit: every load asked for, its beats taken and forwarded, and the
        issuer's last pixel issued.
    results_drained, mm_drained, ba_drained : In(1)
        TAIL exit: results stream and mask sent, no MM tile and no BA sample in flight.
    phase : Out(Phase)
    busy, done : Out(1)
        A block is running / the last block has finished (``CTRL``).
    pass_start : Out(1)
        A pass starts next cycle (START, or OUT ending a pass that is not the last).
    next_pass : Out(1)
        OUT ends a pass that is not the last (counts ``Reg.PASSES``).
    pass_index, pass_base : Out(16)
        Pass number and its first query.  ``pass_index[0]`` selects the query-memory half.
    nq_pass : Out(range(max_queries + 1))
        Queries in this pass.
    last_pass : Out(1)
    idle, drained : Out(1)
        IDLE; the controller itself holds nothing in flight (``drained`` = ``idle``).

    Constants
    ---------
    EXIT : int
        Cycles from an issuer's last operation to the next phase (its ``done`` register).
    """

    EXIT = 1

    def __init__(self, geom):
        self.geom = check_geometry(geom)
        super().__init__({
            "start": In(1), "nq": In(16),
            "attn_done": In(1), "offset_done": In(1), "ba_done": In(1), "out_done": In(1),
            "value_in_drained": In(1), "value_issue_idle": In(1),
            "window_miss": In(1), "window_loaded": In(1), "ba_idle": In(1),
            "results_drained": In(1), "mm_drained": In(1), "ba_drained": In(1),
            "phase": Out(Phase), "busy": Out(1), "done": Out(1),
            "pass_start": Out(1), "next_pass": Out(1),
            "pass_index": Out(16), "pass_base": Out(16),
            "nq_pass": Out(rng(geom.mq + 1)), "last_pass": Out(1),
            "idle": Out(1), "drained": Out(1),
        })

    def elaborate(self, platform):
        MQ = self.geom.mq
        m = Module()
        phase = self.phase
        remaining = Signal(16)
        m.d.comb += [self.busy.eq(phase != Phase.IDLE),
                     self.idle.eq(phase == Phase.IDLE), self.drained.eq(phase == Phase.IDLE),
                     remaining.eq(self.nq - self.pass_base),
                     self.nq_pass.eq(Mux(remaining > MQ, MQ, remaining)),
                     self.last_pass.eq(remaining <= MQ)]
        more = ~self.last_pass
        m.d.comb += [
            self.next_pass.eq((phase == Phase.OUT) & self.out_done & more),
            self.pass_start.eq(self.start | self.next_pass),
        ]

        with m.Switch(phase):
            with m.Case(Phase.IDLE):
                with m.If(self.start):
                    m.d.sync += [phase.eq(Phase.ATTN), self.done.eq(0),
                                 self.pass_index.eq(0), self.pass_base.eq(0)]
            with m.Case(Phase.ATTN):
                with m.If(self.attn_done):
                    m.d.sync += phase.eq(Phase.OFFSET)
            with m.Case(Phase.OFFSET):
                with m.If(self.offset_done):
                    m.d.sync += phase.eq(Phase.BA)
            with m.Case(Phase.VALUE):
                with m.If(self.window_loaded & self.value_in_drained & self.value_issue_idle):
                    m.d.sync += phase.eq(Phase.BA)
            with m.Case(Phase.BA):
                with m.If(self.ba_done):
                    m.d.sync += phase.eq(Phase.OUT)
                with m.Elif(self.window_miss & self.ba_idle):
                    # the next query's rows are not resident: load them, then resume
                    m.d.sync += phase.eq(Phase.VALUE)
            with m.Case(Phase.OUT):
                with m.If(self.out_done):
                    with m.If(self.last_pass):
                        m.d.sync += phase.eq(Phase.TAIL)
                    with m.Else():
                        m.d.sync += [phase.eq(Phase.ATTN),
                                     self.pass_index.eq(self.pass_index + 1),
                                     self.pass_base.eq(self.pass_base + MQ)]
            with m.Case(Phase.TAIL):
                with m.If(self.results_drained & self.mm_drained & self.ba_drained):
                    m.d.sync += [phase.eq(Phase.IDLE), self.done.eq(1)]
        return m

"""The one clock-and-reset helper and the bounded wait of every testbench.

Every wait on the DUT goes through a cycle limit: a design that never answers fails
the test with a :class:`Stuck` line naming what was awaited, instead of hanging it.
"""

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge

__all__ = ["PERIOD_NS", "Stuck", "start_clock", "reset", "clock_and_reset", "wait_until"]

#: Clock period of every testbench.
PERIOD_NS = 10


class Stuck(AssertionError):
    """A wait on the DUT ran past its cycle limit (one-line message)."""


def start_clock(dut, *, clk="clk"):
    """Start the ``PERIOD_NS`` clock on ``dut.<clk>``, low first (an x->1 edge at time 0
    would race the initial values)."""
    cocotb.start_soon(Clock(getattr(dut, clk), PERIOD_NS, unit="ns").start(start_high=False))


async def reset(dut, *, cycles=3, low=(), rst="rst", clk="clk"):
    """Hold ``dut.<rst>`` for ``cycles`` clocks with the inputs named in ``low`` at 0,
    releasing it on a falling edge (so the first stimulus meets a clean rising edge)."""
    getattr(dut, rst).value = 1
    for name in low:
        getattr(dut, name).value = 0
    await ClockCycles(getattr(dut, clk), cycles)
    await FallingEdge(getattr(dut, clk))
    getattr(dut, rst).value = 0


async def clock_and_reset(dut, *, low=(), cycles=3):
    """:func:`start_clock` then :func:`reset` (``low``: inputs held at 0, e.g. valids)."""
    start_clock(dut)
    await reset(dut, cycles=cycles, low=low)


async def wait_until(clk, cond, *, limit, what):
    """Wait, one rising edge at a time, until ``cond()`` holds in the settled (ReadOnly)
    phase of a cycle; raise :class:`Stuck` naming ``what`` after ``limit`` cycles (out of
    the ReadOnly phase).  Returns the number of cycles waited, in the ReadOnly phase."""
    for n in range(limit + 1):
        await ReadOnly()
        if cond():
            return n
        await RisingEdge(clk)
    raise Stuck(f"{what}: not reached in {limit} cycles")

"""The one valid/ready stream driver and monitor (after cocotbext-axi's source and sink).

Amaranth names a stream port ``<name>`` as ``<name>__valid``, ``<name>__ready`` and
``<name>__payload``.  A transfer happens at the rising edge after a cycle in which valid
and ready are both high.  Every agent works one cycle at a time in two steps, so several
agents share one cycle loop (:func:`run_agents`, two triggers per clock whatever the
number of streams; Python time dominates the defa core on Icarus):

- ``drive()`` after the rising edge: put this cycle's valid / ready / payload;
- ``sample()`` in the ReadOnly phase: see whether a beat was transferred.

Random stalls come from a *pause generator* as in cocotbext-axi: an iterator yielding
True for each cycle the agent holds back (:func:`random_pause`, ``itertools.cycle``).
"""

import itertools
import random

from cocotb.triggers import ReadOnly, RisingEdge

from verif.lib.clock import Stuck

__all__ = ["random_pause", "StreamSource", "StreamSink", "run_agents"]


def random_pause(p, *, seed=None, rng=None):
    """A pause generator: True with probability ``p`` each cycle (``rng`` or ``seed``)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"pause probability {p!r} is invalid: allowed 0 <= p <= 1")
    rng = rng if rng is not None else random.Random(seed)
    if p == 0.0:
        return itertools.repeat(False)
    return (rng.random() < p for _ in itertools.count())


class StreamSource:
    """Drives ``<name>__valid`` / ``<name>__payload`` from a queue of beats and honours
    ``<name>__ready``.

    Parameters
    ----------
    dut : the cocotb handle holding the stream.
    name : the stream port's name.
    pause : pause generator (None: valid whenever a beat is queued); a paused cycle
        shows no new beat, a shown beat stays valid until it is taken.
    on_accept : called with a beat's index in the cycle it is taken (in the ReadOnly
        phase; e.g. to update a golden model in transfer order).

    A beat is an int (the payload) or a dict of signal name -> value written together
    when the beat is shown (``"payload"`` for the payload; other keys are side signals of
    the DUT, e.g. a per-beat parameter held with the stream).

    Attributes
    ----------
    sent : number of beats transferred.
    stalled : cycles in which a shown beat waited for ready (back-pressure seen).
    accepted_at : the cycle of each transfer (this agent's cycle count).
    """

    def __init__(self, dut, name, *, pause=None, on_accept=None):
        self.dut, self.name = dut, name
        self.on_accept = on_accept
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.pause = pause
        self.beats = []
        self.sent = 0
        self.stalled = 0
        self.cycle = 0
        self.accepted_at = []
        self._shown = -1            # index of the beat currently on the payload
        self._v = None

    def send(self, beats):
        """Queue ``beats`` (an iterable of ints or dicts)."""
        self.beats.extend(beats)

    @property
    def done(self):
        """Every queued beat has been transferred."""
        return self.sent >= len(self.beats)

    @property
    def showing(self):
        """Index of the beat shown with valid high in this cycle (after ``drive()``), or
        None (lets one source time its beats on another's, e.g. a command with the last
        beat)."""
        return self.sent if self._v and not self.done else None

    def drive(self):
        self.cycle += 1
        # As an AXI-Stream source: a shown beat stays valid until it is taken; the pause
        # generator only delays the next one.
        if self._v and not self.done:
            v = 1
        else:
            v = int(not self.done and not (self.pause is not None and next(self.pause)))
        if v and self._shown != self.sent:
            beat = self.beats[self.sent]
            if isinstance(beat, dict):
                for k, x in beat.items():
                    (self.payload if k == "payload" else getattr(self.dut, k)).value = x
            else:
                self.payload.value = beat
            self._shown = self.sent
        if v != self._v:            # writes are costly on Icarus: only on change
            self.valid.value = v
            self._v = v

    def sample(self):
        if self._v:
            if self.ready.value == 1:
                self.sent += 1
                self.accepted_at.append(self.cycle)
                if self.on_accept is not None:
                    self.on_accept(self.sent - 1)
            else:
                self.stalled += 1

    def idle(self):
        """Drop valid (between blocks, before a reset)."""
        self.valid.value = 0
        self._v = 0

    async def wait(self, clk, *, limit):
        """Drive until every queued beat is transferred (at most ``limit`` cycles)."""
        await run_agents(clk, [self], until=lambda: self.done, limit=limit,
                         what=f"stream {self.name}: {len(self.beats)} beats")
        await RisingEdge(clk)
        self.idle()


class StreamSink:
    """Drives ``<name>__ready`` (with a pause generator) and collects the accepted
    payloads of ``<name>__valid`` / ``<name>__payload``.

    Parameters
    ----------
    dut, name : as :class:`StreamSource`.
    pause : pause generator for ready (None: always ready).
    on_beat : called with each accepted payload (an unsigned int) instead of collecting
        it (for checkers that compare at once).

    Attributes
    ----------
    beats : the accepted payloads (unless ``on_beat``).
    count : number of accepted beats.
    accepted_at : the cycle of each transfer.
    valid_at : the cycles in which valid was high (this agent's cycle count).
    """

    def __init__(self, dut, name, *, pause=None, on_beat=None):
        self.dut, self.name = dut, name
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.pause = pause
        self.on_beat = on_beat
        self.beats = []
        self.count = 0
        self.cycle = 0
        self.accepted_at = []
        self.valid_at = []
        self._r = None

    def drive(self):
        self.cycle += 1
        r = int(not (self.pause is not None and next(self.pause)))
        if r != self._r:
            self.ready.value = r
            self._r = r

    def sample(self):
        if self.valid.value != 1:
            return
        self.valid_at.append(self.cycle)
        if self._r:
            v = self.payload.value.to_unsigned()
            self.count += 1
            self.accepted_at.append(self.cycle)
            if self.on_beat is not None:
                self.on_beat(v)
            else:
                self.beats.append(v)

    def idle(self):
        """Drop ready."""
        self.ready.value = 0
        self._r = 0

    async def wait(self, clk, n, *, limit):
        """Accept until ``n`` beats in all have arrived (at most ``limit`` cycles)."""
        await run_agents(clk, [self], until=lambda: self.count >= n, limit=limit,
                         what=f"stream {self.name}: {n} beats, got {self.count}")
        await RisingEdge(clk)
        self.idle()


async def run_agents(clk, agents, *, until, limit, what=None, each_cycle=None):
    """The shared cycle loop: each cycle, after the rising edge every agent drives, in
    the ReadOnly phase every agent samples, then ``each_cycle()`` (if given) runs and
    ``until()`` is checked.  Returns the number of cycles run, in the ReadOnly phase;
    raises :class:`Stuck` naming ``what`` after ``limit`` cycles (after the next rising
    edge, so the caller may recover, e.g. reset).  With ``until=None``
    it runs exactly ``limit`` cycles (e.g. to see that nothing more arrives)."""
    for n in range(1, limit + 1):
        await RisingEdge(clk)
        for a in agents:
            a.drive()
        await ReadOnly()
        for a in agents:
            a.sample()
        if each_cycle is not None:
            each_cycle()
        if until is not None and until():
            return n
    if until is None:
        return limit
    await RisingEdge(clk)          # out of the ReadOnly phase: the caller may drive again
    raise Stuck(f"{what}: not done in {limit} cycles")

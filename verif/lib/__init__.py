"""The verification library, written once and shared by every testbench (installed with the
package, so ``defa-hw simulate`` works outside the repository):

- :mod:`verif.lib.runner`: the one simulator runner (cached builds, cocotb test runs);
- :mod:`verif.lib.clock`: clock and reset, bounded waits (:class:`~verif.lib.clock.Stuck`);
- :mod:`verif.lib.stream`: valid/ready stream source and sink with pause generators;
- :mod:`verif.lib.core_tb`: the host model of ``defa_core`` and ``simulate``'s cocotb test.
"""

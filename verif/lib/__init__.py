"""The verification library: simulator runner, core testbench (installed with the package,
so ``defa-hw simulate`` works outside the repository)."""

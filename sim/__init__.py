"""Time: the SimPy engine, network models, results, and the one entry point simulate()."""

from sim.simulate import simulate  # noqa: F401

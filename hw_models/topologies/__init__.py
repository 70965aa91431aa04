"""Topology builders, one module per kind; importing the package registers them all."""

from hw_models.topologies import clos, scale_up, torus  # noqa: F401

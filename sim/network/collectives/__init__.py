"""Collective algorithms as flows, one module per algorithm, registered by name."""

from sim.network.collectives import (  # noqa: F401  (registration)
    a2a_direct,
    a2a_pairwise,
    collnet,
    hierarchical,
    nvls,
    nvlstree,
    p2p,
    pat,
    rhd,
    ring,
    tree,
)
from sim.network.collectives.base import ALGORITHMS, Algorithm, CollCtx, get  # noqa: F401

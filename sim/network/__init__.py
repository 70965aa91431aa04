"""Network models behind one interface: closed-form ``collective_time``/``p2p_time`` and
SimPy processes ``collective``/``p2p`` (which a flow-level model implements with flows)."""

from sim.network.analytical import AnalyticalNetwork, ClusterLayout  # noqa: F401
from sim.network.base import Network  # noqa: F401

"""Point-to-point curves (calibration/fit_p2p.py): fitted on Vidur's NVLink send_recv
sweeps, a send/recv runs on its own curve, not on the all_reduce curves."""

import pytest

from calibration.fit_p2p import p2p_errors, p2p_sweeps, validate
from calibration.validate_nccl import geomean_abs_error
from hw_models import catalog
from hw_models.profile import FabricCurve, load_builtin
from sim.network.analytical import ClusterLayout
from sim.network.flow import FlowNetwork
from workloads.graph import CommGroup

SWEEPS = {s.name: s for s in p2p_sweeps()}


@pytest.mark.parametrize("name", list(SWEEPS))
def test_fit_same_and_held_out_within_10_pct(name):
    s = SWEEPS[name]
    err = p2p_errors(s, load_builtin(s.profile))
    assert err["same"] <= 0.10 and err["held_out"] <= 0.10


def test_built_in_profiles_predict_send_recv():
    rows = validate()
    for name, g in rows.groupby("sweep"):
        assert geomean_abs_error(g.predicted_us, g.measured_us) <= 0.10, name


def test_send_recv_uses_the_p2p_curve():
    """A p2p curve with no extra latency, eff 1 and a 10-byte ramp: 64 MiB between two
    GPUs of a DGX H100 takes NCCL's one ring step (Simple: 8.4 + 3.4 us) plus
    (S + 10) bytes at the 450 GB/s NVLink port."""
    sys = catalog.system("dgx-h100")
    prof = load_builtin("h100")
    p2p = FabricCurve(base_us=0.0, step_us=0.0, eff_max=1.0, bytes_half=10.0, gamma=1.0)
    prof = prof.model_copy(update={"fabric": dict(prof.fabric) | {"nvlink.p2p": p2p}})
    net = FlowNetwork(ClusterLayout(sys, 1, sys.nic_gbps), prof, {})
    size = float(64 << 20)
    assert net.choose("sendrecv", size, CommGroup((0, 1))).proto == "Simple"
    expected = 11.8e-6 + (size + 10.0) / 450e9
    assert net.collective_time("sendrecv", size, CommGroup((0, 1))) == pytest.approx(expected, rel=1e-6)

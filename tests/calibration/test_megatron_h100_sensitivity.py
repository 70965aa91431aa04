"""``python -m calibration.validate_megatron_h100 --sensitivity``: each variant changes the
one unstated setting it names, and nothing else."""

import pytest

from calibration.validate_megatron_h100 import (
    NDR_NIC_GB_S,
    VARIANTS,
    rows,
    scenario_for,
    variant_profile,
)
from hw_models import catalog
from hw_models.profile import load_builtin
from sim.network.analytical import AnalyticalNetwork, ClusterLayout
from sim.scenario import parse
from sim.setup import resolve_setup
from workloads.graph import CommGroup


def setups(variant: str):
    out = []
    for r in rows().itertuples():
        sc = scenario_for(r)
        VARIANTS[variant](sc, r)
        out.append((r, resolve_setup(parse(sc))))
    return out


def test_bf16_variant_halves_only_the_gradient_bytes():
    for (_, base), (_, bf16) in zip(setups("as assumed"), setups("bf16 gradient reduction"),
                                    strict=True):
        assert (base.options.grad_bytes, bf16.options.grad_bytes) == (4, 2)
        assert bf16.plan == base.plan


def test_one_microbatch_only_on_rows_without_pipeline():
    for r, st in setups("one microbatch on PP=1 rows"):
        # the table's batch over its data-parallel size: 192 / 48 = 4 sequences per replica
        assert st.plan.microbatches == (1 if r.pp == 1 else r.global_batch_seqs // r.dp)
        assert st.plan.micro_batch == (r.global_batch_seqs // r.dp if r.pp == 1 else 1)


def test_ndr_variant_runs_large_rings_at_the_maintainers_figure():
    """The variant's network plateau is 46-49 GB/s of bus bandwidth per 400 Gb/s NIC
    (nccl_tuning_constants.md); a 10 GB reduce-scatter over 48 DGX H100 nodes, one GPU
    each (the 32B row's DP group), runs at that plateau times the fitted ramp read at its
    bytes per NIC (8x its bus bytes: one NIC per node against the fit group's 8), after
    the curve's latency, in both profiles."""
    assert variant_profile("as assumed") is None
    prof = variant_profile("NIC at NCCL's NDR figure")
    assert prof.collectives["nvlink"] == load_builtin("h100").collectives["nvlink"]
    net_curve = prof.collectives["network"]
    assert NDR_NIC_GB_S[0] <= net_curve.eff_max * 50 <= NDR_NIC_GB_S[1]
    system = catalog.system("dgx-h100")
    group = CommGroup(tuple(range(0, 48 * 8, 8)), "dp")
    nbytes, bus = 10e9, 10e9 * 47 / 48
    for p in (prof, load_builtin("h100")):
        curve = p.collectives["network"]
        net = AnalyticalNetwork(ClusterLayout(system, 48, system.nic_gbps), p)
        assert net.collective_time("reduce_scatter", nbytes, group) == pytest.approx(
            curve.latency_us * 1e-6 + bus / (50e9 * curve.eff(8 * bus)), rel=0.01)

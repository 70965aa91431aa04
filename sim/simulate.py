"""The one public entry point: ``simulate(scenario) -> SimResult``.

Joins the three inputs (model, parallel plan, cluster) at one call site, builds the
ExecutionGraph, plays it on the engine, and derives the metrics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd

from hw_models import catalog, profile
from hw_models.catalog import GPUSpec, SystemSpec
from hw_models.compute import ComputeModel
from hw_models.errors import OutOfMemoryError
from hw_models.profile import Profile
from sim.costs import OpCosts
from sim.engine import Engine
from sim.network import AnalyticalNetwork, ClusterLayout
from sim.result import SimResult, breakdown, timeline_frame
from sim.scenario import Scenario, TrainingWorkload
from sim.training_config import offload_options, plan_kwargs, precision_options
from workloads import memory, parallel, training
from workloads.model import ModelSpec, model_flops, resolve


@dataclass(frozen=True)
class Setup:
    """Everything resolved from a scenario: the three inputs and the cost models."""
    scenario: Scenario
    system: SystemSpec
    gpu: GPUSpec
    profile: Profile
    model: ModelSpec
    plan: parallel.ParallelPlan
    layout: ClusterLayout
    options: training.TrainingOptions


def resolve_setup(sc: Scenario) -> Setup:
    system = catalog.system(sc.cluster.system)
    gpu = system.gpu_spec
    prof = profile.load(sc.cluster.profile or system.default_profile)
    w: TrainingWorkload = sc.workload
    model = resolve(w.model).with_seq_len(w.seq_len)
    world = sc.cluster.nodes * system.gpus_per_node
    p = w.parallel
    dp = p.dp or parallel.derive_dp(world, p.tp, p.pp, p.cp)
    plan = parallel.ParallelPlan(
        tp=p.tp, pp=p.pp, dp=dp, micro_batch=w.micro_batch, global_batch=w.global_batch,
        vpp=p.vpp, sequence_parallel=p.sequence_parallel, schedule=p.schedule, zero=p.zero,
        recompute=w.recompute,
        pipeline_layers=tuple(p.pipeline_layers) if p.pipeline_layers else None,
        **plan_kwargs(p, system.gpus_per_node))
    parallel.validate(plan, model, world)
    # fp32 main gradients for bf16 and for fp8 recipes (FP8 is only the GEMM inputs)
    grad_bytes = w.grad_reduce_bytes or (4 if w.precision in ("bf16", "fp8") else 2)
    opts = training.TrainingOptions(attention=w.attention, grad_bytes=grad_bytes,
                                    overlap_grad_reduce=w.overlap_grad_reduce,
                                    offload=offload_options(w, system, model, plan,
                                                            w.attention == "flash"),
                                    **precision_options(w, gpu))
    net = sc.cluster.network
    layout = ClusterLayout(system, sc.cluster.nodes, net.nic_gbps or system.nic_gbps,
                           net.oversubscription)
    return Setup(sc, system, gpu, prof, model, plan, layout, opts)


def make_network(setup: Setup, prof: Profile | None = None, bw_scale: float = 1.0):
    prof = prof or setup.profile
    if setup.scenario.sim.fidelity == "flow":
        from sim.network.flow import FlowNetwork
        # Unset keys must fall back to the system's catalog values, so None is not passed.
        cfg = setup.scenario.cluster.network.model_dump(exclude_none=True)
        return FlowNetwork(setup.layout, prof, cfg)
    return AnalyticalNetwork(setup.layout, prof, bw_scale)


def check_memory(setup: Setup, mem: pd.DataFrame) -> None:
    cap = setup.gpu.hbm_bytes / 2**30
    worst = mem.loc[mem.total_gib.idxmax()]
    if worst.total_gib > cap:
        raise OutOfMemoryError(
            f"plan does not fit: stage {int(worst.stage)} needs {worst.total_gib:.1f} GiB "
            f"(weights {worst.weights_gib:.1f}, grads {worst.grads_gib:.1f}, optimizer "
            f"{worst.optimizer_gib:.1f}, activations {worst.activations_gib:.1f}) but a "
            f"{setup.gpu.name} has {cap:.1f} GiB; try more tp/pp, zero>=1, recompute or a "
            "smaller micro_batch")


def simulate(sc: Scenario, prof: Profile | None = None, band: bool = True) -> SimResult:
    """One training iteration (or a serving run). ``band``: when the profile carries
    bootstrap uncertainty, also play the same graph with the profile's fast and slow
    corners (calibration/uncertainty.py) and report ``result.band`` (low, high)."""
    if sc.workload.kind == "inference":      # LLM serving: sim/simulate_inference.py
        from sim.simulate_inference import simulate_inference
        return simulate_inference(sc, prof)
    t0 = time.perf_counter()
    setup = resolve_setup(sc)
    prof = prof or setup.profile
    plan, model = setup.plan, setup.model
    mem = pd.DataFrame([m.gib() for m in memory.memory_per_stage(
        model, plan, setup.options.grad_bytes, setup.options.attention == "flash",
        setup.options.param_bytes, setup.options.offload)])
    if sc.sim.check_memory:
        check_memory(setup, mem)
    graph = training.build(model, plan, setup.options)
    network = make_network(setup, prof)
    if hasattr(network, "set_simulated_ranks"):   # flow model places symmetric peers' flows
        network.set_simulated_ranks(graph.simulated_ranks)
    costs = OpCosts(ComputeModel(setup.gpu, prof, sc.sim.speed_scale), network, host_bw(setup))
    engine = Engine(graph, costs, network)
    rows = engine.run()
    t_iter = max(r.end for r in rows)
    tokens = plan.global_batch * model.seq_len
    world = plan.world
    peak = setup.gpu.peak_flops(sc.workload.precision)
    mflops = model_flops(model, tokens)
    hw_flops = mflops * recompute_factor(setup)
    lo_hi = band_times(setup, graph, prof, t_iter) if band and prof.uncertainty else None
    # An async checkpoint write on the same fabric (flow fidelity, docs/reliability.md).
    from sim.checkpoint_contention import checkpoint_contention
    contention = checkpoint_contention(setup, graph, prof, t_iter)
    return SimResult(
        name=sc.name, fidelity=getattr(network, "fidelity", sc.sim.fidelity),
        iteration_time_s=t_iter, tokens_per_s=tokens / t_iter,
        tflops_per_gpu=mflops / t_iter / world / 1e12, mfu=mflops / (t_iter * world * peak),
        hfu=hw_flops / (t_iter * world * peak), memory_peak_gib=float(mem.total_gib.max()),
        breakdown=breakdown(rows, graph), memory=mem, timeline=timeline_frame(rows),
        world_size=world, events=engine.events, wall_s=time.perf_counter() - t0,
        band=None if lo_hi is None else {
            "iteration_time_s": lo_hi, "tokens_per_s": (tokens / lo_hi[1], tokens / lo_hi[0]),
            "mfu": (mflops / (lo_hi[1] * world * peak), mflops / (lo_hi[0] * world * peak))},
        extra={"nodes": len(graph), "microbatches": plan.microbatches,
               "plan": {"tp": plan.tp, "pp": plan.pp, "dp": plan.dp, "vpp": plan.vpp,
                        "cp": plan.cp, "schedule": plan.effective_schedule},
               **({"checkpoint_contention": contention} if contention else {})})


def band_times(setup: Setup, graph, prof: Profile, t_iter: float) -> tuple[float, float]:
    """(low, high) iteration time: the same graph re-costed and re-played with every fitted
    parameter at its fast and at its slow bootstrap end (a corner bound, see
    calibration/uncertainty.py)."""
    from calibration.uncertainty import band_profiles
    times = [t_iter]
    for corner in band_profiles(prof):
        network = make_network(setup, corner)
        if hasattr(network, "set_simulated_ranks"):
            network.set_simulated_ranks(graph.simulated_ranks)
        costs = OpCosts(ComputeModel(setup.gpu, corner, setup.scenario.sim.speed_scale), network,
                        host_bw(setup))
        times.append(max(r.end for r in Engine(graph, costs, network).run()))
    return min(times), max(times)


def host_bw(setup: Setup) -> float:
    """Bytes/s of one GPU's host link (catalog); OpCosts' PCIe Gen4 default without one."""
    gb_s = setup.system.host_link_gb_s
    return gb_s * 1e9 if gb_s else 25e9


def recompute_factor(setup: Setup) -> float:
    """Hardware / model FLOPs: (fwd + bwd + recompute) / (fwd + bwd) of one layer
    (Korthikanti et al.: HFU counts the recomputed forward, MFU does not)."""
    from workloads.graph import CommGroup
    from workloads.layers import LayerContext, layer_backward, layer_forward, layer_recompute
    ctx = LayerContext(setup.model, setup.plan.micro_batch, setup.plan.tp, setup.plan.sp,
                       setup.options.dtype, CommGroup((0,)), setup.options.attention)
    def flops(ops):
        return sum(getattr(o, "flops", 0.0) for o in ops)
    fb = flops(layer_forward(ctx)) + flops(layer_backward(ctx))
    return (fb + flops(layer_recompute(ctx, setup.plan.recompute))) / fb

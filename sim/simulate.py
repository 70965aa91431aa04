"""The one public entry point: ``simulate(scenario) -> SimResult | InferenceResult | RLResult``.

For training, joins the three inputs (model, parallel plan, cluster) through sim/setup.py,
builds the ExecutionGraph, plays it on the engine, and derives the metrics; a serving
scenario goes to sim/simulate_inference.py.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from hw_models import profile
from hw_models.catalog import SystemSpec
from hw_models.errors import OutOfMemoryError
from hw_models.profile import Profile, band_profiles, load_residual_band
from sim.band import Schedule, corner_time
from sim.checkpoint_contention import checkpoint_contention
from sim.costs import OpCosts
from sim.engine import cyclic_gc_paused
from sim.result import Columns, SimResult, breakdown, timeline_frame
from sim.scenario import Scenario
from sim.setup import Setup, build_engine, make_network, paced_compute, resolve_setup
from workloads import memory, moe_training, training
from workloads.graph import CommGroup
from workloads.layers import LayerContext, layer_backward, layer_forward, layer_recompute
from workloads.model import model_flops
from workloads.moe_layers import layer_backward_at, layer_forward_at, layer_recompute_at
from workloads.moe_parallel import edp

if TYPE_CHECKING:                     # serving and RL load their modules when asked for
    from sim.rl_timeline import RLResult
    from sim.simulate_inference import InferenceResult


def check_memory(setup: Setup, mem: list[dict[str, Any]]) -> None:
    """``mem``: the memory table's records, one per pipeline stage."""
    cap = setup.gpu.hbm_bytes / 2**30
    worst = max(mem, key=lambda m: m["total_gib"])
    if worst["total_gib"] > cap:
        raise OutOfMemoryError(
            f"plan does not fit: stage {int(worst['stage'])} needs {worst['total_gib']:.1f} GiB "
            f"(weights {worst['weights_gib']:.1f}, grads {worst['grads_gib']:.1f}, optimizer "
            f"{worst['optimizer_gib']:.1f}, activations {worst['activations_gib']:.1f}) but a "
            f"{setup.gpu.name} has {cap:.1f} GiB; try more tp/pp, zero>=1, recompute or a "
            "smaller micro_batch" + (", or grad_reduce_bytes: 2 (a bf16 gradient buffer, as "
                                     "NeMo's performance recipes)" if setup.options.grad_bytes == 4
                                     else ""))


def simulate(sc: Scenario, prof: Profile | None = None, band: bool = True,
             residuals: bool = True) -> SimResult | InferenceResult | RLResult:
    """One training iteration (a SimResult), a serving run for ``workload.kind:
    inference`` (an InferenceResult, sim/simulate_inference.py), or one RL post-training
    step for ``workload.kind: rl`` (an RLResult, sim/rl.py). ``band``: when the profile
    carries bootstrap uncertainty, also re-time the played training graph with the profile's
    fast and slow corners (hw_models.profile.band_profiles) and report ``result.band``
    (low, high), widened by the validation residuals unless ``residuals`` is False (the
    validation suites themselves use the bare bootstrap band: a band must not be judged
    by itself)."""
    if sc.workload.kind == "rl":             # RL post-training step (pools too): sim/rl.py
        from sim.rl import simulate_rl
        return simulate_rl(sc, prof)
    if sc.cluster.pools:                     # heterogeneous cluster: sim/pools.py
        if len(sc.cluster.pools) > 1 and sc.workload.kind == "inference":
            from sim.serving_pools import simulate_serving_pools
            return simulate_serving_pools(sc)
        if len(sc.cluster.pools) > 1:
            from sim.pools import simulate_pools
            return simulate_pools(sc)
        one = sc.cluster.pools[0]
        sc = sc.model_copy(update={"cluster": sc.cluster.model_copy(
            update={"system": one.system, "nodes": one.nodes, "pools": None})})
    if sc.workload.kind == "inference":
        from sim.simulate_inference import simulate_inference
        return simulate_inference(sc, prof)
    return simulate_training(sc, prof, band, residuals)


def simulate_training(sc: Scenario, prof: Profile | None = None, band: bool = True,
                      residuals: bool = True) -> SimResult:
    """One training iteration of a ``workload.kind: training`` scenario."""
    with cyclic_gc_paused():
        return _simulate_training(sc, prof, band, residuals)


def _simulate_training(sc: Scenario, prof: Profile | None, band: bool, residuals: bool
                       ) -> SimResult:
    t0 = time.perf_counter()
    setup = resolve_setup(sc)
    prof = prof or setup.profile
    plan, model = setup.plan, setup.model
    moe_load = moe_training.load(model, plan, setup.options.moe)
    mem = [m.gib() for m in memory.memory_per_stage(
        model, plan, setup.options.grad_bytes, setup.options.attention == "flash",
        moe_load.rank_factor if moe_load else 1.0, setup.options.param_bytes,
        setup.options.offload, setup.options.optimizer, setup.options.adam_moment_bytes)]
    if sc.sim.check_memory:
        check_memory(setup, mem)
    graph = training.build(model, plan, setup.options)
    engine = build_engine(setup, graph, prof)
    rows = engine.run()
    t_iter = max(r.end for r in rows)
    tokens = plan.global_batch * model.seq_len
    world = plan.world
    peak = setup.gpu.peak_flops(sc.workload.precision)
    mflops = model_flops(model, tokens)
    hw_flops = mflops * recompute_factor(setup)
    lo_hi = band_times(setup, graph, prof, engine) if band and prof.uncertainty else None
    if lo_hi is not None and residuals:
        lo_hi = widen_with_residuals(lo_hi)
    # An async checkpoint write on the same fabric (flow fidelity, docs/reliability.md).
    contention = checkpoint_contention(setup, graph, prof, t_iter)
    timeline = timeline_frame(rows)
    from sim.cost import energy_and_cost
    from sim.energy import Part, Parts
    money, power = energy_and_cost(timeline, graph, lambda rank: engine.costs,
                                   Parts([Part(setup.system, sc.cluster.nodes)]), sc.cluster,
                                   t_iter, tokens)
    return SimResult(
        name=sc.name, fidelity=engine.network.fidelity,
        iteration_time_s=t_iter, tokens_per_s=tokens / t_iter,
        tflops_per_gpu=mflops / t_iter / world / 1e12, mfu=mflops / (t_iter * world * peak),
        hfu=hw_flops / (t_iter * world * peak),
        memory_peak_gib=float(max(m["total_gib"] for m in mem)),
        breakdown=breakdown(rows, graph), memory=Columns(mem), timeline=timeline, power=power,
        world_size=world, events=engine.events, wall_s=time.perf_counter() - t0,
        band=None if lo_hi is None else {
            "iteration_time_s": lo_hi, "tokens_per_s": (tokens / lo_hi[1], tokens / lo_hi[0]),
            "mfu": (mflops / (lo_hi[1] * world * peak), mflops / (lo_hi[0] * world * peak))},
        extra={"nodes": len(graph), "microbatches": plan.microbatches,
               "plan": {"tp": plan.tp, "pp": plan.pp, "dp": plan.dp, "vpp": plan.vpp,
                        "cp": plan.cp, "schedule": plan.effective_schedule,
                        **({"ep": plan.ep, "etp": plan.etp} if model.is_moe else {})},
               **moe_summary(setup, rows),
               "calibration": calibration_of(setup.system, prof), **money,
               **({"checkpoint_contention": contention} if contention else {})})


def calibration_of(system: SystemSpec, prof: Profile) -> dict[str, str]:
    """How this run's time model is calibrated (measured / fitted / roofline-assumed)."""
    key = system.gpu if isinstance(system.gpu, str) else system.gpu.name
    return profile.calibration_status(prof, key)


def band_times(setup: Setup, graph, prof: Profile, engine) -> tuple[float, float]:
    """(low, high) iteration time with every fitted parameter at its fast and at its slow
    bootstrap end (a corner bound, see hw_models.profile.band_profiles): the schedule
    ``engine`` played re-timed with the corners' costs (sim/band.py), no second play."""
    rows, network = engine.rows, engine.network
    schedule = Schedule(graph, rows)
    times = [max(r.end for r in rows)]
    for corner in band_profiles(prof):
        # A flow network lends the corner its topology, routes and flow plans.
        net = network.with_profile(corner) if hasattr(network, "with_profile") \
            else make_network(setup, corner)
        costs = OpCosts(paced_compute(setup.gpu, corner, setup.scenario.sim.speed_scale,
                                         setup.layout.world_size), net, host=engine.costs.host)
        costs.comm_sms = engine.costs.comm_sms
        times.append(corner_time(schedule, graph, costs, net, network, engine.costs))
    return min(times), max(times)


def widen_with_residuals(lo_hi: tuple[float, float]) -> tuple[float, float]:
    """The bootstrap band widened by the validation suites' residual spread (a separate
    step from how the corners are played: hw_models.profile.ResidualBand, written by
    ``python -m calibration.dashboard --write-band``). Without a stored band: unchanged."""
    rb = load_residual_band()
    return lo_hi if rb is None else rb.widen(*lo_hi)


def moe_summary(setup: Setup, rows) -> dict:
    """Expert-load figures of a MoE scenario (max/mean per expert and per EP rank) and, per
    pipeline stage, the compute and the EP communication on its compute stream (exposed:
    the all-to-alls sit between the kernels that need them)."""
    got = moe_training.load(setup.model, setup.plan, setup.options.moe)
    if got is None:
        return {}
    per: dict[int, dict[str, float]] = {}
    for r in rows:
        if r.stream == "compute":
            d = per.setdefault(r.rank, {"compute_s": 0.0, "ep_s": 0.0})
            parts = r.parts or {r.category: r.end - r.start}
            d["compute_s"] += parts.get("compute", 0.0)
            d["ep_s"] += parts.get("ep", 0.0)
    stages = [{"stage": i, **per[rank]} for i, rank in enumerate(sorted(per))]
    return {"moe": {"dispatcher": setup.options.moe.dispatcher, "expert_dp": edp(setup.plan),
                    **got.summary(), "stages": stages}}


def recompute_factor(setup: Setup) -> float:
    """Hardware / model FLOPs: (fwd + bwd + recompute) / (fwd + bwd) of one layer
    (Korthikanti et al.: HFU counts the recomputed forward, MFU does not); MoE / MLA /
    windowed models layer by layer."""
    moe = moe_training.context(setup.model, setup.plan, setup.options.moe, 0)
    ctx = LayerContext(setup.model, setup.plan.micro_batch, setup.plan.tp, setup.plan.sp,
                       setup.options.dtype, CommGroup((0,)), setup.options.attention, moe=moe)
    def flops(ops):
        return sum(getattr(o, "flops", 0.0) for o in ops)
    if not setup.model.uniform:
        ids = range(setup.model.layers)
        fb = sum(flops(layer_forward_at(ctx, i)) + flops(layer_backward_at(ctx, i)) for i in ids)
        return (fb + sum(flops(layer_recompute_at(ctx, i, setup.plan.recompute)) for i in ids)) / fb
    fb = flops(layer_forward(ctx)) + flops(layer_backward(ctx))
    return (fb + flops(layer_recompute(ctx, setup.plan.recompute))) / fb

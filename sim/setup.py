"""From a scenario to a run: resolve the three inputs, build network + costs + engine, play.

Every caller that simulates a scenario goes through here (``simulate``, its uncertainty
band, the checkpoint-contention replay, the sweep's closed form and DES, serving), so the
cluster, the profile and the network model are resolved the same way everywhere.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace

from hw_models import catalog, profile
from hw_models.catalog import GPUSpec, SystemSpec
from hw_models.compute import ComputeModel, slowest_of
from hw_models.errors import ClusterSimError, ClusterSimWarning
from hw_models.profile import Profile
from sim.costs import HostLaunch, OpCosts
from sim.engine import Engine
from sim.network import AnalyticalNetwork, ClusterLayout, Network
from sim.network.analytical import collective_ctas
from sim.scenario import Scenario, TrainingWorkload
from sim.training_config import Fp8Config, offload_options, plan_kwargs, precision_options
from workloads import parallel, training
from workloads.graph import ExecutionGraph
from workloads.host_launch import MoeLaunch, TeModules
from workloads.model import ModelSpec, resolve
from workloads.moe_training import MoEOptions
from workloads.offload import OffloadOptions


@dataclass(frozen=True)
class Cluster:
    """What the scenario runs on: the system, its GPU, the profile, the rank layout."""
    system: SystemSpec
    gpu: GPUSpec
    profile: Profile
    layout: ClusterLayout


def resolve_cluster(sc: Scenario) -> Cluster:
    system = catalog.system(sc.cluster.system)
    system.gpu_spec.require_dtype(sc.workload.precision, "workload.precision")
    router = getattr(getattr(sc.workload, "moe", None), "router_dtype", None)
    if router:
        system.gpu_spec.require_dtype(router, "workload.moe.router_dtype")
    prof = profile.load(sc.cluster.profile or system.default_profile)
    net = sc.cluster.network
    layout = ClusterLayout(system, sc.cluster.nodes, net.nic_gbps or system.nic_gbps,
                           net.oversubscription)
    return Cluster(system, system.gpu_spec, prof, layout)


def training_options(w: TrainingWorkload, gpu: GPUSpec | None = None,
                     offload: OffloadOptions | None = None) -> training.TrainingOptions:
    """Gradient reduction in fp32 for bf16 training (Megatron's default) and for FP8
    recipes (FP8 is only the GEMM inputs), else 16-bit; the FP8 recipe (checked against
    the GPU's dtypes when one is given) and host offload (sim/training_config.py)."""
    grad_bytes = w.grad_reduce_bytes or (4 if w.precision in ("bf16", "fp8") else 2)
    return training.TrainingOptions(attention=w.attention, repeat_kv=w.repeat_kv, grad_bytes=grad_bytes,
                                    overlap_grad_reduce=w.overlap_grad_reduce,
                                    grad_reduce_per_stage=w.grad_reduce_per_stage,
                                    overlap_param_gather=w.overlap_param_gather,
                                    cross_entropy_fusion=w.cross_entropy_fusion,
                                    logprob_loss=w.logprob_loss,
                                    torch_cross_entropy=w.torch_cross_entropy, adam=w.adam,
                                    adam_moment_bytes=2 if w.adam_moments == "bf16" else 4,
                                    optimizer=w.optimizer, muon_ns_steps=w.muon_ns_steps,
                                    fsdp2_copies=w.fsdp2_copies,
                                    fsdp2_root_group=w.fsdp2_root_group,
                                    separate_projections=w.separate_projections,
                                    complex_rope=w.complex_rope,
                                    dtensor_tp=w.dtensor_tp,
                                    tp_seq_dim_copies=(w.dtensor_tp and
                                                       w.parallel.tp_comm_overlap != "ring"),
                                    p2p_blocking=w.p2p_blocking,
                                    grad_accumulation_fusion=w.grad_accumulation_fusion,
                                    async_grad_reduce=w.async_tp_grad_reduce,
                                    offload=offload or OffloadOptions(),
                                    **precision_options(w, gpu))


# Operations one simulated step may have (~2 per microbatch and layer: forward and backward
# of each layer of each pipeline stage). 400k plays in about half a minute; a step beyond
# that is a global batch of millions of sequences, for which the closed form is the tool.
MAX_GRAPH_OPS = 400_000


def check_graph_size(plan: parallel.ParallelPlan, model: ModelSpec) -> None:
    """Refuse, before building it, a step graph too large to play (it would not hang, but
    take hours and tens of GB)."""
    ops = 2 * plan.microbatches * model.layers
    if ops > MAX_GRAPH_OPS:
        raise ClusterSimError(
            f"the step has {plan.microbatches:,} microbatches per pipeline x {model.layers} "
            f"layers, ~{ops:,} operations to simulate (limit {MAX_GRAPH_OPS:,}); raise "
            "micro_batch or dp, lower global_batch, or estimate it with `clustersim sweep` "
            "(closed form)")


def warn_tp_across_nodes(tp: int, gpus_per_node: int) -> None:
    """Tensor parallelism is meant for the scale-up domain: its collectives sit on the critical
    path of every layer. Wider than a node it runs, but over the scale-out NICs: say so."""
    if tp > gpus_per_node:
        warnings.warn(f"tp {tp} spans {-(-tp // gpus_per_node)} nodes ({gpus_per_node} GPUs per "
                      "node): every layer's tensor-parallel collectives cross the scale-out "
                      "network; keep tp <= the GPUs of one node unless that is the question",
                      ClusterSimWarning, stacklevel=3)


@dataclass(frozen=True)
class Setup:
    """Everything resolved from a training scenario: the three inputs and the cost models."""
    scenario: Scenario
    system: SystemSpec
    gpu: GPUSpec
    profile: Profile
    model: ModelSpec
    plan: parallel.ParallelPlan
    layout: ClusterLayout
    options: training.TrainingOptions


def resolve_setup(sc: Scenario) -> Setup:
    cl = resolve_cluster(sc)
    w: TrainingWorkload = sc.workload
    model = resolve(w.model).with_seq_len(w.seq_len)
    world = sc.cluster.nodes * cl.system.gpus_per_node
    p = w.parallel
    dp = p.dp or parallel.derive_dp(world, p.tp, p.pp, p.cp)
    plan = parallel.ParallelPlan(
        tp=p.tp, pp=p.pp, dp=dp, micro_batch=w.micro_batch, global_batch=w.global_batch,
        vpp=p.vpp, sequence_parallel=p.sequence_parallel, schedule=p.schedule, zero=p.zero,
        recompute=parallel.plan_recompute(w.recompute, w.recompute_modules),
        pipeline_layers=tuple(p.pipeline_layers) if p.pipeline_layers else None,
        ep=p.ep, etp=p.etp, **plan_kwargs(p, cl.system.gpus_per_node))
    parallel.validate(plan, model, world)
    check_graph_size(plan, model)
    warn_tp_across_nodes(plan.tp, cl.system.gpus_per_node)
    offload = offload_options(w, cl.system, model, plan, w.attention == "flash")
    opts = replace(training_options(w, cl.gpu, offload), moe=moe_options(w, model, cl.layout))
    return Setup(sc, cl.system, cl.gpu, cl.profile, model, plan, cl.layout, opts)


def moe_options(w: TrainingWorkload, model: ModelSpec, layout: ClusterLayout) -> MoEOptions | None:
    """Dispatcher, routing and overlap of a MoE model's layers (docs/moe.md)."""
    if not model.is_moe:
        return None
    if w.moe.deepep_mode == "low_latency":
        raise ClusterSimError("workload.moe.deepep_mode: low_latency applies to serving "
                              "(decode); training runs DeepEP's normal kernels: use auto or normal")
    return MoEOptions(w.moe.dispatcher, w.moe.routing(), w.moe.overlap, layout.domain_gpus,
                      w.moe.wire_dtype(), w.moe.fused_mlp, w.moe.router_dtype,
                      w.moe.freeze_router, w.moe.permute_fusion, w.moe.router_fusion,
                      w.moe.aux_loss, w.moe.hybridep_sms)


def make_network(setup: Setup, prof: Profile | None = None, bw_scale: float = 1.0) -> Network:
    """The scenario's network model at its fidelity, priced with ``prof`` (default: the
    scenario's profile)."""
    prof = prof or setup.profile
    if setup.scenario.sim.fidelity == "flow":
        from sim.network.flow import FlowNetwork
        # Unset keys must fall back to the system's catalog values, so None is not passed.
        cfg = setup.scenario.cluster.network.model_dump(exclude_none=True)
        return FlowNetwork(setup.layout, prof, cfg, bw_scale)
    return AnalyticalNetwork(setup.layout, prof, bw_scale)


def paced_compute(gpu: GPUSpec, prof: Profile, speed_scale: float, gpus: int) -> ComputeModel:
    """The compute model of a synchronous group of ``gpus`` GPUs (a training job, a serving
    replica): every kernel at the pace of the group's slowest GPU, 1 + cv E[max of gpus
    normals] slower than the mean one, with the profile's measured step-time spread cv
    (``variability``: run-to-run and between-GPU spreads combined; none: no spread). TP,
    pipeline and DP peers all wait for each other, so one slow GPU paces all
    (docs/accuracy.md)."""
    cv = prof.variability.cv if prof.variability else 0.0
    return ComputeModel(gpu, prof, speed_scale / slowest_of(gpus, cv))


def build_engine(setup: Setup, graph: ExecutionGraph, prof: Profile | None = None,
                 network: Network | None = None) -> Engine:
    """An engine ready to play ``graph``: compute priced by the GPU model with ``prof``,
    transfers by ``network`` (default: a fresh ``make_network``), which learns the graph's
    simulated ranks."""
    prof = prof or setup.profile
    network = network or make_network(setup, prof)
    network.set_simulated_ranks(graph.simulated_ranks)
    costs = OpCosts(paced_compute(setup.gpu, prof, setup.scenario.sim.speed_scale,
                                     setup.layout.world_size), network, host_bw(setup.system),
                    host_launch(setup.scenario, setup.system))
    costs.comm_sms = comm_sms(setup)
    # sim.ep_flows: MoE all-to-alls inside blocks played as flows (sim/block_flows.py)
    ep_flows = setup.scenario.sim.ep_flows and network.fidelity == "flow"
    return Engine(graph, costs, network, ("ep",) if ep_flows else (),
                  comm_sms=costs.comm_sms, gpu_sms=setup.gpu.sms or 0)


def comm_sms(setup: Setup):
    """SMs an NCCL collective's kernel holds on a GPU of ``setup`` while it runs beside the
    compute (sim.network.analytical.collective_ctas), memoised per group; None with
    ``sim.nccl_sms`` off."""
    if not setup.scenario.sim.nccl_sms:
        return None
    return layout_comm_sms(setup.layout, setup.gpu.arch)


def layout_comm_sms(layout: ClusterLayout, arch: str):
    """``comm_sms`` of a cluster ``layout`` of GPUs of ``arch``, with ``sim.nccl_sms`` on
    (the sweep's estimator builds from a resolved cluster, not a Setup)."""
    memo: dict[tuple[int, ...], int] = {}

    def sms(op) -> int:
        ranks = op.group.ranks
        k = memo.get(ranks)
        if k is None:
            k = memo[ranks] = collective_ctas(layout, arch, ranks)
        return k
    return sms


def host_launch(scenario: Scenario, system: SystemSpec) -> HostLaunch | None:
    """The host's launch pace of a training scenario (sim.host_launch, workload.cuda_graphs,
    the catalog's per-op host time on the system's host CPU); None when off."""
    w = scenario.workload
    if not scenario.sim.host_launch or not isinstance(w, TrainingWorkload):
        return None
    graphs = [w.cuda_graphs] if isinstance(w.cuda_graphs, str) else list(w.cuda_graphs)
    return HostLaunch(catalog.training_launch_s(system), frozenset(graphs) - {"none"},
                      te_modules(w, system), moe_launch(w, system))


def _megatron_layers(w: TrainingWorkload) -> bool:
    """Whether the layers are Megatron-Core's TE modules, not TorchTitan's PyTorch linears
    (``te_modules: false`` or ``dtensor_tp``)."""
    return w.te_modules and not w.dtensor_tp


def moe_launch(w: TrainingWorkload, system: SystemSpec) -> MoeLaunch | None:
    """Megatron-Core's eager MoE layer forward at its measured host cost per launch
    (catalog moe_layer_launch); None where the layers are not Megatron-Core's."""
    if not _megatron_layers(w):
        return None
    return MoeLaunch(*catalog.moe_layer_launch_s(system), catalog.moe_ep_skew_cv())


def te_modules(w: TrainingWorkload, system: SystemSpec) -> TeModules | None:
    """Transformer Engine's cost per module call on the system's host (catalog), in the
    workload's precision: the MXFP8 figures for the mxfp8 recipe (they include its
    quantize kernels), else the BF16 ones; None where the linears are not TE modules."""
    if not _megatron_layers(w):
        return None
    recipe = (w.fp8 or Fp8Config()).recipe if w.precision == "fp8" else None
    key = "mxfp8" if recipe == "mxfp8" else "bf16"
    costs = catalog.te_module_launch_s(system, key)
    return TeModules(tuple(sorted(costs.items())), "mxfp8" if key == "mxfp8" else None)


def host_bw(system: SystemSpec) -> float:
    """Bytes/s of one GPU's host link (catalog); OpCosts' PCIe Gen4 default without one."""
    gb_s = system.gpu_spec.host_gb_s
    return gb_s * 1e9 if gb_s else 25e9


def system_network(system: SystemSpec, gpus: int, prof: Profile,
                   bw_scale: float = 1.0) -> AnalyticalNetwork:
    """The closed-form network of enough whole nodes of ``system`` for ``gpus`` ranks, at the
    catalog's NIC speed (trace replay prices a trace's collectives on it)."""
    nodes = max(1, math.ceil(gpus / system.gpus_per_node))
    return AnalyticalNetwork(ClusterLayout(system, nodes, system.nic_gbps), prof, bw_scale)


def play(setup: Setup, graph: ExecutionGraph, prof: Profile | None = None) -> float:
    """Seconds from the first node's start to the last node's end of ``graph``."""
    return max(r.end for r in build_engine(setup, graph, prof).run())

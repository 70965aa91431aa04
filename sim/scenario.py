"""Scenario files: YAML validated by pydantic. The schema is a contract; extend, don't rename.

A bad field raises ClusterSimError with one line naming the field, the value and what
is allowed; the CLI turns it into exit code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hw_models.errors import ClusterSimError
from hw_models.yamlio import read_yaml
from sim import training_config
from sim.inference_config import InferenceWorkload
from sim.moe_config import MoEWorkload
from sim.rl_config import RLWorkload
from sim.run_config import CheckpointConfig, DataConfig, RunConfig, StorageConfig
from sim.training_config import CPKind, Fp8Config, OffloadConfig, Schedule, TPOverlap
from workloads.host_launch import SCOPES
from workloads.parallel import Recompute, RecomputeModule


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# Nodes a cluster (or a pool) may have: 100,000 nodes of 8 GPUs is several times the largest
# clusters built; beyond it the per-rank groups of a plan no longer fit in memory.
MAX_NODES = 100_000


class NetworkConfig(_Cfg):
    topology: str = Field("rail-optimized", description=(
        "scale-out topology: rail-optimized, fat-tree, torus, multi-plane or none "
        "(hw_models/topology.py)"))
    oversubscription: float = Field(1.0, ge=1.0, description=(
        "leaf-tier oversubscription (down/up bandwidth); 1 is non-blocking"))
    nic_gbps: float | None = Field(None, gt=0, description=(
        "speed of each compute NIC in Gb/s; unset: the system's catalog value"))
    # Flow fidelity only (docs/fabric.md): path choice, SHARP in-network reduction, and the
    # max-min solver's relative tolerance (0 is exact; unset keeps sim/network/flow.py's).
    routing: Literal["ecmp", "spray"] | None = Field(None, description=(
        "flow fidelity: ecmp (one hashed path per flow) or spray (every flow split over all "
        "shortest paths)"))
    sharp: bool | None = Field(None, description=(
        "flow fidelity: SHARP in-network reduction on the switches"))
    tolerance: float | None = Field(None, ge=0, lt=1, description=(
        "flow fidelity: relative tolerance of the max-min solver (0 is exact)"))
    dims: list[Annotated[int, Field(ge=2)]] | None = Field(
        None, min_length=2, max_length=3, description=(
            "topology torus: 2 or 3 ring sizes multiplying to the GPU count, e.g. [8, 8, 16] "
            "(hw_models/topologies/torus.py; the torus replaces the scale-up fabric)"))

    @field_validator("topology")
    @classmethod
    def _known_topology(cls, v: str) -> str:
        """Checked here, not only when the flow model builds the graph: the analytical
        model reads the fabric without building it, so a misspelt name would pass."""
        from hw_models import topologies  # noqa: F401  (registers the builders)
        from hw_models.topology import SCALE_OUT
        if v not in SCALE_OUT:
            raise ValueError(f"unknown topology {v!r}; allowed: {', '.join(sorted(SCALE_OUT))}")
        return v


class CapexConfig(_Cfg):
    """Capital-cost mode (docs/energy.md): the GPU-hour is the purchase price spread over
    the lifetime plus the energy at the power price (defaults: hw_models/data/prices.yaml)."""
    price_per_gpu_usd: float = Field(gt=0, description=(
        "purchase price per GPU, all-in (system price / GPUs), USD"))
    lifetime_years: float | None = Field(None, gt=0, description=(
        "years the price is spread over; default prices.yaml (6, Microsoft's server life)"))
    power_usd_per_kwh: float | None = Field(None, ge=0, description=(
        "electricity price, USD/kWh; default prices.yaml (US industrial average, EIA)"))


class PoolConfig(_Cfg):
    """One homogeneous part of a heterogeneous cluster (docs/hardware.md)."""
    name: str = Field(description="the pool's name, used by stage_pools and replica_pools")
    system: str | dict[str, Any] = Field(description="catalog system or inline mapping")
    nodes: int = Field(gt=0, le=MAX_NODES, description="nodes of that system in the pool")
    price_per_gpu_hour: float | None = Field(None, gt=0, description=(
        "USD per GPU-hour of this pool; default: cluster.price_per_gpu_hour, then prices.yaml"))


class ClusterConfig(_Cfg):
    system: str | dict[str, Any] = Field("dgx-h100", description=(
        "catalog system name (clustersim catalog systems) or an inline system mapping"))
    nodes: int = Field(1, gt=0, le=MAX_NODES, description="number of systems (nodes) in the cluster")
    network: NetworkConfig = Field(NetworkConfig(), description="the scale-out network")
    profile: str | None = Field(None, description=(
        "fitted profile: a built-in name or a path to a profile YAML; unset: the system's own"))
    storage: StorageConfig | None = Field(None, description=(
        "checkpoint and data storage tiers and how nodes reach them (docs/reliability.md)"))
    # Energy and cost (docs/energy.md); pools: a heterogeneous cluster (docs/hardware.md).
    pue: float = Field(1.0, ge=1.0, description=(
        "facility power usage effectiveness: energy_j = IT energy x pue"))
    price_per_gpu_hour: float | None = Field(None, gt=0, description=(
        "rental price, USD per GPU-hour; default: the system's in prices.yaml"))
    capex: CapexConfig | None = Field(None, description=(
        "capital-cost mode instead of rental: purchase price, lifetime, power price"))
    pools: list[PoolConfig] | None = Field(None, min_length=1, description=(
        "a heterogeneous cluster: named pools of systems, ranks laid out pool by pool "
        "(replaces system/nodes)"))


class ParallelConfig(_Cfg):
    tp: int = Field(1, gt=0, description="tensor-parallel size")
    pp: int = Field(1, gt=0, description="pipeline-parallel size (stages)")
    dp: int | None = Field(None, gt=0, description=(
        "data-parallel size; unset: the GPUs left, world / (tp x pp)"))
    vpp: int = Field(1, gt=0, description=(
        "virtual pipeline stages per GPU (interleaved schedule)"))
    sequence_parallel: bool = Field(False, description=(
        "Megatron sequence parallelism of norms and dropout over the TP group"))
    schedule: Schedule = Field("1f1b", description=(
        "pipeline schedule; zb-h1, zb-v, dualpipe, dualpipev split the backward into input "
        "and weight gradients (docs/schedules.md)"))
    zero: Literal[0, 1, 2, 3] = Field(0, description=(
        "ZeRO stage: 1 shards optimizer state, 2 also gradients, 3 also weights (MoE models: "
        "0, 1 or 3; under 3 the routed experts shard over expert-DP, docs/moe.md)"))
    pipeline_layers: list[int] | None = Field(None, description=(
        "layers per pipeline stage (one number per stage), or per virtual stage (pp x "
        "chunks numbers, in path order); unset: as even as possible"))
    # long context, schedules, overlap, FSDP2 (docs/long_context.md, docs/schedules.md)
    cp: int = Field(1, gt=0, description="context-parallel size (sequence split over cp GPUs)")
    cp_kind: CPKind = Field("ring", description=(
        "context-parallel attention: ring (p2p KV ring, overlapped), allgather (KV "
        "all-gather, Llama 3), ulysses (head all-to-alls), hybrid (Ulysses in a node, ring "
        "across)"))
    ulysses_size: int | None = Field(None, gt=0, description=(
        "hybrid CP: size of the Ulysses group; unset: the CP ranks of one node"))
    cp_compiled: bool = Field(False, description=(
        "cp_kind allgather traced by torch.compile (TorchTitan compiles each block): the "
        "K,V all-gathers and dK,dV sends are waited as soon as issued (exposed), the fp32 "
        "merge and accumulate passes fused by Inductor (docs/long_context.md)"))
    account_for_embedding_in_pipeline_split: bool = Field(False, description=(
        "count the embedding as one layer in the even pipeline split (Megatron-LM)"))
    account_for_loss_in_pipeline_split: bool = Field(False, description=(
        "count the loss as one layer in the even pipeline split (Megatron-LM)"))
    tp_comm_overlap: TPOverlap = Field("none", description=(
        "overlap TP all-gather / reduce-scatter with their GEMMs: ring (Megatron "
        "userbuffers) or async (TorchTitan async TP); needs sequence_parallel"))
    reshard_after_forward: bool = Field(True, description=(
        "ZeRO-3 / FSDP2: free gathered weights after the forward (false: keep them for the "
        "backward, no backward gathers)"))
    prefetch: int = Field(1, gt=0, description="ZeRO-3 / FSDP: layers gathered ahead")
    zero_shard_group: int | None = Field(None, gt=0, description=(
        "HSDP: shard ZeRO-3 state within groups of this many DP x CP ranks, all-reduce "
        "gradients across the groups"))
    ep: int = Field(1, gt=0, description=(
        "expert-parallel size of MoE layers: the tp x dp ranks of a stage regrouped as "
        "etp x ep x expert-dp (docs/moe.md)"))
    etp: int = Field(1, gt=0, description="expert tensor-parallel size of MoE layers")
    # Heterogeneous clusters (sim/pools.py): the pool of each stage, and how layers are
    # split when pipeline_layers is not given (by stage speed, or evenly).
    stage_pools: list[str] | None = Field(None, description=(
        "pool of each pipeline stage (cluster.pools); default: each pool carries its GPUs / "
        "(tp x dp) consecutive stages"))
    stage_split: Literal["speed", "even"] = Field("speed", description=(
        "layers per stage on pools when pipeline_layers is unset: by stage speed or even"))


class TrainingWorkload(_Cfg):
    kind: Literal["training"] = Field("training", description=(
        "training (one iteration) or inference (a serving run)"))
    model: str | dict[str, Any] = Field("gpt3-175b", description=(
        "model preset name (clustersim catalog models) or an inline model mapping"))
    seq_len: int | None = Field(None, gt=0, description=(
        "sequence length in tokens; unset: the model's own"))
    global_batch: int = Field(1536, gt=0, description="sequences per iteration, all replicas")
    micro_batch: int = Field(1, gt=0, description="sequences per micro-batch")
    precision: Literal["fp16", "bf16", "fp8"] = Field("bf16", description=(
        "GEMM and activation precision"))
    parallel: ParallelConfig = Field(ParallelConfig(), description="the parallelism plan")
    recompute: Recompute = Field(
        "none", description=(
            "activation recomputation: selective (attention core), selective_op (TorchTitan's "
            "per-op policy: every other matmul's output saved), norm_moe_act (Megatron-Core's "
            "recompute_modules [layernorm, moe_act]: the norms and the experts' activation), "
            "mla_up_proj ([mla_up_proj]: MLA's query / key-value up projections and RoPE; "
            "DeepSeek-V4's query up and KV projections), "
            "mlp ([mlp]: a dense layer's MLP, or a hybrid model's MLP sub-layer), "
            "mla_up_proj_mlp (both) or full (whole layer)"))
    recompute_modules: list[RecomputeModule] | None = Field(None, description=(
        "Megatron-Core's selective recompute as its list of modules (recompute_modules, "
        "instead of a recompute mode): core_attn (the attention kernel re-run), layernorm "
        "(the norms not fused into a linear), moe_act (the experts' activation), moe (the "
        "whole MoE block: router, dispatch / combine all-to-alls, experts, shared experts), "
        "shared_experts, mlp (a dense MLP), mla_up_proj; [] = none (docs/scenario.md)"))
    attention: Literal["flash", "unfused"] = Field("flash", description=(
        "attention kernel: flash (fused, no score matrix stored) or unfused"))
    repeat_kv: bool = Field(False, description=(
        "GQA models: K,V heads expanded to every query head before the attention kernel "
        "(TorchTitan's Llama): a copy per layer, and context parallelism exchanges the "
        "expanded K,V (docs/long_context.md)"))
    overlap_grad_reduce: bool = Field(True, description=(
        "overlap the data-parallel gradient reduction with the backward pass"))
    grad_reduce_per_stage: bool = Field(False, description=(
        "with overlap_grad_reduce false and virtual pipeline stages: reduce each stage's "
        "gradients once its own last backward has run (PyTorch pipelining calls FSDP's "
        "post_backward per stage), not after the rank's whole backward"))
    overlap_param_gather: bool = Field(False, description=(
        "ZeRO-1/2: all-gather the updated parameters bucket by bucket under the next "
        "forward (Megatron-Core --overlap-param-gather), not after the optimizer"))
    cross_entropy_fusion: bool = Field(True, description=(
        "the loss as a fused pass over the logits (NeMo, Megatron's "
        "--cross-entropy-loss-fusion); false: Megatron's unfused vocab-parallel "
        "cross-entropy, several fp32 passes (its default, and the only form in 2021)"))
    logprob_loss: bool = Field(False, description=(
        "the head computes per-token log-probabilities as RL frameworks do (NeMo RL's "
        "DistributedLogprob: unfused fp32 log-softmax over the vocabulary, its softmax kept "
        "for the backward) instead of the cross-entropy; set by kind: rl passes"))
    torch_cross_entropy: bool = Field(False, description=(
        "the loss as PyTorch's F.cross_entropy on logits cast to fp32 (TorchTitan's "
        "Llama: output(h).float(), eager): a cast, a log-softmax of three reads, and their "
        "backward (workloads/layers.py)"))
    adam: Literal["fused", "foreach"] = Field("fused", description=(
        "optimizer step: fused (one Adam kernel with the 16-bit copy, Megatron / "
        "Transformer Engine) or foreach (PyTorch's multi-tensor AdamW, one pass per "
        "_foreach op, and clip_grad_norm_'s norm and scaling passes; TorchTitan's default)"))
    adam_moments: Literal["fp32", "bf16"] = Field("fp32", description=(
        "Adam's two moments in fp32, or bf16 (Megatron-Core's precision-aware optimizer: "
        "--use-precision-aware-optimizer --exp-avg-dtype bf16 --exp-avg-sq-dtype bf16, "
        "Transformer Engine's FusedAdam; fp32 master weights): 8 bytes of optimizer state a "
        "parameter, not 12, and a lighter step (docs/moe.md, Optimizer)"))
    optimizer: Literal["adam", "muon"] = Field("adam", description=(
        "adam, or muon: Megatron-Core's Muon (Kimi K2's recipe) orthogonalises the momentum "
        "of every 2-D weight but the embedding and output layer by Newton-Schulz (bf16 "
        "GEMMs), Adam steps the rest; under zero: 1 its layer-wise distributed optimizer: "
        "gradients all-reduced, whole matrices dealt over the DP ranks, parameters "
        "all-gathered after the step (docs/moe.md, Optimizer)"))
    muon_ns_steps: int = Field(5, ge=1, description=(
        "optimizer muon: Newton-Schulz steps per matrix (three GEMMs each)"))
    fsdp2_copies: bool = Field(False, description=(
        "zero: 3 as PyTorch's FSDP2 (fully_shard): every layer's all-gather is copied out "
        "into the unsharded parameters, and its 16-bit gradients packed into an fp32 buffer "
        "before the reduce-scatter, both on the compute stream (workloads/fsdp.py)"))
    separate_projections: bool = Field(False, description=(
        "Q, K, V and the gated MLP's two up projections as separate linears (TorchTitan's "
        "Llama: wq / wk / wv, w1 / w3): smaller GEMMs, each reading the input, and a sum of "
        "their input gradients (workloads/layers.py)"))
    complex_rope: bool = Field(False, description=(
        "RoPE as TorchTitan's complex multiply (view_as_complex on an fp32 copy), which "
        "torch.compile leaves to an eager kernel: a cast, the multiply and a cast back, "
        "forward and backward (workloads/layers.py)"))
    fsdp2_root_group: bool = Field(False, description=(
        "zero: 3 as TorchTitan's FSDP2 wrapping (fully_shard on each block, then on the "
        "model): the embedding, final norm and output layer are one group, gathered before "
        "the first block and reduce-scattered after the whole backward (workloads/fsdp.py)"))
    te_modules: bool = Field(True, description=(
        "the linear layers are Transformer Engine modules (Megatron-Core): the host issues "
        "each at TE's measured cost per module call (hw_models/data/engines.yaml "
        "te_module_launch); false (PyTorch linears, TorchTitan; also with dtensor_tp): "
        "their kernels at the per-op cost (docs/accuracy.md)"))
    dtensor_tp: bool = Field(False, description=(
        "TP as PyTorch's DTensor with the sequence sharded on dim 1 (TorchTitan): without "
        "TP overlap, every TP all-gather and reduce-scatter also copies its whole tensor "
        "through a chunk-and-cat (torch functional collectives; workloads/layers.py); the "
        "linears save their gathered input (no backward re-gather, no TE quantized gathers "
        "or amax all-reduce: workloads/stage_ops.py sp_backward_gathers)"))
    p2p_blocking: bool = Field(False, description=(
        "pipeline sends block the sender's compute until the transfer is done "
        "(Megatron's batch_isend_irecv + synchronize: Megatron-LM 2021, batch_p2p_sync)"))
    grad_accumulation_fusion: bool = Field(True, description=(
        "weight-gradient GEMMs add into the main gradient themselves (Megatron's "
        "--gradient-accumulation-fusion); false: a separate add per microbatch (Megatron-LM 2021)"))
    async_tp_grad_reduce: bool = Field(True, description=(
        "Megatron / TE linears launch the input gradient's TP reduce-scatter (all-reduce "
        "without sequence parallelism) asynchronously beside the weight-gradient GEMM "
        "(Megatron-LM with CUDA_DEVICE_MAX_CONNECTIONS=1 since October 2022, Megatron-Core, "
        "TE); false: after it (Megatron-LM before; workloads/stage_ops.py async_grad_reduce)"))
    grad_reduce_bytes: Literal[2, 4] | None = Field(None, description=(
        "bytes per gradient element in the data-parallel reduction; unset: 4 for bf16 "
        "and fp8 (fp32 main grads), else 2"))
    checkpoint: CheckpointConfig | None = Field(None, description=(
        "checkpointing of the run (docs/reliability.md)"))
    data: DataConfig | None = Field(None, description=(
        "the input pipeline: bytes per token, prefetch, loader bandwidth"))
    fp8: Fp8Config | None = Field(None, description=(
        "with precision fp8: the recipe and FP8 parameters (docs/fp8.md)"))
    offload: OffloadConfig | None = Field(None, description=(
        "host offload of activations and optimizer over the host link (docs/long_context.md)"))
    moe: MoEWorkload = Field(MoEWorkload(), description=(
        "MoE models: token dispatcher, expert-load imbalance, capacity factor, all-to-all "
        "overlap (docs/moe.md)"))
    cuda_graphs: str | list[str] = Field("none", description=(
        "CUDA graphs (Megatron-Core cuda_graph_scope): none (eager: the host issues every "
        "kernel), full_iteration, or scopes whose kernels are replayed as a graph: attn, "
        "mlp, moe, moe_router, moe_preprocess (a name or a list; docs/accuracy.md)"))

    @model_validator(mode="after")
    def _recompute_list(self):
        if self.recompute_modules is not None and self.recompute != "none":
            raise ValueError(f"set either recompute ({self.recompute}) or recompute_modules "
                             f"{self.recompute_modules}, not both")
        graphs = [self.cuda_graphs] if isinstance(self.cuda_graphs, str) else self.cuda_graphs
        if "moe" in (self.recompute_modules or ()) and "moe_router" in graphs:
            raise ValueError("recompute_modules moe re-runs the whole MoE block, which Megatron-Core "
                             "refuses with a moe_router CUDA graph (transformer_config.py)")
        return self

    @model_validator(mode="after")
    def _optimizer_keys(self):
        return training_config.check_optimizer(self)

    @field_validator("cuda_graphs", mode="before")
    @classmethod
    def _graph_scopes(cls, v):
        names = [v] if isinstance(v, str) else v
        allowed = ("none", *SCOPES)
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"expected a scope name or a list of them; allowed: {', '.join(allowed)}")
        bad = [n for n in names if n not in allowed]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a CUDA-graph scope; allowed: {', '.join(allowed)}")
        return v


class SimConfig(_Cfg):
    fidelity: Literal["analytical", "flow"] = Field("analytical", description=(
        "network model: analytical (closed form per collective) or flow (flows sharing "
        "topology links)"))
    check_memory: bool = Field(True, description=(
        "refuse a plan whose per-GPU memory exceeds the GPU's HBM"))
    speed_scale: float = Field(1.0, gt=0, description=(
        "multiplies compute speed (what-if: 2 = every kernel twice as fast)"))
    host_launch: bool = Field(True, description=(
        "training: the GPU waits for the host's kernel launches where the host issues "
        "them slower than the GPU runs them (eager execution, host-device syncs; "
        "workload.cuda_graphs removes it for captured kernels; docs/accuracy.md)"))
    ep_flows: bool = Field(False, description=(
        "flow fidelity: play MoE all-to-alls as flows sharing links with the other traffic "
        "(slower; docs/moe.md)"))
    nccl_sms: bool = Field(True, description=(
        "compute beside an NCCL collective runs on the SMs its kernel's CTAs leave (NCCL's "
        "execution channels; docs/accuracy.md \"SMs of NCCL's kernels beside compute\"); "
        "the sweep estimator prices it inside blocks, not for the data-parallel stream"))


class Scenario(_Cfg):
    name: str = Field("scenario", description="a name carried into results")
    cluster: ClusterConfig = Field(ClusterConfig(), description="what the workload runs on")
    workload: Annotated[TrainingWorkload | InferenceWorkload | RLWorkload, Field(discriminator="kind")] = \
        Field(TrainingWorkload(), description=(
            "what runs: training (one iteration), inference (a serving run) or rl (one RL "
            "post-training step)"))
    sim: SimConfig = Field(SimConfig(), description="simulation settings")
    run: RunConfig | None = Field(None, description=(
        "a whole training run: length, failures, stragglers -> goodput (clustersim run)"))

    @model_validator(mode="before")
    @classmethod
    def _default_kind(cls, data: Any) -> Any:
        """``kind`` picks the workload schema; scenarios written before it existed train."""
        w = data.get("workload") if isinstance(data, dict) else None
        if isinstance(w, dict) and "kind" not in w:
            data = {**data, "workload": {**w, "kind": "training"}}
        return data


DEFAULT_SCENARIO: dict[str, Any] = {
    "name": "gpt3-175b-1024-h100",
    "cluster": {"system": "dgx-h100", "nodes": 128},
    "workload": {"kind": "training", "model": "gpt3-175b", "global_batch": 1536,
                 "micro_batch": 1, "precision": "bf16",
                 "parallel": {"tp": 8, "pp": 8, "vpp": 3, "sequence_parallel": True,
                              "schedule": "interleaved", "zero": 1},
                 "recompute": "selective"},
    "sim": {"fidelity": "analytical"},
}


_BUILTIN_TAGS = {"str", "int", "float", "bool", "none", "list", "dict"}


def _is_union_tag(part: str) -> bool:
    """A location part pydantic adds for the member of a union (``str``, ``dict[str,any]``,
    ``literal['uniform']``, ``function-after[...]``, a model's class name), not a key."""
    return (part in _BUILTIN_TAGS or "[" in part or part.startswith("function")
            or part in _model_names())


def _model_names() -> set[str]:
    seen, todo = set(), [BaseModel]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in seen:
                seen.add(sub)
                todo.append(sub)
    return {c.__name__ for c in seen}


# Errors that only say the input is not of a union member's type: beside an error from the
# member whose type matched (a value error inside it), they are noise.
_MISMATCH = ("_type", "_parsing", "literal_error")


def describe(exc: ValidationError) -> str:
    """One line per bad key (at most three): ``where: what is wrong and allowed (got X)``.
    A union's members are merged into one statement at the key's own location."""
    groups: dict[str, list[dict]] = {}
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if not _is_union_tag(str(p))]
        if loc[:1] == ["workload"] and loc[1:2] in (["training"], ["inference"], ["rl"]):
            del loc[1]                   # the discriminated union's tag is not a key
        groups.setdefault(".".join(loc), []).append(err)
    # A union member whose type did not match beside a deeper error inside the member that
    # did (plans: 'auto' vs plans.etp.0: > 0) says nothing about the value the user meant.
    groups = {k: v for k, v in groups.items()
              if not (all(e["type"].endswith(_MISMATCH) for e in v)
                      and any(o.startswith(k + ".") for o in groups))} or groups
    parts = []
    for where, errs in list(groups.items())[:3]:
        real = [e for e in errs if not e["type"].endswith(_MISMATCH)]
        errs = real or errs
        msgs = [e["msg"].removeprefix("Value error, ") for e in errs]
        if len(msgs) > 1:                # "a valid integer, unable to parse ..." -> "a valid integer"
            msgs = [m.split(", ")[0] for m in msgs]
        msg = msgs[0] + "".join(" or " + m.removeprefix("Input should be ") for m in msgs[1:])
        got = errs[0].get("input")
        got_s = "" if isinstance(got, dict) or "(got " in msg else f" (got {got!r})"
        parts.append(f"{where}: {msg}{got_s}")
    return "; ".join(parts)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``workload.parallel.tp=4`` style overrides; values are parsed as YAML scalars."""
    for item in overrides:
        if "=" not in item:
            raise ClusterSimError(f"--set {item!r}: expected KEY=VALUE, e.g. workload.parallel.tp=4")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or "" in key.split("."):
            raise ClusterSimError(f"--set {item!r}: the key {key!r} has an empty part; expected "
                                  "KEY=VALUE with a dotted key, e.g. workload.parallel.tp=4")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ClusterSimError(f"--set {key}: {raw!r} is not a YAML value ({problem})") from None
        set_dotted(data, key, value, f"--set {key}")
    return data


def set_dotted(data: dict[str, Any], key: str, value: Any, where: str, context: str = "") -> None:
    """Set ``a.b.c`` in nested mappings, creating levels; a number indexes an existing list
    (``cluster.pools.1.nodes``); ``where``/``context`` name the caller in the error when a
    level exists but is neither."""
    node: Any = data
    *path, leaf = key.split(".")
    for p in path:
        if isinstance(node, list):
            node = node[_index(node, p, where)]
            continue
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict | list):
            raise ClusterSimError(f"{where}: {p!r} is not a mapping{context}")
        node = nxt
    if isinstance(node, list):
        node[_index(node, leaf, where)] = value
    else:
        node[leaf] = value


def _index(items: list, p: str, where: str) -> int:
    if not p.isdigit() or int(p) >= len(items):
        raise ClusterSimError(f"{where}: {p!r} must index the list's {len(items)} entries "
                              f"(0..{len(items) - 1})")
    return int(p)


def parse(data: Any, source: str = "scenario") -> Scenario:
    if not isinstance(data, dict):
        raise ClusterSimError(f"{source}: a scenario must be a YAML mapping with cluster/workload/sim")
    if "base" in data and "workload" not in data:   # a sweep file (docs/sweeps.md)
        raise ClusterSimError(f"{source} is a sweep file (it has 'base'), not a scenario; run it "
                              f"with `clustersim sweep {source} --out RESULTS.parquet`")
    try:
        return Scenario(**data)
    except ValidationError as exc:
        raise ClusterSimError(f"{source}: {describe(exc)}") from None


def load(path: str | Path, overrides: list[str] | None = None) -> Scenario:
    data = read_yaml(path, "scenario")
    if data is None:
        raise ClusterSimError(f"scenario file {str(path)!r} is empty; a scenario is a YAML mapping "
                              "with cluster, workload and sim (see examples/)")
    return parse(apply_overrides(data, overrides or []), str(path))


def default(overrides: list[str] | None = None) -> Scenario:
    import copy
    return parse(apply_overrides(copy.deepcopy(DEFAULT_SCENARIO), overrides or []), "default scenario")

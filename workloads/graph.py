"""ExecutionGraph: the per-rank op DAG between workload generators and the engine.

Modelled on Chakra's execution-trace nodes. Each node has an id, a rank, a stream
(``compute`` or a communication channel such as ``tp``, ``dp``, ``pp_send``), its
dependencies and one op. Dependencies always point to earlier nodes (ids are
assigned in program order), so a graph is acyclic by construction.

Symmetry: a graph may hold only representative ranks (``simulated_ranks``); a
collective's ``group`` still lists every member, and members that are not simulated
are taken to arrive together with the simulated ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from hw_models.errors import ClusterSimError

# pointwise: one plain framework kernel per operator (eager PyTorch), as opposed to an
# engine's fused elementwise kernels (workloads/inference/eager.py).
# decode_attention: paged attention of one query token per sequence over its cached K and V
# (shape (sequences x KV heads, 1, mean cached tokens per sequence, head_dim)).
# moe_align: the block alignment of a MoE layer's routed tokens (hw_models/compute.py).
OpClass = Literal["gemm", "attention", "latent_attention", "ssd", "elementwise", "pointwise", "norm", "softmax", "embedding",
                  "loss", "optimizer", "memcpy", "moe_align", "decode_attention",
                  "other"]
CollectiveKind = Literal["all_reduce", "all_gather", "reduce_scatter", "all_to_all",
                         "broadcast", "reduce"]
# What a node's time counts as in the breakdown.
Category = Literal["compute", "tp", "pp", "dp", "cp", "ep", "memory", "other"]


@dataclass(frozen=True, slots=True)
class Compute:
    """A kernel. ``shape`` is (m, n, k) for a GEMM, (batch*heads, s_q, s_kv, head_dim) for
    attention; ``count`` identical kernels run back to back. ``duration_s`` overrides the
    cost model (trace replay). ``flops_per_exp``: an attention kernel's tensor FLOPs per
    softmax exponential (one exp per score element: 2 (d_qk + d_v) forward, 2.5 x that
    backward, which recomputes P); 0 = not known (no exponential floor)."""
    op_class: OpClass
    flops: float = 0.0
    bytes: float = 0.0
    dtype: str = "bf16"
    shape: tuple[int, ...] | None = None
    causal: bool = True
    duration_s: float | None = None
    name: str = ""
    flops_per_exp: float = 0.0
    host_ops: int = 1       # kernels the host issues one by one for it (workloads/host_launch.py)


@dataclass(frozen=True, slots=True)
class CommGroup:
    """Ranks of a collective and what parallelism dimension it serves."""
    ranks: tuple[int, ...]
    dim: Category = "other"

    @property
    def size(self) -> int:
        return len(self.ranks)


@dataclass(frozen=True, slots=True)
class Collective:
    """``bytes`` is the buffer size as nccl-tests counts it (the full array for
    all_gather/reduce_scatter)."""
    kind: CollectiveKind
    bytes: float
    group: CommGroup
    seq: int = 0
    duration_s: float | None = None
    name: str = ""


@dataclass(frozen=True, slots=True)
class ExpertDispatch(Collective):
    """One DeepEP dispatch or combine (docs/moe.md, "Dispatchers"). ``bytes`` over ``group``
    is its scale-out part as an all-to-all buffer (what leaves a GPU's scale-up domain
    crosses its NIC); ``nvl_bytes`` what each GPU moves over NVLink at the same time.
    Normal kernels pipeline the two phases in ``chunks`` chunks; low-latency kernels send
    every copy straight to its rank. The network prices it (sim/network/deepep.py); a
    network without that rule sees a plain all-to-all of ``bytes``. ``sms``: the SMs its
    kernel holds while it runs, taken from compute overlapped with it (sim/costs.py).
    ``sm_frac``: the share of its time its kernels hold every SM (a low-latency
    dispatch's send and receive phases; the rest of it is in flight and holds none).
    ``hybridep``: HybridEP's kernels (Megatron-Core's flex dispatcher, hybridep backend),
    whose intranode rate is its published bandwidth (hw_models/hybridep.py); ``combine``:
    the call runs the combine direction."""
    nvl_bytes: float = 0.0
    chunks: int = 1
    low_latency: bool = False
    sms: int = 0
    sm_frac: float = 0.0
    hybridep: bool = False
    combine: bool = False


@dataclass(frozen=True, slots=True)
class SendRecv:
    """Point-to-point: the pair (send on src, recv on dst) with the same tag is one transfer."""
    kind: Literal["send", "recv"]
    peer: int
    bytes: float
    tag: int
    duration_s: float | None = None
    name: str = ""


@dataclass(frozen=True, slots=True)
class Memory:
    kind: Literal["alloc", "free", "h2d", "d2h", "storage_read", "storage_write"]
    bytes: float
    duration_s: float | None = None
    name: str = ""


@dataclass(frozen=True, slots=True)
class Delay:
    """A fixed wait (CPU gap, sync, anything measured but not modelled)."""
    duration_s: float
    name: str = ""


@dataclass(frozen=True, slots=True)
class Overlap:
    """Work ``main`` with communication ``hidden`` running beside it, pipelined in
    ``steps`` transfers: the first 1/(steps+1) of ``main`` runs alone, then each step
    takes the longer of its compute share and its transfer (ring attention passing KV
    blocks, a GEMM split into chunks with its TP collective; docs/long_context.md).
    Time = M/(n+1) + n max(M/(n+1), H/n); the breakdown charges M to compute and the
    rest to the hidden ops' category (the exposed communication, and the compute time
    lost to the transfers' SMs when ``comm_sms`` is set)."""
    main: tuple[Compute, ...]
    hidden: tuple[Collective, ...]
    steps: int = 1
    name: str = ""
    # Compute/communication interference (workloads/comm_sms.py): the hidden transfers'
    # kernels hold ``comm_sms`` SMs. ``sm_margin``: the compute is launched on the other
    # SMs for its whole run (TE userbuffers' set_sm_margin); otherwise it loses those SMs
    # only while a transfer runs.
    comm_sms: int = 0
    sm_margin: bool = False
    # ``concurrent``: the transfers start with the work, nothing runs alone first (a
    # collective issued as the kernel beside it is launched; PyTorch's context-parallel
    # K,V all-gather): time = max(M, H), or with ``comm_sms`` = k (not ``sm_margin``)
    # max(H, M + H k/sms): the work loses k SMs while the transfer runs (userbuffers'
    # bulk overlaps).
    concurrent: bool = False
    # ``nccl``: the hidden transfers are NCCL collectives (an async handle beside the
    # kernel: Megatron's TP gradient reduction, PyTorch's CP gathers); their kernels hold
    # their execution channels' CTAs, which the cost model knows from the group
    # (sim/setup.py comm_sms) and passes to ``time`` as ``nccl_sms``.
    nccl: bool = False

    def time(self, t_main: float, t_hidden: float, sms: int = 0, nccl_sms: int = 0) -> float:
        """With ``sms`` (the GPU's SM count) and ``comm_sms`` = k (for ``nccl`` transfers
        ``nccl_sms``): under ``sm_margin`` the compute runs sms/(sms-k) times longer
        throughout; otherwise each step's compute share c runs at (sms-k)/sms speed while
        its transfer h runs, so a step takes max(h, c + h k/sms)."""
        k = nccl_sms if self.nccl and not self.comm_sms else self.comm_sms
        k = k if sms and 0 < k < sms else 0
        if self.concurrent:
            return max(t_hidden, t_main + (t_hidden * k / sms if k else 0.0))
        n = max(self.steps, 1)
        if k and self.sm_margin:
            t_main *= sms / (sms - k)
        c, h = t_main / (n + 1), t_hidden / n
        lost = h * k / sms if k and not self.sm_margin else 0.0
        return c + n * max(c + lost, h)


@dataclass(frozen=True, slots=True)
class Block:
    """Ops run back to back on one stream as one node: a layer's kernels and the TP
    collectives between them (symmetric peers, so no rendezvous). Keeps graphs of
    thousands of GPUs small; each op's time still lands in the breakdown by category.
    ``overlap``: communication categories whose collectives run beside the block's compute
    (e.g. ``("ep",)`` for MoE all-to-all overlap): only what exceeds the rest of the block
    (compute, other collectives, the wait for the host) is exposed (sim/costs.py)."""
    ops: tuple[Compute | Collective | Delay | Overlap, ...]
    name: str = ""
    overlap: tuple[str, ...] = ()


Op = Compute | Collective | SendRecv | Memory | Delay | Block | Overlap


def leaf_ops(op: Op) -> Iterator[Op]:
    """The ops a node runs, with its blocks opened (an Overlap stays one op)."""
    if isinstance(op, Block):
        for sub in op.ops:
            yield from leaf_ops(sub)
    else:
        yield op


@dataclass(slots=True)
class Node:
    id: int
    rank: int
    stream: str
    op: Op
    deps: tuple[int, ...] = ()
    category: Category = "compute"
    name: str = ""
    meta: dict = field(default_factory=dict)


class ExecutionGraph:
    def __init__(self, world_size: int, simulated_ranks: tuple[int, ...] | None = None,
                 meta: dict | None = None):
        self.world_size = world_size
        self.simulated_ranks = simulated_ranks
        self.nodes: list[Node] = []
        self.meta = meta or {}

    def add(self, rank: int, stream: str, op: Op, deps: tuple[int, ...] | list[int] = (),
            category: Category = "compute", name: str = "", **meta) -> int:
        nid = len(self.nodes)
        deps = tuple(deps)
        if None in deps:
            deps = tuple(d for d in deps if d is not None)
        if deps and not (0 <= min(deps) and max(deps) < nid):
            d = next(d for d in deps if not 0 <= d < nid)
            raise ClusterSimError(f"node {nid} ({name}) depends on unknown or later node {d}")
        self.nodes.append(Node(nid, rank, stream, op, deps, category, name or _op_name(op), meta))
        return nid

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    @property
    def ranks(self) -> tuple[int, ...]:
        return tuple(sorted({n.rank for n in self.nodes}))

    def streams(self) -> dict[tuple[int, str], list[Node]]:
        """Nodes per (rank, stream), each list in program order."""
        out: dict[tuple[int, str], list[Node]] = {}
        for n in self.nodes:
            out.setdefault((n.rank, n.stream), []).append(n)
        return out


def _op_name(op: Op) -> str:
    name = getattr(op, "name", "")
    if name:
        return name
    if isinstance(op, Compute):
        return op.op_class
    if isinstance(op, Collective | SendRecv | Memory):
        return op.kind
    return type(op).__name__.lower()

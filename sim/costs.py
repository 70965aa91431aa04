"""Costs of graph nodes: compute through the accelerator model, TP collectives inside
blocks through the network model's closed form (symmetric peers, no rendezvous), and the
host's launch pace inside blocks (``HostLaunch``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

from hw_models.compute import ComputeModel, expected_max_normal
from hw_models.topology import fabric_defaults
from sim.network.deepep import dispatch_time
from workloads.graph import Block, Collective, Compute, Delay, ExpertDispatch, Memory, Node, Overlap
from workloads.host_launch import (
    EpSync,
    MoeLaunch,
    TeModules,
    is_sync,
    issue_seconds,
)

Seg = tuple[float, float, float]


def _excess(seg: Seg) -> float:
    """The host's excess over the GPU in one segment of (GPU, host, skew) seconds: the
    slowest peer's host at a cross-rank sync takes host x (1 + skew) (``HostLaunch.skew``)."""
    return max(0.0, seg[1] * (1 + seg[2]) - seg[0])


def _add(a: Seg, b: Seg) -> Seg:
    """Two runs of ops as one segment, ending where ``b`` ends (at ``b``'s sync)."""
    return a[0] + b[0], a[1] + b[1], b[2]


@dataclass(frozen=True)
class HostSegments:
    """(GPU, host, skew) seconds of ops run back to back, cut at their host-device syncs:
    the segment before the first sync (``head``), the host's excess summed over the
    segments between syncs (``waited``), the segment after the last (``tail``; None: no
    sync, all in ``head``). A segment's skew is that of the sync ending it (0: none, or a
    sync on this GPU alone), counted only for a segment that starts at a sync. Two runs of
    ops concatenate (``+``) as their ops would: the first's tail and the second's head
    become one segment."""
    head: Seg = (0.0, 0.0, 0.0)
    waited: float = 0.0
    tail: Seg | None = None

    def __add__(self, other: HostSegments) -> HostSegments:
        if self.tail is None:
            return HostSegments(_add(self.head, other.head), other.waited, other.tail)
        joined = _add(self.tail, other.head)
        if other.tail is None:
            return HostSegments(self.head, self.waited, joined)
        return HostSegments(self.head, self.waited + _excess(joined) + other.waited, other.tail)

    @property
    def exposed(self) -> float:
        """Seconds the GPU waits for the host: each segment takes max(GPU, host). The head
        waits for no slower peer: it starts where these ops start, not at a sync where the
        ranks met, so their spread there is not known (joined after another run's tail,
        it is)."""
        head = (*self.head[:2], 0.0)
        return _excess(head) + self.waited + (_excess(self.tail) if self.tail else 0.0)


@dataclass(frozen=True)
class HostLaunch:
    """The host's share of eager execution (workloads/host_launch.py): ``per_op_s`` host
    seconds per op it issues (already scaled to the system's host CPU), ``te`` the cost
    per call of Transformer Engine's modules, which their ops cost instead (None: every op
    at ``per_op_s``), ``scopes`` the CUDA-graph scopes whose ops it does not issue one by
    one."""
    per_op_s: float
    scopes: frozenset[str] = frozenset()
    te: TeModules | None = None
    moe: MoeLaunch | None = None

    def skew(self, op) -> float:
        """The wait at the sync ``op`` for the slowest of its peers' hosts, over this host's
        time since the previous sync: an eager MoE layer's cross-rank sync (``EpSync``) over
        k ranks whose host times in that stretch have a coefficient of variation c
        (``MoeLaunch.skew_cv``) waits c x E[max of k standard normals] of it (0 at k = 1,
        for a sync on this GPU alone, and inside a CUDA graph of the MoE layer)."""
        if not isinstance(op, EpSync) or self.moe is None or self.scopes & {"moe", "full_iteration"}:
            return 0.0
        return self.moe.skew_cv * expected_max_normal(op.ranks)

    @property
    def idle(self) -> bool:
        """The host issues no op at a cost: ``per_op_s`` is not positive, or one CUDA graph
        replays the whole iteration."""
        return self.per_op_s <= 0 or "full_iteration" in self.scopes

    def exposed(self, ops, times, hidden_dims: tuple[str, ...] = ()) -> float:
        """Seconds the GPU waits for the host in ``ops`` run back to back (``times``: each
        op's GPU seconds, in order): host-device syncs split them into segments; in each
        the host issues its ops (``issue_seconds``) while the GPU runs them, and neither
        can pass the sync, so a segment takes max(GPU time, host time) and the host's
        excess is exposed. Collectives of ``hidden_dims`` run on their own stream
        (overlapped) and do not count as GPU time."""
        return self.segments(ops, times, hidden_dims).exposed

    def segments(self, ops, times, hidden_dims: tuple[str, ...] = ()) -> HostSegments:
        """``ops`` cut at their syncs (``exposed``), to be joined with the ops around them."""
        if self.idle:
            return HostSegments()
        segs, g, h = [], 0.0, 0.0
        issue = issue_seconds(ops, self.scopes, self.per_op_s, self.te, self.moe)
        for op, t, s in zip(ops, times, issue, strict=True):
            if is_sync(op):
                segs.append((g, h, self.skew(op)))
                g = h = 0.0
                continue
            if not (isinstance(op, Collective) and op.group.dim in hidden_dims):
                g += t
            h += s
        if not segs:
            return HostSegments((g, h, 0.0))
        return HostSegments(segs[0], sum(map(_excess, segs[1:])), (g, h, 0.0))

    def issue_s(self, ops) -> float:
        """Host seconds to issue ``ops`` one by one (0 when the host issues none)."""
        if self.idle:
            return 0.0
        return sum(issue_seconds(ops, self.scopes, self.per_op_s, self.te, self.moe))


def _merge(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0.0) + v
    return out


@dataclass(frozen=True)
class BlockTally:
    """What pricing a block needs of its ops, summed: seconds per breakdown category
    (``parts``, without the host's wait), overlapped transfer seconds x the SMs they hold
    (``held``), the host's segments (``host``; None without a host model), and of the
    overlapped DeepEP kernels that contend with the compute (``contends``) their
    standalone seconds per category (``slow``) and seconds x SMs (``slow_held``). Tallies
    of consecutive runs of ops add (``+``) into the tally of the whole run."""
    parts: dict[str, float]
    held: float = 0.0
    host: HostSegments | None = None
    slow: dict[str, float] = field(default_factory=dict)
    slow_held: float = 0.0

    def __add__(self, other: BlockTally) -> BlockTally:
        host = None if self.host is None or other.host is None else self.host + other.host
        return BlockTally(_merge(self.parts, other.parts), self.held + other.held, host,
                          _merge(self.slow, other.slow), self.slow_held + other.slow_held)


class OpCosts:
    def __init__(self, compute: ComputeModel, network, host_bw: float = 25e9,
                 host: HostLaunch | None = None):
        self.compute, self.network = compute, network
        self.host = host                # None: kernels issued ahead of the GPU (no host cost)
        self.host_bw = host_bw          # PCIe Gen4 x16 ~25 GB/s for host<->device copies
        # SMs an NCCL collective's kernel holds (sim/setup.py comm_sms); None: not priced
        self.comm_sms = None
        # Memos keyed by id(op) (ops repeat thousands of times; hashing a Block's tuple
        # each time would cost more). Each entry keeps its op alive, so an id can never
        # be recycled by another object while its entry exists.
        self._op: dict[int, tuple[object, float]] = {}
        self._parts: dict[int, tuple[object, dict[str, float]]] = {}

    def op_time(self, op) -> float:
        hit = self._op.get(id(op))
        if hit is None:
            hit = self._op[id(op)] = (op, self.uncached_time(op))
        return hit[1]

    def uncached_time(self, op) -> float:
        """``op_time`` without the memo (for short-lived op objects priced once)."""
        if getattr(op, "duration_s", None) is not None:
            return op.duration_s
        if isinstance(op, Compute):
            seq_kv = op.shape[2] if op.op_class == "attention" and op.shape else 0
            return self.compute.time(op.op_class, op.flops, op.bytes, op.dtype, seq_kv, op.causal,
                                     op.shape, op.flops_per_exp)
        if isinstance(op, ExpertDispatch) and hasattr(self.network, "layout"):
            net = self.network
            return dispatch_time(net.layout, getattr(net, "profile", None), op,
                                 getattr(net, "bw_scale", 1.0))
        if isinstance(op, Collective):
            return self.network.collective_time(op.kind, op.bytes, op.group)
        if isinstance(op, Memory):
            if op.kind in ("alloc", "free"):
                return 0.0
            return op.bytes / self.host_bw
        if isinstance(op, Block | Overlap):
            return sum(self.parts(op).values())
        return 0.0

    def parts(self, node_or_op) -> dict[str, float]:
        """Seconds per breakdown category inside a block (compute vs tp/cp/ep comm)."""
        op = node_or_op.op if isinstance(node_or_op, Node) else node_or_op
        hit = self._parts.get(id(op))
        if hit is None:
            got = (self._overlap_parts(op) if isinstance(op, Overlap) else
                   self.block_parts(op.ops, [self.op_time(sub) for sub in op.ops], op.overlap))
            hit = self._parts[id(op)] = (op, got)
        return hit[1]

    def block_parts(self, ops, times, overlap: tuple[str, ...] = ()) -> dict[str, float]:
        """Seconds per breakdown category of ``ops`` run back to back as one block
        (``times``: each op's seconds, in order; ``overlap``: as Block.overlap)."""
        return self.price(self.tally(ops, times, overlap), overlap)

    def tally(self, ops, times, overlap: tuple[str, ...] = ()) -> BlockTally:
        """``ops``'s tally (``times``: each op's seconds, in order)."""
        got: dict[str, float] = {}
        slow: dict[str, float] = {}
        held = slow_held = 0.0
        gpu_sms = self.compute.gpu.sms or 0
        for sub, t in zip(ops, times, strict=True):
            if isinstance(sub, Overlap):
                for cat, v in self.parts(sub).items():
                    got[cat] = got.get(cat, 0.0) + v
                continue
            cat = (sub.group.dim if isinstance(sub, Collective) else
                   "other" if isinstance(sub, Delay) else "compute")
            got[cat] = got.get(cat, 0.0) + t
            if isinstance(sub, ExpertDispatch) and cat in overlap:
                held += sm_seconds(sub, t, gpu_sms)
                if contends(sub):
                    slow[cat] = slow.get(cat, 0.0) + t
                    slow_held += t * sub.sms
        host = None if self.host is None else self.host.segments(ops, times, overlap)
        return BlockTally(got, held, host, slow, slow_held)

    def price(self, tally: BlockTally, overlap: tuple[str, ...] = ()) -> dict[str, float]:
        """Seconds per breakdown category of a block of ``tally``: the price of a Block
        node, and the sweep estimator's price of a chunk of layers it tallies layer by
        layer (sim/sweep/estimate_moe.py). DeepEP's normal internode kernels run slower
        beside the block's compute (``contention``); the GPU's wait for the host's
        launches is ``host``; with ``overlap``, those categories hide behind the rest
        (``_hide``)."""
        got, held = dict(tally.parts), tally.held
        if tally.slow:
            w = sum(tally.slow.values())
            extra, extra_held = contention(w, tally.slow_held, got.get("compute", 0.0))
            for cat, t in tally.slow.items():
                got[cat] += extra * t / w
            held += extra_held
        wait = tally.host.exposed if tally.host is not None else 0.0
        if wait > 0:
            got["host"] = wait
        if overlap:
            sms = self.compute.gpu.sms or 0
            _hide(got, overlap, held / sms if held and sms else 0.0)
        return got

    def _overlap_parts(self, op: Overlap) -> dict[str, float]:
        t_main = sum(self.op_time(o) for o in op.main)
        t_hidden = sum(self.op_time(o) for o in op.hidden)
        return self.overlap_parts(op, t_main, t_hidden)

    def overlap_parts(self, op: Overlap, t_main: float, t_hidden: float) -> dict[str, float]:
        """Seconds per category of ``op`` whose main ops take ``t_main`` seconds and hidden
        ops ``t_hidden``: all of main as compute, what the overlap exposes beyond it in the
        hidden ops' category."""
        nccl = (self.comm_sms(op.hidden[0]) if op.nccl and op.hidden and self.comm_sms
                else 0)
        exposed = op.time(t_main, t_hidden, self.compute.gpu.sms or 0, nccl) - t_main
        cat = op.hidden[0].group.dim if op.hidden else "other"
        return {"compute": t_main, **({cat: exposed} if exposed > 0 else {})}

    def overlap_tally(self, op: Overlap, t_main: float, t_hidden: float,
                      host_s: float) -> BlockTally:
        """Tally of a block of the one op ``op`` (``overlap_parts``), whose ops the host
        issues in ``host_s`` seconds: as ``tally`` counts such a block (DualPipe's pair,
        workloads/stage_ops.py ``pair_block``), for the sweep estimator, which sums the
        seconds layer by layer (sim/sweep/estimate_moe.py)."""
        parts = self.overlap_parts(op, t_main, t_hidden)
        host = None if self.host is None else HostSegments((sum(parts.values()), host_s, 0.0))
        return BlockTally(parts, 0.0, host)

    def duration(self, node: Node) -> float:
        return self.op_time(node.op)


def shared_rate(frac: float, held: int, gpu_sms: int) -> float:
    """The speed (1 = alone) of a kernel that is ``frac`` compute while collectives hold
    ``held`` of the GPU's ``gpu_sms`` SMs: 1 - frac x min(held, S - 1) / S (its compute
    keeps at least one SM; docs/accuracy.md, "SMs of NCCL's kernels beside compute")."""
    return 1.0 - frac * min(held, gpu_sms - 1) / gpu_sms


def sm_seconds(op, t: float, gpu_sms: int) -> float:
    """Seconds x SMs a DeepEP call of ``t`` seconds takes from compute beside it: its
    ``sms`` throughout (normal kernels), every SM for its ``sm_frac`` of the time (a
    low-latency dispatch's send and receive phases)."""
    if not isinstance(op, ExpertDispatch):
        return 0.0
    return t * (op.sms + op.sm_frac * gpu_sms)


@cache
def overlap_rate_frac() -> float:
    """Fraction of their standalone rate DeepEP's normal internode kernels reach while
    compute runs beside them (hw_models/data/fabric.yaml ``deepep_overlap_rate_frac``)."""
    return fabric_defaults()["deepep_overlap_rate_frac"]


def contends(op) -> bool:
    """A DeepEP normal internode kernel (ExpertDispatch with SMs and a scale-out part): the
    kind whose transfers DeepSeek's training profile shows slower beside compute."""
    return (isinstance(op, ExpertDispatch) and op.sms > 0 and not op.low_latency
            and op.bytes > 0)


def overlapped_transfer(w: float, beside: float, frac: float) -> float:
    """Seconds a transfer of ``w`` standalone seconds takes when it starts with ``beside``
    seconds of compute: ``frac`` of its standalone rate while the compute runs, its full
    rate once the compute is done (w / frac if it ends first, else beside + w - frac x
    beside)."""
    if w <= 0 or beside <= 0 or frac >= 1:
        return w
    return w / frac if w <= frac * beside else beside + w - frac * beside


def contention(w: float, held: float, beside: float) -> tuple[float, float]:
    """(seconds, seconds x SMs) that overlapped DeepEP normal internode kernels of ``w``
    standalone seconds in all (run one after the other beside ``beside`` seconds of
    compute) holding ``held`` SM seconds add by running at ``overlap_rate_frac`` while the
    compute runs; their kernels hold their SMs that much longer."""
    if w <= 0:
        return 0.0, 0.0
    extra = overlapped_transfer(w, beside, overlap_rate_frac()) - w
    return extra, extra * held / w


def exposed_comm(comm: float, covered: float, lost: float = 0.0) -> float:
    """Communication left exposed when it runs beside ``covered`` seconds of other work
    (compute, other collectives, the wait for the host): what exceeds it, or the compute
    time ``lost`` to the SMs the transfers hold while they run (DeepEP's normal kernels;
    ExpertDispatch.sms), whichever is larger."""
    return max(lost, comm - covered, 0.0)


def _hide(parts: dict[str, float], dims: tuple[str, ...], lost: float = 0.0) -> None:
    """Overlapped communication (the categories ``dims``) runs on its own stream beside
    everything else the block's stream does: its compute, its other collectives (TP, CP:
    Megatron-Core's 1F1B all-to-all overlap runs one microbatch's dispatch and combine on
    a communication stream while the other's attention, TP collectives included, runs on
    the compute stream; model_chunk_schedule_plan.py) and its wait for the host's
    launches. The rest stays exposed (scaled down in proportion across the overlapped
    categories)."""
    comm = sum(parts.get(d, 0.0) for d in dims)
    if comm <= 0:
        return
    covered = sum(v for k, v in parts.items() if k not in dims)
    keep = exposed_comm(comm, covered, lost) / comm
    for d in dims:
        if d in parts:
            parts[d] *= keep

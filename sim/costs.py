"""Costs of graph nodes: compute through the accelerator model, TP collectives inside
blocks through the network model's closed form (symmetric peers, no rendezvous), and the
host's launch pace inside blocks (``HostLaunch``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

from hw_models.compute import ComputeModel
from hw_models.topology import fabric_defaults
from sim.network.deepep import dispatch_time
from workloads.graph import Block, Collective, Compute, Delay, ExpertDispatch, Memory, Node, Overlap
from workloads.host_launch import is_sync, launches


@dataclass(frozen=True)
class HostLaunch:
    """The host's share of eager execution (workloads/host_launch.py): ``per_op_s`` host
    seconds per op it issues (already scaled to the system's host CPU), ``scopes`` the
    CUDA-graph scopes whose ops it does not issue one by one."""
    per_op_s: float
    scopes: frozenset[str] = frozenset()
    # (id(ops), hidden_dims) -> (ops, per op: (sync?, GPU time counted?, launches)): a
    # block's ops are classified once, not again for every cost model that prices it
    _classified: dict = field(default_factory=dict, compare=False, repr=False)

    def exposed(self, ops, times, hidden_dims: tuple[str, ...] = ()) -> float:
        """Seconds the GPU waits for the host in ``ops`` run back to back (``times``: each
        op's GPU seconds, in order): host-device syncs split them into segments; in each
        the host issues its ops at ``per_op_s`` each while the GPU runs them, and neither
        can pass the sync, so a segment takes max(GPU time, host time) and the host's
        excess is exposed. Collectives of ``hidden_dims`` run on their own stream
        (overlapped) and do not count as GPU time."""
        if self.per_op_s <= 0 or "full_iteration" in self.scopes:
            return 0.0
        key = (id(ops), hidden_dims)
        hit = self._classified.get(key)
        if hit is None or hit[0] is not ops:
            hit = (ops, [(is_sync(op), not (isinstance(op, Collective)
                                            and op.group.dim in hidden_dims),
                          launches(op, self.scopes)) for op in ops])
            if type(ops) is tuple:             # immutable: safe to keep by identity
                self._classified[key] = hit
        out = g = h = 0.0
        for (sync, on_gpu, n), t in zip(hit[1], times, strict=True):
            if sync:
                out, g, h = out + max(0.0, h - g), 0.0, 0.0
                continue
            if on_gpu:
                g += t
            h += n * self.per_op_s
        return out + max(0.0, h - g)


class OpCosts:
    def __init__(self, compute: ComputeModel, network, host_bw: float = 25e9,
                 host: HostLaunch | None = None):
        self.compute, self.network = compute, network
        self.host = host                # None: kernels issued ahead of the GPU (no host cost)
        self.host_bw = host_bw          # PCIe Gen4 x16 ~25 GB/s for host<->device copies
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
                                     op.shape)
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
            got: dict[str, float] = {}
            if isinstance(op, Overlap):
                got = self._overlap_parts(op)
            else:
                held = 0.0          # overlapped transfer seconds x the SMs they hold
                slow: list = []     # overlapped transfers that contend with the compute
                for sub in op.ops:
                    sub_parts = self.parts(sub) if isinstance(sub, Overlap) else {
                        (sub.group.dim if isinstance(sub, Collective) else (
                            "other" if isinstance(sub, Delay) else "compute")): self.op_time(sub)}
                    for cat, t in sub_parts.items():
                        got[cat] = got.get(cat, 0.0) + t
                    if isinstance(sub, ExpertDispatch) and sub.group.dim in op.overlap:
                        held += sm_seconds(sub, self.op_time(sub), self.compute.gpu.sms or 0)
                        if contends(sub):
                            slow.append((sub, self.op_time(sub)))
                if slow:
                    extra, extra_held = contention(slow, got.get("compute", 0.0))
                    for sub, t in slow:
                        got[sub.group.dim] += extra * t / sum(t for _, t in slow)
                    held += extra_held
                if self.host is not None:
                    wait = self.host.exposed(op.ops, map(self.op_time, op.ops), op.overlap)
                    if wait > 0:
                        got["host"] = wait
                if op.overlap:
                    sms = self.compute.gpu.sms or 0
                    _hide(got, op.overlap, held / sms if held and sms else 0.0)
            hit = self._parts[id(op)] = (op, got)
        return hit[1]

    def _overlap_parts(self, op: Overlap) -> dict[str, float]:
        t_main = sum(self.op_time(o) for o in op.main)
        t_hidden = sum(self.op_time(o) for o in op.hidden)
        exposed = op.time(t_main, t_hidden, self.compute.gpu.sms or 0) - t_main
        cat = op.hidden[0].group.dim if op.hidden else "other"
        return {"compute": t_main, **({cat: exposed} if exposed > 0 else {})}

    def duration(self, node: Node) -> float:
        return self.op_time(node.op)


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


def contention(slow: list, beside: float) -> tuple[float, float]:
    """(seconds, seconds x SMs) that overlapped DeepEP normal internode kernels ``slow``
    ((op, standalone seconds) pairs, run one after the other beside ``beside`` seconds of
    compute) add by running at ``overlap_rate_frac`` while the compute runs; their kernels
    hold their SMs that much longer."""
    return contention_of(sum(t for _, t in slow), sum(t * op.sms for op, t in slow), beside)


def contention_of(w: float, held: float, beside: float) -> tuple[float, float]:
    """``contention`` of kernels of ``w`` standalone seconds holding ``held`` SM seconds."""
    if w <= 0:
        return 0.0, 0.0
    extra = overlapped_transfer(w, beside, overlap_rate_frac()) - w
    return extra, extra * held / w


def exposed_comm(comm: float, covered: float, lost: float = 0.0) -> float:
    """Communication left exposed when it runs beside ``covered`` seconds of other work
    (compute, the wait for the host): what exceeds it, or the compute time ``lost`` to the
    SMs the transfers hold while they run (DeepEP's normal kernels; ExpertDispatch.sms),
    whichever is larger."""
    return max(lost, comm - covered, 0.0)


def _hide(parts: dict[str, float], dims: tuple[str, ...], lost: float = 0.0) -> None:
    """Overlapped communication hides behind the block's compute and its wait for the
    host's launches (the transfers run on their own stream); the rest stays exposed
    (scaled down in proportion across the overlapped categories)."""
    comm = sum(parts.get(d, 0.0) for d in dims)
    if comm <= 0:
        return
    covered = parts.get("compute", 0.0) + parts.get("host", 0.0)
    keep = exposed_comm(comm, covered, lost) / comm
    for d in dims:
        if d in parts:
            parts[d] *= keep

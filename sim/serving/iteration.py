"""The time of one serving iteration: its operations (workloads/inference/ops.py) priced by
the compute and network models, and cached by batch shape."""

from __future__ import annotations

from sim.costs import OpCosts
from sim.engine import Engine
from workloads.inference.ops import IterationOps, Shape, bucketed
from workloads.model import ModelSpec


class IterationModel(IterationOps):
    """Iteration time of one replica (tp x pp GPUs) for a batch Shape, via the engine."""

    def __init__(self, model: ModelSpec, tp: int, pp: int, precision: str, compute, network,
                 kv_bytes: int | None = None, kernels: str = "fused", launch_floor: float = 0.0):
        super().__init__(model, tp, pp, precision, kv_bytes, kernels)
        self.compute, self.network = compute, network
        self._cache: dict[Shape, float] = {}
        self._parts: dict[tuple, object] = {}   # seconds, or a layer's BlockTally (MoE)
        # Ops here are fresh objects each call and their costs are memoised by shape in
        # _part, so OpCosts' per-object memo would only grow: it is bypassed.
        self._costs = _Uncached(compute, network)
        self.set_launch_floor(launch_floor)
        self.evaluations = 0

    def set_launch_floor(self, seconds: float) -> None:
        """Without CUDA graphs (enforce_eager) every kernel takes at least the host's launch
        interval ``seconds``: a kernel shorter than that leaves the GPU waiting for the
        next launch (hw_models/data/engines.yaml). 0: kernels back to back (CUDA graphs)."""
        self._costs.floor = seconds
        self._cache.clear()
        self._parts.clear()

    def set_sampler(self, kernels: tuple[tuple[str, str, float], ...]) -> None:
        """The engine's sampling kernels per iteration over the sampled rows' logits:
        (kernel, op class, bytes per logit), from hw_models catalog ``sampler_kernels``.
        (): none beyond the output layer."""
        self.sampler = tuple(kernels)
        self._cache.clear()
        self._parts.clear()

    def time(self, shape: Shape) -> float:
        """Seconds of one iteration. Equals playing ``build(shape)`` on the engine (a
        test checks it) but sums cached per-part costs, because a serving run has
        ~10^4 distinct batch shapes: the layer's token-count-dependent kernels (GEMMs,
        norms, TP all-reduces) depend on T only; the two attention kernels on their
        own few numbers; stages run one after another with activation transfers."""
        key = bucketed(shape, self.hybrid)
        t = self._cache.get(key)
        if t is None:
            t = self._cache[key] = self._compose(key)
        return t

    def _compose(self, s: Shape) -> float:
        self.evaluations += 1
        T = s.prefill_tokens + s.decode_seqs
        per_layer = self._part(("dense", T), lambda: self.dense_ops(T))
        per_layer += self._costs.op_time(self.attention_ops(s)[0]) if s.prefill_tokens else 0.0
        if s.decode_seqs:
            per_layer += self._costs.op_time(self.attention_ops(s)[-1])
        ends = self._part(("ends", T, s.logits), lambda: [self.embed_op(T), *self.head_ops(s)])
        hop = self.network.p2p_time(0, self.tp, 2.0 * T * self.model.hidden) if self.pp > 1 else 0.0
        return self.model.layers * per_layer + ends + (self.pp - 1) * hop

    def _part(self, key: tuple, ops) -> float:
        t = self._parts.get(key)
        if t is None:
            t = self._parts[key] = sum(self._costs.op_time(o) for o in ops())
        return t

    def run_graph(self, s: Shape) -> float:
        """Play ``build(s)`` on the engine (the reference ``time`` must agree with)."""
        graph = self.build(s)
        costs = _Uncached(self.compute, self.network)
        costs.floor = self._costs.floor
        rows = Engine(graph, costs, self.network).run()
        return max(r.end for r in rows)


class _Uncached(OpCosts):
    """OpCosts without the per-object memo (for short-lived op objects); every kernel at
    least ``floor`` seconds (the host's launch interval without CUDA graphs)."""
    floor = 0.0

    def op_time(self, op) -> float:
        t = self.uncached_time(op)
        return t if t >= self.floor else self.floor

"""ZeRO-3 / FSDP passes of one pipeline stage (PyTorch FSDP, Zhao et al. VLDB'23; FSDP2).

A compute node per layer; the all-gather of the layer ``prefetch`` ahead is issued as
the current one starts (FSDP's default prefetch is one layer); each backward layer's
gradient is reduce-scattered after it; gathers and reduce-scatters share the stage's one
DP channel. ``reshard_after_forward=False`` (FSDP2; what Llama 3 ran, Dubey et al.
section 3.3.2) keeps the gathered weights from the forward to the backward, so the
backward gathers nothing (at the memory cost of the stage's unsharded weights).
HSDP (``zero_shard_group`` g < DP x CP): shards span g consecutive ranks; after the
backward each shard's gradient is all-reduced across the (DP x CP)/g replicas.

FSDP2's per-parameter sharding (``fsdp2_copies``; torch.distributed.fsdp fully_shard,
_fsdp_collectives.py as of PyTorch 2.6) moves every gathered and reduced byte once more
on the compute stream: after each all-gather, ``foreach_all_gather_copy_out``
(split_with_sizes_copy) copies the gathered buffer into the unsharded parameters on the
current stream (read and write the layer's weights); before each reduce-scatter,
``foreach_reduce_scatter_copy_in`` (_chunk_cat) packs the 16-bit unsharded gradients
into one buffer in the reduce dtype (fp32 in TorchTitan) and the current stream waits
for it before going on (read 2, write ``grad_bytes`` per parameter). A flat-parameter
FSDP or ZeRO-3 gathers into and reduces from its flat buffers in place.

Mixture-of-experts layers (Megatron FSDP, ``data_parallel_sharding_strategy:
optim_grads_params``; Megatron-Core's MoE parallel folding): a layer's replicated part
(attention, norms, router, shared experts) is sharded over the stage's DP ranks and its
routed experts over the expert-DP ranks (``moe_parallel.edp_group``), so each layer's
gather and reduce-scatter is two collectives on the DP channel, the replicated part's
then the experts'.
"""

from __future__ import annotations

from workloads.graph import Block, Collective, CommGroup, Compute


def shard_groups(plan, stage: int) -> tuple[CommGroup, CommGroup]:
    """(shard group, replica group) of the stage's first rank."""
    ranks = plan.dp_group(stage)
    g = plan.shard_group
    return CommGroup(ranks[:g], "dp"), CommGroup(ranks[::g], "dp")


def hsdp_replica_all_reduce(g, plan, opts, rank: int, stage: int, params: float, dep: int) -> int:
    _, replicas = shard_groups(plan, stage)
    op = Collective("all_reduce", params / plan.shard_group * opts.grad_bytes, replicas,
                    seq=10**6 + 1, name="hsdp_replica_all_reduce")
    return g.add(rank, "dp", op, (dep,), "dp", "hsdp_all_reduce")


def expert_shards(model, plan, stage: int) -> tuple[CommGroup | None, list[list[float]]]:
    """(expert-DP group of the stage's first rank, routed-expert parameters per layer of
    each chunk in forward order); (None, []) for a model without routed experts or with
    one expert-DP rank."""
    from workloads import moe_parallel, moe_training
    if model.moe is None or moe_parallel.edp(plan) == 1:
        return None, []
    group = CommGroup(moe_parallel.edp_group(plan, stage), "dp")
    return group, [[u[1] for u in moe_training.unit_split(model, plan, stage, c)]
                   for c in range(plan.chunks)]


class Zero3:
    def __init__(self, g, model, plan, opts, st):
        from workloads.param_sync import unit_params
        self.g, self.model, self.plan, self.opts, self.st = g, model, plan, opts, st
        self.units_of = lambda c: self._root_group(unit_params(model, plan, st.index, c))
        self.group = shard_groups(plan, st.index)[0]
        self.edp_group, self.experts = expert_shards(model, plan, st.index)
        self.recent: list[int] = []       # compute nodes in stream order
        self.gathered: int | None = None  # gather already issued for the next pass's first layer
        self.seq = 0
        self.layer = {"F": Block(st.ops.fwd, "fwd_layer"), "B": Block(st.ops.bwd, "bwd_layer")}
        self.layers: dict[tuple[int, str, int], Block] = {}   # non-uniform models: _layer

    def _root_group(self, units: list[float]) -> list[float]:
        """``fsdp2_root_group``: TorchTitan wraps each transformer block and then the whole
        model (``apply_fsdp``: ``fully_shard(model)`` last), so the embedding, final norm
        and output layer form the root's group: gathered before the first block (with the
        first layer's gather here) and, the root keeping its parameters gathered after the
        forward (FSDP2's ``_lazy_init``: "For the root, do not reshard after forward",
        ``post_forward_mesh_info = None``), reduce-scattered by the final backward callback
        after the last block (with the first layer's reduce-scatter here). The output
        layer's parameters move from the last layer's unit to the first's. One stage
        (no pipeline) of a dense model only."""
        if not (self.opts.fsdp2_root_group and self.plan.pp == 1 and self.model.uniform
                and len(units) > 1 and not self.model.tied_embeddings):
            return units
        out = self.model.vocab * self.model.hidden / self.plan.tp
        return [units[0] + out, *units[1:-1], units[-1] - out]

    def _units(self, c: int, step: str) -> list[float]:
        u = self.units_of(c)
        return u if step == "F" else u[::-1]

    def _expert(self, c: int, step: str, i: int) -> float:
        """Routed-expert parameters of the pass's ``i``-th layer (0 without expert-DP)."""
        if self.edp_group is None:
            return 0.0
        u = self.experts[c]
        return (u if step == "F" else u[::-1])[i]

    def _needs_gather(self, step: str) -> bool:
        return step == "F" or self.plan.reshard_after_forward

    def _collective(self, kind: str, nbytes: float, dep: int | None, name: str, mb: int, c: int,
                    group: CommGroup | None = None) -> int:
        self.seq += 1
        op = Collective(kind, nbytes, group or self.group, seq=self.seq, name=name)
        return self.g.add(self.st.rank, "dp", op, (dep,) if dep is not None else (), "dp",
                          f"{name}{self.seq}", mb=mb, chunk=c)

    def _gather(self, c: int, step: str, i: int, mb: int) -> int:
        """The all-gather of the pass's ``i``-th layer (its experts' after it)."""
        k = self.plan.prefetch + 1
        dep = self.recent[-k] if len(self.recent) >= k else (self.recent[0] if self.recent else None)
        node = self._collective("all_gather", self._units(c, step)[i] * self.opts.param_bytes,
                                dep, "zero3_param_all_gather", mb, c)
        experts = self._expert(c, step, i)
        if experts > 0:
            node = self._collective("all_gather", experts * self.opts.param_bytes, node,
                                    "zero3_expert_all_gather", mb, c, self.edp_group)
        return node

    def _layer(self, c: int, step: str, i: int) -> Block:
        """The pass's ``i``-th layer: the stage's one layer template for a uniform model,
        else that layer's own kernels (MoE / MLA / windowed layers differ, built as the
        stage's chunk blocks are: workloads/moe_training.py, StageOps.transform)."""
        if self.model.uniform:
            return self.layer[step]
        block = self.layers.get((c, step, i))
        if block is None:       # built once: every microbatch's pass runs the same ops
            block = self.layers[(c, step, i)] = self._build_layer(c, step, i)
        return block

    def _build_layer(self, c: int, step: str, i: int) -> Block:
        from workloads import moe_training
        ctx, ids = self.st.ctx, moe_training.chunk_layers(self.model, self.plan, self.st.index, c)
        if not ids:
            return Block((), self.layer[step].name)
        if step == "F":
            return Block(self.st.ops.transform(moe_training.layer_forward_at(ctx, ids[i])),
                         "fwd_layer", self.st.fwd[c].overlap)
        return Block(self.st.ops.transform(moe_training.layer_bwd_ops(ctx, self.plan, ids[::-1][i]),
                                           True), "bwd_layer", self.st.bwd[c].overlap)

    def _block(self, c: int, step: str, i: int, n: int) -> Block:
        pipe, s, ops = self.st.pipe, self.st.index, self.st.ops
        base = self._layer(c, step, i)
        if step == "F":
            pre = ops.emb_fwd if i == 0 and pipe.is_first(s, c) else ()
            post = ops.head_fwd if i == n - 1 and pipe.is_last(s, c) else ()
        else:
            pre = ops.head_bwd if i == 0 and pipe.is_last(s, c) else ()
            post = ops.emb_bwd if i == n - 1 and pipe.is_first(s, c) else ()
        if self.opts.fsdp2_copies:
            pre, post = pre + self._copy_out(c, step, i), post + self._copy_in(c, step, i)
        return base if not pre and not post else Block(pre + base.ops + post, base.name)

    def _copy_out(self, c: int, step: str, i: int) -> tuple:
        """FSDP2's copy-out of the layer's all-gather into its unsharded parameters."""
        if not self._needs_gather(step):
            return ()
        n = self._units(c, step)[i]
        return (Compute("elementwise", 0.0, 2.0 * n * self.opts.param_bytes, "bf16",
                        name="fsdp2_all_gather_copy_out"),)

    def _copy_in(self, c: int, step: str, i: int) -> tuple:
        """FSDP2's reduce-scatter copy-in: 16-bit gradients packed in the reduce dtype."""
        if step != "B":
            return ()
        n = self._units(c, step)[i]
        return (Compute("elementwise", 0.0, n * (2.0 + self.opts.grad_bytes), "bf16",
                        name="fsdp2_reduce_scatter_copy_in"),)

    def _next_gather(self, i: int, units: list[float], step: str, mb: int, c: int, nxt):
        if i + 1 < len(units):
            return self._gather(c, step, i + 1, mb) if self._needs_gather(step) else None
        if nxt is not None and self._needs_gather(nxt[2]):
            nmb, nc, nstep = nxt
            self.gathered = self._gather(nc, nstep, 0, nmb)
        else:
            self.gathered = None
        return None

    def add_pass(self, mb: int, c: int, step: str, deps, nxt) -> int:
        units = self._units(c, step)
        gather = self.gathered
        if gather is None and self._needs_gather(step):
            gather = self._gather(c, step, 0, mb)
        pending_rs = None
        for i, n_params in enumerate(units):
            block = self._block(c, step, i, len(units))
            node = self.g.add(self.st.rank, "compute", block, [*(deps if i == 0 else ()), gather],
                              "compute", f"{step}{mb}_c{c}_l{i}", mb=mb, chunk=c)
            self.recent.append(node)
            gather = self._next_gather(i, units, step, mb, c, nxt)
            if pending_rs is not None:
                self._reduce_scatter(*pending_rs, mb, c)
            pending_rs = (n_params, node, self._expert(c, step, i)) if step == "B" else None
        if pending_rs is not None:
            self._reduce_scatter(*pending_rs, mb, c)
        return node

    def _reduce_scatter(self, n_params: float, node: int, experts: float, mb: int, c: int) -> None:
        rs = self._collective("reduce_scatter", n_params * self.opts.grad_bytes, node,
                              "zero3_grad_reduce_scatter", mb, c)
        if experts > 0:
            rs = self._collective("reduce_scatter", experts * self.opts.grad_bytes, rs,
                                  "zero3_expert_grad_reduce_scatter", mb, c, self.edp_group)
        self.st.grad_rs.append(rs)

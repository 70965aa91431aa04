"""Where the model's layers sit on the pipeline, and the order each rank runs its steps.

A pipeline of p ranks runs its model as *virtual stages*, each one (rank, chunk):

* gpipe / 1f1b / zb-h1: p stages, one chunk per rank.
* interleaved (vpp = v): p v stages, virtual stage ``c p + s`` on rank s, chunk c
  (Megatron-LM's interleaved placement).
* zb-v / dualpipev: 2p chunks in a V, rank r holding stage r and 2p - 1 - r.
* dualpipe: p stages per direction; rank r holds stage r for the microbatches entering
  at rank 0 (chunk 0) and stage p - 1 - r for those entering at rank p - 1 (chunk 1),
  two copies of the parameters (DeepSeek-V3 section 3.2.1).

``pipeline_layers`` lists the transformer layers of every rank (p entries, split evenly
over its chunks) or of every virtual stage in order (p x chunks entries), so an uneven
and interleaved pipeline can be written. Without it the layers are split evenly; with
Megatron-LM's ``account_for_embedding_in_pipeline_split`` /
``account_for_loss_in_pipeline_split`` the embedding and the loss count as one layer
each in that split, so the first and last virtual stages get one transformer layer less.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from hw_models.errors import InfeasiblePlanError
from workloads import schedules, schedules_zb
from workloads.schedules import Step

SPLIT_BACKWARD = frozenset({"zb-h1", "zb-v", "dualpipe", "dualpipev"})
V_SHAPED = frozenset({"zb-v", "dualpipev"})


@dataclass(frozen=True)
class Pipeline:
    """Placement and step order of a plan's pipeline (pure function of its sizes)."""
    kind: str          # effective schedule
    p: int
    v: int             # chunks per rank
    m: int             # microbatches per iteration
    layers: int        # transformer layers of the model
    pipeline_layers: tuple[int, ...] | None = None
    embedding_in_split: bool = False
    loss_in_split: bool = False

    @property
    def stages(self) -> int:
        """Virtual stages a microbatch passes through."""
        return self.p if self.kind == "dualpipe" else self.p * self.v

    # -- placement -------------------------------------------------------------
    def position(self, rank: int, chunk: int, mb: int = 0) -> int:
        """Index of (rank, chunk) along the path of microbatch ``mb``."""
        if self.kind in V_SHAPED:
            return schedules_zb.v_stage(self.p, rank, chunk)
        if self.kind == "dualpipe":
            return rank if chunk == 0 else self.p - 1 - rank
        return chunk * self.p + rank

    def at(self, pos: int, chunk_hint: int) -> tuple[int, int]:
        """(rank, chunk) at path position ``pos`` of a microbatch that uses chunk
        ``chunk_hint`` (dualpipe: its direction)."""
        if self.kind in V_SHAPED:
            return (pos, 0) if pos < self.p else (2 * self.p - 1 - pos, 1)
        if self.kind == "dualpipe":
            return (pos, 0) if chunk_hint == 0 else (self.p - 1 - pos, 1)
        return pos % self.p, pos // self.p

    def neighbour(self, rank: int, chunk: int, step: str) -> tuple[int, int] | None:
        """(rank, chunk) that sends this step its input: the previous stage for a forward,
        the next one for a backward (full or input-only); None at the ends or for W."""
        if step == "W":
            return None
        pos = self.position(rank, chunk) + (-1 if step == "F" else 1)
        if pos < 0 or pos >= self.stages:
            return None
        return self.at(pos, chunk)

    def is_first(self, rank: int, chunk: int) -> bool:
        return self.position(rank, chunk) == 0

    def is_last(self, rank: int, chunk: int) -> bool:
        return self.position(rank, chunk) == self.stages - 1

    # -- layers ----------------------------------------------------------------
    @cached_property
    def stage_layer_counts(self) -> tuple[int, ...]:
        """Transformer layers per virtual stage, in path order."""
        n = self.stages
        given = self.pipeline_layers
        if given is not None and len(given) == n:
            return tuple(given)
        if given is not None:       # per rank: split over the rank's chunks
            return tuple(self._rank_split(given[r], r)[c]
                         for r, c in (self.at(pos, 0) for pos in range(n)))
        extra = int(self.embedding_in_split) + int(self.loss_in_split)
        total = self.layers + extra
        if total % n:
            raise InfeasiblePlanError(
                f"{n} virtual pipeline stages do not divide the model's {self.layers} layers"
                f"{' + embedding/loss' if extra else ''}; give parallel.pipeline_layers")
        out = [total // n] * n
        out[0] -= int(self.embedding_in_split)
        out[-1] -= int(self.loss_in_split)
        return tuple(out)

    def _rank_split(self, total: int, rank: int) -> list[int]:
        """A rank's layers over its chunks; when they do not divide evenly, the first
        rank's first chunks and the other ranks' last chunks hold one layer less
        (Megatron's layout with the embedding and the loss counted as layers)."""
        base = -(-total // self.v)
        sizes = [base] * self.v
        for k in range(base * self.v - total):
            sizes[k if rank == 0 else self.v - 1 - k] -= 1
        return sizes

    def chunk_layers(self, rank: int, chunk: int) -> int:
        return self.stage_layer_counts[self.position(rank, chunk)]

    def layer_ids(self, rank: int, chunk: int) -> range:
        """Global indices of the transformer layers of (rank, chunk), for models whose
        layers differ (dense and MoE layers)."""
        pos = self.position(rank, chunk)
        start = sum(self.stage_layer_counts[:pos])
        return range(start, start + self.stage_layer_counts[pos])

    def rank_layers(self, rank: int) -> int:
        return sum(self.chunk_layers(rank, c) for c in range(self.v))

    # -- step order ------------------------------------------------------------
    @cached_property
    def _orders(self) -> tuple[tuple[list[Step], list[int]], ...]:
        m, p, v = self.m, self.p, self.v
        if self.kind == "zb-v":
            return tuple((s, []) for s in schedules_zb.zb_v(m, p))
        if self.kind in ("dualpipe", "dualpipev"):
            return tuple(schedules_zb.dualpipe(m, p, r, self.kind == "dualpipev") for r in range(p))
        if self.kind == "zb-h1":
            return tuple((schedules_zb.zb_h1(m, p, r), []) for r in range(p))
        return tuple((schedules.schedule(self.kind, m, p, v, r), []) for r in range(p))

    def steps(self, rank: int) -> list[Step]:
        return self._orders[rank][0]

    def pairs(self, rank: int) -> list[int]:
        """Indices k where steps k and k + 1 run as one overlapped forward&backward."""
        return self._orders[rank][1]

    def peak_live_layers(self, rank: int) -> int:
        """Most layers' activations a rank holds at once, replaying its step order: a
        forward stores its chunk's activations; a full backward or a W frees them (an
        input-only backward keeps what its W still needs)."""
        live = peak = 0
        for _, c, step in self.steps(rank):
            n = self.chunk_layers(rank, c)
            if step == "F":
                live += n
                peak = max(peak, live)
            elif step in ("B", "W"):
                live -= n
        return peak

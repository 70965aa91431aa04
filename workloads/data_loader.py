"""Input pipeline: per-step input bytes, loader throughput, prefetch depth -> stalls.

Steady state of a producer (loader) feeding a consumer (the training step) through a
bounded queue of ``prefetch`` batches (PyTorch DataLoader's prefetch_factor, default 2):
- prefetch 0: nothing overlaps, every step waits for its batch: step = T + t_load;
- prefetch >= 1: loading overlaps the step, step = max(T, t_load); with d requests in
  flight the per-request storage latency is hidden d-fold (Little's law).
The prefilled queue only delays the onset of a stall by ``prefetch`` steps, which does not
change the per-step figure over a run of many steps.
"""

from __future__ import annotations

from dataclasses import dataclass

from hw_models.errors import ClusterSimError
from hw_models.storage import GB, StoragePath, StorageTier


@dataclass(frozen=True)
class InputPipeline:
    bytes_per_step: float
    loader_bw: float          # bytes/s the whole job's loaders deliver
    load_s: float             # time to produce one global batch
    step_s: float             # the step as the simulator computed it
    effective_step_s: float   # the step once the input pipeline is accounted for
    prefetch: int

    @property
    def stall_s(self) -> float:
        return self.effective_step_s - self.step_s

    @property
    def stalled(self) -> bool:
        return self.stall_s > 0

    def message(self) -> str:
        if not self.stalled:
            return (f"input pipeline keeps up: {self.load_s:.3g} s to load a batch, "
                    f"step {self.step_s:.3g} s")
        return (f"input-bound: each step stalls {self.stall_s:.3g} s waiting for data "
                f"({self.bytes_per_step / GB:.3g} GB/step at {self.loader_bw / GB:.3g} GB/s, "
                f"prefetch {self.prefetch})")


def input_pipeline(step_s: float, tokens_per_step: float, bytes_per_token: float, nodes: int,
                   prefetch: int, tier: StorageTier | None = None,
                   loader_gb_s_per_node: float | None = None,
                   path: StoragePath | None = None) -> InputPipeline:
    """Loader throughput = min(nodes x per-node loader rate, the tier's read bandwidth, the
    fabric to storage: nodes x node NICs and the storage uplinks)."""
    if step_s <= 0 or tokens_per_step <= 0 or bytes_per_token <= 0 or nodes < 1 or prefetch < 0:
        raise ClusterSimError("input pipeline needs step_s, tokens_per_step, bytes_per_token > 0, "
                              f"nodes >= 1, prefetch >= 0 (got {step_s}, {tokens_per_step}, "
                              f"{bytes_per_token}, {nodes}, {prefetch})")
    limits = [tier.bandwidth("read", nodes)] if tier else []
    if path is not None:
        limits.append(path.bandwidth(nodes))
    if loader_gb_s_per_node is not None:
        limits.append(loader_gb_s_per_node * GB * nodes)
    nbytes = tokens_per_step * bytes_per_token
    if not limits:
        return InputPipeline(nbytes, float("inf"), 0.0, step_s, step_s, prefetch)
    bw = min(limits)
    latency = tier.latency_ms * 1e-3 if tier else 0.0
    load = nbytes / bw + latency / max(prefetch, 1)
    eff = step_s + load if prefetch == 0 else max(step_s, load)
    return InputPipeline(nbytes, bw, load, step_s, eff, prefetch)

"""Host offload of activations and of the optimizer (Megatron-Core / TransformerEngine
``cpu_offload``, TorchTitan's activation offloading; ZeRO-Offload, Ren et al. ATC'21).

Activations: a fraction f of each chunk's stored activations is copied to host memory
after its forward (device-to-host stream) and back before its backward (host-to-device
stream, issued when the step before the previous one has finished: one step of
prefetch), both beside the compute, over the system's host link (PCIe or NVLink-C2C,
full duplex). The backward waits for its reload; the forward does not wait for the copy.

Optimizer: master weights and Adam states stay in host memory; after the gradient
reduction the gradient shard goes to the host, the CPU runs Adam at the host's DRAM
bandwidth share of one GPU (the same 34 bytes per parameter as on the GPU), and the
16-bit parameters come back. These three run one after another (not overlapped).
"""

from __future__ import annotations

from dataclasses import dataclass

from workloads.graph import Delay, Memory


@dataclass(frozen=True)
class OffloadOptions:
    activations: float = 0.0            # fraction of stored activation bytes sent to host
    act_bytes_per_layer: float = 0.0    # stored activation bytes of one layer, one microbatch
    optimizer: bool = False
    host_adam_bw: float = 0.0           # bytes/s of host DRAM one GPU's optimizer gets
    modules: tuple[str, ...] = ()       # fine-grained offload (workloads/offload_modules.py)
    optimizer_states: bool = False      # states parked on the host between steps

    @property
    def moves_activations(self) -> bool:
        return self.activations > 0 or bool(self.modules)


class ActivationOffload:
    """Copies around the compute nodes of one stage (call ``before`` and ``after`` for
    every step in program order)."""

    def __init__(self, g, st, opts: OffloadOptions, chunk_bytes: tuple[float, ...] | None = None):
        """``chunk_bytes``: bytes per model chunk of a model whose layers differ
        (workloads/offload_modules.py ``chunk_bytes``); else ``activations`` of every
        layer's ``act_bytes_per_layer``."""
        self.g, self.st, self.opts, self.chunk_bytes = g, st, opts, chunk_bytes
        self.compute: list[int] = []

    def _bytes(self, c: int) -> float:
        if self.chunk_bytes is not None:
            return self.chunk_bytes[c]
        return self.opts.activations * self.opts.act_bytes_per_layer * \
            self.st.pipe.chunk_layers(self.st.index, c)

    def before(self, mb: int, c: int, step: str) -> int | None:
        if step not in ("B", "I") or not self.opts.moves_activations:
            return None
        dep = self.compute[-2:-1]             # prefetch: once the step before last is done
        return self.g.add(self.st.rank, "offload_h2d", Memory("h2d", self._bytes(c)), dep,
                          "memory", f"reload{mb}_c{c}", mb=mb, chunk=c)

    def after(self, node: int, mb: int, c: int, step: str) -> None:
        self.compute.append(node)
        if step == "F" and self.opts.moves_activations:
            self.g.add(self.st.rank, "offload_d2h", Memory("d2h", self._bytes(c)), (node,),
                       "memory", f"offload{mb}_c{c}", mb=mb, chunk=c)


def optimizer_on_host(g, rank: int, shard_params: float, grad_bytes: int, param_bytes: int,
                      adam_bytes_per_param: float, opts: OffloadOptions, deps) -> int:
    """Gradient shard down, CPU Adam, parameters up; returns the last node."""
    down = g.add(rank, "offload_d2h", Memory("d2h", shard_params * grad_bytes), deps, "memory",
                 "optimizer_grads_to_host")
    cpu = g.add(rank, "host", Delay(shard_params * adam_bytes_per_param / opts.host_adam_bw,
                                    "cpu_adam"), (down,), "other", "cpu_adam")
    return g.add(rank, "offload_h2d", Memory("h2d", shard_params * param_bytes), (cpu,), "memory",
                 "optimizer_params_to_device")

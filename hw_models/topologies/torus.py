"""2D/3D torus (TPU-style): each accelerator links to its two neighbours in every dimension.

``dims`` (e.g. [4, 4, 4]) must multiply to the number of GPUs. Each link carries
``link_gb_s`` per direction; by default the GPU's scale-up bandwidth is split evenly
over its 2 x len(dims) links. Dimension-order ECMP: all shortest paths are candidates.
"""

from __future__ import annotations

import math

from hw_models.errors import ClusterSimError
from hw_models.topology import GB, SCALE_OUT, US, Context, GraphBuilder, register


@register(SCALE_OUT, "torus", replaces_scale_up=True)
def torus(b: GraphBuilder, ctx: Context) -> None:
    dims = [int(x) for x in ctx.cfg.get("dims", [])]
    if len(dims) not in (2, 3) or math.prod(dims) != ctx.world or min(dims) < 2:
        raise ClusterSimError(f"cluster.network.dims must be 2 or 3 sizes >= 2 multiplying to "
                              f"{ctx.world} GPUs, got {dims}")
    up = ctx.system.scale_up
    bw = float(ctx.cfg.get("link_gb_s", up.gb_s_per_gpu / (2 * len(dims)))) * GB
    strides = [math.prod(dims[i + 1:]) for i in range(len(dims))]
    for r in range(ctx.world):
        coord = [(r // s) % d for s, d in zip(strides, dims, strict=True)]
        for axis, (s, d) in enumerate(zip(strides, dims, strict=True)):
            nb = r + (((coord[axis] + 1) % d) - coord[axis]) * s
            if d == 2 and coord[axis] == 1:
                continue  # a ring of two has one link, not two
            b.link(ctx.gpu_vertex[r], ctx.gpu_vertex[nb], bw, up.hop_latency_us * US, "nvlink")

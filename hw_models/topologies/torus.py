"""2D/3D torus (TPU-style): each accelerator links to its two neighbours in every dimension.

``dims`` (e.g. [4, 4, 4]) must multiply to the number of GPUs. Each link carries
``link_gb_s`` per direction; by default the GPU's scale-up bandwidth is split evenly
over its 2 x len(dims) links. Dimension-order ECMP: all shortest paths are candidates.
The same links make the scale-up ``ici-torus`` of TPU and Trainium systems
(hw_models/topologies/scale_up.py), one torus per domain.
"""

from __future__ import annotations

import math

from hw_models.errors import ClusterSimError
from hw_models.topology import GB, SCALE_OUT, US, Context, GraphBuilder, register


def torus_shape(n: int, ndims: int) -> list[int]:
    """Near-equal sides multiplying to n (largest factors first; sides of 1 dropped):
    64 chips in 3D -> [4, 4, 4], 16 in 2D -> [4, 4], 8 in 3D -> [2, 2, 2]."""
    dims = []
    rest = n
    for k in range(ndims, 0, -1):
        side = round(rest ** (1 / k))
        while side > 1 and rest % side:
            side -= 1
        side = max(side, 1)
        dims.append(side)
        rest //= side
    dims[-1] *= rest
    return sorted((d for d in dims if d > 1), reverse=True) or [n]


def torus_links(b: GraphBuilder, verts: list[int], dims: list[int], bw: float, lat: float
                ) -> None:
    """Wrap-around links in every dimension between the vertices (row-major order)."""
    strides = [math.prod(dims[i + 1:]) for i in range(len(dims))]
    for r in range(len(verts)):
        coord = [(r // s) % d for s, d in zip(strides, dims, strict=True)]
        for axis, (s, d) in enumerate(zip(strides, dims, strict=True)):
            if d < 2 or (d == 2 and coord[axis] == 1):
                continue  # a ring of two has one link, not two
            nb = r + (((coord[axis] + 1) % d) - coord[axis]) * s
            b.link(verts[r], verts[nb], bw, lat, "nvlink")


@register(SCALE_OUT, "torus", replaces_scale_up=True)
def torus(b: GraphBuilder, ctx: Context) -> None:
    dims = [int(x) for x in ctx.cfg.get("dims", [])]
    if len(dims) not in (2, 3) or math.prod(dims) != ctx.world or min(dims) < 2:
        raise ClusterSimError(f"cluster.network.dims must be 2 or 3 sizes >= 2 multiplying to "
                              f"{ctx.world} GPUs, got {dims}")
    up = ctx.system.scale_up
    bw = float(ctx.cfg.get("link_gb_s", up.gb_s_per_gpu / (2 * len(dims)))) * GB
    torus_links(b, ctx.gpu_vertex, dims, bw, up.hop_latency_us * US)

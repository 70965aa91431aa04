"""Scale-up fabrics inside one domain: NVSwitch node, NVL72-style domain, full meshes
(xGMI, HCCS, Gaudi's on-die RoCE), a switched Unified Bus plane (CloudMatrix384), an
ICI / NeuronLink torus, and a PCIe host.

NVSwitch (DGX) and NVL-domain (GB200 NVL72) are modelled as one logical switch per
domain: each GPU has one link of its full per-direction NVLink bandwidth to it, which is
how NCCL sees an NVSwitch system (any pair at full bandwidth, one bottleneck per GPU
port). NVLS in-switch reduction happens in that switch vertex.
"""

from __future__ import annotations

from hw_models.topologies.torus import torus_links, torus_shape
from hw_models.topology import GB, SCALE_UP, US, Context, GraphBuilder, register


def _domains(ctx: Context):
    d = ctx.domain
    for start in range(0, ctx.world, d):
        yield [ctx.gpu_vertex[r] for r in range(start, min(start + d, ctx.world))]


def _switched(b: GraphBuilder, ctx: Context, kind: str) -> None:
    up = ctx.system.scale_up
    for gpus in _domains(ctx):
        sw = b.vertex(kind)
        for g in gpus:
            # Half the NCCL per-hop latency on each side: GPU -> switch -> GPU is one hop.
            b.link(g, sw, up.gb_s_per_gpu * GB, up.hop_latency_us * US / 2, "nvlink")


@register(SCALE_UP, "nvswitch")
def nvswitch(b: GraphBuilder, ctx: Context) -> None:
    _switched(b, ctx, "nvswitch")


@register(SCALE_UP, "nvl-domain")
def nvl_domain(b: GraphBuilder, ctx: Context) -> None:
    _switched(b, ctx, "nvl-switch")


@register(SCALE_UP, "ub-domain")
def ub_domain(b: GraphBuilder, ctx: Context) -> None:
    """Huawei CloudMatrix384: every NPU on one non-blocking Unified Bus plane (two switch
    tiers that the paper calls fully non-blocking, so one logical switch here)."""
    _switched(b, ctx, "ub-switch")


def _mesh(b: GraphBuilder, ctx: Context) -> None:
    up = ctx.system.scale_up
    for gpus in _domains(ctx):
        per = up.gb_s_per_gpu * GB / max(1, len(gpus) - 1)
        for i, a in enumerate(gpus):
            for c in gpus[i + 1:]:
                b.link(a, c, per, up.hop_latency_us * US, "nvlink")


@register(SCALE_UP, "xgmi-mesh")
def xgmi_mesh(b: GraphBuilder, ctx: Context) -> None:
    """AMD Infinity Fabric: fully connected, each GPU's bandwidth split over n-1 links."""
    _mesh(b, ctx)


@register(SCALE_UP, "hccs-mesh")
def hccs_mesh(b: GraphBuilder, ctx: Context) -> None:
    """Huawei HCCS inside an 8-NPU Ascend node: fully connected."""
    _mesh(b, ctx)


@register(SCALE_UP, "roce-mesh")
def roce_mesh(b: GraphBuilder, ctx: Context) -> None:
    """Intel Gaudi: the on-die RoCE ports of the 8 OAMs wired all-to-all on the board."""
    _mesh(b, ctx)


@register(SCALE_UP, "nvlink-mesh")
def nvlink_mesh(b: GraphBuilder, ctx: Context) -> None:
    """NVLink without a switch (DGX-1 V100's hybrid cube-mesh: 6 links to 4 of 7 peers),
    taken as a full mesh: right for collectives over the whole node, about one link for a
    pair."""
    _mesh(b, ctx)


@register(SCALE_UP, "ici-torus")
def ici_torus(b: GraphBuilder, ctx: Context) -> None:
    """TPU ICI / Trainium NeuronLink: each domain is a 2D or 3D torus (``torus_dims``) of
    near-equal sides; the chip's bandwidth is split over its 2 x dims links."""
    up = ctx.system.scale_up
    ndims = up.torus_dims or 3
    for gpus in _domains(ctx):
        dims = torus_shape(len(gpus), ndims)
        torus_links(b, gpus, dims, up.gb_s_per_gpu * GB / (2 * len(dims)),
                    up.hop_latency_us * US)


@register(SCALE_UP, "pcie")
def pcie(b: GraphBuilder, ctx: Context) -> None:
    """GPUs behind one PCIe host bridge: peer traffic crosses the root complex."""
    for gpus in _domains(ctx):
        host = b.vertex("pcie-host")
        for g in gpus:
            b.link(g, host, ctx.get("pcie_gb_s") * GB, ctx.get("pcie_hop_latency_us") * US / 2,
                   "pcie")

"""Scale-up fabrics inside one domain: NVSwitch node, NVL72-style domain, xGMI mesh, PCIe host.

NVSwitch (DGX) and NVL-domain (GB200 NVL72) are modelled as one logical switch per
domain: each GPU has one link of its full per-direction NVLink bandwidth to it, which is
how NCCL sees an NVSwitch system (any pair at full bandwidth, one bottleneck per GPU
port). NVLS in-switch reduction happens in that switch vertex.
"""

from __future__ import annotations

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


@register(SCALE_UP, "xgmi-mesh")
def xgmi_mesh(b: GraphBuilder, ctx: Context) -> None:
    """Fully connected: each GPU's bandwidth split evenly over its n-1 direct links."""
    up = ctx.system.scale_up
    for gpus in _domains(ctx):
        per = up.gb_s_per_gpu * GB / max(1, len(gpus) - 1)
        for i, a in enumerate(gpus):
            for c in gpus[i + 1:]:
                b.link(a, c, per, up.hop_latency_us * US, "nvlink")


@register(SCALE_UP, "pcie")
def pcie(b: GraphBuilder, ctx: Context) -> None:
    """GPUs behind one PCIe host bridge: peer traffic crosses the root complex."""
    for gpus in _domains(ctx):
        host = b.vertex("pcie-host")
        for g in gpus:
            b.link(g, host, ctx.get("pcie_gb_s") * GB, ctx.get("pcie_hop_latency_us") * US / 2,
                   "pcie")

"""DeepEP's published kernel benchmarks against the model's DeepEP cost
(sim/network/deepep.py): ``clustersim validate moe`` prints the table.

Both tables are DeepEP's own on H800 with one 400 Gb/s CX7 NIC per GPU, DeepSeek-V3's
shapes (hidden 7168, 256 experts, top-8), FP8 dispatch and BF16 combine
(calibration/reference/collectives/deepep_*_kernels.csv), plus one user's two-node H200
run of the same benchmark (deepep_normal_kernels_h200.csv). Nothing is fitted on them:
the model takes the NIC and NVLink figures of the catalog's ``hgx-h800`` and the
profile's NVLink point-to-point efficiency, and the internode kernels' SM rate fitted on
the H200 run (whose rows are then in-sample; calibration/fit_deepep.py). Each row is
compared as DeepEP reports it:
- normal kernels, "bottleneck bandwidth": the bytes DeepEP counts (RDMA: one copy per
  node a token goes to, its own node included; NVLink: one copy per receiving GPU) over
  the kernel's time, 4096 tokens per GPU, top-min(nodes, 4) node groups
  (tests/legacy/test_internode.py);
- low-latency kernels: the latency of one call of 128 tokens per GPU.
"""

from __future__ import annotations

from dataclasses import replace
from importlib import resources

import pandas as pd

from hw_models import catalog, profile
from sim.network import AnalyticalNetwork, ClusterLayout
from sim.network.deepep import dispatch_time
from workloads.graph import CommGroup
from workloads.layers import LayerContext
from workloads.model import presets
from workloads.moe_dispatch import (
    FP8_BYTES,
    deepep_call,
    deepep_ranks_per_token,
    deepep_remote_nodes,
)
from workloads.moe_layers import make_context

SYSTEM = "hgx-h800"
BENCH_SMS = 24              # tests/legacy/test_internode.py runs its normal kernels on 24 SMs
REF = resources.files("calibration").joinpath("reference", "collectives")
NORMAL = (("deepep_normal_kernels.csv", "hgx-h800", "H800"),
          ("deepep_normal_kernels_h200.csv", "dgx-h200", "H200 (user)"))


def _ctx(ep: int, tokens: int, low_latency: bool,
         system_name: str = SYSTEM) -> tuple[LayerContext, AnalyticalNetwork]:
    system = catalog.system(system_name)
    per = system.gpus_per_node
    nodes = max(1, ep // per)
    base = presets()["deepseek-v3"]
    # DeepEP's benchmark routes over one group per node, top-min(nodes, 4) of them
    moe = base.moe.model_copy(update={"router_groups": nodes, "router_group_topk": min(nodes, 4)})
    model = base.model_copy(update={"moe": moe}).with_seq_len(tokens)
    mctx = replace(make_context(tuple(range(ep)), (0,), "deepep", 1.0, per, "fp8"),
                   low_latency=low_latency)
    ctx = LayerContext(model, 1, 1, False, "fp8", CommGroup((0,)), moe=mctx)
    net = AnalyticalNetwork(ClusterLayout(system, nodes, system.nic_gbps),
                            profile.load(system.default_profile))
    return ctx, net


def _seconds(ep: int, tokens: int, out: bool, low_latency: bool,
             system: str = SYSTEM) -> tuple[float, LayerContext]:
    ctx, net = _ctx(ep, tokens, low_latency, system)
    op = deepep_call(ctx, "combine" if out else "dispatch", out)
    if op.sms:
        op = replace(op, sms=BENCH_SMS)
    return dispatch_time(net.layout, net.profile, op), ctx


def counted_bytes(ctx: LayerContext, tokens: int, combine: bool, link: str) -> float:
    """The bytes DeepEP's benchmark divides by a normal kernel's time: over RDMA one copy
    per node a token goes to, its own node included; over NVLink one copy per receiving
    GPU; FP8 dispatch, BF16 combine."""
    e = 2.0 if combine else FP8_BYTES
    h = ctx.model.hidden
    if link == "rdma":
        nodes = ctx.moe.rail_group.size
        return tokens * deepep_remote_nodes(ctx) * nodes / (nodes - 1) * h * e
    return tokens * deepep_ranks_per_token(ctx) * h * e


def normal_rows() -> pd.DataFrame:
    out = []
    for name, system, gpu in NORMAL:
        out += _normal(pd.read_csv(REF.joinpath(name), comment="#"), system, gpu)
    return pd.DataFrame(out)


def _normal(df: pd.DataFrame, system: str, gpu: str) -> list[dict]:
    out, tokens = [], 4096
    for r in df.itertuples():
        combine = r.phase == "combine"
        t, ctx = _seconds(int(r.ep), tokens, combine, False, system)
        counted = counted_bytes(ctx, tokens, combine, r.link)
        pred = counted / t / 1e9
        out.append({"gpu": gpu, "kernels": f"normal {r.type}", "ep": int(r.ep), "phase": r.phase,
                    "metric": f"bottleneck GB/s ({r.link})", "published": float(r.bandwidth_gb_s),
                    "predicted": round(pred, 1),
                    "error_pct": round((pred / r.bandwidth_gb_s - 1) * 100, 1)})
    return out


def low_latency_rows() -> pd.DataFrame:
    df = pd.read_csv(REF.joinpath("deepep_low_latency_kernels.csv"), comment="#")
    out = []
    for r in df.itertuples():
        t, _ = _seconds(int(r.ep), 128, r.phase == "combine", True)
        pred = t * 1e6
        out.append({"gpu": "H800", "kernels": "low-latency", "ep": int(r.ep), "phase": r.phase,
                    "metric": "latency us", "published": float(r.latency_us),
                    "predicted": round(pred, 1),
                    "error_pct": round((pred / r.latency_us - 1) * 100, 1)})
    return pd.DataFrame(out)


def kernel_rows() -> pd.DataFrame:
    """Every row of both tables: published, predicted, error."""
    return pd.concat([normal_rows(), low_latency_rows()], ignore_index=True)


# HybridEP (DeepEP's hybrid-ep branch; Megatron-Core's flex dispatcher with the hybridep
# backend) runs as ``hybridep``: inside one NVLink domain at its published bandwidth
# (hw_models/data/hybridep.yaml, the same table), so ``predicted`` reproduces it;
# ``deepep``: what DeepEP's NVLink-only normal kernel would give for the same call.
HYBRIDEP_SYSTEMS = {"B200": "dgx-b200", "GB200": "gb200-nvl72"}
HYBRIDEP_EXPERTS_PER_RANK = 8


def hybridep_seconds(system_name: str, ranks: int, combine: bool, sms: int = 32,
                     dispatcher: str = "hybridep") -> tuple[float, float]:
    """(seconds, counted bytes) of one BF16 HybridEP call of the README's shape (4096
    tokens per rank, hidden 7168, top-8 of 8 experts per rank) on ``ranks`` GPUs of one
    NVLink domain, priced as the model prices ``dispatcher`` there."""
    system = catalog.system(system_name)
    base = presets()["deepseek-v3"]
    moe = base.moe.model_copy(update={"experts": HYBRIDEP_EXPERTS_PER_RANK * ranks,
                                      "router_groups": 1, "router_group_topk": 1})
    model = base.model_copy(update={"moe": moe}).with_seq_len(4096)
    nodes = -(-ranks // system.gpus_per_node)            # trays of one NVL72 domain
    net = AnalyticalNetwork(ClusterLayout(system, nodes, system.nic_gbps), profile.load(system.default_profile))
    mctx = make_context(tuple(range(ranks)), (0,), dispatcher, 1.0, net.layout.domain_gpus, "bf16",
                        hybridep_sms=sms)
    ctx = LayerContext(model, 1, 1, False, "bf16", CommGroup((0,)), moe=mctx)
    op = deepep_call(ctx, "combine" if combine else "dispatch", combine)
    counted = 4096 * deepep_ranks_per_token(ctx) * model.hidden * 2.0
    return dispatch_time(net.layout, net.profile, op), counted


def hybridep_rows() -> pd.DataFrame:
    """HybridEP's published intranode algorithm bandwidth (kernel only, and the Python call
    without permutation) against the model's ``deepep`` cost of the same call."""
    df = pd.read_csv(REF.joinpath("hybridep_intranode_kernels.csv"), comment="#")
    out = []
    for r in df.itertuples():
        sysname, ranks, combine = HYBRIDEP_SYSTEMS[r.gpu], int(r.ranks), r.phase == "combine"
        t, counted = hybridep_seconds(sysname, ranks, combine, int(r.sms))
        t_deepep, _ = hybridep_seconds(sysname, ranks, combine, dispatcher="deepep")
        pred = counted / t / 1e9
        out.append({"gpu": r.gpu, "ranks": ranks, "sms": int(r.sms), "phase": r.phase,
                    "kernel_gb_s": r.kernel_gb_s, "torch_api_gb_s": r.torch_api_gb_s,
                    "predicted": round(pred, 1), "deepep": round(counted / t_deepep / 1e9, 1),
                    "error_vs_kernel_pct": round((pred / r.kernel_gb_s - 1) * 100, 1),
                    "error_vs_torch_api_pct": round((pred / r.torch_api_gb_s - 1) * 100, 1)})
    return pd.DataFrame(out)

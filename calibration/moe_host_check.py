"""Host (CPU) time of an eager Megatron-Core MoE layer's forward, per NVTX range, against
the model (and the fit of its per-launch host cost).

calibration/reference/modern/moe_host_nvtx.csv holds the nsys NVTX range summary of
Qwen3-30B-A3B training on 8 B200 (yanring/Megatron-MoE-ModelZoo issue #7): the CPU wall
time of each of MoELayer's four methods per MoE layer forward (medians). The same
configuration is priced here (qwen3-30b-a3b, dgx-b200, 1 node, TP 1, EP 8, MBS 1, seq
4096, BF16, all-to-all dispatcher, no CUDA graphs, the ModelZoo config's fp32 router with
the unfused load-balancing loss and the fused permutation) and one MoE layer's forward
ops are grouped as the ranges hold them (megatron/core/transformer/moe/moe_layer.py):

- ``router_and_preprocess``: the router GEMM, its scoring and loss, the dispatcher's count
  bookkeeping and the permutation (workloads/host_launch.py ``MOE_ROUTER_OPS``);
- ``dispatch``: the host sync and the tokens' and probabilities' all-to-alls; its CPU time
  is the wait at the sync (the model: the GPU time of the stretch since the previous sync
  beyond its host time) plus the two calls;
- ``experts_compute``: the chunk sort, TEGroupedMLP's per-expert GEMMs and activation, the
  unsort (``MOE_EXPERT_OPS``);
- ``combine``: the combine's all-to-all and the unpermutation (its row is cut off in the
  issue's table as stored: not compared).

The router and experts ranges hold no sync, so their CPU time is the host's issue time:
it fits ``engines.yaml`` ``moe_layer_launch`` (their median over the kernels the run
launched in them: the model's count, plus the forced load balancing's clone and
``normal_`` of the router logits in the router range). The dispatch range's CPU time is
the two calls plus the wait at the sync: the model's GPU time per layer is well under its
host time, so the GPU is idle there and the wait is for the slowest EP peer's host to
reach the counts' all-gather. It fits ``moe_layer_launch`` ``ep_skew_cv`` (``fit_skew_cv``):
one rank's host time over the stretch between two syncs has a coefficient of variation c,
the group waits for the slowest of its 8 ranks, E[max] - mean = c e_8 x the stretch's host
time (e_8 = E[max of 8 standard normals]; sim/costs.py HostLaunch.skew). The whole layer
(MLP range) is a check, not fitted.

    python -m calibration.moe_host_check
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache

from calibration.reference_files import reference_csv
from hw_models import catalog
from hw_models.compute import expected_max_normal
from workloads.graph import Block
from workloads.host_launch import (
    MOE_EXPERT_OPS,
    MOE_ROUTER_OPS,
    is_sync,
    issue_seconds,
    launches,
)

CSV = "modern/moe_host_nvtx.csv"
# moe_router_force_load_balancing (the issue's random init): the router logits' clone and
# normal_ (megatron/core/transformer/moe/router.py apply_random_logits), not in the graph.
FORCED_BALANCE_KERNELS = 2
RANGES = {"router_and_preprocess": "MOE_ROUTER_AND_PRE", "dispatch": "MOE_DISPATCH",
          "experts_compute": "MOE_EXPERTS_COMP"}

BASE = {"cluster": {"system": "dgx-b200", "nodes": 1},
        "workload": {"kind": "training", "model": "qwen3-30b-a3b", "seq_len": 4096,
                     "global_batch": 64, "precision": "bf16",
                     "moe": {"dispatcher": "alltoall", "router_dtype": "fp32", "aux_loss": True,
                             "permute_fusion": True, "router_fusion": False}},
        "sim": {"check_memory": False}}
PLAN = {"tp": 1, "pp": 1, "vpp": 1, "micro_batch": 1, "recompute": "none", "zero": 1, "ep": 8,
        "etp": 1, "sequence_parallel": False, "global_batch": 64, "dp": 8}


def measured_ms() -> dict[str, float]:
    """Median CPU milliseconds per MoE layer forward of each NVTX range."""
    df = reference_csv(CSV)
    return {r: float(df.loc[df["range"] == r, "med_ns"].iloc[0]) * 1e-6 for r in df["range"]}


@cache
def _layer():
    """(estimator, ops between two host syncs of a steady layer, the MoE layer's forward ops)."""
    from sim.sweep import evaluate
    from workloads.training import make_stage
    ctx = evaluate.context(BASE, {})
    plan, est = evaluate._plan_of(ctx, PLAN), ctx.estimator
    stage = make_stage(est.model, plan, est.options, 0)
    ops = [o for b in stage.fwd for o in (b.ops if isinstance(b, Block) else (b,))]
    syncs = [i for i, o in enumerate(ops) if is_sync(o)]
    between = ops[syncs[0] + 1:syncs[1] + 1]       # experts .. next layer's router, its sync
    start = max(i for i in range(syncs[1]) if getattr(ops[i], "name", "") in ("router", "router_cast")
                and getattr(ops[i - 1], "name", "") not in ("router", "router_cast"))
    end = next(i for i in range(syncs[1], len(ops)) if getattr(ops[i], "name", "") == "unpermute")
    return est, tuple(between), tuple(ops[start:end + 1])


def range_of(op) -> str | None:
    name = getattr(op, "name", "")
    if name in MOE_ROUTER_OPS:
        return "router_and_preprocess"
    if is_sync(op) or name.startswith("ep_all_to_all_dispatch"):
        return "dispatch"
    if name in MOE_EXPERT_OPS:
        return "experts_compute"
    if name.startswith("ep_all_to_all_combine") or name == "unpermute":
        return "combine"
    return None


def range_launches() -> dict[str, int]:
    """Kernels the model issues in each range of one MoE layer's forward."""
    _, _, layer = _layer()
    out: dict[str, int] = {}
    for op in layer:
        r = range_of(op)
        if r:
            out[r] = out.get(r, 0) + launches(op)
    return out


def fit_us() -> dict[str, float]:
    """Host microseconds per launch of the router and experts ranges on the DGX B200's x86
    host (engines.yaml moe_layer_launch): each range's median over the kernels it launched."""
    ms, n = measured_ms(), range_launches()
    return {"router_preprocess_us": ms["MOE_ROUTER_AND_PRE"] * 1e3 / (n["router_and_preprocess"]
                                                                       + FORCED_BALANCE_KERNELS),
            "experts_us": ms["MOE_EXPERTS_COMP"] * 1e3 / n["experts_compute"]}


def _stretch(est, between, host) -> tuple[list[float], float]:
    """(host issue seconds per op, GPU seconds) of the ops between two syncs under ``host``."""
    issue = issue_seconds(between, host.scopes, host.per_op_s, host.te, host.moe)
    return issue, sum(0.0 if is_sync(o) else est.costs.op_time(o) for o in between)


def stretch_s() -> tuple[float, float, float]:
    """(host issue seconds, GPU seconds, the dispatch's calls' host seconds) of the model's
    stretch between two MoE layers' syncs (the experts, the combine, the next layer's
    attention, router and permutation) with the fitted per-launch costs."""
    est, between, _ = _layer()
    issue, gpu = _stretch(est, between, est.costs.host)
    calls = sum(s for o, s in zip(between, issue, strict=True) if range_of(o) == "dispatch")
    return sum(issue), gpu, calls


def fit_skew_cv() -> float:
    """The coefficient of variation of one rank's host time between two syncs (engines.yaml
    moe_layer_launch ep_skew_cv): the dispatch range's median less its calls' host time is
    the wait, c e_8 x the stretch's host time (the GPU idle: its time is below the host's)."""
    h, g, calls = stretch_s()
    assert g < h, "the fit assumes a host-bound stretch"
    wait = measured_ms()["MOE_DISPATCH"] * 1e-3 - calls
    return wait / (h * expected_max_normal(PLAN["ep"] * PLAN["etp"]))


def model_ms(with_moe_cost: bool = True, with_skew: bool = True) -> dict[str, dict[str, float]]:
    """Per range of one MoE layer's forward: the host's issue time, the GPU time, and the
    CPU time the range would show (issue time; dispatch: the sync's wait plus the calls)."""
    est, between, layer = _layer()
    host = est.costs.host if with_moe_cost else replace(est.costs.host, moe=None)
    if not with_skew and host.moe is not None:
        host = replace(host, moe=replace(host.moe, skew_cv=0.0))
    issue = issue_seconds(layer, host.scopes, host.per_op_s, host.te, host.moe)
    out = {r: {"host": 0.0, "gpu": 0.0} for r in ("router_and_preprocess", "dispatch",
                                                  "experts_compute", "combine")}
    for op, s in zip(layer, issue, strict=True):
        r = range_of(op)
        if r:
            out[r]["host"] += s * 1e3
            out[r]["gpu"] += (0.0 if is_sync(op) else est.costs.op_time(op)) * 1e3
    seg_issue, seg_gpu = _stretch(est, between, host)
    h = sum(seg_issue)
    wait = max(0.0, seg_gpu - h, h * host.skew(between[-1])) * 1e3
    for r in out:
        out[r]["cpu"] = out[r]["host"] + (wait if r == "dispatch" else 0.0)
    return out


def main() -> None:
    ms = measured_ms()
    before, fitted, after = model_ms(False), model_ms(True, False), model_ms(True)
    n = range_launches()
    fit = fit_us()
    per_op = catalog.training_launch_s(catalog.system("dgx-b200")) * 1e6
    print("Eager Megatron-Core MoE layer forward, Qwen3-30B-A3B on 8 B200 (EP 8, seq 4096, "
          "MBS 1): CPU ms per layer forward, NVTX medians (nsys) vs model")
    print(f"{'range':24s} {'launches':>8s} {'measured':>9s} {'per-op':>8s} {'fitted':>8s} "
          f"{'+EP wait':>8s} {'GPU':>7s}")
    for r, row in RANGES.items():
        print(f"{r:24s} {n.get(r, 0):8d} {ms[row]:9.3f} {before[r]['cpu']:8.3f} "
              f"{fitted[r]['cpu']:8.3f} {after[r]['cpu']:8.3f} {after[r]['gpu']:7.3f}")
    print(f"{'combine (not in table)':24s} {n.get('combine', 0):8d} {'-':>9s} "
          f"{before['combine']['cpu']:8.3f} {fitted['combine']['cpu']:8.3f} "
          f"{after['combine']['cpu']:8.3f} {after['combine']['gpu']:7.3f}")
    tot_b, tot_f, tot_a = (sum(m[r]["cpu"] for r in m) for m in (before, fitted, after))
    print(f"{'MLP (whole layer)':24s} {sum(n.values()):8d} {ms['MLP']:9.3f} {tot_b:8.3f} {tot_f:8.3f} "
          f"{tot_a:8.3f} {sum(after[r]['gpu'] for r in after):7.3f}")
    print(f"per launch (us): generic per-op {per_op:.2f}; fitted router_and_preprocess "
          f"{fit['router_preprocess_us']:.2f} (over {n['router_and_preprocess']} + "
          f"{FORCED_BALANCE_KERNELS} forced-balancing kernels), experts_compute {fit['experts_us']:.2f}")
    yaml = catalog.moe_layer_launch_us()
    print(f"engines.yaml moe_layer_launch: router_preprocess {yaml['router_preprocess_us']} us, "
          f"experts {yaml['experts_us']} us, ep_skew_cv {catalog.moe_ep_skew_cv()}")
    h, g, calls = stretch_s()
    e8 = expected_max_normal(PLAN["ep"] * PLAN["etp"])
    print(f"EP wait (dispatch range, fitted): stretch between syncs {h * 1e3:.3f} ms host, "
          f"{g * 1e3:.3f} ms GPU; wait {ms['MOE_DISPATCH'] - calls * 1e3:.3f} ms = c x e_8 "
          f"({e8:.4f}) x host: c = {fit_skew_cv():.4f}")
    print(f"nvte_cublas_gemm: {ms['nvte_cublas_gemm'] * 1e3:.1f} us median per GEMM call "
          "(TE's C++ GEMM call alone, under nsys)")


if __name__ == "__main__":
    main()

"""DeepEP's dispatch / combine ops of a MoE layer (workloads/moe_dispatch.py), bytes by
hand for DeepSeek-V3 (hidden 7168, 256 experts, top-8), and the serving choice of its
kernels and payload."""

from dataclasses import replace

import pytest

from sim.moe_config import MoEWorkload
from workloads.graph import CommGroup, ExpertDispatch
from workloads.inference.moe_ops import MoEIterationOps
from workloads.inference.ops import Shape
from workloads.layers import LayerContext
from workloads.model import presets
from workloads.moe_dispatch import FP8_BYTES, route
from workloads.moe_layers import make_context

H, K = 7168, 8


def _ctx(ep: int, dtype: str = "fp8", tokens: int = 4096, **moe) -> LayerContext:
    base = presets()["deepseek-v3"]
    model = base.model_copy(update={"moe": base.moe.model_copy(update=moe)}).with_seq_len(tokens)
    mctx = make_context(tuple(range(ep)), (0,), "deepep", 1.0, 8, dtype)
    return LayerContext(model, 1, 1, False, "fp8", CommGroup((0,)), moe=mctx)


def _missed(pool, held, k=K):
    p = 1.0
    for i in range(k):
        p *= (pool - held - i) / (pool - i)
    return p


def test_normal_dispatch_bytes_ep32_fp8():
    """EP32 on 4 nodes (8 groups != 4 nodes: experts anywhere), 64 experts per node, 8 per
    rank, 8 distinct experts per token. Nodes per token 4 (1 - C(192, 8) / C(256, 8)) =
    3.6142, 3/4 of them remote, as an all-to-all buffer x 4/3 over the 4-rank rail group;
    NVLink: one copy per distinct rank, 32 (1 - C(248, 8) / C(256, 8)) = 7.2668. FP8
    payload: 1 + 4/128 bytes per element."""
    (op,) = route(_ctx(32), "dispatch", out=False)
    n = 4096
    nodes = 4 * (1 - _missed(256, 64))
    ranks = 32 * (1 - _missed(256, 8))
    assert (nodes, ranks) == (pytest.approx(3.6142, abs=1e-4), pytest.approx(7.2668, abs=1e-4))
    assert isinstance(op, ExpertDispatch) and op.group.ranks == (0, 8, 16, 24)
    assert op.bytes == pytest.approx(FP8_BYTES * n * H * nodes)
    assert op.nvl_bytes == pytest.approx(FP8_BYTES * n * H * ranks)
    assert op.chunks == -(-int(n * nodes) // 80) and op.sms == 20 and not op.low_latency


def test_combine_stays_bf16_and_node_limited_routing_ep64():
    """EP64 on 8 nodes with DeepSeek-V3's 8 groups top-4: a token's 8 experts are drawn
    from the 128 of 4 nodes: 4 (1 - C(96, 8) / C(128, 8)) nodes, 7/8 of them remote; the
    32 ranks of those nodes hold them: 32 (1 - C(124, 8) / C(128, 8)) distinct ranks. The
    combine carries 2 bytes per element."""
    (op,) = route(_ctx(64), "combine", out=True)
    nodes = 4 * (1 - _missed(128, 32))
    ranks = 32 * (1 - _missed(128, 4))
    assert op.bytes == pytest.approx(2 * 4096 * H * nodes)
    assert op.nvl_bytes == pytest.approx(2 * 4096 * H * ranks)


def test_bf16_dispatch_and_intranode():
    (op,) = route(_ctx(8, "bf16"), "dispatch", out=False)
    assert op.bytes == 0.0 and op.group.ranks == tuple(range(8))
    assert op.nvl_bytes == pytest.approx(2 * 4096 * H * 8 * (1 - _missed(256, 32)))


def test_low_latency_kernels_send_every_copy():
    """128 tokens, top-8, EP64: 1024 copies of h FP8 bytes + scales + 16 bytes of source
    info (DeepEP test_low_latency.py counts 7168 + 224 + 16 = 7408); NVLink carries the
    copies to the 8 of 64 ranks in the node (its own included)."""
    ctx = _ctx(64, tokens=128)
    ll = replace(ctx, moe=replace(ctx.moe, low_latency=True))
    (d,) = route(ll, "dispatch", out=False)
    (c,) = route(ll, "combine", out=True)
    assert FP8_BYTES * H + 16 == 7408
    assert d.bytes == pytest.approx(128 * K * 7408) and d.low_latency and d.sms == 0
    assert d.nvl_bytes == pytest.approx(d.bytes * 8 / 64) and d.group.size == 64
    assert c.bytes == pytest.approx(128 * K * 2 * H)
    # the dispatch's send and receive phases hold every SM for 0.06 of its 0.17 ms (SGLang's
    # large-scale EP blog); the combine's are not published
    assert d.sm_frac == 0.35 and c.sm_frac == 0.0


def test_dispatch_dtype_defaults():
    assert MoEWorkload(dispatcher="deepep").wire_dtype(serving_fp8=True) == "fp8"
    assert MoEWorkload(dispatcher="deepep").wire_dtype() == "bf16"          # Megatron-Core
    assert MoEWorkload(dispatcher="alltoall").wire_dtype(serving_fp8=True) == "bf16"
    assert MoEWorkload(dispatcher="deepep", dispatch_dtype="bf16").wire_dtype(True) == "bf16"


@pytest.mark.parametrize("mode, prefill, want", [("auto", 0, True), ("auto", 4096, False),
                                                 ("normal", 0, False), ("low_latency", 4096, True)])
def test_serving_picks_the_kernels(mode, prefill, want):
    ops = MoEIterationOps(presets()["deepseek-v3"], 1, 1, "fp8", ep=32, dispatcher="deepep",
                          overlap=True, dispatch_dtype="fp8", deepep_mode=mode)
    s = Shape(prefill * 32, prefill * 32, prefill, 0 if prefill else 64 * 32, 64 * 32 * 100, 32)
    names = [o.name for o in ops.layer_ops_at(s, 5, 2048) if isinstance(o, ExpertDispatch)]
    assert names == (["deepep_ll_dispatch", "deepep_ll_combine"] if want
                     else ["deepep_dispatch", "deepep_combine"])


def _hybridep_ctx(ep: int, sms: int, domain: int = 8) -> LayerContext:
    base = presets()["deepseek-v3"]
    model = base.with_seq_len(4096)
    mctx = make_context(tuple(range(ep)), (0,), "hybridep", 1.0, domain, "bf16", hybridep_sms=sms)
    return LayerContext(model, 1, 1, False, "bf16", CommGroup((0,)), moe=mctx)


@pytest.mark.parametrize("ep, domain", [(8, 8), (32, 8), (32, 72)])
def test_hybridep_is_deepeps_call_on_its_own_sms(ep, domain):
    """``hybridep`` moves the same bytes as ``deepep``'s normal kernels; the op holds the
    recipe's SMs (moe_hybridep_num_sms) instead of DeepEP's 20 and says which direction it
    runs (the published table has a rate per direction)."""
    for out, name in ((False, "dispatch"), (True, "combine")):
        (hyb,) = route(_hybridep_ctx(ep, 32, domain), name, out=out)
        ctx = _hybridep_ctx(ep, 32, domain)
        (dep,) = route(replace(ctx, moe=replace(ctx.moe, dispatcher="deepep")), name, out=out)
        assert (hyb.bytes, hyb.nvl_bytes, hyb.chunks, hyb.group) == (dep.bytes, dep.nvl_bytes, dep.chunks, dep.group)
        assert hyb.hybridep and not dep.hybridep and hyb.combine == out
        assert (hyb.sms, dep.sms) == (32, 20) and hyb.name.startswith("hybridep_")


def test_moe_workload_takes_hybridep_with_megatron_cores_default_sms():
    moe = MoEWorkload(dispatcher="hybridep")
    assert moe.hybridep_sms == 16                   # core_v0.16.0 moe_hybridep_num_sms
    assert MoEWorkload(dispatcher="hybridep", hybridep_sms=32).hybridep_sms == 32

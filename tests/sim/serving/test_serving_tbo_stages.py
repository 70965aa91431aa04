"""Two-batch overlap as DeepSeek's published stage schedule, and MLA decode attention priced
as FlashMLA: hand calculations from the kernels' own times and FlashMLA's published rates."""

from __future__ import annotations

import pytest

from hw_models import catalog, profile
from hw_models.compute import ComputeModel
from sim.network import AnalyticalNetwork, ClusterLayout
from sim.serving.moe_iteration import MoEIterationModel
from workloads.inference.moe_ops import latent_decode_op, split
from workloads.inference.ops import Shape, bucketed
from workloads.model import resolve


def _model(ep=32, overlap=True):
    s = catalog.system("dgx-h100")
    prof = profile.load(s.default_profile)
    net = AnalyticalNetwork(ClusterLayout(s, ep // 8, s.nic_gbps), prof)
    return MoEIterationModel(resolve("deepseek-v3"), 1, 1, "fp8", ComputeModel(s.gpu_spec, prof), net,
                             ep=ep, dispatcher="deepep", overlap=overlap, dispatch_dtype="fp8")


def _times(it, ops, names):
    return sum(it._costs.op_time(o) for o in ops if o.name in names)


def test_decode_stages_pair_each_transfer_with_its_own_compute():
    """Decode, one MoE layer: 2 x [max(SHARED + ATTN-0 + 0.35 DISPATCH, DISPATCH) + MLP +
    max(ATTN-1, COMBINE)] from the kernels' own times: the low-latency dispatch's send and
    receive phases hold every SM for 0.35 of its time (catalog deepep_ll_dispatch_sm_frac),
    the rest of it and the combine hold none."""
    it = _model(72)
    s = split(split(Shape(0, 0, 0, 256 * 72, 256 * 72 * 2000, 256 * 72), 2), 72)
    ops = it.token_ops(128, True, 128 * 72, decode_only=True) + it.attention_ops_of(s, False)
    t = lambda *n: _times(it, ops, n)  # noqa: E731
    shared = t("shared_up", "shared_act", "shared_down", "residual_add") - t("residual_add") / 2
    a0 = t("input_norm", "mla_qkv_down", "mla_q_up", "rope", "mla_absorb_uk", "latent_write")
    a1 = t("decode_attn", "mla_absorb_uv", "attn_proj", "post_attn_norm", "router", "router_topk") + t("residual_add") / 2
    mlp = t("expert_up", "expert_activation", "expert_down")
    d, c = t("deepep_ll_dispatch"), t("deepep_ll_combine")
    hand = 2 * (max(shared + a0 + 0.35 * d, d) + mlp + max(a1, c))
    stages = it.tbo_stages(s, True, False, 128 * 72)
    assert sum(it._stage_time(st) for st in stages) == pytest.approx(hand, rel=1e-9)
    assert hand > 2 * (shared + a0 + mlp + a1)      # this layer leaves some transfer exposed


def test_tbo_iteration_equals_engine_and_is_no_faster_than_global_overlap():
    """The cached cost equals the engine on the stage blocks, for prefill and decode; pairing
    each transfer with one stage's compute can only expose more than hiding it under the
    whole iteration."""
    two = _model(32)
    for shape in (bucketed(Shape(16384 * 32, 4 * 32 * 4096 * 4097 // 2, 4096, 0, 0, 4 * 32)),
                  bucketed(Shape(0, 0, 0, 256 * 32, 256 * 32 * 2000, 256 * 32))):
        t = two.time(shape)
        assert t == pytest.approx(two.run_graph(shape), rel=1e-6)
        s = split(split(shape, 2), 32)
        T = s.prefill_tokens + s.decode_seqs
        ops = [o for k, n in two.kinds().items() for _ in range(n)
               for o in two.token_ops(T, k[0], T * 32, decode_only=not s.prefill_tokens)
               + two.attention_ops_of(s, k[1])]
        compute = sum(two._costs.op_time(o) for o in ops
                      if getattr(getattr(o, "group", None), "dim", None) != "ep")
        assert t >= 2 * compute


def test_flashmla_decode_is_compute_bound_at_128_heads():
    """64 sequences x 2 query tokens x 4096 cached latents, 128 heads: 2 x 128 x (576 + 512)
    FLOPs per cached token per query = 146 GFLOP at 660 TFLOPS (FlashMLA's published rate,
    0.667 of the H800's 989.4) = 221 us, longer than reading the 302 MB BF16 cache at
    3000 GB/s (101 us)."""
    s = catalog.system("hgx-h800")
    cm = ComputeModel(s.gpu_spec, profile.load(s.default_profile))
    op = latent_decode_op(128, 512, 64, 64 * 4096, 64, 2, "bf16", q_per_seq=2)
    assert op.flops == pytest.approx(2 * 128 * 1088 * 64 * 4096 * 2)
    t = cm.time(op.op_class, op.flops, op.bytes, op.dtype)
    assert t == pytest.approx(op.flops / (989.4e12 * 0.667), rel=0.02)
    assert t > 576 * 2 * 64 * 4096 / 3000e9

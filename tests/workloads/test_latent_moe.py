"""LatentMoE (``moe.latent_size``) and MTP in a hybrid model (``mtp_pattern``,
``mtp_repeated``): Nemotron 3 Super's parameters against its published checkpoint counts,
its FLOPs against Megatron-Bridge's published ratio, and the kernels, bytes and memory of a
latent MoE layer by hand (Megatron-Core moe_layer.py: fc1_latent_proj before the
dispatcher, fc2_latent_proj after the combine; the router and shared expert in hidden)."""

import pytest

from hw_models.errors import ClusterSimError
from workloads import mamba
from workloads import moe as spec
from workloads.graph import CommGroup, Compute
from workloads.layers import LayerContext
from workloads.model import presets, resolve
from workloads.moe_layers import make_context, moe_backward, moe_forward, mtp_forward

H, LAT, F, E, K, FS, V = 4096, 1024, 2688, 512, 22, 5376, 131072
EXPERT = 2 * LAT * F                    # relu2: up and down, no gate
MOE_LAYER = H * E + E + 2 * H * LAT + E * EXPERT + 2 * H * FS + H   # + its pre-norm
ATTN_LAYER = H * (32 + 2 * 2) * 128 + 32 * 128 * H + H
MAMBA_LAYER = H * 18560 + 10240 * 4 + 10240 + 3 * 128 + 8192 + 8192 * H + H


def sup(**kw):
    m = presets()["nemotron-3-super"]
    return m.model_copy(update=kw) if kw else m


def no_latent():
    d = sup().model_dump(exclude_none=True)
    d["moe"] = {k: v for k, v in d["moe"].items() if k != "latent_size"}
    return resolve(d)


# ----------------------------------------------------------------------------- parameters

def test_layer_params_by_hand():
    m = sup()
    assert spec.expert_mlp_params(m) == EXPERT
    assert spec.latent_proj_params(m) == 2 * H * LAT
    assert spec.layer_params(m, 1) == MOE_LAYER
    assert spec.layer_params(m, 7) == ATTN_LAYER
    assert spec.layer_params(m, 0) == MAMBA_LAYER
    assert spec.expert_params(m, 1) == E * EXPERT


def test_counts_match_the_published_checkpoint():
    """HF safetensors headers: 123,611,012,096 BF16 weights, of which 2,942,324,736 are
    MTP; 107,898,470,400 inactive backbone expert weights; the F32 tensors are the 41
    e_score_correction_bias vectors of 512 (40 MoE layers and the MTP's one)."""
    m = sup()
    bias = 41 * E
    assert m.params + spec.mtp_params(m) - bias == 123_611_012_096
    assert spec.mtp_params(m) - E == 2_942_324_736
    assert m.params - spec.active_params(m) == 107_898_470_400
    assert m.params == 2 * V * H + H + 40 * MAMBA_LAYER + 8 * ATTN_LAYER + 40 * MOE_LAYER
    assert spec.active_params(m) / 1e9 == pytest.approx(12.77, abs=0.005)   # "A12B"


def test_repeated_mtp_holds_one_module_and_computes_every_pass():
    """mtp_use_repeated_layer: two passes through ONE "*E" module: its weights once (enorm,
    hnorm, eh_proj, final norm, the attention and MoE sub-layers), its FLOPs twice."""
    one = 3 * H + 2 * H * H + ATTN_LAYER + MOE_LAYER
    assert spec.mtp_params(sup(mtp_layers=2)) == spec.mtp_params(sup(mtp_layers=1)) == one
    assert spec.mtp_params(sup(mtp_layers=2, mtp_repeated=False)) == 2 * one
    assert spec.mtp_expert_params(sup(mtp_layers=2)) == E * EXPERT
    assert spec.mtp_layer_ids(sup()) == [88, 89]
    assert [mamba.kind(sup(), i) for i in (88, 89)] == ["*", "E"]
    # one more pass: 6 x (eh_proj, attention projections and core, the MoE GEMMs, the head)
    attn = H * 4608 + 4096 * H + 8192 * 32 * 256
    moe = H * E + K * 2 * LAT * F + 2 * H * LAT + 2 * H * FS
    extra = 6 * (2 * H * H + attn + moe + H * V)
    assert spec.flops_per_token(sup(mtp_layers=2)) - spec.flops_per_token(sup()) == pytest.approx(extra)


def test_latent_moe_flops_by_hand():
    """One latent MoE layer's GEMM weights per token: router h E, the two latent
    projections 2 h l, k routed experts of 2 l f, the shared expert 2 h f_s."""
    assert spec.matmul_params(sup(), 1) == H * E + 2 * H * LAT + K * 2 * LAT * F + 2 * H * FS
    assert spec.matmul_params(no_latent(), 1) == H * E + K * 2 * H * F + 2 * H * FS


def test_spec_errors_are_clear():
    d = sup().model_dump(exclude_none=True)
    for bad, match in [({"mtp_pattern": None}, "need the MTP module's mtp_pattern"),
                       ({"mtp_pattern": "*Q"}, "mtp_pattern holds")]:
        with pytest.raises(ClusterSimError, match=match):
            resolve({k: v for k, v in (d | bad).items() if v is not None})
    dense = {"layers": 2, "hidden": 64, "heads": 4, "vocab": 100, "seq_len": 16, "mtp_layers": 1,
             "mtp_pattern": "*E"}
    with pytest.raises(ClusterSimError, match="give hybrid_pattern"):
        resolve(dense)


# ----------------------------------------------------------------------------- Megatron-Bridge FLOPs

# (tokens/s/GPU, model TFLOP/s/GPU) of the Nemotron_3_Super MXFP8 rows of Megatron-Bridge's
# docs/performance-summary*.md (26.08 GB300 / GB200, 26.06.01 GB300, 26.06 GB300 / B300,
# 26.04.01 B200); its recipes run mtp_num_layers 2 (calibration/hybrid_recipes.py).
MB_ROWS = [(9856, 831), (7040, 600), (9728, 827), (9652, 817), (7867, 667), (6400, 542)]


@pytest.mark.parametrize("tokens, tflops", MB_ROWS)
def test_megatron_bridge_flops_reproduce_its_published_ratio(tokens, tflops):
    """84.73 GFLOP per token; the published pairs scatter by +-0.8% about it."""
    published = tflops * 1e12 / tokens
    assert mamba.megatron_bridge_flops_per_token(sup(mtp_layers=2)) == pytest.approx(published, rel=0.01)


def test_megatron_bridge_flops_by_hand():
    """hybrid_flops over the unified pattern main + "/*E/*E" (v0.6.0 hybrid_provider.py):
    8 + 2 attention, 40 Mamba, 40 + 2 MoE layers; latent MoE 4 l f k + 4 h l + 4 h f_s."""
    s = 8192
    attn = 4 * H * 4096 * (1 + 2 / 32) + 2 * 4096 * s
    mam = 2 * H * (2 * 2 * H + 2 * 8 * 128 + 128) + 7 * 2 * H * 128 + 2 * 2 * H * H
    moe = 4 * LAT * F * K + 4 * H * LAT + 4 * H * FS
    expected = 3 * (10 * attn + 40 * mam + 42 * moe + 2 * H * V * 3)
    assert mamba.megatron_bridge_flops_per_token(sup(mtp_layers=2)) == pytest.approx(expected)
    assert expected / 1e9 == pytest.approx(84.727, abs=0.001)


# ----------------------------------------------------------------------------- kernels

def _ctx(model, tp=1, dispatcher="alltoall"):
    return LayerContext(model, 1, tp, tp > 1, "bf16", CommGroup(tuple(range(tp)), "tp"),
                        moe=make_context(tuple(range(0, 64 * tp, tp)), (0,), dispatcher, 1.0, 64))


def _by_name(ops):
    out = {}
    for o in ops:
        out.setdefault(getattr(o, "name", ""), []).append(o)
    return out


def test_latent_projections_sit_around_the_dispatch():
    """Forward: router (hidden), fc1_latent_proj (n, l, h), permute, dispatch, experts,
    combine, unpermute, fc2_latent_proj (n, h, l), shared expert (hidden). With tp 2 the
    n = 4096 sequence-parallel tokens of the rank, whole (duplicated) weights."""
    ops = moe_forward(_ctx(sup(), tp=2))
    names = [getattr(o, "name", "") for o in ops]
    order = [names.index(n) for n in ("router", "fc1_latent_proj", "permute", "ep_all_to_all_dispatch",
                                      "expert_fc1", "ep_all_to_all_combine", "unpermute",
                                      "fc2_latent_proj", "shared_fc1")]
    assert order == sorted(order)
    got = _by_name(ops)
    assert got["fc1_latent_proj"][0].shape == (4096, LAT, H)
    assert got["fc2_latent_proj"][0].shape == (4096, H, LAT)
    assert got["router"][0].shape == (4096, E, H)
    assert got["expert_fc1"][0].shape[1:] == (F, LAT) and got["expert_fc2"][0].shape[1:] == (LAT, F)
    assert got["shared_fc1"][0].shape == (4096, FS, H)


def test_dispatch_and_permute_move_latent_tokens():
    """All-to-all: e n k l per rank; the fused permute reads n l once and writes n k l."""
    n, e = 8192, 2
    got = _by_name(moe_forward(_ctx(sup())))
    assert got["ep_all_to_all_dispatch"][0].bytes == e * n * K * LAT
    assert got["permute"][0].bytes == e * n * LAT * (1 + K)
    flat = _by_name(moe_forward(_ctx(no_latent())))
    assert flat["ep_all_to_all_dispatch"][0].bytes == e * n * K * H
    hyb = _by_name(moe_forward(_ctx(sup(), dispatcher="hybridep")))
    hyb_flat = _by_name(moe_forward(_ctx(no_latent(), dispatcher="hybridep")))
    assert hyb["hybridep_nvlink_dispatch"][0].nvl_bytes == pytest.approx(
        hyb_flat["hybridep_nvlink_dispatch"][0].nvl_bytes * LAT / H)


def test_backward_runs_both_latent_projections():
    got = _by_name(moe_backward(_ctx(sup())))
    for name in ("fc1_latent_proj", "fc2_latent_proj"):
        assert len(got[f"{name}_dgrad"]) == len(got[f"{name}_wgrad"]) == 1
    flops = sum(o.flops for o in moe_backward(_ctx(sup())) if "latent" in getattr(o, "name", ""))
    assert flops == 4 * 2 * 8192 * H * LAT      # dgrad and wgrad of both


def test_an_mtp_pass_runs_its_pattern():
    """One pass: norms, eh_proj, then an attention and a latent MoE sub-layer."""
    names = [getattr(o, "name", "") for o in mtp_forward(_ctx(sup()))]
    assert names.count("mtp_eh_proj") == 1
    assert names.count("fc1_latent_proj") == 1 and names.count("attn_proj") == 1
    assert "mamba_in_proj" not in names


def test_memory_latent_buffers_and_tp_duplicated_weights():
    from workloads.moe_memory import dispatch_buffers
    from workloads.moe_training import layer_dense
    from workloads.parallel import ParallelPlan
    plan = ParallelPlan(tp=2, pp=1, dp=32, ep=64, micro_batch=1, global_batch=512)
    received = 8192 / 2 * K
    assert dispatch_buffers(sup(), plan, 1.0) == 2 * 2 * 2 * received * LAT
    # the layer's replicated part: router + bias, shared expert, norm over tp; latent whole
    assert layer_dense(sup(), plan, 1) == (H * E + E + 2 * H * FS + H) / 2 + 2 * H * LAT


# ----------------------------------------------------------------------------- serving

def test_serving_experts_run_latent_with_replicated_projections():
    """vLLM NemotronHMoE: ReplicatedLinear fc1/fc2_latent_proj (whole weights on each TP
    rank, all T tokens); FusedMoE in the latent width with f split over tp."""
    from workloads.inference.hybrid_ops import HybridIterationOps
    ops = HybridIterationOps(sup(), 8, 1, "bf16")
    got = _by_name(ops._experts(64, 64))
    assert got["fc1_latent_proj"][0].shape == (64, LAT, H)
    assert got["fc2_latent_proj"][0].shape == (64, H, LAT)
    assert got["expert_up"][0].shape[1:] == (F // 8, LAT)
    dup = 40 * 2 * H * LAT
    assert ops.weight_bytes_per_gpu() == pytest.approx(2 * ((sup().params - dup) / 8 + dup))


def test_latent_projections_are_gemms():
    """The latent projections are GEMMs at the layer's dtype (FP8 under an FP8 recipe)."""
    ops = [o for o in moe_forward(_ctx(sup())) if "latent" in getattr(o, "name", "")]
    assert all(isinstance(o, Compute) and o.op_class == "gemm" for o in ops)


def test_training_head_runs_every_mtp_pass_and_holds_one_module():
    """Two passes (the Super recipes' mtp_num_layers 2): each runs eh_proj, the "*E"
    sub-layers and the output head; the last stage holds the shared module's experts once."""
    from workloads.moe_training import head_bwd, head_fwd, unit_split
    from workloads.parallel import ParallelPlan
    m = sup(mtp_layers=2)
    fwd = [getattr(o, "name", "") for o in head_fwd(_ctx(m))]
    bwd = [getattr(o, "name", "") for o in head_bwd(_ctx(m))]
    assert fwd.count("mtp_eh_proj") == fwd.count("fc1_latent_proj") == 2
    assert bwd.count("mtp_eh_proj_wgrad") == bwd.count("fc2_latent_proj_dgrad") == 2
    plan = ParallelPlan(tp=1, pp=1, dp=64, ep=64, micro_batch=1, global_batch=512)
    last = unit_split(m, plan, 0, 0)[-1]
    assert last[1] == pytest.approx(2 * E * EXPERT / 64)     # layer 87's and the MTP's experts


def test_hf_tensor_count_has_the_latent_projections():
    """Per MoE layer: norm, gate and its correction bias, fc1/fc2_latent_proj, 512 x (up,
    down), the shared expert's up and down (1031); Mamba 9, attention 5; embedding, final
    norm, output layer. (The NVFP4 release quantizes 40 x 512 x 2 + 1 = 40,961 of them.)"""
    from sim.rl_sync import hf_tensor_count
    assert hf_tensor_count(sup()) == 40 * 9 + 8 * 5 + 40 * 1031 + 3


def test_mxfp8_runs_the_latent_projections_as_fp8_linears():
    """TELinear inside fp8_autocast: both projections at the MXFP8 rate, each with its
    input cast (the router GEMM stays 16-bit)."""
    from dataclasses import replace

    from workloads import fp8
    ops = fp8.rewrite(moe_forward(replace(_ctx(sup()), dtype="fp8")), "mxfp8")
    got = _by_name(ops)
    assert got["fc1_latent_proj"][0].dtype == got["fc2_latent_proj"][0].dtype == "mxfp8"
    assert got["router"][0].dtype == "bf16"
    assert any(n.startswith("fc1_latent_proj_mxfp8_cast") for n in got)
    assert any(n.startswith("fc2_latent_proj_mxfp8_cast") for n in got)

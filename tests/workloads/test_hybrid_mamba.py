"""Hybrid Mamba-2 / attention / MoE models (Nemotron-H, Nemotron 3 Nano): the layer
pattern, parameters against the published counts, model FLOPs against Megatron-Bridge's
published ratio of "Model TFLOP/sec/GPU" to "Tokens/sec/GPU", the Mamba mixer's kernels
by hand, TP and CP rules, activation memory, and a whole training step."""

from __future__ import annotations

import pytest

from hw_models.errors import ClusterSimError, InfeasiblePlanError
from workloads import mamba, moe
from workloads.graph import CommGroup, Compute
from workloads.layer_mamba import mamba_backward, mamba_forward
from workloads.layers import LayerContext
from workloads.model import model_flops, presets, resolve

NANO = "MEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEMEM*EMEMEMEME"


def nano():
    return presets()["nemotron-3-nano"]


def ctx(tp: int = 1, micro_batch: int = 1, sp: bool = False) -> LayerContext:
    return LayerContext(nano(), micro_batch, tp, sp, "bf16", CommGroup(tuple(range(tp)), "tp"))


def flops(ops, prefix: str = "") -> float:
    return sum(o.flops for o in ops if isinstance(o, Compute) and o.name.startswith(prefix))


# ----------------------------------------------------------------------------- pattern

def test_nano_pattern_is_23_mamba_23_moe_6_attention():
    m = nano()
    assert m.hybrid_pattern == NANO and m.layers == 52
    assert mamba.counts(m) == {"M": 23, "E": 23, "*": 6, "-": 0}
    assert not m.uniform
    assert [moe.is_moe_layer(m, i) for i in range(4)] == [False, True, False, True]


@pytest.mark.parametrize("update, match", [
    ({"hybrid_pattern": NANO[:-1]}, "hybrid_pattern has 51 layers"),
    ({"hybrid_pattern": NANO[:-1] + "X"}, "hybrid_pattern holds"),
    ({"mamba": None}, "give the mamba block"),
    ({"moe": None}, "give the moe block"),
    ({"hybrid_pattern": None}, "mamba needs a hybrid_pattern"),
    ({"mtp_layers": 1}, "need the MTP module's mtp_pattern"),
    ({"mtp_layers": 1, "mtp_pattern": "*X"}, "mtp_pattern holds"),
    ({"sliding_window": {"size": 128}}, "does not yet combine"),
    ({"hybrid_pattern": NANO.replace("M", "-")}, "has no Mamba layers"),
])
def test_pattern_errors_are_clear(update, match):
    spec = nano().model_dump(exclude_none=True) | update
    spec = {k: v for k, v in spec.items() if v is not None}
    with pytest.raises(ClusterSimError, match=match):
        resolve(spec)


def test_moe_layer_pattern_conflicts_with_hybrid_pattern():
    spec = nano().model_dump(exclude_none=True)
    spec["moe"] = spec["moe"] | {"dense_layers": 1}
    with pytest.raises(ClusterSimError, match="drop moe.layer_pattern"):
        resolve(spec)


# ----------------------------------------------------------------------------- parameters

def test_mamba_mixer_params_by_hand():
    """Nano: d_inner 64 x 64 = 4096; in_proj 2688 x (2 x 4096 + 2 x 8 x 128 + 64); conv
    over 4096 + 2048 channels, width 4, with bias; dt_bias, A_log, D per head; the norm
    weight over d_inner; out_proj 4096 x 2688."""
    m = nano()
    in_proj = 2688 * 10304
    conv = 6144 * 4 + 6144
    expected = in_proj + conv + 3 * 64 + 4096 + 4096 * 2688
    assert mamba.mixer_params(m) == expected == 38_742_208
    assert moe.layer_params(m, 0) == expected + 2688          # plus the fused pre-norm
    assert moe.layer_params(m, 5) == moe.attention_params(m) + 2688     # an attention layer
    assert moe.attention_params(m) == 2688 * (32 + 4) * 128 + 32 * 128 * 2688


def test_nano_params_match_the_model_card():
    """nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B: 31.6B total; 3.2B active excluding the
    embeddings, 3.6B including them."""
    m = nano()
    assert m.params / 1e9 == pytest.approx(31.6, abs=0.05)
    assert moe.active_params(m, embedding=False) / 1e9 == pytest.approx(3.2, abs=0.05)
    assert moe.active_params(m) / 1e9 == pytest.approx(3.6, abs=0.05)
    assert not m.learned_positions                  # position_embedding_type "none"


@pytest.mark.parametrize("name, billions", [("nemotronh-8b", 8), ("nemotronh-47b", 47),
                                            ("nemotronh-56b", 56)])
def test_nemotronh_sizes_match_their_names(name, billions):
    assert presets()[name].params / 1e9 == pytest.approx(billions, rel=0.03)


# ----------------------------------------------------------------------------- FLOPs

# (tokens/s/GPU, model TFLOP/s/GPU) of Nemotron_3_Nano pre-training rows at seq 8192 in
# Megatron-Bridge docs/performance-summary-archive.md (HEAD 067f987): H100 16 GPUs FP8,
# GB300 MXFP8, GB200 MXFP8, B300 MXFP8.
MB_ROWS = [(14719, 328), (39749, 885), (33522, 747), (37316, 831), (14507, 323), (38102, 849)]


@pytest.mark.parametrize("tokens, tflops", MB_ROWS)
def test_megatron_bridge_flops_reproduce_its_published_ratio(tokens, tflops):
    """22.278 GFLOP per token; the published figures are rounded to 3-4 digits."""
    published = tflops * 1e12 / tokens
    assert mamba.megatron_bridge_flops_per_token(nano()) == pytest.approx(published, rel=0.005)


def test_lightning_is_nano_with_a_repeated_mtp_block():
    """Nemotron 3.5 Lightning: Megatron-Bridge builds it from the Nano model plus one MTP
    block of pattern *E run twice (nemotron_3_5_lightning_pretrain_config). Its only published
    row (26.08, 8 GB200 MXFP8: 807 TFLOP/s at 28,672 tokens/s/GPU) gives 28.146 GFLOP/token,
    which the Nano shapes reproduce only with the two MTP passes."""
    light = presets()["nemotron-3.5-lightning"]
    assert light.params == nano().params
    two_passes = light.model_copy(update={"mtp_layers": 2})
    published = 807e12 / 28672
    assert mamba.megatron_bridge_flops_per_token(two_passes) == pytest.approx(published, rel=0.005)
    assert mamba.megatron_bridge_flops_per_token(light) < 0.92 * published


def test_megatron_bridge_flops_by_hand():
    h, s, V = 2688, 8192, 131072
    attn = 4 * h * 4096 * (1 + 2 / 32) + 2 * 4096 * s
    mam = 2 * h * (2 * 2 * h + 2 * 8 * 128 + 64) + 7 * 2 * h * 128 + 2 * 2 * h * h
    mlp = 4 * h * 1856 * 6 + 4 * h * 3712
    expected = 3 * (6 * attn + 23 * mam + 23 * mlp + 2 * h * V)
    assert mamba.megatron_bridge_flops_per_token(nano()) == pytest.approx(expected)
    assert expected / 1e9 == pytest.approx(22.278, abs=0.001)


def test_model_flops_palm_convention_by_hand():
    """6 x (GEMM weights one token multiplies + non-causal attention products) + 3 x the
    scan's forward matmuls per token, with Nano's real d_inner (4096)."""
    m = nano()
    h, s = 2688, 8192
    mixer = h * 10304 + 4096 * h
    attn = h * (32 + 4) * 128 + 32 * 128 * h
    experts = h * 128 + 2 * h * (6 * 1856 + 3712)
    core = s * 32 * 256
    Q, N, G, P, H = 128, 128, 8, 64, 64
    scan = 2 * Q * N * G + 4 * N * P * H + Q * P * H
    expected = 6 * (23 * mixer + 23 * experts + 6 * (attn + core) + h * 131072) + 3 * 23 * scan
    assert moe.flops_per_token(m) == pytest.approx(expected)
    assert model_flops(m, 10) == pytest.approx(10 * expected)


# ----------------------------------------------------------------------------- kernels

def test_mamba_layer_forward_flops_by_hand():
    """One microbatch of 8192 tokens: in_proj and out_proj GEMMs, and the SSD scan's
    C B^T (2 L Q N G), chunk states and inter-chunk outputs (2 x 2 L N P H) and the
    causal intra-chunk product (L Q P H)."""
    L, Q, N, G, P, H = 8192, 128, 128, 8, 64, 64
    ops = mamba_forward(ctx())
    assert flops(ops, "mamba_in_proj") == 2 * L * 10304 * 2688
    assert flops(ops, "mamba_out_proj") == 2 * L * 2688 * 4096
    assert flops(ops, "ssd_") == 2 * L * Q * N * G + 4 * L * N * P * H + L * Q * P * H
    bwd = mamba_backward(ctx())
    assert flops(bwd, "ssd_") == 6 * L * Q * N * G + 10 * L * N * P * H + 3 * L * Q * P * H
    assert flops(bwd, "mamba_in_proj") == 2 * flops(ops, "mamba_in_proj")


def test_transposes_are_copies_only_beyond_one_sequence():
    names = {o.name for o in mamba_forward(ctx(micro_batch=1))}
    assert "mamba_in_transpose" not in names
    names = {o.name for o in mamba_forward(ctx(micro_batch=2))}
    assert {"mamba_in_transpose", "mamba_out_transpose"} <= names


def test_tp_splits_heads_and_groups():
    """TP 2: in_proj columns 2 x 2048 + 2 x 4 x 128 + 32 = 5152, out_proj rows 2048, the
    scan on half the heads and groups; the layer gathers its input and reduce-scatters
    its output with sequence parallelism."""
    from workloads.moe_layers import layer_forward_at
    one = {o.name: o for o in mamba_forward(ctx()) if isinstance(o, Compute)}
    two = {o.name: o for o in mamba_forward(ctx(tp=2)) if isinstance(o, Compute)}
    assert two["mamba_in_proj"].shape == (8192, 5152, 2688)
    assert two["mamba_out_proj"].shape == (8192, 2688, 2048)
    assert two["ssd_chunk_scan"].flops == pytest.approx(one["ssd_chunk_scan"].flops / 2)
    kinds = [getattr(o, "kind", None) for o in layer_forward_at(ctx(tp=2, sp=True), 0)]
    assert kinds.count("all_gather") == 1 and kinds.count("reduce_scatter") == 1


def _plan(**kw):
    from workloads.parallel import ParallelPlan
    return ParallelPlan(**({"tp": 1, "pp": 1, "dp": 8, "ep": 8, "global_batch": 64, "micro_batch": 1}
                           | kw))


def test_plan_rules_for_mamba_layers():
    from workloads.parallel import validate
    m = nano()
    validate(_plan(), m, 8)
    with pytest.raises(InfeasiblePlanError, match="Mamba heads"):
        validate(_plan(tp=16, dp=1, ep=1, global_batch=16), m.model_copy(update={"heads": 32}), 16)
    with pytest.raises(InfeasiblePlanError, match="MambaContextParallel"):
        validate(_plan(cp=2, dp=4, ep=8), m, 8)


def test_mamba_activation_memory_by_hand():
    """One Mamba sub-layer, tp 1, micro-batch 1: the norm input and in_proj input (2 sbh
    each), the in_proj output (2 s x 10304), its output, the norm input and output
    (3 x 2 s x 4096)."""
    from workloads.moe_memory import layer_activation_bytes
    s, h = 8192, 2688
    expected = 2 * s * h + 2 * s * h + 2 * s * (10304 + 3 * 4096)
    assert layer_activation_bytes(nano(), 0, _plan(), 1.0) == expected


def test_dense_serving_ops_refuse_a_hybrid_model():
    """The dense and MoE iteration ops do not price Mamba layers; a hybrid model is served
    through workloads/inference/hybrid_ops.py (tests/sim/serving/test_serving_hybrid.py)."""
    from workloads.inference.moe_ops import MoEIterationOps
    from workloads.inference.ops import IterationOps
    for ops in (IterationOps, MoEIterationOps):
        with pytest.raises(InfeasiblePlanError, match="hybrid Mamba"):
            ops(nano(), 1, 1, "bf16")


# ----------------------------------------------------------------------------- a step

@pytest.mark.parametrize("system, nodes, gbs, mbs, recipe, published", [
    ("gb300-nvl72", 2, 512, 4, "mxfp8", 39936),   # 26.08, 8 GB300
    ("dgx-h100", 2, 1024, 1, "tensorwise", 14719),    # 26.02.01, 16 H100
])
def test_nano_step_runs_and_is_plausible(system, nodes, gbs, mbs, recipe, published):
    """Megatron-Bridge's plans (TP 1, EP 8, seq 8192) run and land within a factor of two
    of the published tokens/s/GPU (a plausibility bound; nothing is fitted to them)."""
    from sim.scenario import parse
    from sim.simulate import simulate
    sc = {"name": "nano", "cluster": {"system": system, "nodes": nodes},
          "workload": {"kind": "training", "model": "nemotron-3-nano", "seq_len": 8192,
                       "global_batch": gbs, "micro_batch": mbs, "precision": "fp8",
                       "fp8": {"recipe": recipe}, "grad_reduce_bytes": 2,
                       "recompute": "norm_moe_act",
                       "parallel": {"tp": 1, "pp": 1, "ep": 8, "zero": 1},
                       "moe": {"dispatcher": "hybridep", "capacity_factor": None}},
          "sim": {"fidelity": "analytical"}}
    r = simulate(parse(sc, "x"), band=False)
    per_gpu = r.tokens_per_s / (nodes * (4 if system == "gb300-nvl72" else 8))
    assert 0.5 < per_gpu / published < 2.0


def test_hf_tensor_count_of_a_hybrid_checkpoint():
    """RL refit: Nemotron-H's checkpoint has, per Mamba layer, norm, in_proj, conv1d weight
    and bias, dt_bias, A_log, D, mixer norm, out_proj (9); per attention layer norm, q, k, v,
    o (5); per MoE layer norm, gate and its correction bias, 128 x (up, down), the shared
    expert's up and down (261); then embedding, final norm, output layer."""
    from sim.rl_sync import hf_tensor_count
    assert hf_tensor_count(nano()) == 23 * 9 + 6 * 5 + 23 * 261 + 3


def test_fp8_covers_the_projections_not_the_scan():
    """Under FP8 the in_proj / out_proj run at the FP8 rate and get the recipe's casts
    (Transformer Engine linears); the scan's Triton kernels stay 16-bit."""
    from dataclasses import replace

    from workloads import fp8
    c = replace(ctx(), dtype="fp8")
    ops = fp8.rewrite(mamba_forward(c), "tensorwise")
    by_name = {o.name: o for o in ops if isinstance(o, Compute)}
    assert by_name["mamba_in_proj"].dtype == by_name["mamba_out_proj"].dtype == "fp8"
    assert {o.dtype for n, o in by_name.items() if n.startswith("ssd_") and o.op_class == "ssd"} == {"bf16"}
    assert any(n.startswith("mamba_out_proj_tensorwise_cast") for n in by_name)


def test_a_moe_sub_layers_pre_norm_is_in_the_moe_graph_scope_not_attn():
    # Megatron-Core runs a hybrid MoE sub-layer's TENorm in TransformerLayer._forward_mlp:
    # the ``attn`` CUDA graph leaves it eager, the ``moe`` graph captures it. Nano's layer 1
    # is a MoE sub-layer ("E"), layer 0 a Mamba mixer whose norm stays the input norm.
    from workloads.host_launch import captured
    from workloads.moe_layers import hybrid_backward_at, hybrid_forward_at, make_context
    c = LayerContext(nano(), 1, 1, False, "bf16", CommGroup((0,), "tp"),
                     moe=make_context((0,), (0,), "alltoall", 1.0, 8))
    fwd, bwd = hybrid_forward_at(c, 1)[0], hybrid_backward_at(c, 1)[-1]
    assert (fwd.name, bwd.name) == ("pre_mlp_norm", "pre_mlp_norm_bwd")
    for op in (fwd, bwd):
        assert not captured(op.name, frozenset({"attn", "moe_router", "moe_preprocess"}))
        assert captured(op.name, frozenset({"moe"}))
    assert hybrid_forward_at(c, 0)[0].name == "input_norm"

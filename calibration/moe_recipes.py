"""What Megatron-Bridge's performance recipes set for each MoE validation row, by release.

Tags and the containers they ship in: v0.1.0 = 25.09, v0.2.0 = 25.11, v0.3.x = 26.02,
v0.4.x = 26.04, v0.5.x = 26.06, v0.6.0 = 26.08. The recipes are in
scripts/performance/configs/{qwen3,qwen,gpt_oss}/*workload_base_configs.py (v0.2.0-v0.5.x;
the 25.09 tables in scripts/performance/configs/qwen3/*.yaml ``perf_matrix``) and
src/megatron/bridge/perf_recipes/{qwen,gpt_oss}/<gpu>/*.py (v0.6.0). Each table maps a
(model, GPU, precision) to the first release each setting applies from; precision keys
are BF16, MXFP8 (FP8-MX) and FP8 (current scaling: FP8-CS, and the plain "FP8" labels).

- ``QWEN3_DISPATCHER`` / ``GPT_OSS_RECIPES``: the dispatcher by release (HybridEP as
  ``hybridep``, on ``HYBRIDEP_SMS`` SMs); ``RECIPES``, ``QWEN3_OVERLAP``, ``GPT_OSS_RECIPES``: the all-to-all overlap
  (moe_a2a_overlap, overlap_moe_expert_parallel_comm).
- ``CUDA_GRAPHS``: ``cuda_graph_impl`` / ``cuda_graph_scope`` as ``workload.cuda_graphs``
  (workloads/host_launch.py). ``full_iteration`` comes with the sync-free MoE path
  (``moe_expert_rank_capacity_factor`` for HybridEP, paged stashing) and the all-to-all
  overlap (v0.6.0 perf_recipes/qwen/common.py ``_enable_hybridep_full_iteration_mxfp8``;
  v0.5.0's FP8_MX configs set cuda_graph_impl="full_iteration" with moe_a2a_overlap).
  The 25.09 tables' ``cuda_graphs: true`` (Megatron-Core's per-layer ``enable_cuda_graph``)
  is taken as the attention only: a dropless MoE block cannot be captured with its sync.
  Rows of other sources (NeMo's Grok-1) are taken as eager: their graph settings are not
  in the reference set.
"""

from __future__ import annotations

ROUTER = ("moe_router", "moe_preprocess")
ATTN_ROUTER = ("attn", *ROUTER)
FULL = ("full_iteration",)

# Qwen3's token dispatcher by model and GPU: the first release each applies from ("hybridep"
# is the flex dispatcher, HybridEP backend: docs/moe.md "Token dispatcher by release"). What runs is decided in the perf scripts at each tag:
# - v0.2.0 (25.11) / v0.3.0 (26.02): the recipe calls apply_flex_dispatcher_backend(model,
#   base_cfg.moe_flex_dispatcher_backend) (src/megatron/bridge/training/
#   flex_dispatcher_backend.py): "flex" where the base config names deepep / hybridep and the
#   GPU passes its check (HybridEP: compute capability 8-10, so B300 / GB300 too), else the
#   provider's default "alltoall" (qwen_provider.py moe_token_dispatcher_type).
# - v0.3.1 (26.02.01): each config function sets moe_token_dispatcher_type itself
#   (scripts/performance/configs/qwen/qwen3_llm_pretrain.py): "alltoall" for Qwen3-235B on
#   B300 / B200 / H100 (whatever backend the base config names), "flex" elsewhere.
# - v0.4.x-v0.5.x (26.04-26.06.01): set_workload_base_configs (scripts/performance/utils/
#   overrides.py) applies the base config's backend, or "alltoall" where it names none;
#   v0.4.2 (26.04.01) moved Qwen3-235B B300 to hybridep (#3490, cherry-picked as #3675).
# - v0.6.0 (26.08): perf_recipes/qwen/<gpu>/qwen3_moe.py set both keys per recipe.
# Backends in qwen3_workload_base_configs.py: hybridep on GB200 / GB300 (both models, every
# tag) and Qwen3-30B on B300 (v0.3.0+), B200 (v0.3.1+) and H100 (v0.3.1+, deepep at v0.3.0);
# Qwen3-235B on B200 / H100 none (deepep at v0.3.1, ignored by the "alltoall" its function
# sets). 25.09 (v0.1.0, not in the mirror) is taken as 25.11.
FLEX = "hybridep"
QWEN3_DISPATCHER = {
    ("qwen3-235b-a22b", "H100"): [((25, 9), "alltoall")],
    ("qwen3-235b-a22b", "B200"): [((25, 9), "alltoall")],
    ("qwen3-235b-a22b", "B300"): [((26, 2), "alltoall"), ((26, 4, 1), FLEX)],
    ("qwen3-235b-a22b", "GB200"): [((25, 9), FLEX)],
    ("qwen3-235b-a22b", "GB300"): [((25, 9), FLEX)],
    ("qwen3-30b-a3b", "H100"): [((25, 9), "alltoall"), ((26, 2), "deepep"), ((26, 2, 1), FLEX)],
    ("qwen3-30b-a3b", "B200"): [((25, 9), "alltoall"), ((26, 2, 1), FLEX)],
    ("qwen3-30b-a3b", "B300"): [((26, 2), FLEX)],
    ("qwen3-30b-a3b", "GB200"): [((25, 9), FLEX)],
    ("qwen3-30b-a3b", "GB300"): [((25, 9), FLEX)],
}
# The all-to-all overlap every release sets, by model and GPU (anything else: none).
RECIPES = {("qwen3-235b-a22b", "H100"): True}
# The all-to-all overlap where it changed between releases, by (model, GPU): the first
# release each setting applies from. Qwen3-235B on B300: v0.3.0's B300 configs (26.02,
# pp8 vpp4 ep8, as the 26.02 / 26.02.01 rows' plans) set moe_a2a_overlap=True; v0.3.1
# ("Update Qwen3 235B B300 Configs to match Qwen3 B200 Configs", #2706) and v0.4.0 set
# False (with vpp 1, the 26.04 rows' plan).
QWEN3_OVERLAP = {("qwen3-235b-a22b", "B300"): [((26, 2), True), ((26, 4), False)]}
# From 26.06 the Qwen3 MXFP8 full-iteration recipes overlap the all-to-alls
# (v0.5.0 QWEN3_30B_A3B_{GB200,GB300,B300}_FP8_MX_V1, QWEN3_235B_A22B_{GB200,GB300}_FP8_MX_V2).
QWEN3_FULL_ITERATION = {("qwen3-30b-a3b", "GB200"), ("qwen3-30b-a3b", "GB300"),
                        ("qwen3-30b-a3b", "B300"), ("qwen3-235b-a22b", "GB200"),
                        ("qwen3-235b-a22b", "GB300")}
# gpt-oss-120b's recipes changed between releases (scripts/performance/configs/gpt_oss/
# gpt_oss_workload_base_configs.py; 26.08 v0.6.0 in src/megatron/bridge/perf_recipes/
# gpt_oss/*/gpt_oss.py): the first release each (GPU, precision) setting applies from.
GPT_OSS_RECIPES = {
    # v0.4.0 V2: hybridep, a2a overlap; v0.4.2 (26.04.01): alltoall, overlap kept (#3561)
    ("GB200", "BF16"): [((26, 4), (FLEX, True)), ((26, 4, 1), ("alltoall", True))],
    # v0.4.0 V2: ep8, hybridep; v0.4.2 (26.04.01): alltoall (#3614)
    ("B200", "BF16"): [((26, 4), (FLEX, False)), ((26, 4, 1), ("alltoall", False))],
    ("B300", "BF16"): [((26, 4), (FLEX, False))],       # v0.4.0 V2: ep8, hybridep
    ("GB200", "MXFP8"): [((26, 6), (FLEX, True))],      # v0.5.0 FP8_MX V2, v0.6.0 full-iteration
    ("GB300", "MXFP8"): [((26, 6), (FLEX, True))],      # configs: hybridep, a2a overlap
    ("B300", "MXFP8"): [((26, 6), (FLEX, False))],      # v0.5.0: the B300 BF16 V2 settings
}
# HybridEP's SMs (moe_hybridep_num_sms; Megatron-Core's default is 16, core_v0.16.0
# transformer_config.py): the perf scripts set 32 wherever the backend is hybridep
# (v0.2.0 scripts/performance/utils/helpers.py, v0.3.0-v0.5.x utils/overrides.py
# _set_common_perf_overrides, v0.6.0 perf_recipes/_common.py); at v0.6.0 the
# Qwen3-235B GB300 BF16 recipe sets 16 after that (perf_recipes/qwen/gb300/qwen3_moe.py).
HYBRIDEP_SMS = 32
HYBRIDEP_SMS_BY_RELEASE = {("qwen3-235b-a22b", "GB300", "BF16"): [((26, 8), 16)]}
# FP8 dot-product attention (fp8_dot_product_attention=True): v0.5.0's GB200 / GB300
# FP8_MX V2 configs and v0.6.0's _apply_gpt_oss_120b_full_iter_fp8mx_configs.
GPT_OSS_FP8_ATTENTION = {("GB200", "MXFP8"): (26, 6), ("GB300", "MXFP8"): (26, 6)}

# CUDA-graph scopes: (model, GPU, precision) -> [(first release, scopes)]; () = none.
CUDA_GRAPHS: dict[tuple[str, str, str], list[tuple[tuple[int, ...], tuple[str, ...]]]] = {
    # Qwen3-30B-A3B. H100: BF16 captures the router only; FP8-CS sets no graphs (v0.2.0-v0.5.0)
    ("qwen3-30b-a3b", "H100", "BF16"): [((25, 11), ROUTER)],
    ("qwen3-30b-a3b", "B200", "FP8"): [((25, 9), ("attn",)), ((25, 11), ROUTER), ((26, 4), ATTN_ROUTER)],
    ("qwen3-30b-a3b", "B200", "MXFP8"): [((25, 9), ("attn",)), ((25, 11), ROUTER), ((26, 4), ATTN_ROUTER)],
    ("qwen3-30b-a3b", "B200", "BF16"): [((25, 11), ROUTER), ((26, 4), ATTN_ROUTER)],
    ("qwen3-30b-a3b", "GB200", "FP8"): [((25, 9), ("attn",)), ((25, 11), ATTN_ROUTER)],
    ("qwen3-30b-a3b", "GB200", "BF16"): [((25, 11), ATTN_ROUTER)],
    ("qwen3-30b-a3b", "GB200", "MXFP8"): [((25, 11), ROUTER), ((26, 6), FULL)],
    ("qwen3-30b-a3b", "B300", "MXFP8"): [((26, 2), ROUTER), ((26, 6), FULL)],
    ("qwen3-30b-a3b", "GB300", "MXFP8"): [((25, 11), ROUTER), ((26, 6), FULL)],
    # Qwen3-235B-A22B: no graphs on H100, B200, B300; GB200 / GB300 as below
    ("qwen3-235b-a22b", "GB200", "FP8"): [((25, 9), ("attn",)), ((25, 11), ATTN_ROUTER)],
    ("qwen3-235b-a22b", "GB200", "BF16"): [((25, 11), ATTN_ROUTER)],
    ("qwen3-235b-a22b", "GB200", "MXFP8"): [((25, 11), ATTN_ROUTER), ((26, 6), FULL)],
    ("qwen3-235b-a22b", "GB300", "BF16"): [((25, 11), ROUTER), ((26, 4), ATTN_ROUTER)],
    ("qwen3-235b-a22b", "GB300", "MXFP8"): [((25, 11), ROUTER), ((26, 2), ATTN_ROUTER), ((26, 6), FULL)],
    # gpt-oss-120b: GB300 / B300 capture attention and router from v0.2.0 / v0.3.0; GB200,
    # B200 and H100 BF16 run eager in every release; the MXFP8 V2 configs of 26.06+
    ("gpt-oss-120b", "GB300", "BF16"): [((25, 11), ATTN_ROUTER)],
    ("gpt-oss-120b", "B300", "BF16"): [((26, 2), ATTN_ROUTER)],
    ("gpt-oss-120b", "GB200", "MXFP8"): [((26, 6), FULL)],
    ("gpt-oss-120b", "GB300", "MXFP8"): [((26, 4), ATTN_ROUTER), ((26, 6), FULL)],
    ("gpt-oss-120b", "B300", "MXFP8"): [((26, 4), ATTN_ROUTER)],
}


# The router's kernels (workloads/moe_launches.router_kernels): the perf scripts set
# moe_router_fusion = True for Qwen3 and gpt-oss-120b in every release
# (scripts/performance/configs/{qwen3,qwen}/qwen3_llm_pretrain.py set_qwen3_common_configs,
# gpt_oss/gpt_oss_llm_pretrain.py set_gpt_oss_common_configs, v0.2.0-v0.5.x); Qwen3's
# provider computes the load-balancing loss (qwen_provider.py v0.2.0-v0.3.x,
# qwen3_moe_bridge.py v0.4.0+: moe_router_load_balancing_type "aux_loss",
# moe_aux_loss_coeff 1e-3), gpt-oss's does not (gpt_oss_bridge.py: "none"). Rows of other
# sources (NeMo's Grok-1) keep Megatron-Core's defaults (no fusion, coefficient 0): their
# router settings are not in the reference set.
ROUTER_FUSION = ("qwen3-30b-a3b", "qwen3-235b-a22b", "gpt-oss-120b")
AUX_LOSS = ("qwen3-30b-a3b", "qwen3-235b-a22b")


def router_options(row, arch: str) -> dict:
    """``workload.moe`` router_fusion / aux_loss of a Megatron-Bridge row's recipe."""
    if not release(row):
        return {}
    return {"router_fusion": arch in ROUTER_FUSION, "aux_loss": arch in AUX_LOSS}


def release(row) -> tuple[int, ...]:
    """(26, 4, 1) of a Megatron-Bridge row MB-PERF-26.04.01; () for other sources."""
    src = str(row.source_id)
    if not src.startswith("MB-PERF-"):
        return ()
    return tuple(int(x) for x in src.removeprefix("MB-PERF-").split("."))


def precision_key(row) -> str:
    """BF16, MXFP8 (MXFP8, FP8-MX) or FP8 (FP8-CS and the plain FP8 labels)."""
    label = str(row.precision).split()[0].upper()
    return {"FP8-MX": "MXFP8", "FP8-CS": "FP8"}.get(label, label)


def _since(steps, rel: tuple[int, ...]):
    got = [value for since, value in steps if rel >= since]
    return got[-1] if got else None


def cuda_graphs(row, arch: str, gpu: str) -> list[str] | str:
    """``workload.cuda_graphs`` of a row's recipe ("none" where it runs eager)."""
    scopes = _since(CUDA_GRAPHS.get((arch, gpu, precision_key(row)), []), release(row))
    return list(scopes) if scopes else "none"


def qwen3_dispatcher(row, arch: str, gpu: str) -> str:
    """Qwen3's ``workload.moe.dispatcher`` in a row's release (QWEN3_DISPATCHER); NCCL
    all-to-all for unlisted models and GPUs."""
    return _since(QWEN3_DISPATCHER.get((arch, gpu), []), release(row)) or "alltoall"


def hybridep_sms(row, arch: str, gpu: str) -> int:
    """``workload.moe.hybridep_sms`` of a row's recipe (HYBRIDEP_SMS, by release where a
    recipe sets its own)."""
    by_release = _since(HYBRIDEP_SMS_BY_RELEASE.get((arch, gpu, precision_key(row)), []), release(row))
    return by_release or HYBRIDEP_SMS


def recipe_options(row, arch: str, gpu: str) -> tuple[str, bool]:
    """(dispatcher, a2a overlap) of a row's recipe: gpt-oss-120b by release (earlier
    releases and unlisted GPUs: NCCL all-to-all, no overlap), Qwen3 by model, GPU and
    release, with the all-to-all overlap of the Qwen3 full-iteration recipes."""
    if arch == "gpt-oss-120b":
        steps = GPT_OSS_RECIPES.get((gpu, str(row.precision).split()[0].upper()), [])
        return _since(steps, release(row)) or ("alltoall", False)
    dispatcher = qwen3_dispatcher(row, arch, gpu)
    overlap = RECIPES.get((arch, gpu), False)
    by_release = _since(QWEN3_OVERLAP.get((arch, gpu), []), release(row))
    if by_release is not None:
        overlap = by_release
    if (arch, gpu) in QWEN3_FULL_ITERATION and cuda_graphs(row, arch, gpu) == list(FULL):
        overlap = True
    return dispatcher, overlap


# ------------------------------------------------------------------ gpt-oss: what ran
# Software of each NeMo container (Megatron-Bridge docs/releases/software-versions.md at
# v0.5.1 / v0.6.0; patch releases 26.02.01, 26.04.01, 26.06.01 run their base container's
# stack, 26.08 is not listed there and is taken as 26.06's): (Transformer Engine, cuDNN,
# Megatron-Core).
CONTAINERS = {
    (25, 11): ((2, 9), (9, 13, 1), "dev 0.15.0"),   # TE 2.9, cuDNN 9.13.1.26
    (26, 2): ((2, 12), (9, 18, 0), "0.16.0"),       # TE 2.12, cuDNN 9.18.0.50
    (26, 4): ((2, 14), (9, 20, 0), "0.17.0"),       # TE 2.14+71bbefb, cuDNN 9.20.0.48
    (26, 6): ((2, 16), (9, 21, 1), "0.18.0"),       # TE 2.16, cuDNN 9.21.1.3
}
# gpt-oss attention in every release (GPTOSSProvider v0.2.0-v0.3.x; GPTOSSBridge
# provider_bridge v0.4.0+): softmax_type "learnable" (one sink logit per head,
# core_attention.softmax_offset), window_size (128, 0) (v0.4.0+: sliding_window - 1 =
# (127, 0)) on the layers with layer_number % window_attn_skip_freq(2) != 0 (Megatron-Core
# transformer/utils.py is_layer_window_attention: the odd layers), YaRN rope (factor 32,
# original 4096), seq_length 4096 (the recipe's), sbhd layout (mock data, no packing),
# attention_backend auto (v0.4.0+ recipe: None), the fused cross-entropy
# (cross_entropy_loss_fusion: GPTModelProvider's default, v0.4.0+ recipe "native" impl;
# the simulator's default cross_entropy_fusion). The perf scripts set no
# NVTE_ALLOW_NONDETERMINISTIC_ALGO for gpt-oss (only DeepSeek's), so TE is not deterministic.
GPT_OSS_WINDOW = {(25, 11): 128, (26, 4): 127}
# recompute_modules [layernorm, moe_act] (granularity selective): GB200, B200 and H100 BF16
# in every release (v0.2.0 workload_base_configs.py GPT_OSS_120B_{GB200,B200,H100}_BF16,
# v0.3.0-v0.5.x *_BF16_V1/V2, v0.6.0 perf_recipes/gpt_oss/{gb200,b200,h100}/gpt_oss.py);
# the GB200 MXFP8 V2 / full-iteration recipe clears it (recompute_modules=[]); GB300 and
# B300 recompute nothing.
GPT_OSS_RECOMPUTE = {("GB200", "BF16"), ("B200", "BF16"), ("H100", "BF16")}
# Transformer Engine's fused grouped MLP (use_transformer_engine_op_fuser: fc1, the clamped
# quick-GeGLU, fc2 and their biases in fused kernels): v0.5.0's GB200 / GB300 FP8_MX V2
# configs (cutedsl_fused_grouped_mlp=True, scripts/performance/utils/overrides.py) and
# v0.6.0's _apply_gpt_oss_120b_full_iter_fp8mx_configs; every other row runs
# Megatron-Core's TEGroupedMLP, which adds the fc2 bias per expert in PyTorch.
GPT_OSS_FUSED_MLP = {("GB200", "MXFP8"): (26, 6), ("GB300", "MXFP8"): (26, 6)}


def container(rel: tuple[int, ...]):
    """(TE, cuDNN, Megatron-Core) of a release's container; None before 25.11."""
    got = [v for since, v in sorted(CONTAINERS.items()) if rel[:2] >= since]
    return got[-1] if got else None


def gpt_oss_attention_backend(rel: tuple[int, ...], sm: int, fp8_dpa: bool) -> str:
    """Which of Transformer Engine's backends runs gpt-oss's attention (learnable sinks,
    a causal (w, 0) window on half the layers, sbhd, no context parallelism) in the
    container of release ``rel`` on compute capability ``sm`` (90, 100, 103):
    "fused" (cuDNN), "unfused" or "none". The rules, from TE's get_attention_backend
    (pytorch/attention/dot_product_attention/utils.py) and nvte_get_fused_attn_backend
    (common/fused_attn/fused_attn.cpp) of TE 2.9-2.16:
    - a non-vanilla softmax disables FlashAttention (every TE version);
    - cuDNN's fused kernel takes learnable / off-by-one softmax from cuDNN 9.13.1, a
      (left, 0) window with a causal mask on bshd / sbhd from 9.2;
    - FP8 attention with a sink: fused only on sm >= 100 with cuDNN >= 9.21 (TE 2.15+;
      before, no fused FP8 sink path), and never unfused (TE disables it in FP8);
    - Megatron-Bridge's provider falls back to Megatron-Core's local (unfused) attention
      below TE 2.8 (GPTOSSProvider.provide, v0.2.0-v0.3.x)."""
    stack = container(rel)
    if stack is None:
        return "unknown"
    te, cudnn, _ = stack
    if te < (2, 8):
        return "unfused"
    if fp8_dpa:
        return "fused" if sm >= 100 and cudnn >= (9, 21, 0) and te >= (2, 15) else "none"
    return "fused" if cudnn >= (9, 13, 1) else "unfused"


def gpt_oss_fused_mlp(row, gpu: str) -> bool:
    """Whether a gpt-oss row's recipe runs Transformer Engine's fused grouped MLP."""
    since = GPT_OSS_FUSED_MLP.get((gpu, precision_key(row)))
    return since is not None and release(row) >= since


def gpt_oss_recompute(row, gpu: str) -> str:
    """``workload.recompute`` of a gpt-oss row: norm_moe_act where its recipe sets
    recompute_modules [layernorm, moe_act], else none."""
    return "norm_moe_act" if (gpu, precision_key(row)) in GPT_OSS_RECOMPUTE else "none"


def gpt_oss_release_rows(releases) -> list[dict]:
    """What each release's container ran for gpt-oss's attention, one row per release:
    its Transformer Engine, cuDNN and Megatron-Core, the window, and the backend TE selects
    for the 16-bit attention and for FP8 attention on Blackwell (sm 100)."""
    out = []
    for rel in sorted(set(releases)):
        stack = container(rel)
        if stack is None:
            continue
        te, cudnn, mcore = stack
        window = [w for since, w in sorted(GPT_OSS_WINDOW.items()) if rel >= since][-1]
        out.append({"release": ".".join(f"{x:02d}" for x in rel), "transformer_engine": ".".join(map(str, te)),
                    "cudnn": ".".join(map(str, cudnn)), "megatron_core": mcore,
                    "window": f"({window}, 0)", "softmax": "learnable",
                    "attention_16bit": gpt_oss_attention_backend(rel, 100, False),
                    "attention_fp8_sm100": gpt_oss_attention_backend(rel, 100, True)})
    return out

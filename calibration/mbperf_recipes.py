"""What Megatron-Bridge's performance recipes set for each DeepSeek-V3, Kimi K2 and DeepSeek-V4
Flash validation row, by release.

Rows: calibration/reference/modern/mbperf_moe_training.csv. Tags and the containers they ship
in: v0.2.0 = 25.11, v0.3.0 = 26.02, v0.3.1 = 26.02.01, v0.4.0 = 26.04, v0.4.2 = 26.04.01,
v0.5.0 = 26.06, v0.5.1 = 26.06.01, v0.6.0 = 26.08 (calibration/moe_recipes.py). 25.09 (v0.1.0)
is not read: its DeepSeek rows are token-dropping or run on H100 with no recipe here.

Where the settings are, per release:
- v0.2.0: scripts/performance/configs/deepseek/{workload_base_configs,deepseek_llm_pretrain}.py
  (one base config per GPU, GBS 2048; the library recipe recipes/deepseek/deepseek_v3.py
  places the layers with its (pp, vp) layout map and applies the flex backend, none on B200:
  the provider's "alltoall").
- v0.3.0-v0.5.1: scripts/performance/configs/deepseek/deepseek_{workload_base_configs,
  llm_pretrain}.py, the V2 variants (GBS 4096, the published GBS); kimi/kimi_{workload_base_
  configs,llm_pretrain}.py from v0.3.1 (one config per GPU, identical v0.3.1-v0.5.1).
  set_workload_base_configs (scripts/performance/utils/overrides.py) applies the base
  config's flex backend, CUDA graphs, recompute_modules (granularity selective) and
  moe_a2a_overlap; _set_common_perf_overrides sets moe_hybridep_num_sms = 32 for hybridep;
  set_deepseek_v3_common_configs sets moe_router_fusion and moe_router_force_load_balancing
  True and gradients reduced in BF16. Full-iteration configs (v0.5.0+) add
  set_full_iter_cg_configs: experts padded to a rank capacity factor of 1.5, paged stashing.
- v0.6.0: src/megatron/bridge/perf_recipes/deepseek/{common.py, gb300,gb200/deepseek_v3.py}:
  the same plans; _enable_deepseek_full_iteration_mxfp8 (hybridep on 32 SMs, full-iteration
  graphs, the TE op fuser's grouped MLP, the all-to-all overlap); DeepSeek-V4 Flash (the 26.08
  rows, added to docs/performance-summary.md by commit 4ab94dfad366): perf_recipes/deepseek/
  {gb200,gb300}/deepseek_v4.py on the library recipe recipes/deepseek/gb200/deepseek_v4.py.

Pipeline layouts (per virtual stage, in order; the embedding rides on the first, MTP and the
loss on the last): "Et*4|(t*4|)*14tmL" (the GB300 / B200 configs' pp_layout) and the library
recipe's layout map for (4, 4) and (16, 1) place 4 layers on each of 15 virtual stages and 1
on the 16th (``L16``); (8, 1) places 8 on each of 7 stages and 5 on the 8th (``L8``). Kimi K2
(recipes/kimi/kimi_k2.py _get_kimi_k2_pipeline_layout (4, 4)) is L16 with no MTP.
"""

from __future__ import annotations

from calibration.moe_recipes import _since, precision_key, release
from workloads.parallel import RECOMPUTE_MODULE_NAMES

ATTN_ROUTER = ("attn", "moe_router", "moe_preprocess")
ROUTER = ("moe_router", "moe_preprocess")
FULL = ("full_iteration",)
NONE: tuple[str, ...] = ()
MLA_UP = ("mla_up_proj",)
L16 = (4,) * 15 + (1,)
L8 = (8,) * 7 + (5,)


def _r(plan, dispatcher="hybridep", graphs=NONE, recompute=MLA_UP, mtp=1, overlap=False,
       fused_mlp=False, fp8_attention=False, layout=L16, optimizer="adam", indexer_loss="none"):
    """A recipe: ``plan`` (micro batch, pp, vp, ep) as the recipe sets it (vp 1: none);
    ``indexer_loss``: the DSA indexer loss (dsa_indexer_loss_coeff > 0) over the top-k
    entries (dsa_indexer_use_sparse_loss: "sparse") or every entry ("dense"); "none": off."""
    return {"plan": plan, "dispatcher": dispatcher, "hybridep_sms": 32, "cuda_graphs": graphs,
            "recompute_modules": recompute, "mtp_layers": mtp, "overlap": overlap,
            "fused_mlp": fused_mlp, "fp8_attention": fp8_attention, "pipeline_layers": layout,
            "optimizer": optimizer, "router_fusion": True, "aux_loss": True,
            "indexer_loss": indexer_loss}


# Full-iteration MXFP8 (v0.5.0 *_FP8_MX_V1/V2, v0.6.0 _enable_deepseek_full_iteration_mxfp8):
# cuda_graph_impl "full_iteration", moe_a2a_overlap, cutedsl_fused_grouped_mlp.
def _full(plan, recompute, fp8_attention):
    return _r(plan, graphs=FULL, recompute=recompute, overlap=True, fused_mlp=True,
              fp8_attention=fp8_attention)


# (model, GPU, precision key) -> [(first release, settings)]; the 25.11 rows' labels
# (w/o MTP, w/ MTP) set the MTP depth in ``mtp_of``.
MBPERF_RECIPES: dict[tuple[str, str, str], list[tuple[tuple[int, ...], dict]]] = {
    # GB300. v0.2.0 DEEPSEEK_V3_GB300_BASE_CONFIG (every precision): pp4 vp4 ep64, graphs
    # [attn, moe_router, moe_preprocess], recompute [moe_act]. v0.3.0-v0.4.2
    # DEEPSEEK_V3_PRETRAIN_CONFIG_GB300_FP8_MX_V2 = GB300_V1 + GBS 4096: MBS 2, pp2 vp8, the
    # "Et*4|(t*4|)*14tmL" layout, ep32, no graphs (cuda_graph_scope []), recompute
    # [mla_up_proj]. v0.5.0 / v0.5.1 GB300_FP8_MX_V2 (and _GBS15360): MBS 1, full iteration,
    # fp8_dot_product_attention, recompute []. v0.6.0 deepseek_v3_pretrain_256gpu_gb300_
    # fp8mx_config: the same.
    ("deepseek-v3", "GB300", "BF16"): [((25, 11), _r((1, 4, 4, 64), graphs=ATTN_ROUTER,
                                                     recompute=("moe_act",)))],
    ("deepseek-v3", "GB300", "MXFP8"): [
        ((25, 11), _r((1, 4, 4, 64), graphs=ATTN_ROUTER, recompute=("moe_act",))),
        ((26, 2), _r((2, 2, 8, 32))),
        ((26, 6), _full((1, 2, 8, 32), NONE, True))],
    # GB200. v0.2.0 DEEPSEEK_V3_GB200_BASE_CONFIG: pp4 vp4 ep64, graphs [moe_router,
    # moe_preprocess], recompute [mla_up_proj]. v0.3.0 / v0.3.1 GB200_FP8_MX_V2 = GB200_V1:
    # graphs [attn, moe_router, moe_preprocess], [mla_up_proj]; v0.4.0 / v0.4.2 GB200_V1
    # recompute [mlp] (the dense layers' MLP). v0.5.0+ GB200_FP8_MX_V1/V2 and v0.6.0
    # deepseek_v3_pretrain_256gpu_gb200_fp8mx_config: full iteration, [mla_up_proj], no
    # FP8 attention.
    ("deepseek-v3", "GB200", "BF16"): [((25, 11), _r((1, 4, 4, 64), graphs=ROUTER))],
    ("deepseek-v3", "GB200", "MXFP8"): [
        ((25, 11), _r((1, 4, 4, 64), graphs=ROUTER)),
        ((26, 2), _r((1, 4, 4, 64), graphs=ATTN_ROUTER)),
        ((26, 4), _r((1, 4, 4, 64), graphs=ATTN_ROUTER, recompute=("mlp",))),
        ((26, 6), _full((1, 4, 4, 64), MLA_UP, False))],
    # B300. v0.3.0-v0.4.0 B300_FP8_MX_V2 = B300_V2 = B300_V1 + GBS 4096: pp16 ep8, no graphs,
    # [mla_up_proj]. v0.4.2 B300_V2: MBS 2, pp8 (no vp), graphs [attn, moe_router,
    # moe_preprocess]. v0.5.0 B300_FP8_MX_V2: MBS 1, pp8 vp2, full iteration, FP8 attention,
    # [mla_up_proj] (the 26.06 B300 row publishes MBS 2, pp8, no vp: no v0.5.0 B300 config).
    ("deepseek-v3", "B300", "MXFP8"): [
        ((26, 2), _r((1, 16, 1, 8))),
        ((26, 4, 1), _r((2, 8, 1, 8), graphs=ATTN_ROUTER, layout=L8)),
        ((26, 6), _full((1, 8, 2, 8), MLA_UP, True))],
    # B200. v0.2.0 DEEPSEEK_V3_B200_BASE_CONFIG: pp16 ep8, no flex backend (the provider's
    # alltoall), [mla_up_proj]. v0.3.0-v0.4.0 B200_FP8_MX_V2 = B200_V1 + GBS 4096: the same
    # with hybridep. v0.4.2 B200_FP8_MX_V2: deepep, pp8 vp2 ep32, "Et*4|(t*4|)*14tmL",
    # moe_a2a_overlap, graphs [attn, moe_router, moe_preprocess], [mla_up_proj, mlp].
    ("deepseek-v3", "B200", "MXFP8"): [
        ((25, 11), _r((1, 16, 1, 8), dispatcher="alltoall")),
        ((26, 2), _r((1, 16, 1, 8))),
        ((26, 4, 1), _r((1, 8, 2, 32), dispatcher="deepep", graphs=ATTN_ROUTER,
                        recompute=("mla_up_proj", "mlp"), overlap=True))],
    # Kimi K2 (v0.3.1-v0.5.1 KIMI_K2_PRETRAIN_CONFIG_GB300, every precision): MBS 2, pp4 vp4
    # ep64, hybridep, no graphs, [mla_up_proj], optimizer_type "muon" (kimi_k2_pretrain_
    # config's default, distributed_muon_with_cosine_annealing); no MTP; the Kimi provider's
    # seq_aux_loss (coefficient 1e-3); set_kimi_k2_common_configs: router fusion.
    ("kimi-k2", "GB300", "MXFP8"): [((26, 2, 1), _r((2, 4, 4, 64), mtp=0, optimizer="muon"))],
    # DeepSeek-V4 Flash (v0.6.0 perf_recipes/deepseek/gb200/deepseek_v4.py deepseek_v4_flash_
    # pretrain_128gpu_gb200_fp8mx_config; gb300/deepseek_v4.py's 128-GPU GB300 config is it
    # with other env_vars): MBS 1, tp1 pp1 (no vp, no layout) ep64, GBS 2048; hybridep
    # (moe_flex_dispatcher_num_sms 32), overlap_moe_expert_parallel_comm False; set_full_
    # iteration_cuda_graph; recompute [mla_up_proj]; use_transformer_engine_op_fuser with
    # NVTE_CUTEDSL_FUSED_GROUPED_MLP 1; no FP8 attention; router fusion, forced balance,
    # seq_aux_loss (1e-4); the library recipe's (recipes/deepseek/gb200/deepseek_v4.py
    # deepseek_v4_flash_pretrain_64gpu_gb200_fp8mx_config) distributed fused Adam,
    # bf16_with_mxfp8_mixed (quant_recipe None); the model's one MTP layer (HF
    # num_nextn_predict_layers, deepseek_v4_bridge.py); dsa_indexer_loss_coeff 0.01 with
    # dsa_indexer_use_sparse_loss True (the model's ``attention.indexer_loss: sparse``).
    ("deepseek-v4-flash", "GB300", "MXFP8"): [((26, 8), _r((1, 1, 1, 64), graphs=FULL,
                                                            fused_mlp=True, layout=NONE,
                                                            indexer_loss="sparse"))],
    ("deepseek-v4-flash", "GB200", "MXFP8"): [((26, 8), _r((1, 1, 1, 64), graphs=FULL,
                                                            fused_mlp=True, layout=NONE,
                                                            indexer_loss="sparse"))],
}

# Megatron-Core recompute_modules -> the simulator's ``workload.recompute`` mode; another
# module set is passed as ``workload.recompute_modules``.
RECOMPUTE = {NONE: "none", ("layernorm", "moe_act"): "norm_moe_act", MLA_UP: "mla_up_proj",
             ("mlp",): "mlp", ("mla_up_proj", "mlp"): "mla_up_proj_mlp"}


def recompute_workload(modules) -> dict:
    """The workload keys of a recipe's recompute_modules: its mode where one names that
    set, else the list itself."""
    key = tuple(sorted(modules))
    if key in RECOMPUTE:
        return {"recompute": RECOMPUTE[key]}
    return {"recompute_modules": list(modules)}


def recipe(row) -> dict | None:
    """The settings of a row's recipe in its release; None where none is read."""
    key = (row.arch_id, str(row.gpu_type).split()[0], precision_key(row))
    got = _since(MBPERF_RECIPES.get(key, []), release(row))
    if got is None:
        return None
    mtp = got["mtp_layers"]
    if "w/o MTP" in str(row.model):      # 25.11 rows run without the MTP module
        mtp = 0
    return got | {"mtp_layers": mtp}


def published_plan(row) -> tuple[int, int, int, int]:
    """(micro batch, pp, vp, ep) of a row as published (VP "n/a": 1; a 25.09 cell "4 (8)": the
    first run's 4)."""
    def first(x) -> int:
        t = str(x).split()[0]
        return int(t) if t.isdigit() else 1
    return (first(row.micro_batch), first(row.pp), first(row.vpp), first(row.ep))


def unmodelled(settings: dict) -> list[str]:
    """Settings of a recipe that change the work done and that ``workload`` cannot express."""
    out = []
    unpriced = [n for n in settings["recompute_modules"] if n not in RECOMPUTE_MODULE_NAMES]
    if unpriced:
        out.append(f"recompute_modules {unpriced}")
    return out

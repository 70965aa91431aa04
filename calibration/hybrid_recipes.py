"""What Megatron-Bridge's performance recipes set for each Nemotron 3 (hybrid Mamba / attention
MoE) validation row, by release.

Rows: calibration/reference/modern/hybrid_moe_training.csv. Tags and the containers they ship
in: v0.3.1 = 26.02.01, v0.4.0 = 26.04, v0.4.2 = 26.04.01, v0.5.0 = 26.06, v0.5.1 = 26.06.01,
v0.6.0 = 26.08 (the tags calibration/moe_recipes.py reads for the Qwen3 / gpt-oss rows).

Where the settings are, per release:
- v0.3.1: scripts/performance/configs/nemotronh/nemotron_3_nano_{workload_base_configs,
  llm_pretrain}.py (Nano only; Nemotron rows start with 26.02.01).
- v0.4.0-v0.5.1: scripts/performance/configs/nemotronh/nemotron_3_{workload_base_configs,
  llm_pretrain}.py; set_workload_base_configs (scripts/performance/utils/overrides.py) applies
  a base config's ``moe_flex_dispatcher_backend`` with apply_flex_dispatcher_backend (flex +
  HybridEP), its cuda_graph_scope and recompute_modules (granularity selective);
  _set_common_perf_overrides, called inside it, sets moe_hybridep_num_sms = 32 where the
  backend is already hybridep: Super (its library recipe names hybridep), not Nano (its
  library recipe names deepep with moe_hybridep_num_sms = 16; the Nano config functions set
  the hybridep backend after set_workload_base_configs, so Nano keeps 16; v0.3.1 the same). The
  base configs are identical from v0.3.1 to v0.5.1 except Super on B200 (v0.5.1: TP 2, EP 8 and
  graphs for BF16; no B200 row is published after 26.04.01).
- v0.6.0: src/megatron/bridge/perf_recipes/nemotronh/{common.py, gb300,gb200,...}/nemotronh.py;
  _benchmark_common (perf_recipes/_common.py) sets manual_gc (interval 100),
  grad_reduce_in_fp32 False, moe_hybridep_num_sms 32 for hybridep and turns the TE op fuser
  off; the Nano recipes set moe_hybridep_num_sms = 16 after it (Super and Ultra keep 32).

Settings every row shares (every release): token dispatcher flex with the HybridEP backend
(Nano: the library recipe's "flex" with the base config's "hybridep"; Super: the library
recipe's "alltoall" replaced by apply_flex_dispatcher_backend(..., "hybridep") at v0.4.x-v0.5.x,
"flex" + "hybridep" set in each v0.6.0 recipe; Ultra: _apply_nemotron_3_ultra_perf_defaults),
moe_router_force_load_balancing True (set_nemotron_3_{nano,super}_common_configs; v0.6.0 each
recipe / _apply_nemotron_3_*_perf_defaults), moe_shared_expert_overlap False (library recipes;
v0.6.0 recipes), no all-to-all overlap (no Nemotron recipe sets
overlap_moe_expert_parallel_comm), gradients reduced in BF16 (grad_reduce_in_fp32 False).
"""

from __future__ import annotations

from workloads.parallel import RECOMPUTE_MODULE_NAMES

# CUDA-graph scopes (transformer_engine implementation). ``mamba`` is Megatron-Core's
# CudaGraphScope.mamba (the Mamba mixer of a hybrid layer).
ALL4 = ("attn", "mamba", "moe_router", "moe_preprocess")
NONE: tuple[str, ...] = ()
# recompute_modules (granularity selective). () = no recompute.
NORM_MOE_ACT = ("moe_act", "layernorm")


def _r(dispatcher="hybridep", sms=32, graphs=ALL4, recompute=NONE, mtp=0, router_fusion=False,
       fsdp=None, offload=NONE, quant_file=False, manual_gc=False):
    return {"dispatcher": dispatcher, "hybridep_sms": sms, "cuda_graphs": graphs,
            "recompute_modules": recompute, "mtp_layers": mtp, "router_fusion": router_fusion,
            "fsdp": fsdp, "offload_modules": offload, "per_module_quant": quant_file,
            "manual_gc": manual_gc}


# (model, GPU, precision key) -> [(first release, settings)]; precision keys BF16, FP8
# (current scaling, the tables' H100 "FP8"), MXFP8, NVFP4.
HYBRID_RECIPES: dict[tuple[str, str, str], list[tuple[tuple[int, ...], dict]]] = {
    # Nemotron 3 Nano. v0.3.1-v0.5.1 BASE_NEMOTRON_3_NANO_CONFIG: EP 8, hybridep, graphs
    # [attn, mamba, moe_router, moe_preprocess]; GB300 / B300 MBS 4, GB200 / B200 MBS 2;
    # *_FP8_MX_V1 = *_BF16_V1. Library recipe (recipes/nemotronh/nemotron_3_nano.py
    # nemotron_3_nano_pretrain_config): moe_router_fusion False, recompute None, no MTP,
    # moe_hybridep_num_sms 16 (kept: above). v0.6.0 gb300/gb200
    # nemotron_3_nano_pretrain_8gpu_*_fp8mx_config: the same graphs (set_cuda_graph_modules),
    # moe_hybridep_num_sms 16 set after _benchmark_common, manual GC.
    ("nemotron-3-nano", "GB300", "MXFP8"): [((26, 2, 1), _r(sms=16)), ((26, 8), _r(sms=16, manual_gc=True))],
    ("nemotron-3-nano", "GB200", "MXFP8"): [((26, 2, 1), _r(sms=16)), ((26, 8), _r(sms=16, manual_gc=True))],
    ("nemotron-3-nano", "B300", "MXFP8"): [((26, 2, 1), _r(sms=16))],
    ("nemotron-3-nano", "B200", "MXFP8"): [((26, 2, 1), _r(sms=16))],
    # H100 NEMOTRON_3_NANO_PRETRAIN_CONFIG_H100_FP8_CS_V1: 16 GPUs, GBS 1024, MBS 1, graphs
    # [mamba] only, recompute_modules [moe, layernorm, core_attn, moe_act] (v0.3.1-v0.5.1; the
    # published plan keeps EP 8 of the base config).
    ("nemotron-3-nano", "H100", "FP8"): [
        ((26, 2, 1), _r(sms=16, graphs=("mamba",), recompute=("moe", "layernorm", "core_attn", "moe_act")))],
    # Nemotron 3.5 Lightning (26.08 only): v0.6.0 gb200 nemotron_3_5_lightning_pretrain_8gpu_
    # gb200_fp8mx_config = the Nano GB200 MXFP8 recipe plus mtp_num_layers 2
    # (mtp_hybrid_override_pattern "*E": an attention and a MoE layer per depth,
    # mtp_use_repeated_layer: one set of weights for both depths, kept in BF16).
    ("nemotron-3.5-lightning", "GB200", "MXFP8"): [((26, 8), _r(sms=16, mtp=2, manual_gc=True))],
    # Nemotron 3 Super. Library recipe (recipes/nemotronh/nemotron_3_super.py
    # nemotron_3_super_pretrain_config, v0.4.0+; v0.6.0 recipes/nemotronh/h100/
    # nemotron_3_super.py, imported by perf_recipes/nemotronh/common.py): mtp_num_layers 2
    # with mtp_use_repeated_layer, moe_router_fusion not set (Megatron-Core default off).
    # v0.4.0-v0.5.1 BASE_NEMOTRON_3_SUPER_CONFIG: 64 GPUs, GBS 512, MBS 1, EP 64, hybridep,
    # graphs ALL4; GB200 TP 2; B300 EP 8 (BF16 / NVFP4: recompute [moe_act, layernorm]);
    # B200 (v0.4.x) EP 64, no graphs, recompute [moe_act, layernorm]; B200 NVFP4: TP 2, graphs
    # [mamba, attn, moe_router, moe_preprocess], no recompute. NVFP4 everywhere:
    # nemotron_3_super_bf16_with_nvfp4_mixed with te_quant.cfg (attention qkv / proj, the
    # latent projections and the MTP block in BF16, the Mamba out_proj in MXFP8).
    # v0.6.0 gb300/gb200 nemotron_3_super_pretrain_64gpu_*_{fp8mx,nvfp4}_config: the same
    # layouts and graphs; _apply_nemotron_3_super_perf_defaults -> _benchmark_common
    # (hybridep SMs 32, manual GC).
    ("nemotron-3-super", "GB300", "MXFP8"): [((26, 4), _r(mtp=2)), ((26, 8), _r(mtp=2, manual_gc=True))],
    ("nemotron-3-super", "GB300", "NVFP4"): [((26, 4), _r(mtp=2, quant_file=True)),
                                             ((26, 8), _r(mtp=2, quant_file=True, manual_gc=True))],
    ("nemotron-3-super", "GB200", "MXFP8"): [((26, 4), _r(mtp=2)), ((26, 8), _r(mtp=2, manual_gc=True))],
    ("nemotron-3-super", "GB200", "NVFP4"): [((26, 4), _r(mtp=2, quant_file=True)),
                                             ((26, 8), _r(mtp=2, quant_file=True, manual_gc=True))],
    ("nemotron-3-super", "B300", "MXFP8"): [((26, 4), _r(mtp=2))],
    ("nemotron-3-super", "B300", "NVFP4"): [((26, 4), _r(mtp=2, recompute=NORM_MOE_ACT, quant_file=True))],
    ("nemotron-3-super", "B200", "MXFP8"): [((26, 4), _r(mtp=2, graphs=NONE, recompute=NORM_MOE_ACT))],
    ("nemotron-3-super", "B200", "NVFP4"): [((26, 4), _r(mtp=2, quant_file=True))],
    # Nemotron 3 Ultra (26.08 only): v0.6.0 gb300 _nemotron_3_ultra_gb300_fp8mx_config / gb200
    # nemotron_3_ultra_pretrain_256gpu_gb200_fp8mx_config and common.py
    # _apply_nemotron_3_ultra_perf_defaults / _apply_nemotron_3_ultra_fsdp_hsdp: hybridep,
    # moe_router_fusion True, no CUDA graphs, recompute_modules [moe_act], fine-grained
    # activation offloading of the fused grouped MLP (offload_modules ["fused_group_mlp"]),
    # MTP 2, manual GC (interval 100), Megatron-FSDP optim_grads_params sharded within a
    # 64-GPU NVLink domain (HSDP: num_distributed_optimizer_instances = 256 / 64), BF16
    # gradient communication. GB200: TP 2 with sequence parallelism.
    ("nemotron-3-ultra", "GB300", "MXFP8"): [((26, 8), _r(graphs=NONE, recompute=("moe_act",), mtp=2,
                                                          router_fusion=True, fsdp=64,
                                                          offload=("fused_group_mlp",), manual_gc=True))],
    ("nemotron-3-ultra", "GB200", "MXFP8"): [((26, 8), _r(graphs=NONE, recompute=("moe_act",), mtp=2,
                                                          router_fusion=True, fsdp=64,
                                                          offload=("fused_group_mlp",), manual_gc=True))],
}

# Megatron-Core recompute_modules -> the simulator's ``workload.recompute`` mode
# (sim/scenario.py); another module set is passed as ``workload.recompute_modules``.
RECOMPUTE = {NONE: "none", NORM_MOE_ACT: "norm_moe_act"}


def recompute_workload(modules: tuple[str, ...]) -> dict:
    """The workload keys of a recipe's recompute_modules: its mode where one names that
    set, else the list itself."""
    if modules in RECOMPUTE:
        return {"recompute": RECOMPUTE[modules]}
    return {"recompute_modules": list(modules)}


def release(row) -> tuple[int, ...]:
    """(26, 4, 1) of a row MB-PERF-26.04.01."""
    return tuple(int(x) for x in str(row.source_id).removeprefix("MB-PERF-").split("."))


def precision_key(row) -> str:
    label = str(row.precision).split()[0].upper()
    return {"FP8-MX": "MXFP8", "FP8-CS": "FP8"}.get(label, label)


def hybrid_recipe(row) -> dict | None:
    """The settings of a row's recipe in its release (HYBRID_RECIPES); None where no recipe
    of that model, GPU and precision is read."""
    steps = HYBRID_RECIPES.get((row.arch_id, str(row.gpu_type).split()[0], precision_key(row)), [])
    got = [s for since, s in steps if release(row) >= since]
    return got[-1] if got else None


def unmodelled(recipe: dict) -> list[str]:
    """Settings of a recipe that change the work done and that ``workload`` cannot express."""
    out = []
    unpriced = [n for n in recipe["recompute_modules"] if n not in RECOMPUTE_MODULE_NAMES]
    if unpriced:
        out.append(f"recompute_modules {unpriced}")
    if recipe["offload_modules"]:
        out.append(f"activation offloading of {list(recipe['offload_modules'])}")
    if recipe["per_module_quant"]:
        out.append("per-module NVFP4 / MXFP8 / BF16 quantization (te_quant.cfg)")
    return out

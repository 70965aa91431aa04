"""SMs held by the communication kernels that run beside an overlapped GEMM.

A GEMM pipelined with its tensor-parallel collective shares the GPU with the
collective's kernels: each CTA of a communication kernel holds an SM the GEMM cannot
use. TransformerEngine's userbuffers (Megatron-Core / NeMo ``tp_comm_overlap``) sets the
SM count per GEMM in its overlap configuration; the values below are those of NeMo's
H100 userbuffers configurations (``nemo/collections/llm/recipes/tp_overlap_configs/
userbuffers.py``: Llama 3 70B/405B, GPT-3 20B/175B, BF16 and FP8), the median over
those five model configurations per GEMM:

* all-gathers before ``qkv`` / ``fc1`` forward and ``proj`` / ``fc2`` dgrad: ring
  exchange (``RingExchangeOverlapCfg``: num_sm 1, set_sm_margin False, copies on the
  copy engines);
* reduce-scatters after ``proj`` / ``fc2`` forward: pipelined (``PipelineOverlapCfg``),
  proj_fprop num_sm 24 (24, 24, 24, 16, 24), fc2_fprop num_sm 16 (16, 16, 8, 24, 1),
  set_sm_margin True: the GEMM is launched on the remaining SMs for its whole run;
* reduce-scatters of the input gradient beside the ``qkv`` / ``fc1`` wgrad GEMMs: bulk
  (``BulkOverlapCfg``), qkv_wgrad num_sm 24 (24, 24, 24, 16, 4), fc1_wgrad num_sm 4
  (4, 4, 2, 16, 4), set_sm_margin False.

TorchTitan's async TP (PyTorch SymmetricMemory ``fused_all_gather_matmul`` /
``fused_matmul_reduce_scatter``) moves the chunks with copy-engine memcpys: no SMs.
"""

from __future__ import annotations

# GEMM name in workloads.layers -> (num_sm, set_sm_margin) of its userbuffers overlap
UB_SMS: dict[str, tuple[int, bool]] = {
    "qkv": (1, False), "mlp_up": (1, False),                       # qkv/fc1 fprop: ring
    "attn_proj_dgrad": (1, False), "mlp_down_dgrad": (1, False),   # proj/fc2 dgrad: ring
    "attn_proj": (24, True), "mlp_down": (16, True),               # proj/fc2 fprop: pipeline
    "qkv_wgrad": (24, False), "mlp_up_wgrad": (4, False),          # qkv/fc1 wgrad: bulk RS
}


def tp_overlap_sms(mode: str, gemm_name: str) -> tuple[int, bool]:
    """(SMs the TP collective's kernels hold, whether the GEMM runs on the rest for its
    whole run) for a GEMM overlapped under ``tp_comm_overlap`` ``mode``. GEMMs outside
    the table (FP8 casts' neighbours, heads) take the ring exchange's single SM."""
    if mode != "ring":
        return 0, False
    return UB_SMS.get(gemm_name, (1, False))

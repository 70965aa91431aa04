"""The block alignment and top-k sum of the Triton fused_moe path in a serving iteration
(workloads/inference/moe_ops.py ``_align``; vLLM csrc/moe/moe_align_sum_kernels.cu)."""

from workloads.inference.moe_ops import MoEIterationOps
from workloads.model import resolve


def _names(model: str, T: int, **moe) -> list[str]:
    return [o.name for o in MoEIterationOps(resolve(model), 1, 1, "bf16", **moe).token_ops(T, True)]


def test_few_experts_and_slots_align_in_one_kernel():
    """vLLM's small-batch-expert mode (at most 64 experts, under 1024 slots): one kernel
    counts, prefix-sums and places the slots; Mixtral's 8 experts at 511 tokens x top-2 =
    1022 slots stay in it, at 512 tokens (1024 slots) a second kernel scatters them."""
    names = _names("mixtral-8x7b", 511)
    assert names[names.index("router_topk") + 1:names.index("expert_up")] == ["moe_align"]
    names = _names("mixtral-8x7b", 512)
    assert names[names.index("router_topk") + 1:names.index("expert_up")] == ["moe_align", "moe_sort"]
    assert names[names.index("expert_down") + 1] == "moe_sum"


def test_padded_slots_follow_the_default_block_size():
    """Qwen3-30B-A3B (128 experts, top-8): BLOCK_SIZE_M 16 up to 128 tokens, 64 above; the
    alignment kernel's int32 traffic: the slots' ids read, the padded slot array, one expert
    id per block and 129 prefix sums written."""
    ops = MoEIterationOps(resolve("qwen3-30b-a3b"), 1, 1, "bf16")
    for T, block in ((128, 16), (129, 64)):
        align = next(o for o in ops.token_ops(T, True) if o.name == "moe_align")
        n = 8 * T
        padded = n + 128 * (block - 1)
        assert align.bytes == 4.0 * (n + padded + -(-padded // block) + 129)


def test_deepep_lays_out_and_sums_the_tokens_itself():
    """With DeepEP's dispatch and combine no alignment or top-k sum kernel is priced."""
    names = _names("qwen3-30b-a3b", 64, ep=8, dispatcher="deepep")
    assert not {"moe_align", "moe_sort", "moe_sum"} & set(names)

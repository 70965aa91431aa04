"""The backward kernels of Mamba-2's chunked SSD scan (mamba_ssm
``_mamba_chunk_scan_combined_bwd``): their launch order, FLOPs and bytes by hand at
Nemotron 3 Nano's shapes (one sequence of 8192: 64 heads of 64, state 128, 8 groups,
chunk 128, bf16)."""

from __future__ import annotations

from workloads import mamba
from workloads.graph import CommGroup
from workloads.layer_mamba import mamba_backward, ssd_backward_ops
from workloads.layers import LayerContext
from workloads.model import presets

L, Q, H, P, N, G = 8192, 128, 64, 64, 128, 8
D = L * H * P            # x, dout, dx elements: 33,554,432
BC = L * G * N           # B or C: 8,388,608
S = L // Q * H * P * N   # chunk states: 33,554,432
CB = L * Q * G           # C B^T: 8,388,608
LH = L * H               # dt, dA: 524,288


def ops(gated: bool = True):
    return {o.name: o for o in ssd_backward_ops(L, Q, H, P, N, G, 2, "bf16", gated)}


def test_kernels_in_launch_order():
    assert list(ops()) == [
        "ssd_bwd_chunk_cumsum", "ssd_bwd_bmm_chunk_fwd", "ssd_bwd_chunk_state_fwd",
        "ssd_bwd_state_passing_fwd", "ssd_bwd_dz", "ssd_bwd_dstates", "ssd_bwd_state_passing",
        "ssd_bwd_dx", "ssd_bwd_db", "ssd_bwd_db_sum", "ssd_bwd_dc", "ssd_bwd_dc_sum",
        "ssd_bwd_dcb", "ssd_bwd_dcb_sum", "ssd_bwd_bmm_chunk_db", "ssd_bwd_bmm_chunk_dc",
        "ssd_bwd_ddA_stable", "ssd_bwd_ddA"]
    assert "ssd_bwd_dz" not in ops(gated=False)
    # 26 launches: dt.clone + chunk cumsum, 16 single kernels, 8 small ddA passes
    assert sum(o.host_ops for o in ops().values()) == 26


def test_matmul_kernels_are_ssd_ops_and_reductions_stream():
    o = ops()
    ssd = {n for n, op in o.items() if op.op_class == "ssd"}
    assert ssd == {"ssd_bwd_bmm_chunk_fwd", "ssd_bwd_chunk_state_fwd", "ssd_bwd_dstates",
                   "ssd_bwd_dx", "ssd_bwd_db", "ssd_bwd_dc", "ssd_bwd_dcb",
                   "ssd_bwd_bmm_chunk_db", "ssd_bwd_bmm_chunk_dc", "ssd_bwd_ddA_stable"}
    assert all(op.flops == 0 for n, op in o.items() if n not in ssd)


def test_flops_by_kernel_by_hand():
    o = ops()
    assert o["ssd_bwd_bmm_chunk_fwd"].flops == 2 * 8192 * 128 * 128 * 8      # C B^T
    assert o["ssd_bwd_dx"].flops == 8192 * 128 * 64 * 64 + 2 * 8192 * 128 * 64 * 64
    assert o["ssd_bwd_dcb"].flops == 8192 * 128 * 64 * 64                    # causal half
    total = sum(op.flops for op in o.values())
    assert total == mamba.ssd_flops(presets()["nemotron-3-nano"].mamba, L, H, G)[1]


def test_fp32_intermediates_by_hand():
    o = ops()
    # _state_passing_fwd without out_dtype: fp32 states in and out
    assert o["ssd_bwd_state_passing_fwd"].bytes == 8 * 33_554_432
    # _state_passing_bwd: fp32 states and dstates in, bf16 dstates and states out
    assert o["ssd_bwd_state_passing"].bytes == 12 * 33_554_432
    # dB, dC, d(C B^T) written in fp32, each .sum(2) reads and writes fp32
    assert o["ssd_bwd_db_sum"].bytes == o["ssd_bwd_dc_sum"].bytes == 8 * 8_388_608
    assert o["ssd_bwd_dcb_sum"].bytes == 8 * 8_388_608
    # dcb: x and dout in (2 x 2 D), fp32 d(C B^T) out, dt and dA in fp32
    assert o["ssd_bwd_dcb"].bytes == 4 * D + 4 * CB + 8 * LH == 171_966_464
    # dx: x, dout in, dx out; B; fp32 C B^T; bf16 dstates; dt, dA in, ddt out in fp32
    assert o["ssd_bwd_dx"].bytes == 6 * D + 2 * BC + 4 * CB + 2 * S + 12 * LH == 325_058_560
    # each C B^T backward: the operand in and the gradient out (bf16), fp32 d(C B^T) and
    # the fp32 residual in
    assert o["ssd_bwd_bmm_chunk_db"].bytes == 4 * BC + 4 * BC + 4 * CB == 100_663_296
    # the gate's backward: x, z, out, dout in, dz and the gated dout out
    assert o["ssd_bwd_dz"].bytes == 12 * D


def test_layer_backward_runs_these_kernels_on_its_local_heads():
    m = presets()["nemotron-3-nano"]
    ctx = LayerContext(m, 1, 2, True, "bf16", CommGroup((0, 1), "tp"))
    names = [o.name for o in mamba_backward(ctx) if o.name.startswith("ssd_bwd")]
    assert names == list(ops())
    half = {o.name: o for o in mamba_backward(ctx)}
    assert half["ssd_bwd_dx"].flops == ops()["ssd_bwd_dx"].flops / 2

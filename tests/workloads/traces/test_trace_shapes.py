"""Kernel work from the shapes of the CPU op that launched it (workloads/traces/shapes.py):
hand-computed FLOPs and bytes, and the launch -> innermost aten op link."""

import pytest

from workloads.traces.events import CPU_OP, KERNEL, RUNTIME, Event
from workloads.traces.shapes import launch_ops, work_of


def cpu(name, ts, dur, dims=None, types=None, tid=1):
    extra = {"dims": dims, "types": types} if dims is not None else None
    return Event(CPU_OP, name, 1, tid, ts, dur, -1, -1, -1, extra)


def launch(ts, corr, tid=1):
    return Event(RUNTIME, "cudaLaunchKernel", 1, tid, ts, 1.0, corr, -1, -1, None)


def kernel(ts, corr, name="k"):
    return Event(KERNEL, name, 0, 7, ts, 1.0, corr, 0, 7, None)


def test_gemm_work():
    # addmm(bias[512], A[1024, 1705], B[1705, 512]) in fp16: 2 m n k FLOPs, A + B + C bytes
    w = work_of("aten::addmm", [[512], [1024, 1705], [1705, 512], [], []],
                ["c10::Half", "c10::Half", "c10::Half", "Scalar", "Scalar"])
    assert (w.op_class, w.dtype) == ("gemm", "fp16")
    assert w.flops == 2 * 1024 * 512 * 1705
    assert w.bytes == 2 * (1024 * 1705 + 1705 * 512 + 1024 * 512)
    b = work_of("aten::bmm", [[8, 64, 32], [8, 32, 16]], ["float", "float"])
    assert b.flops == 2 * 8 * 64 * 16 * 32 and b.bytes == 4 * 8 * (64 * 32 + 32 * 16 + 64 * 16)


def test_split_gemm_shares_its_work():
    """A split-K sgemm and its splitKreduce kernel (both launched by one aten::mm, as in the
    V100 traces) carry the GEMM's FLOPs once between them, not once each."""
    dims, types = [[1024, 4096], [4096, 12]], ["float", "float"]
    one = work_of("aten::mm", dims, types)
    two = work_of("aten::mm", dims, types, launches=2)
    assert one.flops == 2 * 1024 * 12 * 4096
    assert (two.flops, two.bytes) == (one.flops / 2, one.bytes / 2)


def test_memory_bound_work_and_shared_launches():
    # add(x[4, 1024], y[4, 1024]) fp32: read both, write one
    w = work_of("aten::add", [[4, 1024], [4, 1024], []], ["float", "float", "Scalar"])
    assert (w.op_class, w.flops, w.bytes) == ("elementwise", 0.0, 3 * 4 * 4096)
    # a multi-tensor op's bytes shared by the kernels it launched
    lst = [[[10], [20]], [[10], [20]]]
    one = work_of("aten::_foreach_add_", lst, ["TensorList", "TensorList"])
    two = work_of("aten::_foreach_add_", lst, ["TensorList", "TensorList"], launches=2)
    assert two.bytes == pytest.approx(one.bytes / 2)


def test_convolution_and_shapeless_ops_are_unpriced():
    assert work_of("aten::cudnn_convolution", [[1, 3, 8, 8], [4, 3, 3, 3]], ["float"] * 2) is None
    assert work_of("aten::empty", [[]], ["Scalar"]) is None


def test_launch_links_innermost_aten_op_on_its_thread():
    evs = [cpu("aten::linear", 0, 100, [[2, 8], [4, 8], [4]], ["float"] * 3),
           cpu("aten::addmm", 10, 50, [[4], [2, 8], [8, 4]], ["float"] * 3),
           launch(20, corr=7),
           cpu("CompiledFunction", 200, 100, [[2, 8]], ["float"]),
           launch(250, corr=8),                       # inside a non-aten container: unpriced
           launch(30, corr=9, tid=2)]                 # another thread: no op open there
    links = launch_ops(evs + [kernel(25, 7), kernel(255, 8), kernel(35, 9)])
    assert links == {7: ("aten::addmm", [[4], [2, 8], [8, 4]], ["float"] * 3, 1)}


def test_only_calls_that_started_a_device_op_are_launches():
    """An aten::mm on ROCm makes three runtime calls with correlation ids and one kernel:
    its GEMM's work is not split three ways."""
    evs = [cpu("aten::mm", 0, 100, [[128, 5], [5, 128]], ["float"] * 2),
           launch(10, corr=1), launch(20, corr=2), launch(30, corr=3), kernel(40, 2)]
    assert launch_ops(evs) == {2: ("aten::mm", [[128, 5], [5, 128]], ["float"] * 2, 1)}


def test_a_gemm_shares_its_flops_only_with_gemm_kernels():
    """aten::addmm on ROCm copies the bias into the output (direct_copy_kernel, class
    memcpy) and then runs one Tensile GEMM: the GEMM keeps all 2 m n k FLOPs. A split-K
    sgemm and its splitKreduce kernel (both GEMM-class) share them."""
    dims, types = [[128], [5, 128], [128, 128], [], []], ["float"] * 3 + ["Scalar"] * 2
    evs = [cpu("aten::addmm", 0, 100, dims, types), launch(10, corr=1), launch(20, corr=2),
           kernel(30, 1, "elementwise_kernel<128, 2, direct_copy_kernel_cuda>"),
           kernel(40, 2, "Cijk_Alik_Bljk_SB_Bias_MT64x16x32")]
    links = launch_ops(evs)
    assert links[2][3] == 1 and work_of(*links[2]).flops == 2 * 5 * 128 * 128
    evs = [cpu("aten::mm", 0, 100, [[1024, 4096], [4096, 12]], ["float"] * 2),
           launch(10, corr=1), launch(20, corr=2),
           kernel(30, 1, "volta_sgemm_32x32_sliced1x4_tn"), kernel(40, 2, "splitKreduce_kernel")]
    links = launch_ops(evs)
    assert links[1][3] == links[2][3] == 2


def test_fill_and_copy_do_not_read_their_destination():
    """fill_(t[1024], 1.0) and zero_(t) write 4 KiB; copy_(dst, src) reads src and writes
    dst: 2 x 4 KiB (an add_(a, b) reads both and writes a: 3 x 4 KiB)."""
    f = ["float", "Scalar"]
    assert work_of("aten::fill_", [[1024], []], f).bytes == 4096
    assert work_of("aten::zero_", [[1024]], ["float"]).bytes == 4096
    assert work_of("aten::copy_", [[1024], [1024], []], ["float", "float", "Scalar"]).bytes == 8192
    assert work_of("aten::add_", [[1024], [1024], []], ["float", "float", "Scalar"]).bytes == 12288

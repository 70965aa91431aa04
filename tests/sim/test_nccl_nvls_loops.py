"""NCCL's NVLS kernel geometry (v2.19.3, src/enqueue.cc computeColl, src/device/all_reduce.h)
by hand: 16 channels x nHeads x chunk bytes per loop, the chunk halved down NCCL's ladder
for small buffers, and the warps per channel by role."""

import pytest

from sim.network.collectives import nccl_model

MIB = 2 ** 20


@pytest.mark.parametrize(("nbytes", "heads", "chunk", "loop", "loops"), [
    # 4 GPUs: concurrentOps = 16 x 4 = 64. 3 MiB < 64 x 64 x 128 KiB -> 64 KiB;
    # < 8 x 64 x 64 KiB = 32 MiB -> 32 KiB; < 2 x 64 x 32 KiB = 4 MiB -> 16 KiB.
    (3 * MIB, 4, 16384, 1 * MIB, 3),
    (4 * MIB, 4, 32768, 2 * MIB, 2),            # 4 MiB is not < 4 MiB: stays at 32 KiB
    (64 * MIB, 4, 65536, 4 * MIB, 16),          # >= 32 MiB: 64 KiB
    # 8 GPUs: concurrentOps = 128. < 2 x 128 x 32 KiB = 8 MiB -> 16 KiB (2 MiB loops).
    (3 * MIB, 8, 16384, 2 * MIB, 2),
    (8 * MIB, 8, 32768, 4 * MIB, 2),
    (64 * MIB, 8, 65536, 8 * MIB, 8),           # 64 MiB is not < 8 x 128 x 64 KiB
    (2 ** 31, 8, 131072, 16 * MIB, 128),        # >= 1 GiB: the 128 KiB maximum
])
def test_nvls_chunk_and_loops_by_hand(nbytes, heads, chunk, loop, loops):
    assert nccl_model.nvls_chunk_bytes(nbytes, heads) == chunk
    assert nccl_model.nvls_loop_bytes(nbytes, heads) == loop
    assert nccl_model.nvls_loops(nbytes, heads) == loops


def test_nvls_warps_per_channel():
    """20 warps (640 threads); 7 reduce warps up to 6 ranks, 5 above; scatter takes
    (20 - reduce + 1) / 2, gather (20 - reduce) / 2."""
    assert nccl_model.nvls_warps(4) == {"reduce": 7, "scatter": 7, "gather": 6}
    assert nccl_model.nvls_warps(8) == {"reduce": 5, "scatter": 8, "gather": 7}

"""Predicted vs measured nccl-tests bus bandwidth for every reference sweep.

Sweeps (calibration/reference/), each on its own catalog system and built-in profile:
- collectives/dgx_h100_all_reduce_nvls.csv: one DGX H100, 8 GPUs (NVLS); dgx-h100, h100;
- collectives/azure_a100_8gpu_all_reduce.csv: Azure's AI-benchmarking guide, 8x A100
  80GB, NCCL 2.18.5; azure-ndm-a100-v4, profile a100-ndm-v4;
- echo_nccl_tests/azure_a100_40gb_all_reduce_{2,4,8,16}gpu.log: ND A100 v4 (8x A100
  40GB), 2-8 GPUs in one server and 16 over two servers (one 200 Gb/s HDR NIC per GPU);
  azure-nd-a100-v4, profile a100. The 1-GPU log has no communication (busbw is 0 by
  definition) and is left out.
- echo_nccl_tests/azure_a100_40gb_all_reduce_{32,64,128}gpu.log: the same cluster and
  source at 4, 8 and 16 servers (8 GPUs each, 1 KiB-4 GiB). The 64-GPU (8-server) log is
  fitted with the two-server one (the a100 network curves: two node counts separate the
  base latency from the per-tree-level one); the 32- and 128-GPU logs are a check only
  (``check_sweeps``), held out of every fit.
- vidur/network/{a100,h100}_dgx_all_reduce.csv (Microsoft Vidur's profiling on one DGX
  node, 2/4/8 GPUs: the median NCCL kernel time of 11 eager torch.distributed.all_reduce
  calls on rank 0, calibration/vidur_harness.py): sizes from 1 MiB, half an octave apart
  (below 1 MiB the harness' pace is the time: a 25-60 us floor where nccl-tests on the
  same node types show 9-25 us). DGX A100 on
  dgx-a100, profile a100-dgx, fitted with the Azure NDm sweep (same A100 80GB node);
  DGX H100 on dgx-h100 is a check only (``check_sweeps``): the h100 fabric's nvlink
  curves are fitted on the NVLS sweep alone (docs/fabric.md); its 2-GPU rows give the
  size ramp of the analytical ring curve (``collectives.nvlink_ring``), which this
  flow-model check does not read.
- collectives/voltage_park_h100_4node_{all_reduce,all_gather}.csv: nccl-tests on four
  8x H100 SXM nodes (32 GPUs, 8x 400 Gb/s InfiniBand per node, NCCL 2.24.3, NCCL's own
  algorithm choice), Voltage Park's cluster as benchmarked by AI @ Georgia Tech; on
  dgx-h100 (same node: 8 H100 SXM, NVSwitch, 8x 400 Gb/s NICs), profile h100. The
  all_reduce is the h100 profile's network fit; the all_gather is a check only
  (``check_sweeps``; the fabric fitter prices all_reduce sweeps).
- collectives/h100_8gpu_reduce_scatter_ring.csv: one 8x H100 SXM server, reduce_scatter
  with NCCL_ALGO=Ring forced, 128 MiB-8 GiB (NVIDIA/nccl issue 1047, 2023-10-31, NCCL
  2.18/2.19); on dgx-h100, profile h100, run as ring (``Sweep.algo``); a check only: the
  h100 nvlink curves are fitted on NVLS all_reduce alone (docs/fabric.md).
The A100 sources disagree by up to 40% on the same node type (a 44 us floor against
31 us, slower at 4-64 MiB), so each system has its own fitted fabric section; the two
A100 80GB sources (Azure NDm, Vidur DGX) agree with each other (docs/fabric.md).

Error per sweep: geometric-mean absolute error, exp(mean |ln(pred/meas)|) - 1, over
all sizes of the sweep (busbw and time give the same ratio).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import pandas as pd

from calibration.parsers import read_nccl_tests, read_vidur_network
from calibration.reference_files import REF, reference_csv
from hw_models import catalog
from hw_models.profile import Profile, load_builtin
from sim.network.analytical import ClusterLayout, bus_factor
from sim.network.flow import FlowNetwork
from sim.progress import progress
from workloads.graph import CommGroup


@dataclass(frozen=True)
class Sweep:
    name: str
    system: str
    profile: str
    gpus: int
    gpus_per_node: int
    data: pd.DataFrame           # size_bytes, time_us, busbw_gb_s
    # Catalog systems with the same node (GPU, NVSwitch, NICs), for overlays/comparisons.
    also_on: tuple[str, ...] = ()
    # Other profiles whose fabric section is fitted on this sweep too.
    also_fits: tuple[str, ...] = ()
    # The nccl-tests collective (``size_bytes`` is nccl-tests' size: the whole buffer).
    collective: str = "all_reduce"
    # The algorithm the run forced (NCCL_ALGO), None where NCCL chose its own.
    algo: str | None = None

    @property
    def nodes(self) -> int:
        return -(-self.gpus // self.gpus_per_node)


def _echo(n: int) -> Sweep:
    log = read_nccl_tests(REF / f"echo_nccl_tests/azure_a100_40gb_all_reduce_{n}gpu.log")
    df = pd.DataFrame({"size_bytes": log.size_bytes, "time_us": log.ip_time_us,
                       "busbw_gb_s": log.ip_busbw_gb_s})
    return Sweep(f"echo A100-40GB {n} GPU", "azure-nd-a100-v4", "a100", n, 8, df, ("dgx-a100",))


VIDUR_MIN_BYTES = 2 ** 20


def half_octaves(sizes: np.ndarray) -> list[int]:
    """Indices of the sizes nearest to half-octave steps from VIDUR_MIN_BYTES (Vidur's
    size grid is linear: 8 KiB steps)."""
    steps = VIDUR_MIN_BYTES * 2 ** (np.arange(0, 2 * np.log2(sizes.max() / VIDUR_MIN_BYTES) + 1) / 2)
    return sorted({int(np.argmin(np.abs(np.log(sizes / s)))) for s in steps})


def _vidur(gpu: str, n: int, system: str, profile: str) -> Sweep:
    """One single-node GPU count of a Vidur all_reduce CSV at half-octave sizes."""
    df = read_vidur_network(REF / f"vidur/network/{gpu}_dgx_all_reduce.csv")
    df = df[(df.gpus == n) & (df.gpus_per_node == n) & (df.size_bytes >= VIDUR_MIN_BYTES)]
    df = df.iloc[half_octaves(df.size_bytes.to_numpy())]
    data = pd.DataFrame({"size_bytes": df.size_bytes.to_numpy(), "time_us": df.time_us.to_numpy(),
                         "busbw_gb_s": bus_factor("all_reduce", n) * df.size_bytes.to_numpy()
                         / (df.time_us.to_numpy() * 1e3)})
    return Sweep(f"Vidur DGX {gpu.upper()} {n} GPU", system, profile, n, n, data)


VOLTAGE_PARK = "collectives/voltage_park_h100_4node_{}.csv"


def _voltage_park(collective: str) -> Sweep:
    """Voltage Park's four-node H100 nccl-tests sweep of one collective (32 ranks, NCCL's
    own algorithm choice; in-place times)."""
    df = reference_csv(VOLTAGE_PARK.format(collective))
    return Sweep(f"Voltage Park H100 4x8 GPU {collective}", "dgx-h100", "h100", 32, 8,
                 df[["size_bytes", "time_us", "busbw_gb_s"]], collective=collective)


H100_RS_RING = "collectives/h100_8gpu_reduce_scatter_ring.csv"


def _h100_reduce_scatter_ring() -> Sweep:
    """One 8x H100 SXM server's reduce_scatter with NCCL_ALGO=Ring (NVIDIA/nccl issue
    1047; out-of-place times, 128 MiB to 8 GiB)."""
    df = reference_csv(H100_RS_RING)
    return Sweep("H100 8 GPU reduce_scatter ring", "dgx-h100", "h100", 8, 8,
                 df[["size_bytes", "time_us", "busbw_gb_s"]], collective="reduce_scatter",
                 algo="ring")


# ND A100 v4 logs beyond two servers (4, 8, 16 nodes x 8 GPUs): the 8-node one is fitted
# with the 2-node one (a second node count for the network's per-level latency), the
# 4- and 16-node ones are held out of every fit.
ECHO_MULTINODE_FIT = (64,)
ECHO_MULTINODE_CHECK = (32, 128)


@cache
def check_sweeps() -> tuple[Sweep, ...]:
    """Measured sweeps no profile is fitted on: validation only."""
    return (*(_vidur("h100", n, "dgx-h100", "h100") for n in (2, 4, 8)),
            _voltage_park("all_gather"), _h100_reduce_scatter_ring(),
            *(_echo(n) for n in ECHO_MULTINODE_CHECK))


@cache
def reference_sweeps() -> tuple[Sweep, ...]:
    h = reference_csv("collectives/dgx_h100_all_reduce_nvls.csv")
    a = reference_csv("collectives/azure_a100_8gpu_all_reduce.csv")
    a["time_us"] = bus_factor("all_reduce", 8) * a.size_bytes / (a.busbw_gb_s * 1e3)
    return (Sweep("DGX H100 8 GPU NVLS", "dgx-h100", "h100", 8, 8, h),
            Sweep("Azure A100-80GB 8 GPU", "azure-ndm-a100-v4", "a100-ndm-v4", 8, 8, a,
                  ("dgx-a100",), ("a100-dgx",)),
            *(_echo(n) for n in (2, 4, 8, 16, *ECHO_MULTINODE_FIT)),
            *(_vidur("a100", n, "dgx-a100", "a100-dgx") for n in (2, 4, 8)),
            _voltage_park("all_reduce"))


def network_for(sweep: Sweep, profile: Profile | None = None) -> FlowNetwork:
    sys = catalog.system(sweep.system)
    layout = ClusterLayout(sys, sweep.nodes, sys.nic_gbps)
    algo = getattr(sweep, "algo", None)   # point-to-point sweeps force nothing
    return FlowNetwork(layout, profile or load_builtin(sweep.profile),
                       {"algo": algo} if algo else {})


def predict(sweep: Sweep, profile: Profile | None = None) -> pd.DataFrame:
    net = network_for(sweep, profile)
    group, kind = CommGroup(tuple(range(sweep.gpus))), sweep.collective
    rows = []
    for size, t_meas, bw_meas in sweep.data[["size_bytes", "time_us", "busbw_gb_s"]].itertuples(
            index=False):
        t = net.collective_time(kind, float(size), group)
        ch = net.choose(kind, float(size), group)
        bw = bus_factor(kind, sweep.gpus) * size / t / 1e9
        rows.append({"sweep": sweep.name, "size_bytes": int(size), "measured_us": t_meas,
                     "predicted_us": round(t * 1e6, 2), "measured_busbw": bw_meas,
                     "predicted_busbw": round(bw, 2), "algo": ch.algo, "proto": ch.proto,
                     "error_pct": round((t_meas * 1e-6 / t - 1) * 100, 1), "op": kind})
    return pd.DataFrame(rows)


def geomean_abs_error(pred: np.ndarray, meas: np.ndarray) -> float:
    return float(np.expm1(np.mean(np.abs(np.log(np.asarray(pred) / np.asarray(meas))))))


def validate(profile: Profile | None = None) -> pd.DataFrame:
    """All sweeps, one row per size; ``error_pct`` is predicted/measured busbw - 1."""
    fitted = {s.name for s in reference_sweeps()}
    return pd.concat([predict(s, profile).assign(fitted=s.name in fitted)
                      for s in progress(reference_sweeps() + check_sweeps(), desc="nccl",
                                        unit="sweep")], ignore_index=True)


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    out = []
    for name, g in rows.groupby("sweep", sort=False):
        out.append({"sweep": name, "sizes": len(g),
                    "fitted": "yes" if g.get("fitted", pd.Series([True])).iloc[0] else "no (check)",
                    "geomean_abs_err_pct": round(
                        100 * geomean_abs_error(g.measured_us, g.predicted_us), 1),
                    "max_abs_err_pct": round(float(g.error_pct.abs().max()), 1)})
    return pd.DataFrame(out)


SUITE = "nccl"


def dashboard_rows() -> list[dict]:
    """Rows for ``clustersim validate all``: one per sweep and message size (time, us),
    the collective sweeps and the point-to-point ones."""
    from calibration import fit_p2p
    rows = pd.concat([validate(), fit_p2p.validate()], ignore_index=True)
    return [{"name": f"{r.sweep} {int(r.size_bytes)} B", "predicted": r.predicted_us,
             "published": r.measured_us, "unit": "us", "kind": "time", "group": r.sweep}
            for r in rows.itertuples()]

"""What Vidur's collective timings measure, and two checks of the H100 2/4-GPU misses.

Vidur's profiler (microsoft/vidur, vidur/profiling/collectives/collectives_wrapper.py and
vidur/profiling/common/cuda_timer.py) times one size like this, on rank 0: barrier,
synchronize, then 11 eager ``torch.distributed.all_reduce`` calls back to back inside a
Kineto CUDA trace; the value is the median duration of the GPU kernels whose name starts
with ``nccl``. Three such runs give the CSV's min / median / max. So a row is NCCL kernel
time, not host call time, but a kernel's duration includes waiting for the peers' kernels:
when the host issues calls more slowly than the GPU finishes them, each kernel starts as
soon as rank 0 launches it and waits for the latest peer, so the inter-rank launch skew
is in the time; when the GPU is the slower side, kernels queue and run in lockstep and
the time is the kernel's own.

``floor_trial`` prices the skew the simplest way (a harness floor per sweep, the median
of the sweep's sizes below 1 MiB, applied as max(model, floor) to every Vidur row);
``nvls_steps`` compares the time jumps of the H100 NVLS sweeps with NCCL's loop
boundaries (sim.network.collectives.nccl_model.nvls_loops). ``python -m
calibration.vidur_harness`` prints both (docs/fabric.md, "Vidur's harness").
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from calibration.parsers import read_vidur_network
from calibration.validate_nccl import REF, VIDUR_MIN_BYTES, geomean_abs_error
from sim.network.collectives import nccl_model

GRID_END = 16 * 2 ** 20   # Vidur's grid is 32 KiB steps up to 16 MiB (128 KiB above)
# A validated row is "host-paced" when, from the measurements alone, its time is the
# harness' pace rather than the kernel's: its median is at most FLOOR_MARGIN x the
# sweep's sub-MiB floor, and some size within +-WINDOW octaves of it ran at most
# ENVELOPE_RATIO x as long (the kernel itself is faster there). Round numbers, chosen on
# the data's own spread (3-run spreads of 4-13 us on ring rows), never on predictions.
FLOOR_MARGIN, ENVELOPE_RATIO, WINDOW = 1.15, 0.8, 0.125


def sweep_rows(gpu: str) -> pd.DataFrame:
    """Vidur's single-node all_reduce rows of one GPU type (all sizes)."""
    df = read_vidur_network(REF / f"vidur/network/{gpu}_dgx_all_reduce.csv")
    return df[df.gpus == df.gpus_per_node].reset_index(drop=True)


def harness_floor(rows: pd.DataFrame) -> float:
    """Median of the medians below VIDUR_MIN_BYTES: the time of a call whose kernel is
    far shorter than the harness' pace (us)."""
    small = rows[rows.size_bytes < VIDUR_MIN_BYTES]
    return float(np.median(small.time_us)) if len(small) else float("nan")


def floors() -> pd.DataFrame:
    """Per sweep: the harness floor, the median and the lower envelope (smallest
    median of the sizes around it) at 1-2 MiB, and the 3-run spread there."""
    out = []
    for gpu in ("a100", "h100"):
        df = sweep_rows(gpu)
        for n, g in df.groupby("gpus"):
            band = g[(g.size_bytes > VIDUR_MIN_BYTES) & (g.size_bytes <= 2 * VIDUR_MIN_BYTES)]
            out.append({"sweep": f"Vidur DGX {gpu.upper()} {n} GPU",
                        "floor_below_1MiB_us": harness_floor(g),
                        "median_1_2MiB_us": float(np.median(band.time_us)),
                        "envelope_1_2MiB_us": float(band.time_us.min()),
                        "min_1_2MiB_us": float(band.time_min_us.min()),
                        "max_1_2MiB_us": float(band.time_max_us.max())})
    return pd.DataFrame(out)


def floor_trial(rows: pd.DataFrame) -> pd.DataFrame:
    """Geomean |error| per Vidur sweep of ``rows`` (validate_nccl.validate() output) as
    predicted, and with max(predicted, harness floor of the sweep's own sub-MiB sizes)."""
    fl = floors().set_index("sweep").floor_below_1MiB_us
    out = []
    for name, g in rows[rows.sweep.isin(fl.index)].groupby("sweep", sort=False):
        floored = np.maximum(g.predicted_us, fl[name])
        out.append({"sweep": name, "floor_us": fl[name],
                    "geomean_pct": round(100 * geomean_abs_error(g.predicted_us, g.measured_us), 1),
                    "with_floor_pct": round(100 * geomean_abs_error(floored, g.measured_us), 1)})
    return pd.DataFrame(out)


def host_paced(rows: pd.DataFrame) -> pd.DataFrame:
    """The Vidur rows of ``rows`` (validate_nccl.validate() output) with the lower envelope
    of the neighbouring sizes (``envelope_us``) and whether the row is host-paced (module
    constants)."""
    out = []
    for gpu in ("a100", "h100"):
        df = sweep_rows(gpu)
        for n, g in df.groupby("gpus"):
            name, floor = f"Vidur DGX {gpu.upper()} {n} GPU", harness_floor(g)
            for r in rows[rows.sweep == name].itertuples(index=False):
                near = g[(g.size_bytes >= r.size_bytes * 2 ** -WINDOW)
                         & (g.size_bytes <= r.size_bytes * 2 ** WINDOW)]
                env = float(near.time_us.min())
                out.append({"sweep": name, "size_bytes": r.size_bytes,
                            "measured_us": r.measured_us, "envelope_us": env,
                            "predicted_us": r.predicted_us,
                            "host_paced": bool(r.measured_us <= FLOOR_MARGIN * floor
                                               and env <= ENVELOPE_RATIO * r.measured_us)})
    return pd.DataFrame(out)


def paced_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Geomean |error| per Vidur sweep over all rows, the kernel-bound rows and the
    host-paced ones (and the latter against their envelope)."""
    hp = host_paced(rows)
    out = []
    for name, g in hp.groupby("sweep", sort=False):
        k, h = g[~g.host_paced], g[g.host_paced]

        def ge(a, b):
            return round(100 * geomean_abs_error(a, b), 1) if len(a) else float("nan")
        out.append({"sweep": name, "rows": len(g), "all_pct": ge(g.predicted_us, g.measured_us),
                    "kernel_bound_rows": len(k), "kernel_bound_pct": ge(k.predicted_us, k.measured_us),
                    "host_paced_pct": ge(h.predicted_us, h.measured_us),
                    "host_paced_vs_envelope_pct": ge(h.predicted_us, h.envelope_us)})
    return pd.DataFrame(out)


def loop_boundaries(sizes: np.ndarray, n: int) -> np.ndarray:
    """True where NCCL's NVLS (loops, chunk) changes between consecutive sizes."""
    key = np.array([(nccl_model.nvls_loops(s, n), nccl_model.nvls_chunk_bytes(s, n))
                    for s in sizes])
    return np.any(key[1:] != key[:-1], axis=1)


def nvls_steps(gpu: str = "h100", lo: float = VIDUR_MIN_BYTES, hi: float = GRID_END) -> pd.DataFrame:
    """Mean time jump between consecutive sizes (uniform 32 KiB grid) where NCCL's NVLS
    loop count or chunk changes, and elsewhere, per GPU count (4 and 8: NVLS groups)."""
    df = sweep_rows(gpu)
    out = []
    for n in (4, 8):
        g = df[(df.gpus == n) & (df.size_bytes >= lo) & (df.size_bytes <= hi)].sort_values(
            "size_bytes")
        jumps = np.diff(g.time_us.to_numpy())
        at = loop_boundaries(g.size_bytes.to_numpy(), n)
        out.append({"sweep": f"Vidur DGX {gpu.upper()} {n} GPU", "boundaries": int(at.sum()),
                    "jump_at_boundary_us": round(float(jumps[at].mean()), 2),
                    "jump_elsewhere_us": round(float(jumps[~at].mean()), 2)})
    return pd.DataFrame(out)


def main() -> None:
    from calibration.validate_nccl import validate
    with pd.option_context("display.width", 200):
        print("Harness floor (median below 1 MiB) vs the 1-2 MiB rows, us:")
        print(floors().round(1).to_string(index=False))
        rows = validate()
        print("\nmax(model, floor) on every Vidur sweep (geomean |error|, %):")
        print(floor_trial(rows).to_string(index=False))
        print("\nHost-paced rows (median at the sub-MiB floor, a neighbouring size faster):")
        hp = host_paced(rows)
        print(hp[hp.host_paced].to_string(index=False))
        print(paced_summary(rows).to_string(index=False))
        print("\nTime jumps at NCCL's NVLS loop boundaries, 1-16 MiB (H100, and A100 as a "
              "placebo: no NVLS there):")
        print(pd.concat([nvls_steps("h100"), nvls_steps("a100")]).to_string(index=False))


if __name__ == "__main__":
    main()

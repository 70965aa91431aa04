"""vLLM sleep mode's wake-up and sleep against vLLM's published timings.

A colocated RL step puts the rollout engine to sleep at level 1 while the training-side
passes run and wakes it before the weight sync (docs/rl.md). vLLM's CuMemAllocator
(vllm/device_allocator/cumem.py) does the work: ``sleep`` copies every weight allocation
into a page-locked CPU buffer with a synchronous cudaMemcpy and unmaps every allocation;
``wake_up`` re-creates and re-maps every allocation (the KV cache included, empty) and
copies the weights back. The simulator prices each as

    seconds = fixed_s + weight bytes per GPU / (link_share x the GPU's host-link line rate)

(hw_models/data/engines.yaml ``vllm_sleep``, read by hw_models.catalog.vllm_sleep). Both
constants of each event are fitted here, and only here: a least-squares line through the
level-1 times of the A100 BF16 TP 1 models of vLLM's blog post (the ``fit`` 1 rows of
calibration/reference/inference/vllm_sleep_mode.csv), each model one point (the mean of its
runs), so that the two small models, which the post times four times as often, do not
outweigh the 30B one. ``link_share`` is the fitted bandwidth over the A100's PCIe 4.0 x16
line rate (hw_models/data/storage.yaml host_links), so the same share applies to another
GPU's host link. The other rows are checks.

    python -m calibration.vllm_sleep_check
"""

from __future__ import annotations

import pandas as pd

from calibration.fitting import fit_line
from calibration.reference_files import reference_csv
from hw_models import catalog, storage

CSV = "inference/vllm_sleep_mode.csv"
# The host link each row's GPU copies over: the A4000 is a PCIe 4.0 x16 card, the same
# link as the A100's (hw_models/data/storage.yaml has no A4000 entry).
LINK = {"a100-80gb": "a100-80gb", "a4000": "a100-80gb"}
EVENTS = ("wake", "sleep")


def load() -> pd.DataFrame:
    return reference_csv(CSV)


def link_gb_s(gpu: str) -> float:
    return storage.host_link(LINK[gpu]).gb_s


def points(event: str) -> pd.DataFrame:
    """The fitted points of ``event``: one per model, its mean time and its spread."""
    df = load()
    df = df[(df.fit == 1) & (df.event == event)]
    g = df.groupby(["model", "gpu", "bytes_per_gpu_gb"]).seconds
    return g.agg(["mean", "min", "max", "count"]).reset_index()


def fit(event: str) -> dict[str, float]:
    """(fixed_s, link_share) of ``event``: the least-squares line seconds = fixed +
    bytes / bandwidth through the models' mean times; share = bandwidth / line rate."""
    p = points(event)
    links = {link_gb_s(g) for g in p.gpu}
    assert len(links) == 1, links
    fixed, per_gb = fit_line(p.bytes_per_gpu_gb, p["mean"])
    return {"fixed_s": float(fixed), "link_share": float(1.0 / per_gb / links.pop())}


def predicted_s(event: str, gb: float, gpu: str, consts: dict | None = None) -> float:
    c = consts or catalog.vllm_sleep()[event]
    return c["fixed_s"] + gb / (c["link_share"] * link_gb_s(gpu))


def rows() -> pd.DataFrame:
    """Every level-1 row with known bytes, its run mean against the constants in use
    (level 2 reloads the weights from disk: another mechanism)."""
    df = load().dropna(subset=["bytes_per_gpu_gb"])
    df = df[df.level == 1]
    keys = ["experiment", "gpu", "level", "model", "tp", "precision", "bytes_per_gpu_gb",
            "event", "fit"]
    out = df.groupby(keys, sort=False).seconds.agg(["mean", "min", "max"]).reset_index()
    out["pred_s"] = [predicted_s(r.event, r.bytes_per_gpu_gb, r.gpu) for r in out.itertuples()]
    out["error_pct"] = 100 * (out.pred_s / out["mean"] - 1)
    out["model"] = out.model.str.split("/").str[-1]
    return out.round({"mean": 3, "pred_s": 3, "error_pct": 1})


def main() -> None:
    print(f"vLLM sleep mode (level 1) vs vLLM's published timings (calibration/reference/{CSV})")
    for ev in EVENTS:
        f, used = fit(ev), catalog.vllm_sleep()[ev]
        print(f"{ev}: fitted fixed {f['fixed_s']:.4f} s, link share {f['link_share']:.4f}; "
              f"in use {used['fixed_s']:.4f} s, {used['link_share']:.4f}")
    print(rows().to_string(index=False))


if __name__ == "__main__":
    main()

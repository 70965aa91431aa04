"""HybridEP's published intranode bandwidth (hw_models/data/hybridep.yaml; DeepEP's hybrid-ep
branch, docs/README_Hybrid-EP.md "Performance Results").

Inside one NVLink domain HybridEP's dispatch and combine run at an algorithm bandwidth that
falls as the domain's EP ranks grow (GB200, 32 SMs: 764 GB/s dispatch at 8 ranks, 632 at
36). ``intranode_rate`` reads it off that table: the rows at the SMs nearest the kernel's
(``moe_hybridep_num_sms``), the system's own GPU's where the table has them (a multi-tray
NVLink domain reads GB200's, an 8-GPU node B200's), else the other's; linear in the domain's
ranks between rows, held beyond the ends. Published for NVLink 5 only: other scale-up
bandwidths get None (the caller prices DeepEP's kernels instead).
"""

from __future__ import annotations

from functools import cache

import numpy as np

from hw_models.yamlio import read_packaged


@cache
def table() -> dict:
    return read_packaged("hw_models", "data", "hybridep.yaml")


def intranode_rate(scale_up_gb_s: float, multi_tray: bool, ranks: int, sms: int,
                   combine: bool) -> float | None:
    """Bytes/s of one HybridEP call over ``ranks`` GPUs of one NVLink domain, or None where
    the table does not cover the fabric (module docstring)."""
    t = table()
    if abs(scale_up_gb_s - t["scale_up_gb_s"]) > 1e-6:
        return None
    rows = t["rows"]
    nearest = min(abs(r[2] - sms) for r in rows)
    rows = [r for r in rows if abs(r[2] - sms) == nearest]
    own = [r for r in rows if r[0] == ("gb200" if multi_tray else "b200")]
    rows = sorted(own or rows, key=lambda r: r[1])
    xs = [r[1] for r in rows]
    ys = [r[4] if combine else r[3] for r in rows]
    return float(np.interp(ranks, xs, ys)) * 1e9

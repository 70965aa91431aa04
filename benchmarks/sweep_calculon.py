"""Sweep speed on Calculon's problem (Turing-NLG 530B, 5128 A100 80GB, batch <= 2520).

Calculon's llm-optimal-execution: 8112 executions (1080 feasible) in 24 s on this
2-core machine = 343 per second (issue 7). Prints, for the space closest to Calculon's
(examples/sweep_calculon.yaml) and for a wider one (uneven pipelines, interleaving 1-8,
the same other dimensions), our rate for the closed-form stage, the DES verification of
the top 10, and the best plan.

    PYTHONPATH=. python benchmarks/sweep_calculon.py [--workers N] [--verify-top K]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import yaml

from sim.sweep import run, spec, summary

CALCULON_RATE = 8112 / 24.0
HERE = Path(__file__).resolve().parent.parent


def spaces() -> dict[str, spec.Sweep]:
    data = yaml.safe_load((HERE / "examples" / "sweep_calculon.yaml").read_text())
    wide = {**data, "plans": {**data["plans"], "uneven_layers": True,
                              "vpp": [1, 2, 3, 4, 5, 6, 7, 8]}}
    return {"closest to Calculon": spec.parse(data, "calculon"),
            "wider (uneven pp, vpp 1-8)": spec.parse(wide, "calculon-wide")}


def bench(name: str, sweep: spec.Sweep, workers: int, verify_top: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        res = run.run(sweep, run.Options(out=f"{tmp}/r.parquet", workers=workers,
                                         verify_top=verify_top, progress=False))
    print(f"== {name}")
    print(summary.table(res))
    rate = res["plans_per_s"]
    print(f"closed form: {res['evaluated']} plans ({res['feasible']} feasible) in "
          f"{res['closed_form_s']:.2f} s = {rate:,.0f} plans/s; Calculon 343/s -> "
          f"{rate / CALCULON_RATE:.1f}x")
    print("rejected:", res["rejected"])
    print(f"total wall incl. DES on top {verify_top}: {res['wall_s']:.1f} s")
    top = [r for r in res["top"] if "des_iteration_time_s" in r]
    if top:
        errs = [abs(r["iteration_time_s"] / r["des_iteration_time_s"] - 1) for r in top]
        print(f"closed form vs DES on the verified plans: max |error| {max(errs):.1%}")
    best = res["best"]
    print("best:", best["plan"], f"{best['tokens_per_s']:,.0f} tokens/s",
          {k: v for k, v in best.items() if k.startswith("des_iteration")})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--verify-top", type=int, default=10)
    args = ap.parse_args()
    for name, sweep in spaces().items():
        bench(name, sweep, args.workers, args.verify_top)


if __name__ == "__main__":
    main()

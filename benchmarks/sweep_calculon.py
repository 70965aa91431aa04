"""Sweep speed on Calculon's problem (Turing-NLG 530B, 5128 A100 80GB, batch <= 2520).

Calculon's llm-optimal-execution: 8112 executions (1080 feasible) in 24 s on this
2-core machine = 343 per second (issue 7). Prints our rate for the closed-form stage,
the DES verification of the top 10, and the best plan.

    PYTHONPATH=. python benchmarks/sweep_calculon.py [--workers N]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from sim.sweep import run, spec, summary

CALCULON_RATE = 8112 / 24.0
HERE = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--verify-top", type=int, default=10)
    args = ap.parse_args()
    sweep = spec.load(HERE / "examples" / "sweep_calculon.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        res = run.run(sweep, run.Options(out=f"{tmp}/r.parquet", workers=args.workers,
                                         verify_top=args.verify_top, progress=False))
    print(summary.table(res))
    rate = res["plans_per_s"]
    print(f"closed form: {res['evaluated']} plans ({res['feasible']} feasible) in "
          f"{res['closed_form_s']:.2f} s = {rate:,.0f} plans/s; Calculon 343/s -> "
          f"{rate / CALCULON_RATE:.1f}x")
    print(f"total wall incl. DES on top {args.verify_top}: {res['wall_s']:.1f} s")
    top = [r for r in res["top"] if "des_iteration_time_s" in r]
    if top:
        errs = [abs(r["iteration_time_s"] / r["des_iteration_time_s"] - 1) for r in top]
        print(f"closed form vs DES on the verified plans: max |error| {max(errs):.1%}")
    print("best:", res["best"]["plan"], f"{res['best']['tokens_per_s']:,.0f} tokens/s")


if __name__ == "__main__":
    main()

"""Speed of the Execution Trace and Chakra paths on the committed traces.

Prints, per input: nodes, import time, engine replay time, Chakra export/import time and
the file size. ``python benchmarks/et_import.py``
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from sim.replay import replay
from workloads.traces import chakra
from workloads.traces.formats import load_trace

DATA = Path(__file__).parent.parent / "tests" / "data" / "traces"
CASES = [("ET alone, 1 rank", DATA / "cpu_gpt_1rank_et.json.gz", None),
         ("ET + Kineto, 1 rank", DATA / "cpu_gpt_1rank_with_et.json.gz",
          DATA / "cpu_gpt_1rank_et.json.gz"),
         ("ET + Kineto, 2 ranks gloo", DATA / "cpu_gpt_2rank_gloo_et", None)]


def main() -> None:
    print(f"{'input':28} {'nodes':>6} {'import s':>9} {'replay s':>9} {'chakra out s':>12} "
          f"{'chakra in s':>11} {'chakra KB':>9}")
    for label, path, et in CASES:
        t = time.perf_counter()
        tr = load_trace(path, et)
        t_imp = time.perf_counter() - t
        t = time.perf_counter()
        replay(tr)
        t_rep = time.perf_counter() - t
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            files = chakra.export(tr.graph, d, steps=tr.steps)
            t_out = time.perf_counter() - t
            size = sum(f.stat().st_size for f in files) / 1024
            t = time.perf_counter()
            chakra.load(d)
            t_in = time.perf_counter() - t
        print(f"{label:28} {len(tr.graph):>6} {t_imp:>9.2f} {t_rep:>9.2f} {t_out:>12.2f} "
              f"{t_in:>11.2f} {size:>9.0f}")


if __name__ == "__main__":
    main()

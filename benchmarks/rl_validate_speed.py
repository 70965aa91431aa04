"""CPU time of ``clustersim validate rl`` and of its rollout shortcut.

    python benchmarks/rl_validate_speed.py            # two rows, shortcut on vs off
    python benchmarks/rl_validate_speed.py --all      # the whole suite, shortcut on

The rollout of an RL step dominates the suite's time. The serving loop plays decode-only
runs in one go when nothing can change the batch before the next response ends
(sim/serving/fast_forward.py); this script times the same rows with the shortcut on and
off (CPU seconds, so other work on the machine does not count) and checks that the step
times agree exactly.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from calibration import validate_rl  # noqa: E402
from sim.rl import simulate_rl  # noqa: E402
from sim.serving import fast_forward  # noqa: E402

ROWS = (0, 6)          # Llama 3.1 8B on 16 H100 and Qwen3-30B-A3B on 32 H100, on-policy


def cpu(fn):
    t0 = time.process_time()
    out = fn()
    return time.process_time() - t0, out


def main() -> None:
    if "--all" in sys.argv:
        seconds, df = cpu(validate_rl.run)
        print(f"validate rl: {int((df.skipped == '').sum())} rows simulated in {seconds:.1f} s CPU")
        return
    table = validate_rl.load()
    rows = list(table.itertuples())
    print(f"{'row':34s} {'shortcut s':>10s} {'one by one s':>12s} {'speedup':>8s} {'step s':>8s}")
    for i in ROWS:
        sc = validate_rl.build(rows[i], validate_rl.prompt_tokens(table, rows[i]))
        on, fast = cpu(lambda sc=sc: simulate_rl(sc))
        keep = fast_forward.MIN_RUN
        fast_forward.MIN_RUN = 10**9
        try:
            off, slow = cpu(lambda sc=sc: simulate_rl(sc))
        finally:
            fast_forward.MIN_RUN = keep
        assert fast.metrics["step_time_s"] == slow.metrics["step_time_s"]
        name = f"{rows[i].model} {rows[i].num_gpus}x{rows[i].gpu_type}"
        print(f"{name:34s} {on:10.1f} {off:12.1f} {off / on:7.1f}x {fast.metrics['step_time_s']:8.1f}")


if __name__ == "__main__":
    main()

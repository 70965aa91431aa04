"""Wall time of simulating one RL step (``workload: kind: rl``).

    python benchmarks/rl_step.py

Times examples/rl_grpo_llama3_8b.yaml (2048 rollouts on 16 H100s) colocated, on two
pools on-policy and off-policy, and prints the phase split of each, so a user can see
what one step costs to simulate and where the simulated time goes.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sim import scenario  # noqa: E402
from sim.rl import simulate_rl  # noqa: E402

CASES = {
    "colocated": [],
    "8+8 on-policy": ["workload.placement={rollout_gpus: 8, train_gpus: 8}"],
    "8+8 off-policy 1": ["workload.placement={rollout_gpus: 8, train_gpus: 8}",
                         "workload.off_policy_steps=1"],
}


def main() -> None:
    print(f"{'case':18s} {'wall s':>7s} {'step s':>7s} {'gen s':>7s} {'logprob s':>9s} "
          f"{'train s':>8s} {'sync s':>7s} {'idle GPU-s':>10s}")
    for name, sets in CASES.items():
        sc = scenario.load(ROOT / "examples" / "rl_grpo_llama3_8b.yaml", sets)
        t0 = time.perf_counter()
        m = simulate_rl(sc).metrics
        wall = time.perf_counter() - t0
        print(f"{name:18s} {wall:7.2f} {m['step_time_s']:7.1f} {m['generation_s']:7.1f} "
              f"{m['logprob_s']:9.1f} {m['train_s']:8.1f} {m['weight_sync_s']:7.2f} {m['idle_s']:10.0f}")


if __name__ == "__main__":
    main()

"""Steady-state generation of an off-policy step whose rollouts stream across steps.

NeMo RL's async GRPO (``nemo_rl/algorithms/async_utils.py``, AsyncTrajectoryCollector)
generates for every target weight version from the engine's version + 1 to + k
(``grpo.async_grpo.max_trajectory_age_steps`` = k) and keeps up to
``num_prompts_per_step x k`` prompt groups in flight. With ``in_flight_weight_updates``
(vLLM's async engine) a refit does not wait for the running requests: they go on with
their KV caches while the new weights load. So:

- k = 1: the engine may only work on the next step's prompts; when they are done it waits
  for the trainer's new weights, and each step still waits for its own last response (the
  tail), as ``sim.rl.run_rollout`` costs it;
- k >= 2: the engine starts the following steps' prompts while one step's tail is still
  decoding, so in steady state it is never drained: a step costs one step's requests at
  the engine's throughput with its batch kept full, not one step's generation to its last
  response.

The steady-state time of one step is measured on the serving simulator: S steps'
requests as one stream, minus one step's requests alone, over S - 1. The difference takes
out the ramp and the drain (the tail), which the stream and the single step share.
S = min(k, f + 1) where f is the number of steps' requests that fill every replica's
``scheduler.max_batch``: the window allows k steps in flight, and once the batch limit
is reached further queued requests do not change the engine's throughput, so S stops
there (one step more keeps the batch full while the first step drains).
"""

from __future__ import annotations

import math

from hw_models.catalog import SystemSpec
from hw_models.profile import Profile
from sim.rl_config import RLWorkload
from sim.rl_timeline import PoolSizes
from sim.scenario import Scenario


def streams(w: RLWorkload) -> bool:
    """Whether the rollouts stream across steps: k >= 2 steps of slack, no dynamic sampling
    (DAPO's rounds stop at the first complete groups, which this does not model)."""
    r = w.rollout
    return (w.off_policy_steps >= 2 and r.oversample == 1 and r.batch_multiplier == 1
            and r.gen_batches == 1)


def stream_steps(w: RLWorkload, replicas: int) -> int:
    """S: the steps' requests simulated as one stream (at least 2, at most k)."""
    per_step = w.prompts_per_step * w.samples_per_prompt
    fill = math.ceil(w.rollout.scheduler.max_batch * replicas / per_step)
    return max(2, min(w.off_policy_steps, fill + 1))


def steady_generation(sc: Scenario, system: SystemSpec, pools: PoolSizes, prof: Profile | None,
                      replicas: int, one_step_s: float) -> dict:
    """Seconds per step of a continuously fed rollout engine: the larger of its throughput
    bound and its latency bound. Throughput: measured on one replica with its share of the
    requests (with the batch kept full the replicas run side by side at the same rate; one
    step alone, by contrast, waits for the slowest replica, which sim.rl.run_rollout costs).
    Latency: a step's requests start k steps before the trainer consumes them, so its
    generation to the last response (``one_step_s``, alone on the pool: a lower bound of
    its time among the other steps' requests) must fit in k steps."""
    from sim.rl import rollout_scenario
    from sim.simulate_inference import simulate_inference
    w: RLWorkload = sc.workload
    s = stream_steps(w, replicas)
    share = math.ceil(w.prompts_per_step * w.samples_per_prompt / replicas)
    one = PoolSizes(pools.rollout // replicas, pools.train, False)
    ends = [float(simulate_inference(rollout_scenario(sc, system, one, count=n * share),
                                     prof).requests.finish_s.max()) for n in (1, s)]
    throughput = max(0.0, (ends[1] - ends[0]) / (s - 1))
    latency = one_step_s / w.off_policy_steps
    return {"generation_s": max(throughput, latency), "stream_steps": s,
            "stream_bound": "throughput" if throughput >= latency else "latency"}

"""Steady-state generation of an off-policy step whose rollouts stream across steps.

NeMo RL's async GRPO (``nemo_rl/algorithms/async_utils.py``, AsyncTrajectoryCollector)
generates for every target weight version from the engine's version + 1 to + k
(``grpo.async_grpo.max_trajectory_age_steps`` = k) and keeps at most
``num_prompts_per_step x k`` prompt groups in flight (a semaphore: a new group starts when
one ends). With ``in_flight_weight_updates`` (vLLM's async engine) a refit does not wait
for the running requests: they go on with their KV caches while the new weights load. So:

- k = 1: the engine may only work on the next step's prompts; when they are done it waits
  for the trainer's new weights, and each step still waits for its own last response (the
  tail), as ``sim.rl.run_rollout`` costs it;
- k >= 2: the engine starts the following steps' prompts while one step's tail is still
  decoding, so in steady state it is never drained. A step costs the larger of
  - throughput: one step's requests at the rate of an engine whose running set is kept at
    c = min(scheduler.max_batch, k x the replica's share of a step) sequences (the
    in-flight window acts as a batch limit: a request enters as one ends). Measured on the
    serving simulator on one replica with its share of the requests and max_batch = c:
    (T(2m) - T(m)) / m, m = ceil(c / share) steps, the steps that fill c: both runs ramp up
    and drain alike, so the difference is m steps at the full rate;
  - latency: a step's requests start k steps before the trainer consumes them, so one
    step's generation to its last response (alone on the pool: a lower bound) must fit in
    k steps.
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


def share(w: RLWorkload, replicas: int) -> int:
    """One replica's share of one step's requests."""
    return math.ceil(w.prompts_per_step * w.samples_per_prompt / replicas)


def window(w: RLWorkload, replicas: int) -> tuple[int, int]:
    """(c, m): the running sequences a replica keeps in steady state and the steps that
    fill them."""
    n = share(w, replicas)
    c = min(w.rollout.scheduler.max_batch, w.off_policy_steps * n)
    return c, math.ceil(c / n)


def steady_generation(sc: Scenario, system: SystemSpec, pools: PoolSizes, prof: Profile | None,
                      replicas: int, one_step_s: float) -> dict:
    """Seconds per step of a continuously fed rollout engine (the larger of its throughput
    and latency bounds); ``one_step_s``: one step alone on the pool, to its last response.
    The replicas run side by side at the same rate with their running sets kept full, so
    the throughput is measured on one of them."""
    from sim.rl import rollout_scenario
    from sim.simulate_inference import simulate_inference
    w: RLWorkload = sc.workload
    n = share(w, replicas)
    c, m = window(w, replicas)
    one = PoolSizes(pools.rollout // replicas, pools.train, False)
    ends = [float(simulate_inference(rollout_scenario(sc, system, one, count=s * n, max_batch=c),
                                     prof).requests.finish_s.max()) for s in (m, 2 * m)]
    throughput = max(0.0, (ends[1] - ends[0]) / m)
    latency = one_step_s / w.off_policy_steps
    return {"generation_s": max(throughput, latency), "stream_steps": m,
            "stream_batch": c, "stream_bound": "throughput" if throughput >= latency else "latency"}

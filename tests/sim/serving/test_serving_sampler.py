"""The serving engine's sampling kernels per decode step (``sampler``), against hand counts
of vLLM's V1 sampler and the h100 profile's memory-bound kernel costs."""

import pytest

from hw_models import catalog
from hw_models.errors import ClusterSimError
from sim import scenario
from sim.network import AnalyticalNetwork
from sim.rl import pool_sizes, rollout_scenario
from sim.serving.iteration import IterationModel
from sim.setup import paced_compute, resolve_cluster
from sim.simulate_inference import simulate_inference
from workloads.inference.ops import Shape
from workloads.model import resolve

VOCAB = 128256          # Llama 3 8B
HBM = 3.35e12           # H100 SXM5
BW_EFF = 0.8761         # h100 profile: memory_ops elementwise and norm bw_eff
LAUNCH_ELEMENTWISE = 2.3522e-6
LAUNCH_NORM = 4.6888e-6


def test_kernels_are_vllms_sampler_passes():
    # vLLM 0.11 / 0.17 (processed logprobs): bf16 -> fp32 copy 2 + 4 bytes, temperature
    # divide 4 + 4, log_softmax 4 + 4, softmax 4 + 4, exponential noise 4, probs / noise
    # 4 + 4 + 4, argmax 4, rank count 4: 54 bytes per logit in 8 kernels.
    v1 = catalog.sampler_kernels("vllm-v1-logprobs")
    assert len(v1) == 8
    assert sum(b for _, _, b in v1) == 54
    assert sum(b for _, c, b in v1 if c == "elementwise") == 6 + 8 + 4 + 12
    # vLLM 0.9: log_softmax of the bf16 logits (2 + 4) and an eager rank count (compare
    # 4 + 1, sum 1) instead: also 54 bytes, in 9 kernels.
    v09 = catalog.sampler_kernels("vllm-v1-raw-logprobs")
    assert len(v09) == 9
    assert sum(b for _, _, b in v09) == 54
    assert catalog.sampler_kernels("none") == ()
    assert "source" in catalog.serving_engines()["samplers"]["vllm-v1-logprobs"]
    with pytest.raises(ClusterSimError, match="sampler 'greedy'"):
        catalog.sampler_kernels("greedy")


def iteration_model(model="llama3-8b", tp=1):
    sc = scenario.parse({"cluster": {"system": "dgx-h100", "nodes": 1},
                         "workload": {"kind": "inference", "model": model, "precision": "bf16",
                                      "parallel": {"tp": tp}}})
    cl = resolve_cluster(sc)
    return IterationModel(resolve(model), tp, 1, "bf16", paced_compute(cl.gpu, cl.profile, 1.0, tp),
                          AnalyticalNetwork(cl.layout, cl.profile))


def sampler_seconds(rows: int) -> float:
    """vllm-v1-logprobs by hand: 4 elementwise kernels moving 30 bytes per logit and 4 row
    reductions (norm class) moving 24, each kernel its launch plus its bytes at 87.61% of
    3.35 TB/s."""
    logits = rows * VOCAB
    return (4 * LAUNCH_ELEMENTWISE + 4 * LAUNCH_NORM
            + (30 + 24) * logits / (HBM * BW_EFF))


@pytest.mark.parametrize("rows", [1, 64, 256])
def test_decode_step_adds_the_sampler_over_batch_times_vocabulary(rows):
    it = iteration_model()
    step = Shape(0, 0, 0, rows, rows * 1024, rows)      # exact cache buckets
    base = it.time(step)
    it.set_sampler(catalog.sampler_kernels("vllm-v1-logprobs"))
    assert it.time(step) - base == pytest.approx(sampler_seconds(rows), rel=1e-9)
    assert it.time(step) == pytest.approx(it.run_graph(step), rel=1e-9)    # the graph agrees
    # 256 sequences: 1.77 GB of sampler traffic, ~0.63 ms per step.
    if rows == 256:
        assert sampler_seconds(rows) == pytest.approx(0.63e-3, rel=0.02)


def test_tensor_parallel_ranks_sample_the_whole_vocabulary():
    # vLLM gathers the vocab-parallel logits and samples on every rank: the sampler's
    # time does not shrink with tp (a group of 4 GPUs runs every kernel at its slowest
    # GPU's pace, sim.setup.paced_compute).
    it = iteration_model(tp=4)
    step = Shape(0, 0, 0, 64, 65_536, 64)
    base = it.time(step)
    it.set_sampler(catalog.sampler_kernels("vllm-v1-logprobs"))
    pace = it.compute.speed_scale
    assert 0.95 < pace <= 1.0
    assert it.time(step) - base == pytest.approx(sampler_seconds(64) / pace, rel=1e-9)


def run(sampler=None, count=8, prompt=64, output=32):
    work = {"kind": "inference", "model": "llama3-8b", "precision": "bf16",
            "scheduler": {"policy": "vllm", "max_batch": 256},
            "requests": {"count": count, "arrival": "burst", "prompt_len": prompt,
                         "output_len": output, "seed": 0}}
    if sampler:
        work["sampler"] = sampler
    return simulate_inference(scenario.parse({"cluster": {"system": "dgx-h100", "nodes": 1},
                                              "workload": work}))


def test_serving_run_pays_the_sampler_every_iteration():
    # 8 prompts of 64 tokens prefill in one iteration that samples all 8 first tokens,
    # then 31 decode steps of 8: 32 iterations sampling 8 rows each.
    base, sampled = run(), run("vllm-v1-logprobs")
    assert run("none").requests.finish_s.max() == base.requests.finish_s.max()   # default
    assert len(sampled.iterations) == 32
    extra = sampled.requests.finish_s.max() - base.requests.finish_s.max()
    assert extra == pytest.approx(32 * sampler_seconds(8), rel=1e-6)


def test_bad_sampler_is_one_message():
    with pytest.raises(ClusterSimError, match="sampler"):
        run("greedy")


def test_rl_rollout_samples_as_nemo_rl_by_default():
    sc = scenario.parse({
        "cluster": {"system": "dgx-h100", "nodes": 1},
        "workload": {"kind": "rl", "model": "llama3-8b", "prompts_per_step": 2,
                     "samples_per_prompt": 4, "prompt_len": 64, "response_len": 32,
                     "rollout": {"parallel": {"tp": 1}},
                     "train": {"global_batch": 8, "parallel": {"tp": 1}}}})
    cl = resolve_cluster(sc)
    sub = rollout_scenario(sc, cl.system, pool_sizes(sc.workload, 8, 8))
    assert sc.workload.rollout.sampler == "vllm-v1-logprobs"
    assert sub.workload.sampler == "vllm-v1-logprobs"

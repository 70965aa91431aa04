"""Property: a faster machine never takes longer. Every link's bandwidth scaled 1x, 1.5x,
2x, 4x (the network models' ``bw_scale``) never lengthens a serving iteration (prefill,
decode, mixed; MoE with expert parallelism and two-batch overlap, dense with TP and PP)
or a training step (a small MoE with cross-node EP, a dense model with TP, PP and DP);
a GPU with more peak FLOP/s, or more FLOP/s and HBM bandwidth, never lengthens them
either. The two directions are checked apart."""

from __future__ import annotations

from dataclasses import replace

import pytest

from hw_models import catalog, profile
from hw_models.compute import ComputeModel
from sim.network import AnalyticalNetwork, ClusterLayout
from sim.scenario import parse
from sim.serving.iteration import IterationModel
from sim.serving.moe_iteration import MoEIterationModel
from sim.setup import build_engine, make_network, resolve_setup
from workloads import training
from workloads.inference.ops import Shape
from workloads.model import resolve

SCALES = (1.0, 1.5, 2.0, 4.0)
SYSTEM = catalog.system("dgx-h100")
PROF = profile.load(SYSTEM.default_profile)


def faster_gpu(gpu, s: float, hbm: bool):
    """``gpu`` with s x its peak FLOP/s (and s x its HBM bandwidth with ``hbm``)."""
    up = {"peak_tflops": {k: v * s for k, v in gpu.peak_tflops.items()}}
    return gpu.model_copy(update=up | ({"hbm_tb_s": gpu.hbm_tb_s * s} if hbm else {}))


def never_slower(times: list[float]) -> None:
    for a, b, ta, tb in zip(SCALES, SCALES[1:], times, times[1:], strict=False):
        assert tb <= ta * (1 + 1e-9), f"{b}x: {tb:.6g} s > {ta:.6g} s at {a}x"


# ------------------------------------------------------------------------- serving

def prefill(ep: int, tokens: int, length: int) -> Shape:
    seqs = tokens // length
    return Shape(tokens * ep, seqs * ep * length * (length + 1) // 2, length, 0, 0, seqs * ep)


def decode(ep: int, batch: int, kv: int) -> Shape:
    return Shape(0, 0, 0, batch * ep, batch * ep * kv, batch * ep)


def mixed(ep: int) -> Shape:
    return Shape(512 * ep, ep * 512 * 513 // 2, 512, 64 * ep, 64 * ep * 1000, 65 * ep)


# (model, ep, tp, pp, dispatcher, two-batch overlap, shape); ep x tp x pp GPUs on whole nodes
SERVING = [
    ("deepseek-v3", 32, 1, 1, "deepep", True, prefill(32, 16384, 1024)),   # SGLang's prefill rows
    ("deepseek-v3", 32, 1, 1, "deepep", True, prefill(32, 16384, 4096)),
    ("deepseek-v3", 72, 1, 1, "deepep", True, decode(72, 256, 2000)),      # SGLang's decode row
    ("deepseek-v3", 16, 1, 1, "deepep", False, prefill(16, 4096, 2048)),
    ("deepseek-v3", 16, 1, 1, "alltoall", True, decode(16, 32, 4000)),
    ("deepseek-v3", 8, 2, 2, "alltoall", False, mixed(8)),
    ("qwen3-30b-a3b", 16, 1, 1, "deepep", True, mixed(16)),
    ("mixtral-8x7b", 1, 8, 2, "alltoall", False, mixed(1)),
]


def serving_time(case, bw: float = 1.0, gpu_scale: float = 1.0, hbm: bool = False) -> float:
    name, ep, tp, pp, dispatcher, overlap, shape = case
    nodes = -(-ep * tp * pp // SYSTEM.gpus_per_node)
    net = AnalyticalNetwork(ClusterLayout(SYSTEM, nodes, SYSTEM.nic_gbps), PROF, bw)
    compute = ComputeModel(faster_gpu(SYSTEM.gpu_spec, gpu_scale, hbm), PROF)
    it = MoEIterationModel(resolve(name), tp, pp, "fp8", compute, net, ep=ep, dispatcher=dispatcher,
                           overlap=overlap, domain_gpus=SYSTEM.scale_up.domain_gpus)
    return it.time(shape)


@pytest.mark.parametrize("case", SERVING, ids=lambda c: f"{c[0]}-ep{c[1]}-tp{c[2]}-pp{c[3]}-{c[4]}"
                         f"{'-tbo' if c[5] else ''}-{c[6].prefill_tokens}p{c[6].decode_seqs}d")
def test_moe_serving_iteration_never_slower(case):
    never_slower([serving_time(case, bw=s) for s in SCALES])
    never_slower([serving_time(case, gpu_scale=s) for s in SCALES])
    never_slower([serving_time(case, gpu_scale=s, hbm=True) for s in SCALES])


def test_the_serving_cases_move_with_the_network():
    """The checks above are not vacuous: without two-batch overlap every case's EP, TP and
    stage traffic is exposed, so 2x links make its iteration faster."""
    for case in (c for c in SERVING if not c[5]):
        t1, t2 = (serving_time(case, bw=s) for s in (1.0, 2.0))
        assert t2 < 0.99 * t1, case[:5]


@pytest.mark.parametrize("shape", [prefill(1, 8192, 2048), decode(1, 128, 3000), mixed(1)],
                         ids=["prefill", "decode", "mixed"])
def test_dense_serving_iteration_never_slower(shape):
    """Llama 3 70B, tp 8 x pp 2 over two nodes: TP all-reduces and the stage hop."""
    def time(bw=1.0, gpu_scale=1.0):
        net = AnalyticalNetwork(ClusterLayout(SYSTEM, 2, SYSTEM.nic_gbps), PROF, bw)
        compute = ComputeModel(faster_gpu(SYSTEM.gpu_spec, gpu_scale, True), PROF)
        return IterationModel(resolve("llama3-70b"), 8, 2, "fp8", compute, net).time(shape)
    never_slower([time(bw=s) for s in SCALES])
    never_slower([time(gpu_scale=s) for s in SCALES])


# ------------------------------------------------------------------------- training

TINY_MOE = {"layers": 4, "hidden": 1024, "heads": 8, "vocab": 1024, "seq_len": 2048,
            "activation": "swiglu", "norm": "rmsnorm", "bias": False, "rope": True,
            "tied_embeddings": False, "moe": {"experts": 16, "top_k": 2, "expert_ffn_hidden": 2048}}

# (model, parallel, moe options): two DGX H100 nodes, DP / EP across them
TRAINING = [
    (TINY_MOE, {"tp": 1, "pp": 1, "ep": 16}, {"dispatcher": "deepep", "overlap": True}),
    (TINY_MOE, {"tp": 1, "pp": 2, "ep": 8}, {}),
    (TINY_MOE, {"tp": 2, "pp": 1, "ep": 8}, {"overlap": True}),
    ("llama3-8b", {"tp": 2, "pp": 2}, {}),
    ("llama3-8b", {"tp": 1, "pp": 4, "vpp": 2, "schedule": "interleaved"}, {}),
]


def training_setup(case, fidelity: str):
    model, par, moe = case
    return resolve_setup(parse({
        "name": "monotone", "cluster": {"system": "dgx-h100", "nodes": 2},
        "workload": {"kind": "training", "model": model, "global_batch": 32, "micro_batch": 1,
                     "parallel": par, "moe": moe, "overlap_grad_reduce": True},
        "sim": {"fidelity": fidelity}}))


def step_time(setup, graph, bw: float = 1.0) -> float:
    engine = build_engine(setup, graph, network=make_network(setup, bw_scale=bw))
    return max(r.end for r in engine.run())


def _ids(c):
    return f"{'tiny-moe' if isinstance(c[0], dict) else c[0]}-" + "-".join(
        f"{k}{v}" for k, v in {**c[1], **c[2]}.items())


@pytest.mark.parametrize("case", TRAINING, ids=_ids)
def test_training_step_never_slower(case):
    setup = training_setup(case, "analytical")
    graph = training.build(setup.model, setup.plan, setup.options)
    never_slower([step_time(setup, graph, bw=s) for s in SCALES])
    for hbm in (False, True):
        never_slower([step_time(replace(setup, gpu=faster_gpu(setup.gpu, s, hbm)), graph)
                      for s in SCALES])


@pytest.mark.parametrize("case", [TRAINING[0], TRAINING[3]], ids=_ids)
def test_training_step_never_slower_flow(case):
    """The flow model: every link's capacity scaled (FlowNetwork's ``bw_scale``)."""
    setup = training_setup(case, "flow")
    graph = training.build(setup.model, setup.plan, setup.options)
    never_slower([step_time(setup, graph, bw=s) for s in SCALES])


def test_bw_scale_reaches_the_flow_links():
    """A 1 GiB all-reduce over 16 GPUs on two nodes, bandwidth-bound: 2x the bandwidth
    takes a little over half the time (latencies do not scale)."""
    from workloads.graph import CommGroup
    setup = training_setup(TRAINING[3], "flow")
    group = CommGroup(tuple(range(16)), "dp")
    t1, t2 = (make_network(setup, bw_scale=s).collective_time("all_reduce", 2**30, group)
              for s in (1.0, 2.0))
    assert t1 / 2 <= t2 < 0.55 * t1

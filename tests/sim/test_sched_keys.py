"""Every key of the long-context / schedule / FP8 / offload / FSDP2 family refuses a bad
value with one line naming the key and what is allowed (in process; the CLI's exit code 2
is checked for a sample in test_sched_scenarios)."""

import re

import pytest

from hw_models.errors import ClusterSimError
from sim import scenario
from sim.setup import resolve_setup
from tests.sim.test_sched_scenarios import small

BAD = [
    # key: value(s) -> the message
    ({"parallel": {"tp": 2, "pp": 2, "cp": 0}}, r"workload\.parallel\.cp: Input should be greater than 0"),
    ({"parallel": {"tp": 2, "pp": 2, "cp": 3}}, r"tp\*pp\*cp = 2\*2\*3 = 12 does not divide the 8 GPUs"),
    ({"parallel": {"tp": 2, "pp": 2, "cp": 2}, "seq_len": 8190}, r"multiple of 2\*cp = 4"),
    ({"parallel": {"tp": 2, "pp": 2, "cp_kind": "spiral"}}, r"cp_kind: Input should be 'ring'"),
    ({"parallel": {"tp": 2, "cp": 2, "ulysses_size": 2}}, r"ulysses_size applies to cp_kind: hybrid"),
    ({"parallel": {"tp": 2, "cp": 2, "cp_kind": "hybrid", "ulysses_size": 3}},
     r"ulysses_size=3 must divide cp=2"),
    ({"parallel": {"tp": 2, "pp": 2, "pipeline_layers": [16, 15]}},
     r"pipeline_layers \[16, 15\] must have pp=2 entries summing to the model's 32 layers"),
    ({"parallel": {"tp": 2, "pp": 2, "vpp": 2, "pipeline_layers": [8, 8, 8, 7]}},
     r"pp=2 \(per rank\) or 4 \(per virtual stage\) positive entries"),
    ({"parallel": {"tp": 2, "pp": 2, "vpp": 2, "pipeline_layers": [15, 17]}},
     r"positive multiple of vpp=2"),
    ({"parallel": {"tp": 2, "pp": 2, "account_for_loss_in_pipeline_split": True}},
     r"2 virtual pipeline stages do not divide the model's 32 layers \+ embedding/loss"),
    ({"parallel": {"tp": 2, "pp": 2, "account_for_embedding_in_pipeline_split": True,
                   "pipeline_layers": [16, 16]}}, r"shape the even split; with pipeline_layers"),
    ({"parallel": {"tp": 2, "pp": 2, "account_for_embedding_in_pipeline_split": "maybe"}},
     r"account_for_embedding_in_pipeline_split: Input should be a valid boolean"),
    ({"parallel": {"tp": 2, "pp": 2, "schedule": "zb-h2"}}, r"schedule: Input should be 'gpipe'"),
    ({"parallel": {"tp": 2, "pp": 2, "schedule": "zb-h1", "vpp": 2}}, r"zb-h1 runs one chunk per rank"),
    ({"parallel": {"tp": 2, "pp": 2, "schedule": "zb-v", "vpp": 4}}, r"zb-v places 2 chunks per rank"),
    ({"parallel": {"tp": 2, "pp": 2, "schedule": "zb-v", "zero": 3}}, r"not zero=3"),
    ({"parallel": {"tp": 2, "pp": 2, "schedule": "dualpipev"}, "global_batch": 6},
     r"even number of microbatches, at least 2\*pp = 4; got 3"),
    ({"precision": "fp8", "fp8": {"recipe": "e4m3"}}, r"fp8\.recipe: Input should be 'tensorwise'"),
    ({"precision": "fp8", "fp8": {"params": "maybe"}}, r"fp8\.params: Input should be a valid boolean"),
    ({"precision": "fp8", "fp8": {"recipe": "nvfp4"}}, r"needs nvfp4 tensor cores"),
    ({"fp8": {"recipe": "delayed"}}, r"workload\.fp8 is set but precision is 'bf16'"),
    ({"offload": {"activations": 1.5}}, r"offload\.activations: Input should be less than or equal to 1"),
    ({"offload": {"optimizer": "maybe"}}, r"offload\.optimizer: Input should be a valid boolean"),
    ({"parallel": {"tp": 2, "pp": 2, "tp_comm_overlap": "userbuffers"}},
     r"tp_comm_overlap: Input should be 'none', 'ring' or 'async'"),
    ({"parallel": {"tp": 2, "pp": 2, "tp_comm_overlap": "ring"}}, r"needs sequence_parallel: true"),
    ({"parallel": {"tp": 2, "pp": 2, "reshard_after_forward": "maybe"}},
     r"reshard_after_forward: Input should be a valid boolean"),
    ({"parallel": {"tp": 2, "pp": 2, "prefetch": 0}}, r"prefetch: Input should be greater than 0"),
    ({"parallel": {"tp": 2, "zero": 3, "zero_shard_group": 3}},
     r"zero_shard_group=3 \(HSDP\) needs zero=3 and must divide dp\*cp=4"),
    ({"parallel": {"tp": 2, "zero": 1, "zero_shard_group": 2}}, r"needs zero=3"),
]


@pytest.mark.parametrize("workload,message", BAD, ids=lambda x: str(x)[:60])
def test_bad_value_gives_one_line(workload, message):
    with pytest.raises(ClusterSimError) as err:
        resolve_setup(scenario.parse(small(**workload)))
    text = str(err.value)
    assert "\n" not in text.strip()
    assert re.search(message, text), text


@pytest.mark.parametrize("workload", [
    {"parallel": {"tp": 2, "cp": 2, "cp_kind": "ulysses"}},
    {"parallel": {"tp": 2, "cp": 4, "cp_kind": "hybrid", "ulysses_size": 2}},
    {"parallel": {"tp": 2, "pp": 2, "vpp": 2, "pipeline_layers": [7, 9, 9, 7]}},
    {"parallel": {"tp": 2, "pp": 2, "schedule": "zb-v", "pipeline_layers": [6, 10, 10, 6]},
     "global_batch": 32},
    {"precision": "fp8", "fp8": {"recipe": "blockwise", "params": True},
     "parallel": {"tp": 2, "pp": 2, "zero": 1}},
    {"offload": {"activations": 0.5, "optimizer": True}},
    {"parallel": {"tp": 2, "zero": 3, "zero_shard_group": 2, "reshard_after_forward": False,
                  "prefetch": 2}},
    {"parallel": {"tp": 2, "pp": 2, "sequence_parallel": True, "tp_comm_overlap": "async"}},
])
def test_good_values_resolve(workload):
    """The same keys with allowed values build a plan (no error)."""
    setup = resolve_setup(scenario.parse(small(**workload)))
    assert setup.plan.tp == 2

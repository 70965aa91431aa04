"""RL step page: one GRPO/PPO/DAPO step (``workload.kind: rl``) through sim.simulate, as
``clustersim simulate`` runs it (docs/rl.md): its phases as a Gantt chart per GPU pool,
and a what-if over placement and off-policy steps through the sweep engine.

The default is small (one DGX H100, 16 prompts x 4 samples) so that the page answers in
about a second; every number is a widget.
"""

from __future__ import annotations

import copy
from typing import Any

import plotly.express as px
import streamlit as st

from app import core
from app.views.results import downloads
from workloads.model import presets

TITLE = "RL step"
STATE_KEY = "rl_scenario"
SIGMA = 0.8          # lognormal spread of response lengths (docs/rl.md's example)
PHASE_COLORS = {"generation": "#4C78A8", "onload": "#B279A2", "offload": "#B279A2",
                "weight_sync": "#E45756", "policy_logprob": "#72B7B2",
                "reference_logprob": "#54A24B", "critic_values": "#EECA3B",
                "reward_score": "#FF9DA6", "policy_train": "#F58518", "critic_train": "#9D755D"}
DEFAULTS: dict[str, Any] = {
    "rl_model": "llama3-8b", "rl_system": "dgx-h100", "rl_nodes": 1, "rl_algorithm": "grpo",
    "rl_prompts": 16, "rl_samples": 4, "rl_prompt_len": 256, "rl_response": 512,
    "rl_response_max": 2048, "rl_rollout_tp": 1, "rl_train_tp": 2, "rl_train_pp": 1,
    "rl_colocated": True, "rl_rollout_gpus": 4, "rl_off_policy": 0, "rl_sync": "nccl"}


def scenario(v: dict[str, Any]) -> dict[str, Any]:
    """The RL scenario dict for the widget values (keys as DEFAULTS)."""
    gpus = v["rl_nodes"] * core_gpus_per_node(v["rl_system"])
    placement: Any = "colocated" if v["rl_colocated"] else {
        "rollout_gpus": v["rl_rollout_gpus"], "train_gpus": gpus - v["rl_rollout_gpus"]}
    return {"name": "explorer-rl", "cluster": {"system": v["rl_system"], "nodes": v["rl_nodes"]},
            "workload": {
                "kind": "rl", "algorithm": v["rl_algorithm"], "model": v["rl_model"],
                "prompts_per_step": v["rl_prompts"], "samples_per_prompt": v["rl_samples"],
                "prompt_len": v["rl_prompt_len"],
                "response_len": {"dist": "lognormal", "median": v["rl_response"], "sigma": SIGMA,
                                 "high": v["rl_response_max"]},
                "rollout": {"parallel": {"tp": v["rl_rollout_tp"]},
                            "kv_cache": {"gpu_memory_utilization": 0.6}},
                "train": {"global_batch": max(1, v["rl_prompts"] * v["rl_samples"] // 2),
                          "parallel": {"tp": v["rl_train_tp"], "pp": v["rl_train_pp"]},
                          "recompute": "full", "max_seq_len": v["rl_prompt_len"] + v["rl_response_max"]},
                "placement": placement, "off_policy_steps": v["rl_off_policy"], "sync": v["rl_sync"]}}


def core_gpus_per_node(system: str) -> int:
    from hw_models import catalog
    return catalog.system(system).gpus_per_node


def _widgets() -> dict[str, Any]:
    for k, v in DEFAULTS.items():
        st.session_state.setdefault(k, v)
    c1, c2, c3 = st.columns(3)
    with c1:
        st.subheader("Policy and cluster")
        st.selectbox("Model", sorted(presets()), key="rl_model")
        st.selectbox("System", core.system_names(), key="rl_system")
        st.number_input("Nodes", min_value=1, max_value=4096, step=1, key="rl_nodes")
        st.selectbox("Algorithm", ["grpo", "dapo", "ppo"], key="rl_algorithm")
    with c2:
        st.subheader("Rollouts")
        st.number_input("Prompts per step", min_value=1, step=8, key="rl_prompts")
        st.number_input("Samples per prompt", min_value=1, step=1, key="rl_samples")
        st.number_input("Prompt tokens", min_value=1, step=64, key="rl_prompt_len")
        st.number_input(f"Response median (lognormal, sigma {SIGMA})", min_value=1, step=64,
                        key="rl_response")
        st.number_input("Response max tokens", min_value=1, step=256, key="rl_response_max")
        st.number_input("Rollout tensor parallel", min_value=1, step=1, key="rl_rollout_tp")
    with c3:
        st.subheader("Training and placement")
        st.number_input("Training tensor parallel", min_value=1, step=1, key="rl_train_tp")
        st.number_input("Training pipeline parallel", min_value=1, step=1, key="rl_train_pp")
        st.checkbox("Colocated (rollout and training time-share the GPUs)", key="rl_colocated")
        st.number_input("Rollout GPUs (separate pools)", min_value=1, step=1, key="rl_rollout_gpus")
        st.number_input("Off-policy steps", min_value=0, step=1, key="rl_off_policy")
        st.selectbox("Weight sync", ["nccl", "broadcast", "checkpoint"], key="rl_sync")
    return scenario({k: st.session_state[k] for k in DEFAULTS})


def _headline(res) -> None:
    m = res.metrics
    c = st.columns(6)
    c[0].metric("Step time (s)", f"{m['step_time_s']:.2f}")
    c[1].metric("Generation (s)", f"{m['generation_s']:.2f}")
    c[2].metric("Log-prob + train (s)", f"{m['logprob_s'] + m['train_s']:.2f}")
    c[3].metric("Weight sync (s)", f"{m['weight_sync_s']:.3f}")
    c[4].metric("Idle (GPU-s)", f"{m['idle_s']:.1f}")
    c[5].metric("Tokens/s/GPU", f"{m['tokens_per_s_per_gpu']:,.0f}")
    st.caption(f"{res.world_size} GPUs. Tokens/s/GPU: {m['tokens_per_s_per_gpu_definition']}. "
               f"Generation tail (90% of responses done to the last): {m['generation_tail_s']:.2f} s.")


def gantt(res):
    """Phases per GPU pool as horizontal bars (x in seconds)."""
    t = res.timeline.assign(seconds=lambda d: d.end_s - d.start_s,
                            lane=lambda d: d.pool + " pool (" + d.gpus.astype(str) + " GPUs)")
    fig = px.bar(t, x="seconds", y="lane", base="start_s", color="phase", orientation="h",
                 color_discrete_map=PHASE_COLORS, hover_data=["start_s", "end_s"],
                 title="One step, phases per GPU pool (x in s)")
    fig.update_layout(barmode="overlay", height=180 + 60 * t.lane.nunique())
    return fig


def whatif(data: dict[str, Any]) -> dict[str, Any]:
    """A sweep file over placement x off-policy steps on the current scenario."""
    gpus = data["cluster"]["nodes"] * core_gpus_per_node(data["cluster"]["system"])
    half = {"rollout_gpus": gpus // 2, "train_gpus": gpus - gpus // 2}
    base = copy.deepcopy(data)
    base["workload"].pop("placement"), base["workload"].pop("off_policy_steps")
    return {"base": base, "axes": {"workload.placement": ["colocated", half],
                                   "workload.off_policy_steps": [0, 1]}}


def _whatif(data: dict[str, Any]) -> None:
    st.subheader("What if: placement x off-policy steps")
    if not st.button("Run the what-if (4 steps through the sweep engine)", key="rl_whatif"):
        return
    frame, _ = core.sweep(whatif(data))
    cols = ["axis.workload.placement", "axis.workload.off_policy_steps", "status",
            "step_time_s", "generation_s", "train_s", "idle_s", "tokens_per_s_per_gpu", "detail"]
    st.dataframe(frame[[c for c in cols if c in frame]], width="stretch")


def render() -> None:
    st.title("RL post-training step")
    top = st.container()
    data = _widgets()
    st.session_state[STATE_KEY] = copy.deepcopy(data)
    if (res := core.run_or_error(data, top)) is None:
        return
    with top:
        _headline(res)
    st.plotly_chart(gantt(res), width="stretch")
    st.dataframe(res.timeline, width="stretch")
    _whatif(data)
    downloads(data, "rl_step")

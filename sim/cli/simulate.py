"""``clustersim simulate FILE [--set k=v ...] [--format table|json] [--trace out.json]``."""

from __future__ import annotations

from pathlib import Path

import typer

from hw_models.errors import ClusterSimError
from hw_models.yamlio import check_writable
from sim import scenario as scenario_mod
from sim.cli.common import Format, emit, fmt_s
from sim.result import SimResult
from sim.simulate import simulate


def render_inference(res) -> str:
    m = res.metrics
    lines = [f"scenario            {res.name}  ({res.world_size} GPUs, policy {res.extra['policy']}, "
             f"{res.extra['replicas']} replicas)"]
    for k in ("ttft_ms", "tbt_ms", "tpot_ms", "e2e_ms"):
        v = m[k]
        lines.append(f"{k:20s}p50 {v['p50']:9.1f}  p90 {v['p90']:9.1f}  p99 {v['p99']:9.1f}  "
                     f"mean {v['mean']:9.1f}")
    lines += [f"throughput          {m['throughput_tokens_per_s']:,.0f} output tokens/s, "
              f"{m['requests_per_s']:.2f} requests/s",
              f"SLO attainment      {m['slo_attainment']:.1%}  goodput {m['goodput_requests_per_s']:.2f} req/s",
              f"KV cache peak       {m['kv_cache_peak_gib']:.2f} GiB per GPU "
              f"(capacity {res.extra['kv_cache_capacity_gib']:.1f})",
              f"preemptions         {m['preemptions']}",
              f"iterations          {res.extra['iterations']} (mean batch {res.extra['mean_batch']:.1f})",
              f"wall time           {res.wall_s:.2f} s"]
    return "\n".join(lines + money_lines(res.extra, "run"))


MONEY_KEYS = ("energy_j", "avg_power_w_per_gpu", "joules_per_token", "cost_usd",
              "cost_usd_per_million_tokens")


def money_lines(x: dict, unit: str) -> list[str]:
    """Energy, cost and calibration lines of a result (docs/energy.md, docs/hardware.md)."""
    out = []
    if x.get("energy_j") is not None:
        e = x["energy"]
        out.append(f"energy              {x['energy_j'] / 1e3:,.2f} kJ per {unit} "
                   f"({x['avg_power_w_per_gpu']:,.0f} W per GPU, {x['joules_per_token']:.3g} "
                   f"J/token, pue {e['pue']:g}; not counted: {', '.join(e['not_counted'])})")
    elif "energy" in x:
        out.append(f"energy              not computed: {'; '.join(x['energy']['not_counted'])}")
    if x.get("cost_usd") is not None:
        out.append(f"cost                ${x['cost_usd']:.4g} per {unit}, "
                   f"${x['cost_usd_per_million_tokens']:.4g} per million tokens ({x['cost']['mode']})")
    elif "cost" in x:
        out.append(f"cost                {x['cost'].get('missing', '')}")
    cals = [(p["name"] + ": ", p["calibration"]) for p in x.get("pools", []) if "calibration" in p]
    cals = cals or ([("", x["calibration"])] if "calibration" in x else [])
    for name, c in cals:
        out.append(f"calibration         {name}{c['status']} (profile {c['profile']})"
                   + (f": {c['detail'].split(' (')[0]}, an estimate"
                      if c["status"] == "roofline-assumed" else ""))
    return out


def _on(placement: dict, phase: str) -> str:
    """'8' or '8 (pool b200)' for a placement's share."""
    pool = placement.get(f"{phase}_pool")
    return f"{placement[f'{phase}_gpus']}" + (f" (pool {pool})" if pool else "")


def render_rl(res) -> str:
    m, x = res.metrics, res.extra
    step = m["step_time_s"]
    place = x["placement"] if isinstance(x["placement"], str) else (
        f"rollout {_on(x['placement'], 'rollout')} + train {_on(x['placement'], 'train')} GPUs")
    lines = [f"scenario            {res.name}  ({res.world_size} GPUs, {x['algorithm']}, {place}, "
             f"off-policy {x['off_policy_steps']}, sync {x['sync']})",
             f"step time           {step:.2f} s"]
    for k in ("generation_s", "logprob_s", "train_s", "weight_sync_s", "offload_s"):
        lines.append(f"  {k[:-2]:18s}{m[k]:9.2f} s  {m[k] / step:6.1%}")
    lines += [f"  generation tail   {m['generation_tail_s']:9.2f} s  (90% of responses done -> last)",
              f"idle                {m['idle_s']:.1f} GPU-s",
              f"tokens/s/GPU        {m['tokens_per_s_per_gpu']:,.0f}  ({m['tokens_per_s_per_gpu_definition']})",
              "passes              " + ", ".join(f"{k} {v:.2f} s" for k, v in m["passes"].items()),
              f"packed rows         {x['packed_rows']} x {x['row_len']} tokens, "
              f"{x['optimizer_steps']} optimizer steps",
              f"wall time           {res.wall_s:.2f} s"]
    return "\n".join(lines)


def render_moe(moe: dict, res: SimResult) -> list[str]:
    """Expert load, per-stage compute vs exposed EP communication, memory per stage."""
    lines = [f"expert load         max/mean expert {moe['expert_load_max_over_mean']:.2f}, "
             f"max/mean EP rank {moe['ep_rank_load_max_over_mean']:.2f}, dropped "
             f"{moe['dropped_token_fraction']:.1%} ({moe['dispatcher']} dispatcher, expert-dp "
             f"{moe['expert_dp']})"]
    busiest = max(moe["stages"], key=lambda st: st["compute_s"] + st["ep_s"])
    t = res.iteration_time_s
    lines += [f"busiest stage {busiest['stage']:<5d} compute {busiest['compute_s']:.3f} s "
              f"({busiest['compute_s'] / t:.1%}), exposed EP communication {busiest['ep_s']:.3f} s "
              f"({busiest['ep_s'] / t:.1%}), waiting {t - busiest['compute_s'] - busiest['ep_s']:.3f} s",
              "per stage           compute s   EP comm s   memory GiB (weights/grads/optimizer/activations)"]
    mem = {m["stage"]: m for m in res.memory_records()}
    for st in moe["stages"]:
        m = mem[st["stage"]]
        lines.append(f"  stage {st['stage']:<3d}        {st['compute_s']:9.3f}   {st['ep_s']:9.3f}   "
                     f"{m['total_gib']:6.1f} ({m['weights_gib']:.1f}/{m['grads_gib']:.1f}/"
                     f"{m['optimizer_gib']:.1f}/{m['activations_gib']:.1f})")
    return lines


def render(res: SimResult) -> str:
    if getattr(res, "kind", None) == "rl" or hasattr(res, "step_time_s"):
        return render_rl(res)
    if not isinstance(res, SimResult):
        return render_inference(res)
    t = res.iteration_time_s
    band = ""
    if res.band and "iteration_time_s" in res.band:
        lo, hi = res.band["iteration_time_s"]
        band = f" [{fmt_s(lo)}, {fmt_s(hi)}]"
    lines = [f"scenario            {res.name}  ({res.world_size} GPUs, fidelity {res.fidelity})",
             f"iteration time      {fmt_s(t)} s{band}",
             f"tokens/s            {res.tokens_per_s:,.0f}",
             f"model TFLOP/s/GPU   {res.tflops_per_gpu:.1f}",
             f"MFU / HFU           {res.mfu:.1%} / {res.hfu:.1%}",
             f"memory peak         {res.memory_peak_gib:.1f} GiB per GPU",
             "breakdown (critical rank):"]
    for k, v in sorted(res.breakdown.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {k:10s} {fmt_s(v, 9)} s  {v / t:6.1%}")
    for k, v in res.extra.items():
        if k not in ("nodes", "plan", "microbatches", *MONEY_KEYS) and not isinstance(v, dict | list):
            lines.append(f"{k:20s}{v}")
    lines += money_lines(res.extra, "iteration")

    if moe := res.extra.get("moe"):
        lines += render_moe(moe, res)
    if cc := res.extra.get("checkpoint_contention"):    # async write on the fabric (flow)
        lines.append(f"with async ckpt    {cc['iteration_s_with']:.4f} s/iter ({cc['attach']} storage; "
                     f"write {cc['write_s']:.3g} s over {cc['overlapped_steps']:.3g} steps)")
    return "\n".join(lines)


def whole_run_money(sc, step: dict, step_s: float, run: dict) -> dict:
    """Energy (restarts and checkpoint stalls at idle power) and cost of a whole run."""
    from sim.cost import run_cost
    from sim.energy import parts_of, run_energy
    energy = run_energy(step, parts_of(sc), step_s, run, sc.cluster.pue)
    return energy | {"cost_usd": run_cost(step, step_s, run["run_days"] * 86400.0,
                                          energy.get("energy_j"))}


def register(app: typer.Typer) -> None:
    @app.command("simulate")
    def simulate_command(
        file: Path = typer.Argument(None, help="scenario YAML (omit with --default)"),
        set_: list[str] = typer.Option([], "--set", help="override, e.g. workload.parallel.tp=4"),
        format: Format = typer.Option(Format.table, "--format"),
        trace: Path = typer.Option(None, "--trace", help="write a Chrome/Perfetto trace here"),
        default: bool = typer.Option(False, "--default", help="GPT-3 175B on 1024 H100s"),
    ) -> None:
        """Simulate a scenario: one training iteration, or a serving run (kind: inference)."""
        if file is None and not default:
            raise ClusterSimError("give a scenario FILE, or --default for the built-in one")
        if trace is not None:
            check_writable(trace, "--trace", "trace.json")
        sc = scenario_mod.default(set_) if file is None else scenario_mod.load(file, set_)
        res = simulate(sc)
        if trace is not None:
            res.to_chrome_trace(trace)
        summary, text = res.summary(), render(res)
        if sc.run is not None:          # a whole run: failures, checkpoints, stragglers
            from sim.reliability import run_summary
            run = run_summary(sc, res.iteration_time_s, res.extra.get("checkpoint_contention"))
            run |= whole_run_money(sc, summary, res.iteration_time_s, run)
            summary = {**summary, "run": run}
            text += "\nwhole run (seeded Monte-Carlo, docs/reliability.md):\n" + "\n".join(
                f"  {k:24s}{v:.4g}" if isinstance(v, float) else f"  {k:24s}{v}"
                for k, v in run.items())
        emit(summary, format, text)

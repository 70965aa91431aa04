"""Sweep files: a base scenario, ``plans: auto`` and/or explicit axes (YAML, pydantic).

```yaml
base: {cluster: {system: dgx-a100, nodes: 641}, workload: {model: turing-530b, global_batch: 2520}}
plans: auto                   # or a mapping of PlanSpace options (below)
axes:
  cluster.network.nic_gbps: [200, 400]
  cluster.nodes: {start: 4, stop: 16, step: 4}     # inclusive of stop
  workload.micro_batch: {values: [1, 2]}
```
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hw_models.errors import ClusterSimError
from hw_models.yamlio import read_yaml
from sim import scenario as scenario_mod


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# Points one axis may have: every value is parsed as a scenario before the sweep (~0.2 ms
# each), so 100,000 points is ~20 s of checking, and the sweep at least that many rows.
MAX_AXIS_POINTS = 100_000


class Range(_Cfg):
    start: float
    stop: float
    step: float = 1

    def values(self) -> list[Any]:
        if self.step <= 0:
            raise ValueError(f"step must be > 0 (got {self.step})")
        if self.stop < self.start:
            raise ValueError(f"stop {self.stop} is below start {self.start}")
        n = int((self.stop - self.start) / self.step + 1e-9) + 1
        if n > MAX_AXIS_POINTS:     # each point is checked as a scenario before the sweep
            raise ValueError(f"a range of {n:,} points; an axis holds at most "
                             f"{MAX_AXIS_POINTS:,} (raise step or narrow start..stop)")
        out = [self.start + i * self.step for i in range(n)]
        return [int(v) if float(v).is_integer() else v for v in out]


class Values(_Cfg):
    values: list[Any]


# Candidate sizes are counts (> 0) and offload shares fractions: a 0 or negative size would
# reach the grid's divisibility arithmetic instead of this one line.
Pos = Annotated[int, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]


class PlanSpace(_Cfg):
    """Candidate values of ``plans: auto``; each is filtered by divisibility per scenario."""
    tp: list[Pos] | None = None            # default: divisors of the GPU count up to the heads
    pp: list[Pos] | None = None            # default: divisors of GPUs / tp up to the layers
    vpp: list[Pos] = [1, 2, 3, 4, 5, 6, 7, 8]
    micro_batch: list[Pos] | Literal["divisors"] = [1, 2, 4, 8, 16]
    recompute: list[Literal["none", "selective", "full"]] = ["none", "selective", "full"]
    sequence_parallel: list[bool] = [False, True]
    zero: list[Literal[0, 1, 2, 3]] = [0, 1, 2, 3]
    # exact: global_batch must be a multiple of dp * micro_batch. max: global_batch is an
    # upper bound, rounded down to a multiple of dp (Calculon's llm-optimal-execution).
    batch: Literal["exact", "max"] = "exact"
    # Allow pp not dividing the layers: first stages take one layer more (in vpp units).
    uneven_layers: bool = False
    # The dimensions Calculon also searches (docs/sweeps.md): TP communication overlap
    # (tried only with sequence parallelism and tp > 1), host offload of a fraction of
    # the activations, optimizer on the host.
    tp_comm_overlap: list[Literal["none", "ring", "async"]] = ["none"]
    offload_activations: list[Fraction] = [0.0]
    offload_optimizer: list[bool] = [False]
    # MoE models: expert parallel sizes (default: the divisors of the experts that divide
    # tp*dp) and expert tensor parallel sizes; dense models keep ep = etp = 1.
    ep: list[Pos] | None = None
    etp: list[Pos] = [1]

    @field_validator("tp", "pp", "vpp", "micro_batch", "recompute", "sequence_parallel", "zero",
                     "tp_comm_overlap", "offload_activations", "offload_optimizer", "ep", "etp")
    @classmethod
    def _non_empty(cls, v):
        if v is not None and not v:
            raise ValueError("an empty list leaves nothing to search; give at least one value")
        return v


class SweepFile(_Cfg):
    base: dict[str, Any] = Field(default_factory=dict)
    plans: Literal["auto", "none"] | PlanSpace | None = None
    axes: dict[str, list[Any] | Range | Values] = Field(default_factory=dict)
    top: int = Field(10, gt=0)         # rows in the summary's table of best plans
    # What "best" means (docs/energy.md): fastest, cheapest per token, or least energy per
    # token (energy comes from the DES-verified rows only).
    objective: Literal["time", "cost", "energy"] = "time"
    # Rows whose cluster costs more per hour are rejected ("over budget"); e.g. a pool mix.
    budget_usd_per_hour: float | None = Field(None, gt=0)


def _axis_values(key: str, spec) -> list[Any]:
    try:
        vals = spec.values() if isinstance(spec, Range) else (
            spec.values if isinstance(spec, Values) else spec)
    except ValueError as exc:
        raise ClusterSimError(f"axes.{key}: {exc}") from None
    if not vals:
        raise ClusterSimError(f"axes.{key}: empty axis; give at least one value")
    return list(vals)


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    scenario_mod.set_dotted(data, key, value, f"axes.{key}", " in the base scenario")


class Sweep:
    """A parsed sweep: the base scenario, the axes (ordered), the plan space or None."""

    def __init__(self, data: SweepFile, source: str):
        self.file, self.source = data, source
        self.base = data.base
        self.axes = {k: _axis_values(k, v) for k, v in data.axes.items()}
        self.plans = PlanSpace() if data.plans == "auto" else (
            data.plans if isinstance(data.plans, PlanSpace) else None)
        self._check_axes()

    def _check_axes(self) -> None:
        """Every axis value must give a valid scenario: catch typos before the sweep runs."""
        scenario_mod.parse(self.base, f"{self.source}: base")
        for key, vals in self.axes.items():
            for v in vals:
                data = deep_copy(self.base)
                set_dotted(data, key, v)
                try:
                    scenario_mod.Scenario(**data)
                except ValidationError as exc:
                    raise ClusterSimError(
                        f"{self.source}: axes.{key} = {v!r}: {scenario_mod.describe(exc)}") from None

    def axis_points(self) -> Iterator[dict[str, Any]]:
        """Cartesian product of the axes, in file order (the last axis varies fastest),
        generated one point at a time (the product can be far larger than memory)."""
        keys = list(self.axes)
        for combo in itertools.product(*(self.axes[k] for k in keys)):
            yield dict(zip(keys, combo, strict=True))

    def n_axis_points(self) -> int:
        return math.prod(len(v) for v in self.axes.values())

    def scenario_dict(self, overrides: dict[str, Any]) -> dict[str, Any]:
        data = deep_copy(self.base)
        for k, v in overrides.items():
            set_dotted(data, k, v)
        return data


def deep_copy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: deep_copy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [deep_copy(v) for v in d]
    return d


def parse(data: Any, source: str = "sweep") -> Sweep:
    if not isinstance(data, dict):
        raise ClusterSimError(f"{source}: a sweep file is a YAML mapping with base, plans, axes")
    if "base" not in data:
        raise ClusterSimError(f"{source}: no 'base' scenario; a sweep file needs base: (a scenario "
                              f"as `clustersim simulate` takes it) and plans: and/or axes:")
    try:
        sf = SweepFile(**data)
    except ValidationError as exc:
        raise ClusterSimError(f"{source}: {scenario_mod.describe(exc)}") from None
    if sf.plans in (None, "none") and not sf.axes:
        raise ClusterSimError(f"{source}: nothing to sweep; give `plans: auto` and/or `axes:`")
    return Sweep(sf, source)


def load(path: str | Path) -> Sweep:
    return parse(read_yaml(path, "sweep"), str(path))

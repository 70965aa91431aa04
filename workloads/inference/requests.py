"""Request streams: arrivals and prompt/output lengths from one seeded numpy Generator."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from hw_models.errors import ClusterSimError

TRACE_COLUMNS = ("arrival_s", "prompt_len", "output_len")
# Requests one serving run may generate: ~10k simulate in 10 s, so a million is minutes.
MAX_REQUESTS = 1_000_000


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class LengthDist(_Cfg):
    """lognormal: median and sigma (of log); uniform: low..high; zipf: a (>1), low, high."""
    dist: Literal["lognormal", "uniform", "zipf"] = Field(description="length distribution")
    median: float | None = Field(None, gt=0, description="lognormal: median length, tokens")
    sigma: float = Field(1.0, gt=0, description="lognormal: sigma of the log")
    low: int = Field(1, gt=0, description="shortest length, tokens")
    high: int | None = Field(None, gt=0, description=(
        "longest length, tokens (needed by uniform and zipf)"))
    a: float = Field(1.5, gt=1, description="zipf: exponent (> 1)")

    @model_validator(mode="after")
    def _need(self) -> LengthDist:
        if self.dist == "lognormal" and self.median is None:
            raise ValueError("lognormal needs median")
        if self.dist in ("uniform", "zipf") and self.high is None:
            raise ValueError(f"{self.dist} needs high")
        if self.high is not None and self.high < self.low:
            raise ValueError(f"high {self.high} < low {self.low}")
        return self


Length = int | LengthDist


class RequestsConfig(_Cfg):
    count: int = Field(1000, gt=0, le=MAX_REQUESTS,
                       description="requests to generate (at most a million: ~10k simulate in 10 s)")
    arrival: Literal["burst", "poisson", "trace"] = Field("poisson", description=(
        "burst (all at time 0), poisson (at rate_per_s) or trace (from a CSV)"))
    rate_per_s: float = Field(5.0, gt=0, description="poisson: mean arrivals per second")
    prompt_len: Length = Field(512, description="prompt tokens: a number or a distribution")
    output_len: Length = Field(128, description="output tokens: a number or a distribution")
    trace: str | None = Field(None, description=(
        "trace: CSV with arrival_s, prompt_len, output_len"))
    seed: int = Field(0, ge=0, description="seed of the arrival and length draws")

    @model_validator(mode="after")
    def _positive(self) -> RequestsConfig:
        for k in ("prompt_len", "output_len"):
            v = getattr(self, k)
            if isinstance(v, int) and v <= 0:
                raise ValueError(f"{k} must be > 0")
        if self.arrival == "trace" and not self.trace:
            raise ValueError("arrival: trace needs requests.trace (a CSV with arrival_s, "
                             "prompt_len, output_len)")
        return self


@dataclass(slots=True, eq=False)
class Request:
    """One request and its progress. ``target`` is the context to (re)build by prefill:
    the prompt at first, prompt + generated tokens after a recompute preemption."""
    id: int
    arrival: float
    prompt: int
    output: int
    target: int = 0
    prefilled: int = 0
    generated: int = 0
    kv_ready: bool = False          # KV already on this replica's way in (swap / transfer)
    first_token: float = float("nan")
    last_token: float = float("nan")
    finish: float = float("nan")
    preemptions: int = 0
    replica: int = -1
    decode_replica: int = -1
    blocks: int = 0
    tbt: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.target = self.prompt

    @property
    def context(self) -> int:
        """Tokens whose keys and values are in the cache once prefilled."""
        return self.prompt + self.generated

    @property
    def in_prefill(self) -> bool:
        return not self.kv_ready and self.prefilled < self.target


def sample_lengths(spec: Length, n: int, rng: np.random.Generator) -> np.ndarray:
    if isinstance(spec, int):
        return np.full(n, spec, dtype=np.int64)
    return _sample_dist(spec, n, rng)


def _sample_dist(d: LengthDist, n: int, rng: np.random.Generator) -> np.ndarray:
    if d.dist == "lognormal":
        x = rng.lognormal(np.log(d.median), d.sigma, n)
    elif d.dist == "uniform":
        x = rng.integers(d.low, d.high + 1, n)
    else:   # zipf: heavy tail of lengths, shifted to start at ``low``
        x = d.low - 1 + rng.zipf(d.a, n)
    hi = d.high if d.high is not None else np.inf
    return np.clip(np.rint(x), d.low, hi).astype(np.int64)


def generate(cfg: RequestsConfig, rng: np.random.Generator, max_context: int) -> list[Request]:
    """Requests sorted by arrival; rejects any that cannot fit the model's context."""
    if cfg.arrival == "trace":
        arrival, prompt, output = load_trace(cfg.trace)
    else:
        n = cfg.count
        if cfg.arrival == "burst":
            arrival = np.zeros(n)
        else:   # Poisson process: exponential inter-arrival gaps of mean 1/rate
            arrival = np.cumsum(rng.exponential(1.0 / cfg.rate_per_s, n))
        prompt = sample_lengths(cfg.prompt_len, n, rng)
        output = sample_lengths(cfg.output_len, n, rng)
    # The last generated token is never fed back, so a request needs prompt + output - 1
    # positions of context.
    longest = int(np.max(prompt + output)) - 1
    if longest > max_context:
        i = int(np.argmax(prompt + output))
        raise ClusterSimError(
            f"requests: prompt_len {int(prompt[i])} + output_len {int(output[i])} - 1 = {longest} "
            f"exceeds the model's context of {max_context} tokens; shorten them or set the "
            "model's seq_len")
    order = np.argsort(arrival, kind="stable")
    return [Request(k, float(arrival[i]), int(prompt[i]), int(output[i]))
            for k, i in enumerate(order)]


def load_trace(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import pandas as pd
    path = Path(path)
    if path.is_dir():
        raise ClusterSimError(f"requests.trace {str(path)!r} is a directory; give a CSV file")
    if not path.is_file():
        raise ClusterSimError(f"requests.trace {str(path)!r} does not exist")
    try:
        df = pd.read_csv(path, comment="#")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ClusterSimError(f"requests.trace {path}: not a readable CSV ({exc})") from None
    missing = [c for c in TRACE_COLUMNS if c not in df.columns]
    if missing:
        raise ClusterSimError(f"requests.trace {path}: missing column(s) {', '.join(missing)}; "
                              f"need {', '.join(TRACE_COLUMNS)}")
    if df.empty:
        raise ClusterSimError(f"requests.trace {path}: has no rows")
    df = df[list(TRACE_COLUMNS)]
    num = df.apply(pd.to_numeric, errors="coerce")
    bad = num.isna() & df.notna()                # text where a number belongs
    if bad.any().any():
        row, col = bad.stack().idxmax()
        raise ClusterSimError(f"requests.trace {path}: row {row + 1}, {col} = {df.at[row, col]!r} "
                              "is not a number")
    df = num
    lens = df[["prompt_len", "output_len"]]
    if (lens.notna() & (lens != lens.round())).any().any():
        raise ClusterSimError(f"requests.trace {path}: prompt_len and output_len are whole "
                              "numbers of tokens")
    if df.isna().any().any() or (df.arrival_s < 0).any() or (df[["prompt_len", "output_len"]] <= 0).any().any():
        raise ClusterSimError(f"requests.trace {path}: arrival_s must be >= 0 and lengths > 0 "
                              "in every row")
    return (df.arrival_s.to_numpy(float), df.prompt_len.to_numpy(np.int64),
            df.output_len.to_numpy(np.int64))

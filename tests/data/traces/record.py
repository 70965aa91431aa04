"""Record the small real CPU traces used by the replay tests.

A tiny GPT (2 layers, d=64, 4 heads, T=32) trains for a few steps with torch on CPU under
torch.profiler; one rank alone, and two ranks over gloo with an explicit gradient
all-reduce (data parallel); an ExecutionTraceObserver runs alongside in the ``_et`` runs.
``--et-2rank`` records only the 2-rank run with ET.
Writes gzip Chrome traces (and ET JSON) next to this file:

    PYTHONPATH=$PWD python tests/data/traces/record.py
"""

from __future__ import annotations

import gzip
import os
import shutil
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.profiler import ExecutionTraceObserver, ProfilerActivity, profile, schedule

HERE = Path(__file__).parent
STEPS = dict(wait=1, warmup=1, active=3)


class Block(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        mask = torch.triu(torch.ones(t, t, dtype=torch.bool), 1)  # causal
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    def __init__(self, vocab: int = 256, d: int = 64, heads: int = 4, layers: int = 2,
                 seq: int = 32):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(seq, d)
        self.blocks = nn.Sequential(*[Block(d, heads) for _ in range(layers)])
        self.head = nn.Linear(d, vocab)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1])
        return self.head(self.blocks(self.tok(idx) + self.pos(pos)))


def train(rank: int, world: int, out: Path, et_path: Path | None) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = TinyGPT()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(rank)
    et = None
    if et_path is not None:
        et = ExecutionTraceObserver()
        et.register_callback(str(et_path.with_suffix("")))  # written as .json, gzipped below

    def step() -> None:
        idx = torch.randint(0, 256, (8, 33), generator=gen)
        logits = model(idx[:, :-1])
        loss = nn.functional.cross_entropy(logits.reshape(-1, 256), idx[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        if world > 1:
            for p in model.parameters():  # explicit data-parallel gradient all-reduce
                dist.all_reduce(p.grad)
                p.grad /= world
        opt.step()

    with profile(activities=[ProfilerActivity.CPU], schedule=schedule(**STEPS),
                 execution_trace_observer=et) as prof:
        for _ in range(sum(STEPS.values())):
            step()
            prof.step()
    tmp = out.with_suffix("")  # drop .gz
    prof.export_chrome_trace(str(tmp))
    _gzip(tmp)
    if et is not None:
        _gzip(et_path.with_suffix(""))


def _gzip(path: Path) -> None:
    with open(path, "rb") as src, gzip.open(str(path) + ".gz", "wb", compresslevel=9) as dst:
        shutil.copyfileobj(src, dst)
    path.unlink()


def _worker(rank: int, world: int, folder: Path, with_et: bool) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29531")
    dist.init_process_group("gloo", rank=rank, world_size=world)
    et_path = folder / f"rank{rank}_et.json.gz" if with_et else None
    train(rank, world, folder / f"rank{rank}.json.gz", et_path)
    dist.destroy_process_group()


def main() -> None:
    only_et_2rank = "--et-2rank" in sys.argv  # record only the 2-rank gloo run with ET
    if not only_et_2rank:
        train(0, 1, HERE / "cpu_gpt_1rank.json.gz", None)
        train(0, 1, HERE / "cpu_gpt_1rank_with_et.json.gz", HERE / "cpu_gpt_1rank_et.json.gz")
        folder = HERE / "cpu_gpt_2rank_gloo"
        folder.mkdir(exist_ok=True)
        mp.spawn(_worker, args=(2, folder, False), nprocs=2, join=True)
    # 2 ranks over gloo with an ExecutionTraceObserver on each (Kineto + ET per rank).
    folder = HERE / "cpu_gpt_2rank_gloo_et"
    folder.mkdir(exist_ok=True)
    mp.spawn(_worker, args=(2, folder, True), nprocs=2, join=True)


if __name__ == "__main__":
    sys.exit(main())

"""Incremental Parquet results: one part file per finished chunk, merged at the end.

``OUT.parts/`` holds ``a-<chunk>.parquet`` (closed-form rows) and ``v-<id>.parquet``
(DES rows) and a manifest naming the sweep they belong to; ``--resume`` keeps the parts
of the same sweep and skips their work. Parts are written to a temporary name and
renamed, so a kill never leaves a half-written part behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from hw_models.errors import ClusterSimError


class PartStore:
    def __init__(self, out: str | Path, fingerprint: dict[str, Any], resume: bool):
        self.out = Path(out)
        self.dir = self.out.with_name(self.out.name + ".parts")
        digest = hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str)
                                .encode()).hexdigest()[:16]
        manifest = self.dir / "manifest.json"
        if resume and manifest.is_file():
            old = json.loads(manifest.read_text()).get("sweep")
            if old != digest:
                raise ClusterSimError(f"--resume: {self.dir} belongs to a different sweep "
                                      "(sweep file or chunking changed); drop --resume to start over")
        elif self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        manifest.write_text(json.dumps({"sweep": digest}))

    def _path(self, kind: str, key: int) -> Path:
        return self.dir / f"{kind}-{key:08d}.parquet"

    def done(self, kind: str) -> set[int]:
        return {int(p.stem.split("-")[1]) for p in self.dir.glob(f"{kind}-*.parquet")}

    def write(self, kind: str, key: int, rows: list[dict[str, Any]]) -> None:
        path = self._path(kind, key)
        tmp = path.with_suffix(".tmp")
        pd.DataFrame(rows).to_parquet(tmp, index=False)
        os.replace(tmp, path)

    def read(self, kind: str) -> pd.DataFrame:
        parts = sorted(self.dir.glob(f"{kind}-*.parquet"))
        if not parts:
            return pd.DataFrame({"id": pd.Series(dtype="int64")})
        frames = [pd.read_parquet(p) for p in parts]
        return pd.concat([f for f in frames if len(f)], ignore_index=True)

    def finish(self, frame: pd.DataFrame) -> None:
        tmp = self.out.with_name(self.out.name + ".tmp")
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, self.out)
        shutil.rmtree(self.dir)

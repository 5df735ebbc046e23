"""Small file helpers: atomic JSON writes and a JSONL metrics log."""

from __future__ import annotations

import json
import math
import os
import pathlib
import tempfile
from typing import Any

import jax
import numpy as np


def to_jsonable(value: Any) -> Any:
  """numpy / jax scalars and arrays to plain Python; NaN and inf to strings."""
  if isinstance(value, dict):
    return {str(k): to_jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_jsonable(v) for v in value]
  if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
    return to_jsonable(np.asarray(value).tolist())
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  return value


def write_json_atomic(path: str | pathlib.Path, obj: Any) -> None:
  """Writes JSON so that a reader (or a kill) never sees a half-written file."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
  with os.fdopen(fd, "w") as f:
    json.dump(to_jsonable(obj), f, indent=2)
    f.write("\n")
  os.replace(tmp, path)


class MetricsLog:
  """Appends one JSON object per line to `path` (e.g. run/metrics.jsonl).

  `truncate_after(step)` drops lines logged after a restored checkpoint, so a
  resumed run's log reads as if it had never stopped. With several processes
  (multi-host), only process 0 writes; every process computes the same records.
  """

  def __init__(self, path: str | pathlib.Path):
    self.path = pathlib.Path(path)
    self.path.parent.mkdir(parents=True, exist_ok=True)
    self.writer = jax.process_index() == 0

  def write(self, record: dict) -> None:
    if not self.writer:
      return
    with open(self.path, "a") as f:
      f.write(json.dumps(to_jsonable(record)) + "\n")

  def read(self) -> list[dict]:
    if not self.path.exists():
      return []
    return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

  def truncate_after(self, step: int) -> None:
    if not self.writer or not self.path.exists():
      return
    kept = [r for r in self.read() if r.get("step", 0) <= step]
    fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
    with os.fdopen(fd, "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in kept)
    os.replace(tmp, self.path)

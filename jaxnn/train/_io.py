"""Small file helpers: atomic JSON writes, validated JSON reads and a JSONL metrics log.

Every file the engine reads is checked: a file that is not what jaxnn wrote
(hand-edited, truncated, binary) raises a `JaxnnError` naming it, and is left
as it is. Every file it writes appears whole or not at all.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pathlib
import tempfile
from typing import Any

import jax
import numpy as np

from jaxnn._errors import JaxnnError, StorageError, describe_os_error


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


def write_text_atomic(path: str | pathlib.Path, text: str) -> None:
  """Writes `text` so that a reader (or a kill, or a full disk) never sees a partial file.

  The text goes to a temporary file in the same directory, is flushed to disk,
  then renamed over `path`. On any error the temporary file is removed and
  `path` keeps its old contents.
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
  try:
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException as e:
    with contextlib.suppress(OSError):
      os.unlink(tmp)
    if isinstance(e, OSError) and e.errno and e.filename is None:  # e.g. fsync: name the file
      raise OSError(e.errno, e.strerror, str(path)) from e
    raise


def check_writable(folder: str | pathlib.Path) -> None:
  """Raises `StorageError` now if files cannot be created in `folder` (read-only, no permission).

  A run checks this before it trains, rather than failing at its first write.
  """
  folder = pathlib.Path(folder)
  try:
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".jaxnn-write-check.")
    os.close(fd)
    os.unlink(tmp)
  except OSError as e:
    raise StorageError(describe_os_error(e, folder)) from None


def write_json_atomic(path: str | pathlib.Path, obj: Any) -> None:
  """Writes `obj` as JSON so that a reader (or a kill) never sees a half-written file."""
  write_text_atomic(path, json.dumps(to_jsonable(obj), indent=2) + "\n")


def read_json(path: str | pathlib.Path, kind: type = dict, what: str = "a jaxnn file") -> Any:
  """Reads a JSON file jaxnn wrote, checking that it still is one.

  Args:
    path: the file.
    kind: the type its top-level value must have (dict, list).
    what: what the file should be, for the error message.

  Returns:
    The parsed value.

  Raises:
    JaxnnError: the file is not UTF-8 JSON of type `kind` (one line naming it;
      the file is left as it is).
  """
  path = pathlib.Path(path)
  try:
    value = json.loads(path.read_bytes().decode("utf-8"))
  except UnicodeDecodeError:
    problem = "it is not text (binary data)"
  except json.JSONDecodeError as e:
    problem = f"it is not valid JSON ({e.msg} at line {e.lineno})"
  else:
    if isinstance(value, kind):
      return value
    problem = f"it holds {type(value).__name__} {_short(value)}, not a JSON {_JSON_NAMES[kind]}"
  raise JaxnnError(f"{path} is not {what}: {problem}. It was left as it is: restore or remove it")


_JSON_NAMES: dict[type, str] = {dict: "object", list: "array"}


def _short(value: Any) -> str:
  text = json.dumps(value)
  return text if len(text) <= 40 else text[:37] + "..."


class MetricsLog:
  """Appends one JSON object per line to `path` (e.g. run/metrics.jsonl).

  `truncate_after(step)` drops lines logged after a restored checkpoint (and a
  partial last line left by a kill or a full disk), so a resumed run's log
  reads as if it had never stopped. A file that is not such a log (binary,
  hand-edited) raises a `JaxnnError` naming it and is left as it is. With
  several processes (multi-host), only process 0 writes; every process
  computes the same records.
  """

  def __init__(self, path: str | pathlib.Path):
    self.path = pathlib.Path(path)
    self.writer = jax.process_index() == 0

  def write(self, record: dict) -> None:
    """Appends `record` as one line."""
    if not self.writer:
      return
    self.path.parent.mkdir(parents=True, exist_ok=True)
    with open(self.path, "a", encoding="utf-8") as f:
      f.write(json.dumps(to_jsonable(record)) + "\n")

  def _parse(self) -> tuple[list[dict], bool]:
    """The records, and whether the file needs rewriting (a partial last line)."""
    if not self.path.exists():
      return [], False
    data = self.path.read_bytes()
    fix = "It was left as it is: move it away (or fix that line) and rerun, or use another --out"
    try:
      text = data.decode("utf-8")
    except UnicodeDecodeError:
      raise JaxnnError(
        f"{self.path} is not a jaxnn metrics log (not text: binary data). "
        "It was left as it is: move it away and rerun, or use another --out"
      ) from None
    lines = text.split("\n")
    partial = bool(lines) and lines[-1] != ""  # no newline at the end: cut short
    records, repair = [], False
    for number, line in enumerate(lines, 1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        if partial and number == len(lines):
          repair = True  # the last line was cut short (a kill or a full disk): drop it
          continue
        raise JaxnnError(
          f"{self.path} line {number} is not a JSON record: {_short(line)}. {fix}"
        ) from None
      if not isinstance(record, dict) or not isinstance(record.get("step", 0), (int, float)):
        raise JaxnnError(
          f"{self.path} line {number} is not a metrics record "
          f"(an object with a numeric step): {_short(record)}. {fix}"
        )
      records.append(record)
    return records, repair or partial

  def read(self) -> list[dict]:
    """Every complete record (a partial last line is skipped).

    Raises:
      JaxnnError: the file is not a metrics log.
    """
    return self._parse()[0]

  def truncate_after(self, step: int) -> None:
    """Keeps the records up to `step`, rewriting the file only if that changes it."""
    if not self.writer:
      return
    records, repair = self._parse()
    kept = [r for r in records if r.get("step", 0) <= step]
    if len(kept) == len(records) and not repair:
      return
    write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in kept))

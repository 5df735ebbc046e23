"""Helpers of the hostile-input tests: the tiny run's command, snapshots, the one-line check."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pathlib
import subprocess
from typing import NamedTuple

TRAIN = [
  "train",
  "--dataset",
  "digits",
  "--widths",
  "16",
  "--batch-size",
  "128",
  "--lr",
  "0.01",
  "--devices",
  "1",
  "--no-progress",
]


def train_args(out: pathlib.Path, epochs: int = 2, *extra: str) -> list[str]:
  """`jaxnn train` arguments of the shared tiny run (10 steps per epoch, a checkpoint each)."""
  return [*TRAIN, "--epochs", str(epochs), "--out", str(out), *extra]


class Result(NamedTuple):
  """What a `jaxnn` command did: exit code and output."""

  code: int
  out: str
  err: str


def snapshot(folder: pathlib.Path) -> dict[str, str]:
  """sha256 of every file under `folder`, by relative path (the user's saved bytes)."""
  return {
    str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
    for p in sorted(folder.rglob("*"))
    if p.is_file()
  }


def assert_one_line_error(result: Result, *fragments: str) -> str:
  """Exit status 2, exactly one stderr line `jaxnn: error: ...` holding `fragments`."""
  lines = [line for line in result.err.splitlines() if line.strip()]
  assert result.code == 2, result
  assert "Traceback" not in result.err, result.err
  assert len(lines) == 1, result.err
  assert lines[0].startswith("jaxnn: error: "), lines[0]
  for fragment in fragments:
    assert fragment in lines[0], lines[0]
  return lines[0]


def summary_without_timing(path: pathlib.Path) -> dict:
  """summary.json less what may differ between identical runs (seconds, resume option)."""
  summary = json.loads(path.read_text())
  summary.pop("seconds")
  summary["config"].pop("resume_from_previous")  # how the run was resumed, not what it is
  return summary


def flip_array_bytes(step_dir: pathlib.Path) -> None:
  """Flips bytes in the middle of every array data file of an Orbax step (not its metadata)."""
  files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
  assert files
  for path in files:
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 8):
      data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def mount_tmpfs(path: pathlib.Path, options: str) -> bool:
  """Mounts a tmpfs at `path` (root only); False if this machine does not allow it."""
  path.mkdir(parents=True, exist_ok=True)
  proc = subprocess.run(
    ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
  )
  return proc.returncode == 0


def unmount(path: pathlib.Path) -> None:
  subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def remount_readonly(path: pathlib.Path) -> None:
  subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True, capture_output=True)


def checkpoint_save_on_a_full_disk(run_dir: pathlib.Path):
  """A stand-in for `CheckpointManager.save` that leaves a temporary folder, then fails (ENOSPC)."""

  def save(self, step, *args, **kwargs):
    partial = run_dir / "checkpoints" / f"{step}.orbax-checkpoint-tmp-1234"
    (partial / "state").mkdir(parents=True)
    (partial / "state" / "data").write_bytes(b"\0" * 100)
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  return save

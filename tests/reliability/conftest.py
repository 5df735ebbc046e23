"""Shared fixtures for the hostile-input tests: one tiny trained run, copied per test.

`trained_run` trains `jaxnn train` once per session (digits, an fc net of
width 16, 2 epochs of 10 steps, checkpoints at steps 10 and 20, one device);
`run` gives each test its own copy. `jaxnn(...)` runs the CLI's `main` in
this process and returns its exit code and output (stderr read at the file
descriptor, so storage libraries' C++ log lines would show too); the tests in
test_subprocess.py run the real console command instead.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import shutil
import subprocess
from collections.abc import Callable
from typing import NamedTuple

import pytest

from jaxnn.cli import main

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
STEPS_PER_EPOCH = 10  # 1,257 digits training examples, batches of 128 (the last one partial)


def train_args(out: pathlib.Path, epochs: int = 2, *extra: str) -> list[str]:
  """`jaxnn train` arguments of the shared tiny run."""
  return [*TRAIN, "--epochs", str(epochs), "--out", str(out), *extra]


class Result(NamedTuple):
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
  summary = json.loads(path.read_text())
  summary.pop("seconds")
  summary["config"].pop("resume_from_previous")  # how the run was resumed, not what it is
  return summary


@pytest.fixture
def jaxnn(capfd) -> Callable[..., Result]:
  """Runs `jaxnn ARGS...` in this process; returns (exit code, stdout, stderr)."""

  def run(args: list[str]) -> Result:
    capfd.readouterr()
    code = main([str(a) for a in args])
    out, err = capfd.readouterr()
    return Result(code, out, err)

  return run


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> pathlib.Path:
  """A finished 2-epoch run (read-only for the tests: copy it with the `run` fixture)."""
  out = tmp_path_factory.mktemp("trained") / "run"
  assert main(train_args(out)) == 0
  assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["10", "20"]
  return out


@pytest.fixture
def run(trained_run, tmp_path) -> pathlib.Path:
  """This test's own copy of the trained run."""
  copy = tmp_path / "run"
  shutil.copytree(trained_run, copy)
  return copy


def mount_tmpfs(path: pathlib.Path, options: str) -> bool:
  """Mounts a tmpfs at `path` (root only); False if this machine does not allow it."""
  path.mkdir(parents=True, exist_ok=True)
  proc = subprocess.run(
    ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
  )
  return proc.returncode == 0


def unmount(path: pathlib.Path) -> None:
  subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@pytest.fixture
def tmpfs(tmp_path) -> Callable[[str], pathlib.Path]:
  """`tmpfs("size=1m")` mounts a fresh tmpfs with those options (skips if not allowed)."""
  mounted = []

  def make(options: str) -> pathlib.Path:
    path = tmp_path / f"mnt{len(mounted)}"
    if shutil.which("mount") is None or not mount_tmpfs(path, options):
      pytest.skip("mounting a tmpfs needs root on Linux")
    mounted.append(path)
    return path

  yield make
  for path in mounted:
    unmount(path)


def remount_readonly(path: pathlib.Path) -> None:
  subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True, capture_output=True)

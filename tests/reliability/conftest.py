"""Fixtures of the hostile-input tests: one tiny trained run, copied per test.

`trained_run` trains `jaxnn train` once per session (digits, an fc net of
width 16, 2 epochs of 10 steps, checkpoints at steps 10 and 20, one device);
`run` gives each test its own copy. `jaxnn(args)` runs the CLI's `main` (what
the `jaxnn` console script calls) in this process and returns its exit code
and output, stderr read at the file descriptor so that storage libraries' own
log lines would show; test_hostile_commands.py also runs the console command
in a fresh process.
"""

from __future__ import annotations

import pathlib
import shutil
from collections.abc import Callable

import pytest
from hostile import Result, mount_tmpfs, train_args, unmount

from jaxnn.cli import main


@pytest.fixture
def jaxnn(capfd) -> Callable[[list], Result]:
  """Runs `jaxnn ARGS...` in this process; returns (exit code, stdout, stderr)."""

  def run(args: list) -> Result:
    capfd.readouterr()
    code = main([str(a) for a in args])
    out, err = capfd.readouterr()
    return Result(code, out, err)

  return run


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> pathlib.Path:
  """A finished 2-epoch run (not to be changed: copy it with the `run` fixture)."""
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

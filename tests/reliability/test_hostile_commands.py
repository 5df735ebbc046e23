"""The other training commands share the engine's guarantees; the real console command's stderr.

`jaxnn lca`, `jaxnn coordconv` and `jaxnn subspace` write through the same
engine and CLI handler as `jaxnn train`. The subprocess tests run
`python -m jaxnn.cli` itself: what a user's terminal shows, including anything
storage libraries print from their own threads after an error.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys

import pytest
from hostile import (
  Result,
  assert_one_line_error,
  checkpoint_save_on_a_full_disk,
  flip_array_bytes,
  snapshot,
  summary_without_timing,
  train_args,
)

from jaxnn.cli import main


def test_lca_read_only_out(tmpfs, jaxnn):
  mount = tmpfs("size=1m,ro")
  args = ["lca", "--dataset", "digits", "--widths", "8", "--batch-size", "200", "--epochs", "1"]
  args += ["--devices", "1", "--chunk-size", "500", "--compile-cache", "none", "--no-progress"]
  assert_one_line_error(jaxnn([*args, "--out", mount / "lca"]), "Read-only file system")
  assert not list(mount.iterdir())


def test_coordconv_read_only_data_dir(tmpfs, tmp_path, jaxnn):
  mount = tmpfs("size=1m,ro")
  args = ["coordconv", "classify", "--epochs", "1", "--train-examples", "64", "--widths", "4"]
  args += ["--devices", "1", "--no-progress", "--data-dir", mount / "data"]
  assert_one_line_error(jaxnn([*args, "--out", tmp_path / "cc"]), "Read-only file system")
  assert not (tmp_path / "cc").exists() and not list(mount.iterdir())


def test_subspace_read_only_out(tmpfs, jaxnn):
  mount = tmpfs("size=1m,ro")
  args = ["subspace", "sweep", "--dataset", "digits", "--widths", "8", "--dims", "10"]
  args += ["--seeds", "1", "--steps", "5", "--devices", "1", "--no-progress"]
  assert_one_line_error(jaxnn([*args, "--out", mount / "sub"]), "Read-only file system")
  assert not list(mount.iterdir())


TINY_RUNS = {
  "lca": [
    *["lca", "--dataset", "digits", "--widths", "8", "--batch-size", "200", "--epochs", "2"],
    *["--checkpoint-every", "4", "--chunk-size", "500", "--compile-cache", "none"],
  ],
  "coordconv": [
    *["coordconv", "classify", "--epochs", "2", "--train-examples", "64", "--widths", "4"],
  ],
}
SWEEP = ["subspace", "sweep", "--dataset", "digits", "--widths", "8", "--dims", "10"]
SWEEP += ["--seeds", "1", "--steps", "5"]
EVERY_COMMAND = ("coordconv", "lca", "subspace", "train")


def _args(command: str, out) -> list:
  """The tiny run of `command` (one device, no progress, no plots) writing to `out`."""
  if command == "train":
    return train_args(out, 1)
  tiny = SWEEP if command == "subspace" else TINY_RUNS[command]
  args = [*tiny, "--devices", "1", "--no-progress", "--no-plots"]
  return [*args, "--out", out]


@pytest.mark.parametrize("content", ["[]", "null", "\x00\x01binary"])
@pytest.mark.parametrize("command", EVERY_COMMAND)
def test_foreign_config_json_is_refused_by_every_command(command, content, tmp_path, jaxnn):
  out = tmp_path / "out"
  out.mkdir()
  (out / "config.json").write_text(content)
  before = snapshot(out)
  assert_one_line_error(jaxnn(_args(command, out)), "config.json")
  assert snapshot(out) == before


OTHER_COMMANDS = {  # the commands whose --out holds no training run
  "pplm": ["pplm", "generate", "--prompt", "The potato", "--bow", "military", "--length", "2"],
  "reproduce": ["reproduce", "--quick", "--only", "lca", "--no-progress"],
}


@pytest.mark.parametrize("command", [*EVERY_COMMAND, *OTHER_COMMANDS])
def test_full_disk_at_every_write_of_every_command(command, tmp_path, jaxnn, monkeypatch):
  """No space for any file (every fsync fails): one line, and no partial file left behind."""

  def full_disk(fd):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  monkeypatch.setattr(os, "fsync", full_disk)
  out = tmp_path / "out"
  args = [*OTHER_COMMANDS[command], "--out", out] if command in OTHER_COMMANDS else None
  if command == "pplm":
    args += ["--model", "offline"]  # the shipped language model: no download
  assert_one_line_error(jaxnn(args or _args(command, out)), "No space left on device", str(out))
  leftovers = [p for p in tmp_path.rglob("*") if "-tmp" in p.name or p.name.startswith(".")]
  assert not leftovers, leftovers


@pytest.mark.parametrize("command", ["coordconv", "lca"])
def test_full_disk_in_the_checkpoint_writer_of_lca_and_coordconv(
  command, tmp_path, jaxnn, monkeypatch
):
  """Orbax's save leaves a temporary folder, then fails: one line; the folder is removed."""
  import orbax.checkpoint as ocp

  out = tmp_path / "out"
  monkeypatch.setattr(ocp.CheckpointManager, "save", checkpoint_save_on_a_full_disk(out))
  assert_one_line_error(jaxnn(_args(command, out)), "could not be written", "No space left")
  assert not [p for p in out.rglob("*") if "orbax-checkpoint-tmp" in p.name]


@pytest.mark.parametrize("command", sorted(TINY_RUNS))
def test_resume_from_previous_in_lca_and_coordconv(command, tmp_path, jaxnn):
  """A corrupt newest checkpoint: refused naming the flag; with it, the run ends as if intact."""
  args = [*TINY_RUNS[command], "--devices", "1", "--no-progress", "--no-plots"]
  first, run = tmp_path / "first", tmp_path / "run"
  assert jaxnn([*args, "--out", first]).code == 0
  steps = sorted((first / "checkpoints").iterdir(), key=lambda p: int(p.name))
  assert len(steps) == 2
  shutil.copytree(first, run)
  newest, previous = steps[1].name, steps[0].name
  flip_array_bytes(run / "checkpoints" / newest)
  before = snapshot(run)
  assert_one_line_error(
    jaxnn([*args, "--out", run]), f"checkpoints/{newest}", "--resume-from-previous", previous
  )
  assert snapshot(run) == before
  result = jaxnn([*args, "--out", run, "--resume-from-previous"])
  assert result.code == 0, result.err
  assert (run / "corrupt_checkpoints" / newest).is_dir()
  assert _without_times(summary_without_timing(run / "summary.json")) == _without_times(
    summary_without_timing(first / "summary.json")
  )


def _without_times(tree):
  """A summary less its wall times (`timings`, `elapsed_s`), which differ between runs."""
  if isinstance(tree, dict):
    return {k: _without_times(v) for k, v in tree.items() if k not in ("timings", "elapsed_s")}
  if isinstance(tree, list):
    return [_without_times(v) for v in tree]
  return tree


def _console(args, cwd):
  """`jaxnn ARGS` in a fresh process: (exit code, stdout, stderr)."""
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  proc = subprocess.run(
    [sys.executable, "-m", "jaxnn.cli", *map(str, args)],
    cwd=cwd,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  return proc.returncode, proc.stdout, proc.stderr


def test_console_corrupt_checkpoint_is_one_line_without_storage_tracebacks(run, tmp_path):
  """Unreadable array files: Orbax's in-flight reads must not print asyncio tracebacks."""

  flip_array_bytes(run / "checkpoints" / "20")
  before = snapshot(run)
  result = Result(*_console(train_args(run), tmp_path))
  assert_one_line_error(result, "checkpoints/20", "--resume-from-previous")
  assert snapshot(run) == before


def test_console_deleted_manifest_is_one_short_line(run, tmp_path):

  (run / "checkpoints" / "20" / "state" / "manifest.ocdbt").unlink()
  before = snapshot(run)
  line = assert_one_line_error(Result(*_console(train_args(run), tmp_path)), "checkpoints/20")
  assert len(line) < 600
  assert snapshot(run) == before


def test_in_process_main_is_what_the_console_runs():
  """The in-process tests call `jaxnn.cli.main`: the console script is exactly that."""
  from importlib.metadata import entry_points

  (script,) = [e for e in entry_points(group="console_scripts") if e.name == "jaxnn"]
  assert script.load() is main

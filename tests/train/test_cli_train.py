"""The CLI: a real run writes its files; user errors are one line, no traceback."""

import json
import os
import subprocess
import sys

import pytest

from jaxnn.cli import main

ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}


def test_train_command_writes_summary_metrics_checkpoints(tmp_path, capsys):
  out = tmp_path / "run"
  rc = main(
    [
      "train",
      "--dataset",
      "digits",
      "--model",
      "fc",
      "--widths",
      "32",
      "--epochs",
      "2",
      "--batch-size",
      "64",
      "--lr",
      "0.01",
      "--devices",
      "2",
      "--out",
      str(out),
      "--no-progress",
    ]
  )
  assert rc == 0
  summary = json.loads((out / "summary.json").read_text())
  assert summary["params"] == 64 * 32 + 32 + 32 * 10 + 10
  assert summary["test_accuracy"] > 0.8
  assert 0 <= summary["train_accuracy"] <= 1
  records = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
  assert {r["split"] for r in records} == {"train", "validation"}
  assert (out / "checkpoints").is_dir()
  assert "test_accuracy" in capsys.readouterr().out


@pytest.mark.parametrize(
  "args, message",
  [
    (["train", "--dataset", "nope", "--out", "x"], "unknown dataset 'nope'"),
    (["train", "--dataset", "mnist", "--out", "x"], "needs TensorFlow"),
    (
      ["train", "--model", "vgg", "--dataset", "digits", "--out", "x"],
      "unknown model 'vgg'; choose from fc",
    ),
    (["train", "--lr", "-1", "--out", "x"], "--lr: must be positive"),
    (["train", "--dataset", "digits", "--batch-size", "99999", "--out", "x"], "batch size"),
  ],
)
def test_user_errors_are_one_line_without_traceback(tmp_path, args, message):
  proc = subprocess.run(
    [sys.executable, "-m", "jaxnn.cli", *args],
    cwd=tmp_path,
    env=ENV,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 2
  assert message in proc.stderr
  assert "Traceback" not in proc.stderr


def test_running_out_of_memory_is_one_line_that_says_what_to_do(monkeypatch, capsys):
  import argparse

  import jax.numpy as jnp

  import jaxnn.cli

  def allocate_too_much(args):
    return int(jnp.ones(10**12).sum())  # 4 TB: XLA's real out-of-memory error

  parser = argparse.ArgumentParser()
  parser.set_defaults(func=allocate_too_much)
  monkeypatch.setattr(jaxnn.cli, "build_parser", lambda command: parser)
  assert main([]) == 2
  err = capsys.readouterr().err
  assert err.startswith("jaxnn: error: out of memory: rerun with a smaller batch")
  assert "Out of memory allocating 4000000000000 bytes" in err
  assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_help_everywhere():
  for args in (["--help"], ["train", "--help"], ["datasets", "--help"]):
    proc = subprocess.run(
      [sys.executable, "-m", "jaxnn.cli", *args],
      env=ENV,
      capture_output=True,
      text=True,
      timeout=120,
    )
    assert proc.returncode == 0 and "usage: jaxnn" in proc.stdout


def test_top_level_help_imports_no_method_package():
  code = (
    "import sys\nfrom jaxnn.cli import main\n"
    "try:\n  main(['--help'])\nexcept SystemExit:\n  pass\n"
    "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'flax', 'torch')))"
  )
  proc = subprocess.run(
    [sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=120
  )
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.strip().splitlines()[-1] == "[]"
  for command in ("train", "coordconv", "lca", "subspace", "pplm"):
    assert command in proc.stdout


def test_placeholder_help_lines_match_the_real_subcommands():
  from jaxnn.cli import COMMANDS, build_parser

  full = build_parser()
  action = next(a for a in full._actions if a.dest == "command")
  real = {c.dest: c.help for c in action._choices_actions}
  assert real == {name: help_line for name, (_, help_line) in COMMANDS.items()}


@pytest.mark.parametrize(
  "command", [["train"], ["lca"], ["subspace", "sweep"], ["coordconv", "classify"]]
)
def test_devices_option_is_a_count_or_all(command, capsys):
  from jaxnn import _cli_utils as cu
  from jaxnn.cli import build_parser

  parser = build_parser()

  def devices(*extra):
    args = parser.parse_args([*command, "--out", "x", *extra])
    return cu.resolve(args, args.func.__globals__[_CONFIGS[command[0]]], " ".join(command))[
      0
    ].num_devices

  assert devices() is None
  assert devices("--devices", "all") is None
  assert devices("--devices", "2") == 2
  with pytest.raises(SystemExit):
    parser.parse_args([*command, "--out", "x", "--devices", "0"])
  assert "expected a positive number of devices, got 0" in capsys.readouterr().err


_CONFIGS = {
  "train": "TrainConfig",
  "lca": "LCAConfig",
  "subspace": "SweepConfig",
  "coordconv": "TaskConfig",
}

"""One way in: every command's flags derive from its config; shared flags mean the same.

Checks that each command exposes the shared flags (same name, same config
field), that `--help` shows every default once (and readably), that argument
errors are one line with a pointer to `--help` and exit status 2 before any
work, that `--config` files (JSON and Python) and flags combine, that runs
write their full config, and that `--help` imports no JAX.
"""

import dataclasses
import json
import os
import re
import subprocess
import sys

import pytest

from jaxnn import _cli_utils as cu
from jaxnn import _config
from jaxnn._errors import JaxnnError
from jaxnn.cli import build_parser, main
from jaxnn.configs import (
  DiscriminatorConfig,
  GenerateConfig,
  LCAConfig,
  SweepConfig,
  TaskConfig,
  TrainConfig,
)

ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}

COMMANDS = {
  ("train",): TrainConfig,
  ("lca",): LCAConfig,
  ("subspace", "sweep"): SweepConfig,
  ("coordconv", "classify"): TaskConfig,
  ("coordconv", "regress"): TaskConfig,
  ("coordconv", "render"): TaskConfig,
  ("pplm", "generate"): GenerateConfig,
  ("pplm", "train-discriminator"): DiscriminatorConfig,
}

# Shared flag -> (the config field it sets, the commands where it does not apply). CoordConv's
# field keeps its name (train_examples: a random subset) for the Python API that uses it.
SHARED = {
  "--seed": ("seed", ()),
  "--max-train": (("max_train", "train_examples"), ("pplm",)),
  "--data-dir": ("data_dir", ("pplm",)),
  "--devices": ("num_devices", ("pplm",)),
  "--no-progress": ("progress", ("pplm generate",)),
  "--no-plots": ("plots", ("train", "pplm")),
  "--epochs": ("epochs", ("subspace sweep", "pplm generate")),
  "--steps": ("steps", ("train", "lca", "coordconv", "pplm")),
  "--lr": ("learning_rate", ("pplm generate",)),
  "--batch-size": ("batch_size", ("pplm generate",)),
}


def _subparser(command):
  parser = build_parser(command[0])
  for name in command:
    action = next(
      a for a in parser._actions if isinstance(a, type(parser._subparsers._actions[-1]))
    )
    parser = action.choices[name]
  return parser


def _options(parser):
  return {s: a for a in parser._actions for s in a.option_strings}


def _help(command):
  proc = subprocess.run(
    [sys.executable, "-m", "jaxnn.cli", *command, "--help"],
    env=ENV,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert proc.returncode == 0, proc.stderr
  return proc.stdout


def _applies(flag, command):
  _, skip = SHARED[flag]
  text = " ".join(command)
  return not any(text == s or text.startswith(s + " ") for s in skip)


@pytest.mark.parametrize("command", list(COMMANDS), ids=" ".join)
def test_every_command_has_the_shared_flags_with_one_meaning(command):
  options = _options(_subparser(command))
  for flag in ("--config", "--out"):
    assert flag in options, flag
  for flag, (field, _) in SHARED.items():
    if _applies(flag, command):
      assert flag in options, f"{' '.join(command)} lacks {flag}"
      fields = field if isinstance(field, tuple) else (field,)
      assert options[flag].dest.split(".")[-1] in fields, (flag, options[flag].dest)
  # The old spellings are gone from the help (hidden aliases at most).
  for old in ("--seeds", "--data-seed", "--train-examples"):
    assert old not in _help(command) if old in options else True


@pytest.mark.parametrize("command", list(COMMANDS), ids=" ".join)
def test_help_shows_every_default_once_and_readably(command):
  parser = _subparser(command)
  text = parser.format_help()
  assert "(" + "200, 200" + ")" not in text and "None" not in text and "True" not in text
  for action in parser._actions:
    if not action.option_strings or action.help == "==SUPPRESS==" or action.nargs == 0:
      continue
    assert action.help.count("default:") == 1, (action.option_strings, action.help)
  # Every default is the config's own, written as a user types it.
  config = COMMANDS[command]()
  flat = {}
  for f in dataclasses.fields(config):
    value = getattr(config, f.name)
    if dataclasses.is_dataclass(value):
      flat.update({g.name: (g, getattr(value, g.name)) for g in dataclasses.fields(value)})
    else:
      flat[f.name] = (f, value)
  for action in parser._actions:
    name = action.dest.split(".")[-1]
    if name in flat and action.nargs != 0 and action.help != "==SUPPRESS==":
      field, value = flat[name]
      assert f"(default: {_config.format_default(value, field)})" in action.help


def test_sweep_default_lr_is_the_documented_one():
  # docs/intrinsic_dimension.md: theta_d at Adam 3e-2, the individual baseline at 1e-3.
  assert SweepConfig().learning_rate == 3e-2 and SweepConfig().baseline_learning_rate == 1e-3
  assert "(default: 0.03)" in _subparser(("subspace", "sweep")).format_help()


def test_config_choices_match_the_library():
  from jaxnn.configs import _common, _lca, _subspace
  from jaxnn.lca._integrate import MAX_SPLITS, THRESHOLD
  from jaxnn.models._registry import MODEL_NAMES
  from jaxnn.subspace._projections import PROJECTIONS
  from jaxnn.train import OPTIMIZERS

  assert set(_common.MODEL_NAMES) == set(MODEL_NAMES)
  assert set(_common.OPTIMIZERS) == set(OPTIMIZERS)
  assert set(_subspace.PROJECTIONS) == set(PROJECTIONS)
  assert (_lca.THRESHOLD, _lca.MAX_SPLITS) == (THRESHOLD, MAX_SPLITS)


@pytest.mark.parametrize(
  "args, message",
  [
    (["train", "--epochs", "0", "--out", "x"], "--epochs: must be positive, got 0"),
    (["train", "--lr", "fast", "--out", "x"], "--lr: expected a number, got 'fast'"),
    (["train", "--widths", "200,x", "--out", "x"], "--widths: expected"),
    (
      ["train", "--optimizer", "rmsprop", "--out", "x"],
      "unknown optimizer 'rmsprop'; choose from adam, momentum or sgd",
    ),
    (["lca", "--momentum", "2", "--out", "x"], "must be a fraction in [0, 1], got 2.0"),
    (["subspace", "sweep", "--dims", "0,10", "--out", "x"], "must be positive, got 0"),
    (["coordconv", "classify", "--split", "z > 3", "--out", "x"], "region expression: 'z'"),
    (["coordconv", "regress", "--widths", "8", "--out", "x"], "unrecognized arguments: --widths"),
    (["train", "--bogus", "--out", "x"], "unrecognized arguments: --bogus"),
    (["train"], "--out DIR is required"),
    (["pplm", "generate", "--out", "x"], "give --bow NAME"),
    (["pplm", "generate", "--bow", "space"], "--out DIR is required"),
    (["pplm", "train-discriminator", "--dataset", "missing.tsv", "--out", "x"], "no dataset"),
  ],
)
def test_argument_errors_are_one_line_exit_2_before_any_work(tmp_path, args, message):
  proc = subprocess.run(
    [sys.executable, "-m", "jaxnn.cli", *args],
    cwd=tmp_path,
    env=ENV,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert proc.returncode == 2, proc.stderr
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("jaxnn: error: "), proc.stderr
  assert message in lines[0], lines[0]
  assert "usage:" not in proc.stderr and "Traceback" not in proc.stderr
  assert not (tmp_path / "x").exists()  # nothing was started or written


def test_argparse_errors_point_to_the_commands_help(tmp_path):
  proc = subprocess.run(
    [sys.executable, "-m", "jaxnn.cli", "coordconv", "render", "--epochs", "-3"],
    cwd=tmp_path,
    env=ENV,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert "(see `jaxnn coordconv render --help`)" in proc.stderr


def test_help_imports_no_jax():
  code = (
    "import sys\nfrom jaxnn.cli import main\n"
    f"for command in {[[], *map(list, COMMANDS)]!r}:\n"
    "  try:\n    main([*command, '--help'])\n  except SystemExit:\n    pass\n"
    "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'flax', 'optax')))"
  )
  proc = subprocess.run(
    [sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=120
  )
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.strip().splitlines()[-1] == "[]"


def _parse(command, *flags):
  args = build_parser(command[0]).parse_args([*command, *flags])
  return args


def test_config_files_and_flags_combine(tmp_path):
  py = tmp_path / "exp.py"
  py.write_text(
    "from jaxnn.configs import TrainConfig\n"
    "def get_config():\n"
    "  return TrainConfig(dataset='digits', widths=(16,), epochs=7)\n"
  )
  config, out = cu.resolve(
    _parse(("train",), "--config", str(py), "--epochs", "2", "--out", "o"), TrainConfig, "train"
  )
  assert (config.dataset, config.widths, config.epochs, out) == ("digits", (16,), 2, "o")
  # A run's config.json reruns it: the out directory defaults to the run's.
  run = tmp_path / "run"
  cu.claim_out(run, "train", config, config.run_identity())
  saved = json.loads((run / "config.json").read_text())
  assert saved["command"] == "train" and saved["config"]["widths"] == [16]
  again, out = cu.resolve(
    _parse(("train",), "--config", str(run / "config.json")), TrainConfig, "train"
  )
  assert again == config and out == str(run)
  # A flat JSON of fields works too; unknown fields and other commands' configs do not.
  flat = tmp_path / "flat.json"
  flat.write_text(json.dumps({"seed": 4, "widths": [8, 8]}))
  assert _config.load_config(flat, TrainConfig) == TrainConfig(seed=4, widths=(8, 8))
  flat.write_text(json.dumps({"sed": 4}))
  with pytest.raises(JaxnnError, match="unknown setting"):
    _config.load_config(flat, TrainConfig)
  with pytest.raises(JaxnnError, match="is a config of `jaxnn train`"):
    _config.load_config(run / "config.json", LCAConfig, "lca")
  flat.write_text(json.dumps({"epochs": "many"}))
  with pytest.raises(JaxnnError, match="epochs must be an integer"):
    _config.load_config(flat, TrainConfig)


def test_nested_config_flags(tmp_path):
  config, _ = cu.resolve(
    _parse(
      ("pplm", "generate"), "--bow", "space", "--length", "7", "--gm-scale", "0.5", "--out", "o"
    ),
    GenerateConfig,
    "pplm generate",
  )
  assert config.steering.length == 7 and config.steering.gm_scale == 0.5 and config.bow == "space"


def test_claim_out_refuses_another_runs_directory(tmp_path):
  run = tmp_path / "run"
  config = TrainConfig(dataset="digits")
  cu.claim_out(run, "train", config, config.run_identity())
  longer = dataclasses.replace(config, epochs=9)  # the same run, longer: fine
  cu.claim_out(run, "train", longer, longer.run_identity())
  assert json.loads((run / "config.json").read_text())["config"]["epochs"] == 9
  longest = dataclasses.replace(config, epochs=12)  # checkpointed: written after the run only
  cu.claim_out(run, "train", longest, longest.run_identity(), checkpointed=True)
  assert json.loads((run / "config.json").read_text())["config"]["epochs"] == 9
  cu.claim_out(tmp_path / "new", "train", config, config.run_identity(), checkpointed=True)
  assert not (tmp_path / "new").exists()
  other = dataclasses.replace(config, learning_rate=0.5)
  message = "another configuration .learning_rate: saved 0.001, now 0.5"
  with pytest.raises(JaxnnError, match=message):
    cu.claim_out(run, "train", other, other.run_identity())
  with pytest.raises(JaxnnError, match="holds a `jaxnn train` run"):
    cu.claim_out(run, "lca", LCAConfig(), LCAConfig().run_identity())
  assert json.loads((run / "config.json").read_text())["config"]["epochs"] == 9  # untouched
  # The checkpointer reads the identity back from the CLI's config.json.
  from jaxnn.train import Checkpointer

  Checkpointer(run, longer.run_identity()).close()


def test_old_spellings_are_hidden_aliases():
  config, _ = cu.resolve(
    _parse(("subspace", "sweep"), "--seeds", "2", "--data-seed", "5", "--out", "o"),
    SweepConfig,
    "subspace sweep",
  )
  assert (config.seeds, config.seed) == (2, 5)
  text = _subparser(("subspace", "sweep")).format_help()
  assert "--num-seeds" in text and not re.search(r"--seeds\b", text)


def test_progress_lines_when_not_a_terminal():
  import io

  from jaxnn._progress import Progress

  stream = io.StringIO()
  bar = Progress(100, initial=30, description="train", stream=stream)
  for _ in range(70):
    bar.update()
  bar.close()
  lines = stream.getvalue().splitlines()
  assert [line.split("%")[0].split()[-1] for line in lines] == [
    "40",
    "50",
    "60",
    "70",
    "80",
    "90",
    "100",
  ]
  assert all("ETA" in line for line in lines)
  quiet = io.StringIO()
  Progress(10, stream=quiet, enabled=False).update(10)
  assert quiet.getvalue() == ""


def test_train_cli_writes_config_and_resumes_with_a_note(tmp_path, capsys):
  out = tmp_path / "run"
  flags = [
    "--dataset",
    "digits",
    "--widths",
    "8",
    "--batch-size",
    "128",
    "--devices",
    "1",
    "--max-train",
    "256",
    "--out",
    str(out),
  ]
  assert main(["train", "--epochs", "1", *flags]) == 0
  saved = json.loads((out / "config.json").read_text())
  assert saved["config"]["max_train"] == 256 and saved["config"]["epochs"] == 1
  capsys.readouterr()
  assert main(["train", "--config", str(out / "config.json"), "--epochs", "2"]) == 0
  assert f"resuming {out} from step 2 of 4" in capsys.readouterr().err
  assert json.loads((out / "summary.json").read_text())["steps"] == 4


def test_coordconv_region_flag_takes_expressions_and_masks(tmp_path):
  import numpy as np

  from jaxnn.configs._coordconv import held_out_mask

  config, _ = cu.resolve(
    _parse(("coordconv", "render"), "--split", "x < 20 or y > 50", "--out", "o"),
    TaskConfig,
    "coordconv render",
    defaults=TaskConfig(task="rendering"),
  )
  assert config.split == "x < 20 or y > 50"
  centres = np.array([(x, y) for x in range(4, 60) for y in range(4, 60)])
  expected = (centres[:, 0] < 20) | (centres[:, 1] > 50)
  np.testing.assert_array_equal(held_out_mask(config.split), expected)
  grid = np.zeros((64, 64), bool)
  grid[40:, :10] = True  # rows y >= 40, columns x < 10
  np.save(tmp_path / "mask.npy", grid)
  mask = held_out_mask(str(tmp_path / "mask.npy"))
  np.testing.assert_array_equal(mask, (centres[:, 0] < 10) & (centres[:, 1] >= 40))
  np.testing.assert_array_equal(held_out_mask(lambda x, y: x == y), centres[:, 0] == centres[:, 1])
  with pytest.raises(JaxnnError, match="holds out 0 of 3136"):
    TaskConfig(split="x > 100")


def test_datasets_reports_the_sizes_the_loader_returns(monkeypatch, capsys):
  from jaxnn._commands import train as train_command
  from jaxnn.data import _dataset, load_dataset

  kept = {k: v for k, v in _dataset.registered_datasets().items() if k in ("digits", "mnist")}
  monkeypatch.setattr("jaxnn.data.registered_datasets", lambda: kept)
  assert train_command._datasets(None) == 0
  out = capsys.readouterr().out
  n = load_dataset("digits").info["sizes"]
  assert f"train {n['train']:,} / validation {n['validation']:,} / test {n['test']:,}" in out
  assert "8x8x1, 10 classes" in out and "mnist" in out

"""Every experiment config loads, is valid, and documents what it reproduces.

An experiment is a module `experiments/<name>.py` with `get_config()` (big_vision style).
Its docstring states what it reproduces, the paper's number, the number measured here,
the runtime and the exact command; the results that back the measured number, where
committed, live in `experiments/results/<name>/` and must have been produced by the
same settings as the config.
"""

import dataclasses
import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
RESULTS = EXPERIMENTS / "results"
SECTIONS = ("Reproduces:", "Paper:", "Measured here:", "Runtime:", "Command:")


def _names():
  return sorted(p.stem for p in EXPERIMENTS.glob("*.py") if not p.stem.startswith("_"))


def _load(name):
  spec = importlib.util.spec_from_file_location(f"experiment_{name}", EXPERIMENTS / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _config_class(command: str):
  """The config dataclass the command of a docstring takes (`jaxnn.configs`, no JAX)."""
  from jaxnn import configs

  for prefix, cls in (
    ("jaxnn coordconv", configs.TaskConfig),
    ("jaxnn subspace sweep", configs.SweepConfig),
    ("jaxnn lca", configs.LCAConfig),
    ("jaxnn pplm generate", configs.GenerateConfig),
    ("jaxnn train", configs.TrainConfig),
  ):
    if command.startswith(prefix):
      return cls
  raise AssertionError(f"unknown command in {command!r}")


def _command(doc: str) -> str:
  block = doc.split("Command:", 1)[1].strip().split("\n\n", 1)[0]
  return " ".join(line.strip().rstrip("\\").strip() for line in block.splitlines())


def test_there_is_an_experiment_per_method():
  names = _names()
  for prefix in ("coordconv_", "intrinsic_dim_", "lca_", "pplm_"):
    assert any(n.startswith(prefix) for n in names), prefix


@pytest.mark.parametrize("name", _names())
def test_experiment(name):
  module = _load(name)
  doc = module.__doc__ or ""
  positions = [doc.find(section) for section in SECTIONS]
  assert -1 not in positions, f"{name}: the docstring needs {SECTIONS}"
  assert positions == sorted(positions), f"{name}: sections out of order"
  for section in SECTIONS[:-1]:  # each section says something
    text = doc.split(section, 1)[1].split("\n", 1)[0].strip()
    assert text, f"{name}: {section} is empty"
  command = _command(doc)
  assert f"--config experiments/{name}.py --out runs/{name}" in command, command
  config = module.get_config()
  cls = _config_class(command)
  assert isinstance(config, cls), type(config)
  assert dataclasses.replace(config) == config  # the dataclass validates its fields again
  if hasattr(config, "check"):
    config.check()  # what the command checks before it starts
  from jaxnn._config import load_config

  assert load_config(EXPERIMENTS / f"{name}.py", cls) == config  # as `--config` reads it
  if command.startswith("jaxnn coordconv"):
    verb = command.split()[2]
    assert {"classify": "classification", "regress": "regression", "render": "rendering"}[
      verb
    ] == config.task
  for path in re.findall(r"experiments/results/[\w/]+", doc):
    assert (ROOT / path).is_dir(), f"{name}: {path} does not exist"
  _check_results(name, config, doc)


_SWEEP_SETTINGS = (
  "dataset",
  "model",
  "projection",
  "steps",
  "batch_size",
  "learning_rate",
  "baseline_learning_rate",
  "weight_decay",
  "shuffled_pixels",
  "shuffled_labels",
)


def _check_results(name, config, doc):
  """The committed results of an experiment were made with its settings."""
  folder = RESULTS / name
  if not folder.is_dir():
    return
  measured = doc.split("Measured here:", 1)[1].split("Runtime:", 1)[0]
  for path in sorted(folder.rglob("results.json")):
    results = json.loads(path.read_text())
    top = path.parent == folder
    if "settings" in results:  # a subspace sweep
      settings = results["settings"]
      for key in _SWEEP_SETTINGS:
        assert settings[key] == getattr(config, key), f"{path}: {key}"
      if top and config.model == "fc":
        assert tuple(settings["widths"]) == tuple(config.widths), path
      if top:
        assert f"{results['d_int90']:,}" in measured, f"{name}: d_int90 {results['d_int90']}"
      if top and config.dims is not None:  # the config's grid covers every d that was run
        assert {c["d"] for c in results["configs"]} <= set(config.dims), path
    if "bags" in results:  # a PPLM generation
      for key, value in results["config"].items():
        assert value == getattr(config.steering, key), f"{path}: {key}"
      assert results["prompt"] == config.prompt and results["seed"] == config.seed, path
      assert results["num_samples"] == config.num_samples, path
      assert results["multi_token_words"] == (not config.single_token_words), path
      rate = results["mean"]["samples"]["bag_word_rate"]
      assert f"{rate:.3f}" in measured, f"{name}: bag-word rate {rate:.3f}"


def test_every_results_folder_belongs_to_an_experiment():
  names = set(_names())
  docs = "".join((_load(n).__doc__ or "") for n in names)
  for folder in sorted(RESULTS.iterdir()):
    assert folder.name in names or f"experiments/results/{folder.name}/" in docs, folder

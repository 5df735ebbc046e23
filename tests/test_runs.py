"""`jaxnn.load_run`: every command's directory reads back (config, params, summary, metrics)."""

import dataclasses
import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn
from jaxnn.cli import main
from jaxnn.configs import SweepConfig, TaskConfig, TrainConfig
from jaxnn.train import from_nnx

TINY = TrainConfig(
  dataset="digits", widths=(8,), epochs=1, batch_size=128, max_train=256, progress=False
)


def _same_outputs(run, state, x):
  """The rebuilt module computes what the trained parameters compute."""
  model = from_nnx(run.model)
  ours, _ = model.apply(run.params, run.model_state, x, False, None)
  ref, _ = model.apply(
    jax.device_get(state.params), jax.device_get(state.model_state), x, False, None
  )
  np.testing.assert_allclose(ours, ref, rtol=1e-6)
  np.testing.assert_allclose(run.model(x), ref, rtol=1e-6, atol=1e-6)


def test_train_run_round_trips(tmp_path):
  from jaxnn.train import train_and_evaluate

  summary = train_and_evaluate(TINY, tmp_path / "lib")  # a library run: no CLI config.json
  run = jaxnn.load_run(tmp_path / "lib")
  assert (run.command, run.config, run.finished, run.step) == ("train", TINY, True, 2)
  chex.assert_trees_all_close(run.params, jax.device_get(summary["state"].params))
  assert run.summary["test_accuracy"] == summary["test_accuracy"]
  assert [m["step"] for m in run.metrics if m["split"] == "validation"] == [2]
  _same_outputs(run, summary["state"], jnp.ones((3, 8, 8, 1)))


def test_cli_and_interrupted_runs_round_trip(tmp_path):
  out = tmp_path / "cli"
  flags = ["--dataset", "digits", "--widths", "8", "--max-train", "256", "--epochs", "2"]
  assert main(["train", *flags, "--no-progress", "--devices", "1", "--out", str(out)]) == 0
  run = jaxnn.load_run(out)
  assert run.config == dataclasses.replace(TINY, epochs=2, num_devices=1)
  (out / "summary.json").unlink()  # as if killed after its last checkpoint
  interrupted = jaxnn.load_run(out, rebuild=False)
  assert not interrupted.finished and interrupted.summary is None and interrupted.model is None
  chex.assert_trees_all_close(interrupted.params, run.params)


def test_coordconv_run_with_a_custom_region_round_trips(tmp_path):
  from jaxnn.coordconv import run_task

  config = TaskConfig(
    split="x < 12 and y < 12",
    widths=(4, 4),
    epochs=1,
    train_examples=32,
    batch_size=16,
    num_devices=1,
    progress=False,
  )
  summary = run_task(config, tmp_path / "cc", plots=False)
  assert summary["data"]["sizes"]["test"] == 8 * 8  # centres 4..11 in x and y
  run = jaxnn.load_run(tmp_path / "cc")
  assert run.command == "coordconv classify" and run.config == config.resolved()
  _same_outputs(run, summary["state"], jnp.array([[10.0, 20.0], [40.0, 5.0]]))


def test_own_model_run_returns_the_pytree(tmp_path):
  from jaxnn.train import from_function, train_and_evaluate

  x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
  y = (x[:, 0] > 0).astype(np.int32)
  params = {"w": jnp.zeros((4, 2)), "b": jnp.zeros(2)}
  model = from_function(lambda p, x: x @ p["w"] + p["b"][None], params)
  config = dataclasses.replace(TINY, batch_size=16, max_train=None)
  summary = train_and_evaluate(config, tmp_path / "own", (x, y), model=model)
  run = jaxnn.load_run(tmp_path / "own")
  assert run.model is None and set(run.params) == {"w", "b"}
  chex.assert_trees_all_close(run.params, jax.device_get(summary["state"].params))


def test_sweep_run_reads_its_results(tmp_path):
  out = tmp_path / "sweep"
  args = [
    "subspace",
    "sweep",
    "--dataset",
    "digits",
    "--widths",
    "8",
    "--dims",
    "2",
    "--num-seeds",
    "1",
    "--steps",
    "4",
    "--baseline",
    "0.5",
    "--devices",
    "1",
    "--no-plots",
    "--no-progress",
    "--out",
    str(out),
  ]
  assert main(args) == 0
  run = jaxnn.load_run(out)
  assert run.command == "subspace sweep" and run.finished and run.params is None
  assert run.config == SweepConfig(
    dataset="digits",
    widths=(8,),
    dims=(2,),
    seeds=1,
    steps=4,
    baseline=0.5,
    num_devices=1,
    plots=False,
    progress=False,
  )
  assert run.summary["d_int90"] == json.loads((out / "results.json").read_text())["d_int90"]
  assert not (out / "accuracy_vs_d.png").exists()


def test_not_a_run(tmp_path):
  with pytest.raises(jaxnn.JaxnnError, match="not a jaxnn run"):
    jaxnn.load_run(tmp_path)
  with pytest.raises(jaxnn.JaxnnError, match="no run directory"):
    jaxnn.load_run(tmp_path / "missing")


def test_lca_run_round_trips(tmp_path):
  from jaxnn.configs import LCAConfig
  from jaxnn.lca import run_lca

  config = LCAConfig(
    dataset="digits",
    widths=(12,),
    batch_size=200,
    max_train=400,
    chunk_size=500,
    num_devices=1,
    num_shuffles=10,
    plots=False,
    progress=False,
  )
  result = run_lca(config, tmp_path / "lca")
  run = jaxnn.load_run(tmp_path / "lca")
  assert run.command == "lca" and run.config == config and run.step == 2
  assert run.summary["lca_sum"] == pytest.approx(result["lca_sum"])
  _same_outputs(run, result["state"][0], jnp.ones((2, 8, 8, 1)))


def test_pplm_config_reads_back_with_its_nested_steering(tmp_path):
  from jaxnn import _cli_utils as cu
  from jaxnn.configs import GenerateConfig, PPLMConfig

  config = GenerateConfig(bow="space", steering=PPLMConfig(length=7, gm_scale=0.5))
  cu.claim_out(tmp_path / "gen", "pplm generate", config)  # what the CLI writes before generating
  run = jaxnn.load_run(tmp_path / "gen")
  assert run.command == "pplm generate" and run.config == config and not run.finished

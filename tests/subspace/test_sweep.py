"""d_int90 sweeps: files and schema, resume after a kill, vmapped = one by one, devices."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import JaxnnError
from jaxnn.cli import main
from jaxnn.data import EpochBatcher, load_dataset
from jaxnn.models import create_model
from jaxnn.subspace import make_subspace, make_subspace_train_step
from jaxnn.subspace._search import intrinsic_dim, mean_by_dim
from jaxnn.subspace._sweep import SweepConfig, programs_size, run_sweep
from jaxnn.subspace._sweep_engine import (
  make_stack_evaluator,
  pad_configs,
  subspace_stack,
  train_stack,
)
from jaxnn.train import (
  data_parallel,
  from_nnx,
  init_train_state,
  make_evaluator,
  make_optimizer,
  run_loop,
)

TINY = [
  "--dataset",
  "digits",
  "--model",
  "fc",
  "--widths",
  "16",
  "--batch-size",
  "32",
  "--no-progress",
]


def _sweep_args(out, *extra):
  return ["subspace", "sweep", *TINY, "--out", str(out), *extra]


@pytest.mark.slow
def test_sweep_writes_results_csv_and_plot(tmp_path):
  out = tmp_path / "sweep"
  assert (
    main(
      _sweep_args(
        out,
        "--projection",
        "dense",
        "--dims",
        "3,24",
        "--seeds",
        "2",
        "--steps",
        "20",
        "--devices",
        "2",
        "--lr",
        "0.01",
        "--baseline-lr",
        "0.002",
      )
    )
    == 0
  )
  results = json.loads((out / "results.json").read_text())
  assert (results["settings"]["learning_rate"], results["settings"]["baseline_learning_rate"]) == (
    0.01,
    0.002,
  )
  assert results["baseline_kind"] == "individual"
  runs = results["baseline_runs"]
  assert [r["seed"] for r in runs] == [0, 1] and all(r["steps"] == 20 for r in runs)
  assert results["baseline"] == pytest.approx(np.mean([r["validation_accuracy"] for r in runs]))
  assert results["threshold"] == pytest.approx(0.9 * results["baseline"])
  configs = results["configs"]
  assert [(c["d"], c["seed"]) for c in configs] == [(3, 0), (3, 1), (24, 0), (24, 1)]
  for c in configs:
    assert c["projection"] == "dense" and c["steps"] == 20 and c["D"] == 64 * 16 + 16 + 170
    assert 0 <= c["validation_accuracy"] <= 1 and np.isfinite(c["validation_loss"])
  means = mean_by_dim(configs)
  assert results["mean_validation_accuracy_by_d"] == {str(d): a for d, a in means.items()}
  assert results["d_int90"] == intrinsic_dim(means, results["threshold"])
  with open(out / "results.csv") as f:
    rows = list(csv.DictReader(f))
  assert [(int(r["d"]), int(r["seed"])) for r in rows] == [(c["d"], c["seed"]) for c in configs]
  assert float(rows[0]["validation_accuracy"]) == pytest.approx(configs[0]["validation_accuracy"])
  assert (out / "accuracy_vs_d.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_global_baseline_and_bad_input(tmp_path, capsys):
  out = tmp_path / "g"
  args = [
    "subspace",
    "sweep",
    *TINY[:-1],
    "--out",
    str(out),
    "--dims",
    "2",
    "--seeds",
    "1",
    "--steps",
    "5",
    "--devices",
    "1",
    "--baseline",
    "0.5",
  ]
  assert main(args) == 0  # with progress: one line per saved program on stderr
  assert "program 1/1: d=2..2 (1 configs) saved; validation accuracy d=2 seed=0: " in (
    capsys.readouterr().err
  )
  results = json.loads((out / "results.json").read_text())
  assert (results["baseline_kind"], results["baseline"], results["threshold"]) == (
    "global",
    0.5,
    0.45,
  )
  assert results["baseline_runs"] == [] and not (out / "baseline.json").exists()
  capsys.readouterr()
  # Other settings in the same directory: refused, nothing changed.
  before = (out / "results.json").read_text()
  assert (
    main(
      _sweep_args(
        out, "--dims", "2", "--seeds", "1", "--steps", "6", "--devices", "1", "--baseline", "0.5"
      )
    )
    == 2
  )
  assert "another configuration" in capsys.readouterr().err
  assert (out / "results.json").read_text() == before
  (out / "configs" / "program_9-9_broken.json").write_text("{not json")
  assert (
    main(
      _sweep_args(
        out, "--dims", "2", "--seeds", "1", "--steps", "5", "--devices", "1", "--baseline", "0.5"
      )
    )
    == 2
  )
  assert "not a sweep program file" in capsys.readouterr().err
  assert main(_sweep_args(tmp_path / "p", "--projection", "nope", "--baseline", "0.5")) == 2
  assert (
    "unknown projection 'nope'; choose from dense, sparse or fastfood" in capsys.readouterr().err
  )
  assert main(_sweep_args(tmp_path / "b", "--baseline", "1.5")) == 2
  with pytest.raises(JaxnnError, match="baseline"):
    run_sweep(SweepConfig(dataset="digits", baseline="best"), tmp_path / "c")


@pytest.mark.slow
def test_killed_sweep_resumes_to_the_same_results(tmp_path):
  """A sweep killed after its first program, rerun, redoes nothing and matches a clean run."""
  args = [
    "--projection",
    "fastfood",
    "--dims",
    "2,4",
    "--seeds",
    "2",
    "--steps",
    "60",
    "--baseline",
    "0.9",
    "--configs-per-program",
    "2",
    "--devices",
    "1",
  ]
  killed = tmp_path / "killed"
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  proc = subprocess.Popen(
    [sys.executable, "-m", "jaxnn.cli", *_sweep_args(killed, *args)],
    env=env,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
  )
  deadline = time.time() + 240
  while not list((killed / "configs").glob("program_*.json")):
    assert proc.poll() is None, proc.stderr.read().decode()
    assert time.time() < deadline, "the sweep wrote no program in 240 s"
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  proc.stderr.close()
  saved = {
    p.name: (p.read_text(), p.stat().st_mtime_ns)
    for p in (killed / "configs").glob("program_*.json")
  }
  assert len(saved) == 1 and not (killed / "results.json").exists()

  assert main(_sweep_args(killed, *args)) == 0
  for name, (text, mtime) in saved.items():  # finished programs were not trained again
    path = killed / "configs" / name
    assert path.read_text() == text and path.stat().st_mtime_ns == mtime
  assert len(list((killed / "configs").glob("program_*.json"))) == 2

  clean = tmp_path / "clean"
  assert main(_sweep_args(clean, *args)) == 0
  assert (killed / "results.json").read_text() == (clean / "results.json").read_text()
  assert (killed / "results.csv").read_text() == (clean / "results.csv").read_text()


def _digits_model_init(key):
  return from_nnx(create_model("fc", (8, 8, 1), 10, seed=key, widths=(16,)))


@pytest.mark.slow
@pytest.mark.parametrize("projection", ["dense", "fastfood"])
def test_vmapped_configs_equal_configs_trained_one_by_one(projection):
  """A stack of 4 configs (d padded to 12 and masked, split over 2 devices) = 4 separate runs."""
  data = load_dataset("digits")
  optimizer = make_optimizer("adam", 1e-2)
  dims, seeds, steps, bs = [3, 7, 7, 12], [0, 1, 2, 3], 12, 32
  dp2 = data_parallel(None, 2)
  member, stack = subspace_stack(_digits_model_init, projection, dims, seeds, optimizer)
  stack = train_stack(
    member,
    stack,
    seeds,
    data.train,
    steps,
    dp=dp2,
    optimizer=optimizer,
    batch_size=bs,
    weight_decay=1e-3,
    progress=False,
  )
  assert all(len(leaf.sharding.device_set) == 2 for leaf in jax.tree.leaves(stack))
  stacked_accuracy = make_stack_evaluator(member, dp2)(stack, data.validation)["accuracy"]

  dp1 = data_parallel(None, 1)
  for i, (d, seed) in enumerate(zip(dims, seeds)):
    subspace = make_subspace(_digits_model_init, d, projection)  # its own d: no padding, no mask
    state = subspace.init(jax.random.PRNGKey(seed))
    alone = run_loop(
      make_subspace_train_step(subspace, optimizer, weight_decay=1e-3),
      init_train_state(subspace.bind(state), optimizer, seed),
      EpochBatcher(data.train, bs, seed),
      steps,
      dp=dp1,
      progress=False,
      extra_args=(state, jnp.int32(d)),
    )
    theta_d = np.asarray(stack.train.params[i])
    chex.assert_trees_all_close(theta_d[:d], np.asarray(alone.params), atol=1e-5, rtol=1e-4)
    assert np.all(theta_d[d:] == 0)
    accuracy = make_evaluator(subspace.bind(state), dp1)(
      alone.params, alone.model_state, data.validation
    )["accuracy"]
    assert stacked_accuracy[i] == pytest.approx(accuracy, abs=1e-6)


@pytest.mark.slow
def test_chunked_vmap_and_devices_give_the_same_stack():
  """lax.map of 1 config, vmapped chunks of 3 (1 device), one vmap per device (2), alone: equal."""
  data = load_dataset("digits")
  optimizer = make_optimizer("adam", 1e-2)
  dims, seeds = pad_configs([5, 9, 9], 2), pad_configs([0, 0, 1], 2)
  assert (dims, seeds) == ([5, 9, 9, 9], [0, 0, 1, 1])
  out = []
  for devices, chunk in ((2, None), (1, 1), (1, 3)):
    member, stack = subspace_stack(_digits_model_init, "sparse", dims, seeds, optimizer)
    out.append(
      train_stack(
        member,
        stack,
        seeds,
        data.train,
        6,
        dp=data_parallel(None, devices),
        optimizer=optimizer,
        batch_size=32,
        chunk=chunk,
        progress=False,
      )
    )
  for other in out[1:]:
    chex.assert_trees_all_close(out[0].train.params, other.train.params, atol=1e-6)
  # A program of one config (no loop around the step) = that config in the stack.
  member, stack = subspace_stack(_digits_model_init, "sparse", [9], [1], optimizer)
  alone = train_stack(
    member,
    stack,
    [1],
    data.train,
    6,
    dp=data_parallel(None, 1),
    optimizer=optimizer,
    batch_size=32,
    chunk=1,
    progress=False,
  )
  chex.assert_trees_all_close(alone.train.params[0], out[0].train.params[3], atol=1e-6)
  assert (
    programs_size("lenet", "cpu"),
    programs_size("lenet", "cpu", 2),
    programs_size("fc", "cpu"),
    programs_size("lenet", "gpu"),
  ) == (1, 2, 16, 16)
  with pytest.raises(JaxnnError, match="pad"):
    train_stack(
      member,
      stack,
      [0, 1, 2],
      data.train,
      1,
      dp=data_parallel(None, 2),
      optimizer=optimizer,
      progress=False,
    )

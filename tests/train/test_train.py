"""Training engine: steps, data parallelism, resume, checkpoint errors, NaN guard."""

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
import optax
import pytest

from jaxnn._errors import CheckpointError, JaxnnError, NonFiniteLossError
from jaxnn.data import EpochBatcher, load_dataset
from jaxnn.models import create_model
from jaxnn.train import (
  TrainConfig,
  data_parallel,
  from_function,
  from_nnx,
  init_train_state,
  make_evaluator,
  make_loss_fn,
  make_optimizer,
  make_train_step,
  run_loop,
  train_and_evaluate,
)

FAST = dict(dataset="digits", widths=(32,), epochs=2, batch_size=64, log_every=5, progress=False)


def _params(summary):
  return jax.device_get(summary["state"].params)


def test_loss_is_data_loss_plus_l2_on_kernels():
  model = from_nnx(create_model("fc", (8, 8, 1), 10, widths=(16,)))
  x = jax.random.normal(jax.random.key(0), (5, 8, 8, 1))
  y = jnp.arange(5)
  loss, (metrics, _) = make_loss_fn(model, weight_decay=1e-2)(model.params, model.state, x, y, None)
  logits, _ = model.apply(model.params, model.state, x, False, None)
  data = -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(5), y])
  kernels = sum(jnp.sum(p["kernel"] ** 2) for p in model.params.values())
  np.testing.assert_allclose(loss, data + 1e-2 * kernels, rtol=1e-6)
  np.testing.assert_allclose(metrics["data_loss"], data, rtol=1e-6)


def test_optimizers_by_name_match_optax():
  params = {"w": jnp.array([1.0, -2.0, 3.0])}
  grads = {"w": jnp.array([0.5, 0.1, -0.3])}
  for ours, ref in [
    (make_optimizer("adam", 1e-3), optax.adam(1e-3, b1=0.9, b2=0.99)),
    (make_optimizer("momentum", 0.01), optax.sgd(0.01, momentum=0.9)),
    (make_optimizer("sgd", 0.1), optax.sgd(0.1)),
  ]:
    s1, s2 = ours.init(params), ref.init(params)
    for _ in range(3):
      u1, s1 = ours.update(grads, s1, params)
      u2, s2 = ref.update(grads, s2, params)
      chex.assert_trees_all_close(u1, u2)
  for bad in [("adam", 0.0), ("nadam", 1e-3)]:
    with pytest.raises(JaxnnError):
      make_optimizer(*bad)


def test_plain_function_model_trains():
  def fn(params, x):
    return x.reshape(len(x), -1) @ params["w"] + params["b"][None, :]

  model = from_function(fn, {"w": jnp.zeros((64, 10)), "b": jnp.zeros(10)})
  ds = load_dataset("digits")
  opt = make_optimizer("adam", 1e-2)
  dp = data_parallel(64, 2)
  state = run_loop(
    make_train_step(model, opt),
    init_train_state(model, opt),
    EpochBatcher(ds.train, 64, 0),
    100,
    dp=dp,
    progress=False,
  )
  acc = make_evaluator(model, dp)(state.params, state.model_state, ds.test)["accuracy"]
  assert acc > 0.85  # a linear classifier on 8x8 digits
  np.testing.assert_array_equal(model.params["w"], 0.0)  # the caller's arrays survive donation


@pytest.mark.parametrize("devices", [2, 4])
def test_data_parallel_matches_one_device(devices):
  one = train_and_evaluate(TrainConfig(**FAST, num_devices=1), None)
  many = train_and_evaluate(TrainConfig(**FAST, num_devices=devices), None)
  assert many["devices"] == devices
  chex.assert_trees_all_close(_params(one), _params(many), atol=1e-5, rtol=1e-5)
  assert abs(one["test_accuracy"] - many["test_accuracy"]) <= 2 / 360


def test_eight_devices_blocking_each_step():
  model = from_nnx(create_model("fc", (8, 8, 1), 10, widths=(16,)))
  opt = make_optimizer("momentum", 0.05)
  step = make_train_step(model, opt)
  ds = load_dataset("digits")
  batcher = EpochBatcher(ds.train, 64, 0)
  results = []
  for n in (1, 8):
    dp = data_parallel(64, n)
    jitted = jax.jit(
      step,
      in_shardings=(dp.replicated, dp.batch, dp.batch),
      out_shardings=(dp.replicated, dp.replicated),
    )
    state = dp.replicate(init_train_state(model, opt))
    for s in range(6):
      state, metrics = jitted(state, *dp.shard_batch(*batcher.at_step(s)))
      jax.block_until_ready(state)  # avoids XLA's CPU all-reduce deadlock on 2 cores
    results.append(jax.device_get(state.params))
  chex.assert_trees_all_close(results[0], results[1], atol=1e-6, rtol=1e-5)


def test_batch_not_divisible_by_devices_uses_fewer_or_errors():
  assert data_parallel(250).num_devices == 5  # 8 devices: the largest divisor of 250 is 5
  with pytest.raises(JaxnnError, match="not divisible"):
    data_parallel(250, 4)
  with pytest.raises(JaxnnError, match="available"):
    data_parallel(64, 64)


def test_resume_equals_uninterrupted_bitwise(tmp_path):
  full = train_and_evaluate(TrainConfig(**FAST, num_devices=2), tmp_path / "full")
  half = train_and_evaluate(
    TrainConfig(**{**FAST, "epochs": 1}, num_devices=2), tmp_path / "resumed"
  )
  resumed = train_and_evaluate(TrainConfig(**FAST, num_devices=2), tmp_path / "resumed")
  assert half["steps"] < resumed["steps"] == full["steps"]
  chex.assert_trees_all_equal(_params(full), _params(resumed))
  for name in ("full", "resumed"):
    summary = json.loads((tmp_path / name / "summary.json").read_text())
    assert {"params", "train_accuracy", "test_accuracy"} <= set(summary)
  log = lambda d: [json.loads(l) for l in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in log("full")] == [r["step"] for r in log("resumed")]


KILLED_RUN = """
import jax, sys
jax.config.update("jax_num_cpu_devices", 2)
from jaxnn.train import TrainConfig, train_and_evaluate
train_and_evaluate(TrainConfig(dataset="digits", widths=(32,), epochs=int(sys.argv[2]),
                               batch_size=64, log_every=1, checkpoint_every=2, num_devices=2,
                               progress=False), sys.argv[1])
"""


def test_killed_run_resumes_to_same_parameters(tmp_path):
  """A real SIGKILL mid-run, then a restart, ends where an uninterrupted run ends."""
  script = tmp_path / "run.py"
  script.write_text(KILLED_RUN)
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "killed"), "10"], env=env)
  ckpts = tmp_path / "killed" / "checkpoints"
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    if ckpts.exists() and any(p.name.isdigit() and int(p.name) >= 6 for p in ckpts.iterdir()):
      break
    time.sleep(0.05)
  assert proc.poll() is None, "the run finished before it could be killed"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  subprocess.run([sys.executable, str(script), str(tmp_path / "killed"), "10"], env=env, check=True)
  subprocess.run([sys.executable, str(script), str(tmp_path / "clean"), "10"], env=env, check=True)
  from jaxnn.train import Checkpointer

  restored = []
  for name in ("killed", "clean"):
    ck = Checkpointer(tmp_path / name, json.loads((tmp_path / name / "config.json").read_text()))
    template = init_train_state(
      from_nnx(create_model("fc", (8, 8, 1), 10, widths=(32,))), make_optimizer("adam", 1e-3)
    )
    restored.append(ck.restore(template))
    ck.close()
  assert restored[0][0] == restored[1][0] == 10 * 20
  chex.assert_trees_all_equal(restored[0][1], restored[1][1])


def test_incompatible_and_corrupt_checkpoints_fail_without_touching_files(tmp_path):
  train_and_evaluate(TrainConfig(**{**FAST, "epochs": 1}, num_devices=2), tmp_path)
  before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
  with pytest.raises(CheckpointError, match="another configuration.*widths"):
    train_and_evaluate(TrainConfig(**{**FAST, "widths": (16,)}, num_devices=2), tmp_path)
  step_dir = next((tmp_path / "checkpoints").iterdir())
  for f in step_dir.rglob("*"):
    if f.is_file() and f.stat().st_size > 0:
      f.write_bytes(b"\x00garbage")
  before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
  with pytest.raises(CheckpointError, match="cannot be (read|verified).*Nothing was changed"):
    train_and_evaluate(TrainConfig(**FAST, num_devices=2), tmp_path)
  after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
  assert before == after


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
  def fn(params, x):
    return x.reshape(len(x), -1) @ params["w"]

  model = from_function(fn, {"w": jnp.zeros((64, 10))})
  opt = make_optimizer("sgd", 1.0)
  step = make_train_step(model, opt)

  def exploding(state, x, y):  # finite for 5 steps, then the loss is NaN
    state, metrics = step(state, x, y)
    metrics["loss"] = jnp.where(state.step > 5, jnp.nan, metrics["loss"])
    return state, metrics

  ds = load_dataset("digits")
  with pytest.raises(NonFiniteLossError, match="step 6.*last good checkpoint \\(step 4\\)"):
    run_loop(
      exploding,
      init_train_state(model, opt),
      EpochBatcher(ds.train, 64, 0),
      20,
      dp=data_parallel(64, 2),
      workdir=tmp_path,
      log_every=1,
      checkpoint_every=2,
      progress=False,
    )
  steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
  assert steps[-1] == 4


def test_bad_hyperparameters():
  with pytest.raises(JaxnnError, match="epochs"):
    train_and_evaluate(TrainConfig(**{**FAST, "epochs": 0}), None)
  with pytest.raises(JaxnnError, match="batch size"):
    train_and_evaluate(TrainConfig(**{**FAST, "batch_size": 5000}), None)
  with pytest.raises(JaxnnError, match="weight.decay"):
    train_and_evaluate(TrainConfig(**{**FAST, "weight_decay": -1.0}), None)

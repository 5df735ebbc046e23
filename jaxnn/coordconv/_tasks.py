"""The paper's Not-so-Clevr experiments: classification, regression, rendering.

`run_task(TaskConfig(task="classification", split="quadrant", model="coordconv"),
out)` trains with jaxnn's engine (`make_train_step` + `run_loop`, checkpoints
and resume included), evaluates train and test every `eval_every` epochs, and
writes `out/summary.json`, `out/metrics.jsonl` and PNG plots.

Expected on CPU (see docs/coordconv.md for the measured runs):
CoordConv classification reaches 100% test accuracy on both splits within a
few epochs; the deconv baseline stays near 0% on the quadrant split.

References:
  Liu et al., "An intriguing failing of convolutional neural networks and the
  CoordConv solution", NeurIPS 2018, https://arxiv.org/abs/1807.03247.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time

import numpy as np
import optax
from flax import nnx

from jaxnn._errors import JaxnnError
from jaxnn.configs._coordconv import TASKS, TaskConfig
from jaxnn.coordconv._models import (
  PAPER_CLASSIFIER_WIDTHS,
  ConvRegressor,
  CoordConvClassifier,
  CoordConvRegressor,
  CoordConvRenderer,
  DeconvClassifier,
  DeconvRenderer,
)
from jaxnn.coordconv._objectives import COORDINATE_MSE, PIXEL_SIGMOID, PIXEL_SOFTMAX

CANVAS = 64
OBJECTIVES = {
  "classification": PIXEL_SOFTMAX,
  "regression": COORDINATE_MSE,
  "rendering": PIXEL_SIGMOID,
}
# The summary's headline metrics per task (evaluated on train and test).
HEADLINE = {
  "classification": ("accuracy", "pixel_error"),
  "regression": ("pixel_error",),
  "rendering": ("accuracy", "iou", "pixel_accuracy"),
}


def create_task_model(
  task: str,
  model: str,
  *,
  mul: int = 1,
  kernel_size: int = 3,
  with_r: bool = False,
  widths: tuple[int, ...] | None = None,
  seed: int = 0,
) -> nnx.Module:
  """The paper's network for `task`: model "coordconv" or "conv" (its baseline).

  `widths` overrides the CoordConv classifier's 1x1 conv widths (the paper's
  32, 32, 64, 64 when None).
  """
  rngs = nnx.Rngs(params=seed)
  if task == "classification":
    return (
      CoordConvClassifier(widths=widths or PAPER_CLASSIFIER_WIDTHS, with_r=with_r, rngs=rngs)
      if model == "coordconv"
      else DeconvClassifier(mul=mul, kernel_size=kernel_size, rngs=rngs)
    )
  if task == "regression":
    return (
      CoordConvRegressor(rngs=rngs) if model == "coordconv" else ConvRegressor(mul=mul, rngs=rngs)
    )
  if task == "rendering":
    return (
      CoordConvRenderer(kernel_size=kernel_size, mul=mul, rngs=rngs)
      if model == "coordconv"
      else DeconvRenderer(kernel_size=kernel_size, mul=mul, rngs=rngs)
    )
  raise JaxnnError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")


def _region_identity(data) -> dict:
  """A custom held-out region is part of the run (the paper's splits are named by `split`)."""
  digest = data.info.get("held_out_sha1")
  return {"held_out_sha1": digest} if digest else {}


def _mirrored(split, task: str):
  """`split` with the canvas mirrored on both axes: position (x, y) -> (63 - x, 63 - y).

  The inputs and targets of every task move together, so a split that holds out
  the bottom-right quadrant holds out the top-left one instead (729 test positions).
  """
  last = CANVAS - 1
  x, y = split.x, split.y
  if task == "classification":  # raw (x, y) -> pixel index y * 64 + x
    x, y = last - x, (CANVAS * CANVAS - 1) - y
  elif task == "regression":  # one-hot image -> (x, y) / 64
    x, y = x[:, ::-1, ::-1], (last / CANVAS - y).astype(y.dtype)
  else:  # rendering: raw (x, y) -> the square image
    x, y = last - x, y[:, ::-1, ::-1]
  return type(split)(np.ascontiguousarray(x), np.ascontiguousarray(y))


class _StopTraining(Exception):
  pass


def run_task(
  config: TaskConfig,
  out: str | pathlib.Path | None,
  *,
  plots: bool | None = None,
  model=None,
  held_out=None,
) -> dict:
  """Trains and evaluates one task; writes `out/summary.json`, metrics and plots.

  `plots` (default `config.plots`) writes the PNG views. `model` replaces the
  paper's network: an NNX or Equinox module, `from_linen` / `from_function`'s
  result, or a factory `model(key)` of one
  (`jaxnn.train.as_model`). `held_out` replaces `config.split` by any region:
  a predicate `held_out(x, y)` over the squares' centres or a boolean mask
  (`jaxnn.coordconv.task_data`); `config.split` also takes an expression
  such as "x < 20 and y < 20".

  Returns the summary: `params`, `train_*` / `test_*` headline metrics
  (`accuracy` for classification and rendering, `iou` for rendering,
  `pixel_error` for regression), `history` (the evaluations, with elapsed
  seconds), `seconds`, and the resolved config. The trained parameters are
  in `summary["state"]` (not written to JSON).
  """
  import jax

  from jaxnn.coordconv._regions import task_data
  from jaxnn.data import EpochBatcher
  from jaxnn.models import count_params
  from jaxnn.train import (
    MetricsLog,
    as_model,
    data_parallel,
    from_nnx,
    init_train_state,
    make_evaluator,
    make_optimizer,
    make_train_step,
    run_loop,
    write_json_atomic,
  )

  t0 = time.perf_counter()
  config = config.resolved()
  plots = config.plots if plots is None else plots
  data = task_data(config, held_out)
  if config.mirror:
    data = dataclasses.replace(
      data, train=_mirrored(data.train, config.task), test=_mirrored(data.test, config.task)
    )
  if config.train_examples is not None and config.train_examples < len(data.train):
    keep = np.sort(
      np.random.default_rng(config.seed).choice(
        len(data.train), config.train_examples, replace=False
      )
    )
    data = dataclasses.replace(data, train=type(data.train)(data.train.x[keep], data.train.y[keep]))
  if model is None:
    module = create_task_model(
      config.task,
      config.model,
      mul=config.mul,
      kernel_size=config.kernel_size,
      with_r=config.with_r,
      widths=config.widths,
      seed=config.seed,
    )
    model = from_nnx(module)
  else:
    module, model = None, as_model(model, jax.random.key(config.seed))
  objective = OBJECTIVES[config.task]
  dp = data_parallel(config.batch_size, config.num_devices)
  batcher = EpochBatcher(data.train, config.batch_size, config.seed)
  assert config.epochs is not None and config.learning_rate is not None  # resolved
  num_steps = config.epochs * batcher.steps_per_epoch
  optimizer = make_optimizer("adam", config.learning_rate)
  if config.lr_schedule == "cosine":
    optimizer = optax.adam(
      optax.cosine_decay_schedule(config.learning_rate, num_steps), b1=0.9, b2=0.99
    )
  evaluate = make_evaluator(model, dp, objective, batch_size=512)
  history: list[dict] = []

  def eval_fn(state):
    record = {"split": "eval", "elapsed_s": time.perf_counter() - t0}
    for name in ("train", "test"):
      record.update(
        {
          f"{name}_{k}": v
          for k, v in evaluate(state.params, state.model_state, getattr(data, name)).items()
        }
      )
    history.append(record)
    perfect = config.stop_at_perfect and record.get("test_accuracy", 0.0) == 1.0
    out_of_time = config.max_seconds is not None and record["elapsed_s"] >= config.max_seconds
    if perfect or out_of_time:
      step = int(state.step)
      raise _StopTraining(state, {"step": step, "epoch": step / batcher.steps_per_epoch, **record})
    return record

  workdir = pathlib.Path(out) if out is not None else None
  step = make_train_step(model, optimizer, objective, config.weight_decay)
  try:
    state = run_loop(
      step,
      init_train_state(model, optimizer, config.seed),
      batcher,
      num_steps,
      dp=dp,
      workdir=workdir,
      run_config={**config.run_identity(), **_region_identity(data)},
      log_every=50,
      eval_every=config.eval_every * batcher.steps_per_epoch,
      eval_fn=eval_fn,
      progress=config.progress,
      resume_from_previous=config.resume_from_previous,
      description=f"{config.task}/{config.model}",
    )
    stopped_at = None
  except _StopTraining as stop:
    state, stopped_at = stop.args
  if workdir is not None:
    log = MetricsLog(workdir / "metrics.jsonl")
    if stopped_at is not None:  # run_loop logs an evaluation only once eval_fn returns
      log.write(stopped_at)
    history = [r for r in log.read() if r.get("split") == "eval"]  # also across resumes
  results = {
    name: evaluate(state.params, state.model_state, getattr(data, name))
    for name in ("train", "test")
  }
  summary = {
    "task": config.task,
    "split": config.split if held_out is None else "custom",
    "model": config.model,
    "architecture": type(module).__name__ if module is not None else "custom",
    "params": count_params(model.params),
    **{
      f"{split}_{k}": results[split][k]
      for split in ("train", "test")
      for k in HEADLINE[config.task]
    },
    "train_loss": results["train"]["loss"],
    "test_loss": results["test"]["loss"],
    "steps": int(state.step),
    "epochs_run": int(state.step) / batcher.steps_per_epoch,
    "first_perfect_test": next((r for r in history if r.get("test_accuracy") == 1.0), None),
    "history": history,
    "seconds": time.perf_counter() - t0,
    "config": dataclasses.asdict(config),
    "data": data.info,
  }
  if workdir is not None:
    write_json_atomic(workdir / "summary.json", summary)
    if plots:
      from jaxnn.coordconv._plots import plot_run

      summary["plots"] = plot_run(module, model, state, data, config, history, workdir)
      write_json_atomic(workdir / "summary.json", summary)
  summary["state"] = state
  return summary


def load_summary(out: str | pathlib.Path) -> dict:
  """Reads back a run's `summary.json`."""
  path = pathlib.Path(out) / "summary.json"
  if not path.exists():
    raise JaxnnError(f"no summary at {path}; run `jaxnn coordconv ... --out {out}` first")
  return json.loads(path.read_text())

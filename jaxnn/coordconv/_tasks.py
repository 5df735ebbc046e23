"""The paper's Not-so-Clevr experiments: classification, regression, rendering.

`run_task(TaskConfig(task="classification", split="quadrant", model="coordconv"),
out)` trains with jaxnn's engine (`make_train_step` + `run_loop`, checkpoints
and resume included), evaluates train and test every `eval_every` epochs, and
writes `out/summary.json`, `out/metrics.jsonl` and PNG plots.

Expected on CPU (see docs/readme/coordconv.md for the measured runs):
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

TASKS = ("classification", "regression", "rendering")
CANVAS = 64
MODELS = ("coordconv", "conv")
# What `--model conv` means per task: the paper's baseline for that task.
BASELINES = {"classification": "deconv", "regression": "conv", "rendering": "deconv"}
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
# Paper settings (Liu et al. 2018, S4 / S6): Adam, batch 16; CoordConv 50 epochs at
# lr 1e-3..1e-2, the deconv baseline 1,000 epochs.
PAPER_DEFAULTS = {
  ("classification", "coordconv"): dict(epochs=50, learning_rate=1e-2),
  ("classification", "conv"): dict(epochs=1000, learning_rate=1e-3),
  ("regression", "coordconv"): dict(epochs=50, learning_rate=1e-2),
  ("regression", "conv"): dict(epochs=50, learning_rate=1e-3),
  ("rendering", "coordconv"): dict(epochs=50, learning_rate=1e-3),
  ("rendering", "conv"): dict(epochs=1000, learning_rate=1e-3),
}


@dataclasses.dataclass(frozen=True)
class TaskConfig:
  """One Not-so-Clevr run, as `jaxnn coordconv classify|regress|render` takes it."""

  task: str = "classification"  # classification, regression or rendering
  split: str = "quadrant"  # uniform (random 25% test) or quadrant (bottom-right held out)
  model: str = "coordconv"  # coordconv, or conv: the task's deconv / conv baseline
  epochs: int | None = None  # None: the paper's (PAPER_DEFAULTS)
  learning_rate: float | None = None  # None: the paper's (PAPER_DEFAULTS)
  batch_size: int = 16
  lr_schedule: str = "constant"  # constant (the paper) or cosine (decay to 0 over the run)
  weight_decay: float = 0.0  # L2 on kernels (Keras convention)
  seed: int = 0  # initialization and batch order; the splits never move
  mirror: bool = False  # mirror the canvas on both axes: the quadrant split holds out the top left
  mul: int = 1  # width multiplier of the baselines and the renderer's convs
  kernel_size: int = 3  # deconv kernel (2..4 in the paper) / renderer conv kernel
  with_r: bool = False  # CoordConv radius channel
  widths: tuple[int, ...] | None = None  # CoordConv classifier 1x1 widths; None: (32, 32, 64, 64)
  eval_every: int = 1  # epochs between train/test evaluations (learning curves)
  train_examples: int | None = None  # a random subset (by seed) of the training split
  stop_at_perfect: bool = False  # stop when test accuracy reaches 100% (classification)
  max_seconds: float | None = None  # stop at the first evaluation after this wall time
  num_devices: int | None = None  # None: all that divide the batch
  progress: bool = True
  data_dir: str | None = None  # TFDS array_record cache; None: ~/.cache/jaxnn/tfds

  def resolved(self) -> "TaskConfig":
    """Validates and fills the paper's defaults for unset fields."""
    if self.task not in TASKS:
      raise JaxnnError(f"unknown task {self.task!r}; choose from {', '.join(TASKS)}")
    if self.model not in MODELS:
      raise JaxnnError(
        f"unknown model {self.model!r}; choose coordconv or conv (the "
        f"{BASELINES[self.task]} baseline)"
      )
    defaults = PAPER_DEFAULTS[(self.task, self.model)]
    config = dataclasses.replace(
      self,
      epochs=self.epochs if self.epochs is not None else defaults["epochs"],
      learning_rate=self.learning_rate
      if self.learning_rate is not None
      else defaults["learning_rate"],
    )
    if config.epochs < 1 or config.batch_size < 1 or config.eval_every < 1:
      raise JaxnnError("epochs, batch size and eval_every must be positive")
    if not config.learning_rate > 0:
      raise JaxnnError(f"learning rate must be positive, got {config.learning_rate}")
    if config.lr_schedule not in ("constant", "cosine"):
      raise JaxnnError(f"unknown lr schedule {config.lr_schedule!r}; choose constant or cosine")
    if not 0 <= config.weight_decay < 1:
      raise JaxnnError(f"weight decay must be in [0, 1), got {config.weight_decay}")
    if config.mul < 1 or config.kernel_size < 1:
      raise JaxnnError(
        f"mul and kernel_size must be positive, got {config.mul}, {config.kernel_size}"
      )
    if config.train_examples is not None and config.train_examples < config.batch_size:
      raise JaxnnError(
        f"train_examples ({config.train_examples}) must be at least the batch size "
        f"({config.batch_size})"
      )
    if config.widths is not None and (config.task, config.model) != ("classification", "coordconv"):
      raise JaxnnError(
        "widths sets the CoordConv classifier's 1x1 convs: use it with task "
        "classification and model coordconv"
      )
    if config.widths is not None and (not config.widths or min(config.widths) < 1):
      raise JaxnnError(f"widths must be positive integers, got {config.widths}")
    if config.max_seconds is not None and not config.max_seconds > 0:
      raise JaxnnError(f"max_seconds must be positive, got {config.max_seconds}")
    if config.stop_at_perfect and config.task == "regression":
      raise JaxnnError("stop_at_perfect needs an accuracy: use it for classification or rendering")
    return config

  def run_identity(self) -> dict:
    skip = {
      "epochs",
      "num_devices",
      "progress",
      "eval_every",
      "data_dir",
      "stop_at_perfect",
      "max_seconds",
    }
    if self.lr_schedule == "constant":  # runs saved before schedules existed resume unchanged
      skip.add("lr_schedule")
    if self.widths is None:  # likewise for runs saved before widths existed
      skip.add("widths")
    if not self.mirror:  # and before mirroring existed
      skip.add("mirror")
    identity = {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}
    if self.widths is not None:
      identity["widths"] = list(self.widths)
    return identity


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


def run_task(config: TaskConfig, out: str | pathlib.Path | None, *, plots: bool = True) -> dict:
  """Trains and evaluates one task; writes `out/summary.json`, metrics and plots.

  Returns the summary: `params`, `train_*` / `test_*` headline metrics
  (`accuracy` for classification and rendering, `iou` for rendering,
  `pixel_error` for regression), `history` (the evaluations, with elapsed
  seconds), `seconds`, and the resolved config. The trained parameters are
  in `summary["state"]` (not written to JSON).
  """
  from jaxnn.data import EpochBatcher, load_dataset
  from jaxnn.models import count_params
  from jaxnn.train import (
    MetricsLog,
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
  data = load_dataset(
    "not_so_clevr",
    seed=config.seed,
    validation_size=0,
    data_dir=config.data_dir,
    split=config.split,
    task=config.task,
  )
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
  objective = OBJECTIVES[config.task]
  dp = data_parallel(config.batch_size, config.num_devices)
  batcher = EpochBatcher(data.train, config.batch_size, config.seed)
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
      run_config=config.run_identity(),
      log_every=50,
      eval_every=config.eval_every * batcher.steps_per_epoch,
      eval_fn=eval_fn,
      progress=config.progress,
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
    "split": config.split,
    "model": config.model,
    "architecture": type(module).__name__,
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

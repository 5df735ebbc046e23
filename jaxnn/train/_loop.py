"""The data-parallel training loop: checkpoints, metrics, progress, NaN guard.

`run_loop` drives any pure `step_fn(carry, x, y) -> (carry, metrics)` over
deterministic batches; methods pass a wrapped step (a subspace model, an LCA
accumulator, a vmapped stack of configs) and get resuming, logging and the
multi-device placement for free. `train_and_evaluate` is the plain supervised
job behind `jaxnn train`.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn._errors import CheckpointError, JaxnnError, NonFiniteLossError
from jaxnn._progress import Progress, note
from jaxnn.configs import TrainConfig
from jaxnn.data import Dataset, EpochBatcher, Split, eval_batches, load_dataset
from jaxnn.data._batching import Batcher
from jaxnn.models import count_params, init_model
from jaxnn.train._checkpoint import Checkpointer
from jaxnn.train._functional import FunctionalModel, as_model, from_nnx
from jaxnn.train._inputs import as_dataset
from jaxnn.train._io import MetricsLog, write_json_atomic
from jaxnn.train._optim import make_optimizer
from jaxnn.train._parallel import DataParallel, data_parallel
from jaxnn.train._steps import (
  CLASSIFICATION,
  Objective,
  TrainState,
  init_train_state,
  make_eval_step,
  make_train_step,
)


def _check_finite_params(carry: Any, step: int, ckpt: Checkpointer) -> None:
  """Raises `NonFiniteLossError` if a `TrainState`'s parameters in `carry` are not finite.

  The loss at step s is computed before step s's update, so a finite loss does
  not prove the parameters after it finite; this check keeps a checkpoint of
  NaN parameters from being saved as a good one.
  """
  states = [
    x
    for x in jax.tree.leaves(carry, is_leaf=lambda x: isinstance(x, TrainState))
    if isinstance(x, TrainState)
  ]
  for state in states:
    for leaf in jax.tree.leaves(state.params):
      if jnp.issubdtype(leaf.dtype, jnp.inexact) and not bool(jnp.all(jnp.isfinite(leaf))):
        latest = ckpt.latest_step()
        kept = (
          f"the last good checkpoint (step {latest}) is kept in {ckpt.workdir}"
          if latest is not None
          else "no checkpoint was written"
        )
        raise NonFiniteLossError(
          f"the parameters became NaN or inf at step {step} (the losses before were finite); "
          f"{kept}. Lower the learning rate or check the data, then rerun."
        )


def run_loop(
  step_fn: Callable,
  carry: Any,
  batcher: Batcher,
  num_steps: int,
  *,
  dp: DataParallel,
  workdir: str | pathlib.Path | None = None,
  run_config: dict | None = None,
  log_every: int = 50,
  checkpoint_every: int | None = None,
  eval_every: int | None = None,
  eval_fn: Callable[[Any], dict] | None = None,
  loss_key: str = "loss",
  progress: bool = True,
  description: str = "train",
  extra_args: tuple = (),
  carry_sharding=None,
  batch_sharding=None,
  compiler_options: dict | None = None,
  resume_from_previous: bool = False,
) -> Any:
  """Runs `step_fn` for `num_steps` steps, resuming from `workdir` if possible.

  Args:
    step_fn: pure `(carry, x, y) -> (carry, metrics)`; jitted here with the
      carry replicated and the batch split across `dp`'s devices.
    carry: the initial pytree (a `TrainState` or anything holding one).
    batcher: gives the batch of every global step.
    num_steps: total steps of the run (not the steps left).
    dp: the device mesh.
    workdir: run directory for `checkpoints/`, `metrics.jsonl`; None keeps
      nothing on disk.
    run_config: identifies the run; resuming with another raises.
    log_every: steps between metric lines (and NaN checks).
    checkpoint_every: steps between checkpoints; None: every epoch. The last
      step is always saved.
    eval_every: steps between `eval_fn` calls; None: every epoch.
    eval_fn: `eval_fn(carry) -> {name: value}`, logged with the step.
    loss_key: the metric checked for NaN / inf.
    progress: show a progress bar on a terminal, a line per ~10% otherwise.
    description: the progress bar's label.
    extra_args: arrays passed after the batch on every call,
      `step_fn(carry, x, y, *extra_args)`, replicated (e.g. the full training set
      an LCA step evaluates gradients on).
    carry_sharding: overrides the carry's sharding (default replicated), e.g.
      a sweep that splits a stack of configs across devices.
    batch_sharding: overrides the batch's sharding (default split along the
      "data" axis).
    compiler_options: XLA options for compiling the step (`jax.jit`'s).
    resume_from_previous: if the newest checkpoint in `workdir` is corrupt,
      set it aside (in `workdir/corrupt_checkpoints/`) and resume from the
      newest intact one; without it such a run stops with a `CheckpointError`.

  Returns:
    The final carry.

  Raises:
    CheckpointError: `workdir` holds a run with other settings, a corrupt
      newest checkpoint, or more steps than `num_steps`; nothing was written.
    JaxnnError: `workdir/metrics.jsonl` is not a metrics log.
    NonFiniteLossError: the loss (or a parameter) became NaN or inf; the last
      good checkpoint (saved only after a finite check of the losses up to its
      step and of its parameters, and verified on restore) is kept.
    StorageError: a checkpoint could not be written (full or read-only disk);
      the last complete one is intact.
  """
  if num_steps < 1:
    raise JaxnnError(f"nothing to train: {num_steps} steps (raise --epochs)")
  epoch_steps = batcher.steps_per_epoch
  checkpoint_every = checkpoint_every or epoch_steps
  eval_every = eval_every or epoch_steps
  log = ckpt = None
  start = 0
  carry_sharding = carry_sharding or dp.replicated
  batch_sharding = batch_sharding or dp.batch
  # Copies, so that donating the carry to the step never deletes the caller's arrays (one
  # compiled copy of the whole carry, not one per leaf).
  place_carry = jax.jit(lambda c: jax.tree.map(jnp.copy, c), out_shardings=carry_sharding)
  carry = place_carry(carry)
  extra_args = dp.replicate(tuple(extra_args))
  if workdir is not None:
    # Every check first (settings, log, checkpoint length and integrity), then the writes.
    ckpt = Checkpointer(workdir, run_config or {})
    log = MetricsLog(pathlib.Path(workdir) / "metrics.jsonl")
    try:
      log.read()
      latest = ckpt.latest_step()
      if latest is not None:
        ckpt.check_settings(latest)
        if latest > num_steps:
          raise CheckpointError(
            f"{ckpt.workdir} holds a run trained for {latest} steps "
            f"({latest / epoch_steps:g} epochs), more than the {num_steps} asked for. Nothing "
            f"was changed: ask for at least {latest} steps to continue it, or use another --out"
          )
        start, carry = ckpt.restore_latest(carry, resume_from_previous)
        if progress:
          note(f"resuming {workdir} from step {start} of {num_steps}")
        carry = place_carry(carry)
      ckpt.commit()
      log.truncate_after(start)  # also drops lines of a run killed before its first checkpoint
    except BaseException:
      ckpt.close()
      raise
  step = jax.jit(
    step_fn,
    in_shardings=(carry_sharding, batch_sharding, batch_sharding)
    + (dp.replicated,) * len(extra_args),
    out_shardings=(carry_sharding, None),
    donate_argnums=0,
    compiler_options=compiler_options,
  )
  pending: list[tuple[int, Any]] = []
  last_good = start

  def flush(upto: int):
    nonlocal last_good
    if not pending:
      return
    values = jax.device_get([m for _, m in pending])
    for (s, _), m in zip(pending, values):
      loss = np.asarray(m[loss_key])
      if not np.all(np.isfinite(loss)):
        kept = (
          f"the last good checkpoint (step {ckpt.latest_step()}) is kept in {ckpt.workdir}"
          if ckpt is not None and ckpt.latest_step() is not None
          else "no checkpoint was written"
        )
        raise NonFiniteLossError(
          f"the training loss became {loss.ravel()[~np.isfinite(loss.ravel())][0]} at step {s}; "
          f"{kept}. Lower the learning rate or check the data, then rerun."
        )
    mean = {k: np.mean(np.stack([np.asarray(m[k]) for m in values]), axis=0) for k in values[0]}
    if log is not None:
      log.write({"step": upto, "epoch": upto / epoch_steps, "split": "train", **mean})
    bar.set_postfix({k: f"{float(np.mean(v)):.4f}" for k, v in mean.items()}, refresh=False)
    pending.clear()
    last_good = upto

  bar = Progress(num_steps, initial=start, description=description, enabled=progress)
  try:
    for s in range(start, num_steps):
      x, y = dp.shard_batch(*batcher.at_step(s), sharding=batch_sharding)
      carry, metrics = step(carry, x, y, *extra_args)
      pending.append((s + 1, metrics))
      bar.update(1)
      done = s + 1
      is_ckpt, is_eval = (
        done % checkpoint_every == 0 or done == num_steps,
        eval_fn is not None and (done % eval_every == 0 or done == num_steps),
      )
      if done % log_every == 0 or is_ckpt or is_eval:
        flush(done)
      if is_eval:
        assert eval_fn is not None
        record = eval_fn(carry)
        if log is not None:
          log.write({"step": done, "epoch": done / epoch_steps, **record})
      if is_ckpt and ckpt is not None:
        _check_finite_params(carry, done, ckpt)
        ckpt.save(done, carry)
  finally:
    bar.close()
    if ckpt is not None:
      ckpt.close()
  return carry


def make_evaluator(
  model: FunctionalModel,
  dp: DataParallel,
  objective: Objective = CLASSIFICATION,
  batch_size: int = 1000,
  compiler_options: dict | None = None,
):
  """`evaluate(params, model_state, split) -> {loss, accuracy, ...}` means over the split.

  `compiler_options` are XLA options for compiling the evaluation step.
  """
  batch_size = -(-batch_size // dp.num_devices) * dp.num_devices
  step = jax.jit(
    make_eval_step(model, objective),
    in_shardings=(dp.replicated, dp.replicated, dp.batch, dp.batch, dp.batch),
    out_shardings=dp.replicated,
    compiler_options=compiler_options,
  )

  def evaluate(params, model_state, split: Split) -> dict[str, float]:
    if len(split) == 0:
      return {}
    totals = None
    for x, y, mask in eval_batches(
      split, min(batch_size, -(-len(split) // dp.num_devices) * dp.num_devices)
    ):
      sums = step(params, model_state, *dp.shard_batch(x, y, mask))
      totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
    totals = jax.device_get(totals)
    count = float(totals.pop("count"))
    return {k: float(v) / count for k, v in totals.items()}

  return evaluate


def train_and_evaluate(
  config: TrainConfig,
  workdir: str | pathlib.Path | None,
  dataset: Dataset | Any = None,
  *,
  model: Any = None,
) -> dict:
  """Trains `config.model` on `config.dataset`; writes metrics, checkpoints, summary.

  `dataset` (a `Dataset`, `(x, y)` arrays or a dict of them, see
  `as_dataset`) replaces `config.dataset`; `model` (an NNX or Equinox module,
  `from_linen` / `from_function`'s result, or a factory `model(key)` of one,
  see `as_model`) replaces `config.model`.

  Returns the summary (also written to `workdir/summary.json`): `params`,
  `train_accuracy`, `validation_accuracy`, `test_accuracy`, losses, `steps`,
  `seconds`.
  """
  t0 = time.perf_counter()
  if config.epochs < 1:
    raise JaxnnError(f"epochs must be at least 1, got {config.epochs}")
  if not 0 <= config.weight_decay < 1:
    raise JaxnnError(f"weight decay must be in [0, 1), got {config.weight_decay}")
  if dataset is None:
    dataset = load_dataset(
      config.dataset,
      seed=config.seed,
      validation_size=config.validation_size,
      shuffled_pixels=config.shuffled_pixels,
      shuffled_labels=config.shuffled_labels,
      max_train=config.max_train,
      data_dir=config.data_dir,
    )
  else:
    dataset = as_dataset(dataset)
  if dataset.num_classes is None:
    raise JaxnnError(f"{dataset.name} has no class labels; `jaxnn train` trains classifiers")
  model_name = config.model if model is None else "custom"
  model = (
    from_nnx(
      init_model(
        config.model,
        dataset.input_shape,
        dataset.num_classes,
        seed=config.seed,
        widths=config.widths,
      )
    )
    if model is None
    else as_model(model, jax.random.key(config.seed))
  )
  optimizer = make_optimizer(config.optimizer, config.learning_rate, momentum=config.momentum)
  dp = data_parallel(config.batch_size, config.num_devices)
  batcher = EpochBatcher(dataset.train, config.batch_size, config.seed)
  evaluate = make_evaluator(model, dp, batch_size=config.eval_batch_size)

  def eval_fn(state):
    return {"split": "validation", **evaluate(state.params, state.model_state, dataset.validation)}

  state = run_loop(
    make_train_step(model, optimizer, weight_decay=config.weight_decay),
    init_train_state(model, optimizer, config.seed),
    batcher,
    config.epochs * batcher.steps_per_epoch,
    dp=dp,
    workdir=workdir,
    run_config=config.run_identity(),
    log_every=config.log_every,
    checkpoint_every=config.checkpoint_every,
    eval_fn=eval_fn if len(dataset.validation) else None,
    progress=config.progress,
    resume_from_previous=config.resume_from_previous,
  )
  results = {
    name: evaluate(state.params, state.model_state, getattr(dataset, name))
    for name in ("train", "validation", "test")
  }
  summary = {
    "dataset": dataset.name,
    "model": model_name,
    "params": count_params(model.params),
    **{f"{split}_{k}": v for split, r in results.items() for k, v in r.items()},
    "steps": config.epochs * batcher.steps_per_epoch,
    "epochs": config.epochs,
    "devices": dp.num_devices,
    "seconds": time.perf_counter() - t0,
    "config": dataclasses.asdict(config),
    "data": dataset.info,
  }
  if workdir is not None and jax.process_index() == 0:  # one writer in a multi-process job
    write_json_atomic(pathlib.Path(workdir) / "summary.json", summary)
  summary["state"] = state
  return summary

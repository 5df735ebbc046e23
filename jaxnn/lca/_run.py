"""`run_lca(LCAConfig(...), workdir)`: train a network and allocate its loss change.

The job behind `jaxnn lca`: the foundation's train step wrapped by the LCA
accumulator, driven by `jaxnn.train.run_loop` (checkpoints, resume, metrics),
then the analyses and plots. The default reproduces the paper's MNIST-FC
(784-100-50-10, SGD lr 0.01 momentum 0.9, batch 250) on the offline mnist5k.
Your own model (an NNX module, a factory of one, or a `FunctionalModel`) and
data (a `Dataset` or arrays) go in as arguments beside the config.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from flax import nnx

from jaxnn import models
from jaxnn._errors import JaxnnError
from jaxnn.configs import LCAConfig
from jaxnn.data import Dataset, EpochBatcher, Split, load_dataset
from jaxnn.lca._accumulate import lca_accumulator, with_lca
from jaxnn.lca._analysis import records_to_numpy, summarize
from jaxnn.lca._eval_sets import make_eval_sets
from jaxnn.lca._layout import definition_order
from jaxnn.lca._plots import plot_all
from jaxnn.lca._stem import check_stem, drop_zero_features, fc_stem
from jaxnn.lca._stream import LCAStream, check_stream_files
from jaxnn.models import count_params
from jaxnn.train import (
  Checkpointer,
  FunctionalModel,
  as_dataset,
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
from jaxnn.train._multihost import is_leader, on_leader


def _skip_row(set_index, t, lca_P) -> None:
  """The stream of a process other than 0 in a multi-process job: process 0 writes the rows."""
  del set_index, t, lca_P


def _subset(split: Split, size: int | None, seed: int) -> Split:
  if size is None:
    return split
  if not 1 <= size <= len(split):
    raise JaxnnError(f"LCA training subset must be between 1 and {len(split)} examples, got {size}")
  idx = np.sort(np.random.default_rng([seed, 5]).choice(len(split), size, replace=False))
  return Split(split.x[idx], split.y[idx])


def compiler_options(fast_compile: bool = True) -> dict | None:
  """XLA options for the LCA job's executables: faster to compile on CPU, as fast to run.

  On CPU, XLA's older loop emitters and LLVM at -O1 compile the LCA step in
  about half the CPU time (and the model's random initialization ~5x
  faster); the step runs as fast, and the results are the same
  (`tests/lca/test_run.py` compares them with the default options). None
  (XLA's defaults) on other backends or when `fast_compile` is off.
  """
  if not fast_compile or jax.default_backend() != "cpu":
    return None
  return {"xla_cpu_use_fusion_emitters": False, "xla_backend_optimization_level": 1}


def init_lca_model(config: LCAConfig, input_shape, num_classes: int) -> nnx.Module:
  """`config`'s network by `jaxnn.models.init_model` (one compiled initialization, the
  same weights as the eager `create_model`), compiled with `compiler_options`."""
  return models.init_model(
    config.model,
    input_shape,
    num_classes,
    seed=config.seed,
    widths=config.widths,
    compiler_options=compiler_options(config.fast_compile),
  )


def _as_dataset(data: Any) -> Dataset:
  """`jaxnn.train.as_dataset` of a `Dataset`, a pair `(x_train, y_train)` or a dict of
  pairs, checked for what LCA trains (inputs (examples, ...), integer class labels) and
  cast to float32 inputs and int32 labels."""
  if isinstance(data, Dataset):
    return data
  if not isinstance(data, (tuple, list, dict)):
    raise JaxnnError(
      "run_lca's dataset must be a jaxnn.data.Dataset, a pair (x_train, y_train) or a dict "
      f"{{'train': (x, y), 'validation': (x, y), 'test': (x, y)}}, got a {type(data).__name__}"
    )
  dataset = as_dataset(data)
  splits = {"train": dataset.train, "validation": dataset.validation, "test": dataset.test}
  for name, split in splits.items():
    x, y = split.x, split.y
    if x.ndim < 2 or y.shape != x.shape[:1] or not np.issubdtype(y.dtype, np.integer):
      raise JaxnnError(
        f"{name} data: LCA needs inputs (examples, ...) and integer class labels (examples,), "
        f"got x {x.shape} and y {y.shape} ({y.dtype})"
      )
  train, validation, test = (
    Split(s.x.astype(np.float32), s.y.astype(np.int32)) for s in splits.values()
  )
  return dataclasses.replace(dataset, train=train, validation=validation, test=test)


ModelArg = nnx.Module | FunctionalModel | Callable[[jax.Array], Any]


def _as_model(
  model: ModelArg | None, config: LCAConfig, dataset: Dataset
) -> tuple[FunctionalModel, tuple[str, ...] | None, str]:
  """`(functional model, its layers in definition order or None, a name for the summary)`.

  `jaxnn.train.as_model` of the model (a factory is called with
  `jax.random.key(config.seed)`); an NNX module's layers are reported in the
  order it defines them.
  """
  if model is None:
    if dataset.num_classes is None:
      raise JaxnnError(f"{dataset.name} has no class labels; `jaxnn lca` trains classifiers")
    module = init_lca_model(config, dataset.input_shape, dataset.num_classes)
    return from_nnx(module), definition_order(module), config.model
  if callable(model) and not isinstance(model, (nnx.Module, FunctionalModel)):
    model = model(jax.random.key(config.seed))
  if isinstance(model, nnx.Module):
    return from_nnx(model), definition_order(model), type(model).__name__
  try:
    functional = as_model(model)
  except JaxnnError:
    raise JaxnnError(
      "run_lca's model must be a Flax NNX or Equinox module, a jaxnn.train.FunctionalModel "
      "(e.g. from_function(apply, params)), or a factory model(key) of one; got a "
      f"{type(model).__name__}"
    ) from None
  return functional, None, "custom" if isinstance(model, FunctionalModel) else type(model).__name__


def run_lca(
  config: LCAConfig,
  workdir: str | pathlib.Path | None = None,
  dataset: Dataset | tuple | dict | None = None,
  model: ModelArg | None = None,
) -> dict:
  """Trains `config`'s network with LCA accumulated at every iteration.

  Args:
    config: the run's settings.
    workdir: the run directory (None: nothing written).
    dataset: a `jaxnn.data.Dataset`; arrays with integer class labels, as a
      pair `(x_train, y_train)` or a dict `{"train": (x, y), "validation":
      (x, y), "test": (x, y)}` (validation and test optional: nothing is
      held out of train, so without validation set
      `config.validation_lca=False`); None loads `config.dataset`.
    model: your own network instead of `config.model`: a Flax NNX module
      (`jaxnn.train.from_nnx`), a `jaxnn.train.FunctionalModel` (e.g.
      `jaxnn.train.from_function(apply, params)`), or a factory `model(key)`
      of one, called with `jax.random.key(config.seed)`. Layers are reported
      in the order the module defines them (`definition_order`), or in the
      insertion order of a `FunctionalModel`'s parameter dicts.

  Writes to `workdir` (if given): `summary.json` (the analyses, and the
  seconds spent in each part under "timings"), `lca_records.npz` (every
  accumulated array, `np.load`-able without pickle), the PNG views,
  `metrics.jsonl`, Orbax checkpoints (every 10 epochs and at the end unless
  `config.checkpoint_every` says otherwise) and, if `config.stream`,
  `lca_<set>.npy`. Rerunning the same command resumes.

  With `config.compile_cache`, JAX's persistent compilation cache is turned on
  (for the whole process) in that directory: a rerun with the same shapes
  skips XLA compilation, most of a short run's fixed cost.

  Returns:
    The summary dict, plus "records" (the arrays) and "state" (the final carry).
  """
  t0 = time.perf_counter()
  if config.epochs < 1:
    raise JaxnnError(f"epochs must be positive, got {config.epochs}")
  if not (math.isfinite(config.weight_decay) and config.weight_decay >= 0):
    raise JaxnnError(f"weight decay must be >= 0, got {config.weight_decay}")
  if config.compile_cache:
    cache = pathlib.Path(config.compile_cache).expanduser()
    jax.config.update("jax_compilation_cache_dir", str(cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  if dataset is None:
    dataset = load_dataset(
      config.dataset,
      seed=config.seed,
      validation_size=config.validation_size,
      max_train=config.max_train,
      data_dir=config.data_dir,
    )
  dataset = _as_dataset(dataset)
  if dataset.num_classes is None:
    raise JaxnnError(f"{dataset.name} has no class labels; `jaxnn lca` trains classifiers")
  if config.validation_lca and not len(dataset.validation):
    raise JaxnnError(
      f"{dataset.name} has no validation examples; set a validation size "
      "or turn validation LCA off (--no-validation)"
    )
  options = compiler_options(config.fast_compile)
  model, layer_order, model_name = _as_model(model, config, dataset)
  optimizer = make_optimizer(config.optimizer, config.learning_rate, momentum=config.momentum)
  dp = data_parallel(config.batch_size, config.num_devices)
  batcher = EpochBatcher(dataset.train, config.batch_size, config.seed)
  num_steps = config.epochs * batcher.steps_per_epoch
  splits = {"train": _subset(dataset.train, config.lca_train_subset, config.seed)}
  if config.validation_lca:
    splits["validation"] = dataset.validation
  eval_set = make_eval_sets(list(splits.values()), config.chunk_size, dp.num_devices)
  names = tuple(splits)
  stem = None
  lca_set = eval_set  # what the accumulator evaluates: without the features 0 everywhere (stem)
  if config.stem and model_name == "fc":
    stem = fc_stem(model.params)
    check_stem(model, stem, eval_set.x[0], seed=config.seed, compiler_options=options)
    stem, lca_set = drop_zero_features(stem, eval_set)
  stream = None
  if config.stream:
    if workdir is None:
      raise JaxnnError("streaming the full LCA array needs an output directory")
    # Existing stream files, then the run directory (claimed for a new run, as `run_loop` will)
    # are checked before a stream file is created: a refused directory is left unchanged.
    # In a multi-process job process 0 alone checks and writes the files (every process holds
    # the whole replicated LCA row); the others' callback does nothing, so all run one program.
    directory = pathlib.Path(workdir)
    on_leader(lambda: check_stream_files(directory, num_steps, count_params(model.params), names))
    checkpointer = Checkpointer(directory, config.run_identity())
    resume_step = checkpointer.latest_step() or 0
    checkpointer.close()
    opened: list[LCAStream] = []
    on_leader(
      lambda: opened.append(
        LCAStream(directory, num_steps, count_params(model.params), names, resume_step=resume_step)
      )
    )
    stream = opened[0] if opened else _skip_row
  accumulator = lca_accumulator(
    model,
    num_steps,
    set_names=names,
    method=config.method,
    threshold=config.threshold,
    max_splits=config.max_splits,
    num_tracked=config.num_tracked,
    seed=config.seed,
    chunk_sharding=dp.batch if dp.num_devices > 1 else None,
    stream=stream,
    stem=stem,
    layer_order=layer_order,
  )
  state = init_train_state(model, optimizer, config.seed)
  timings = {"setup": time.perf_counter() - t0}
  lca_state = jax.jit(accumulator.init, compiler_options=options)(
    model.params, model.state, dp.replicate(lca_set)
  )
  step = with_lca(make_train_step(model, optimizer, weight_decay=config.weight_decay), accumulator)
  state, lca_state = run_loop(
    step,
    (state, lca_state),
    batcher,
    num_steps,
    dp=dp,
    workdir=workdir,
    run_config=config.run_identity(),
    log_every=config.log_every,
    checkpoint_every=config.checkpoint_every or 10 * batcher.steps_per_epoch,
    progress=config.progress,
    resume_from_previous=config.resume_from_previous,
    description="lca",
    extra_args=(lca_set,),
    compiler_options=options,
  )
  if isinstance(stream, LCAStream):
    jax.effects_barrier()  # every row written before the flush
    stream.flush()
  timings["train_with_lca"] = time.perf_counter() - t0 - sum(timings.values())
  records = records_to_numpy(accumulator, lca_state)
  summary = summarize(records, names, config.threshold, config.num_shuffles)
  timings["analyses"] = time.perf_counter() - t0 - sum(timings.values())
  # Batches of the LCA chunk size: one compiled evaluation step serves the LCA sets.
  evaluate = make_evaluator(model, dp, batch_size=eval_set.x.shape[1], compiler_options=options)
  for split in ("train", "validation", "test"):
    if not len(getattr(dataset, split)):
      continue
    for k, v in evaluate(state.params, state.model_state, getattr(dataset, split)).items():
      summary[f"{split}_{k}"] = v
  timings["evaluation"] = time.perf_counter() - t0 - sum(timings.values())
  summary.update(
    dataset=dataset.name,
    model=model_name,
    params=count_params(model.params),
    steps=num_steps,
    epochs=config.epochs,
    devices=dp.num_devices,
    lca_examples={n: len(s) for n, s in splits.items()},
    config=dataclasses.asdict(config),
    data=dataset.info,
  )
  if workdir is not None and is_leader():  # one writer in a multi-process job
    workdir = pathlib.Path(workdir)
    # The keys are record names, never savez's allow_pickle (which mypy cannot rule out).
    np.savez(workdir / "lca_records.npz", **records)  # type: ignore[arg-type]
    if config.plots:
      summary["plots"] = [p.name for p in plot_all(records, names, workdir)]
    timings["write"] = time.perf_counter() - t0 - sum(timings.values())
  summary["seconds"] = time.perf_counter() - t0
  summary["timings"] = timings
  if workdir is not None and is_leader():
    write_json_atomic(pathlib.Path(workdir) / "summary.json", summary)
  return {**summary, "records": records, "state": (state, lca_state)}

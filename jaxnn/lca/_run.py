"""`run_lca(LCAConfig(...), workdir)`: train a network and allocate its loss change.

The job behind `jaxnn lca`: the foundation's train step wrapped by the LCA
accumulator, driven by `jaxnn.train.run_loop` (checkpoints, resume, metrics),
then the analyses and plots. The default reproduces the paper's MNIST-FC
(784-100-50-10, SGD lr 0.01 momentum 0.9, batch 250) on the offline mnist5k.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

import jax
import numpy as np
from flax import nnx

from jaxnn import models
from jaxnn._errors import JaxnnError
from jaxnn.configs import LCAConfig
from jaxnn.data import EpochBatcher, Split, load_dataset
from jaxnn.lca._accumulate import (
  check_stem,
  drop_zero_features,
  fc_stem,
  lca_accumulator,
  make_eval_sets,
  with_lca,
)
from jaxnn.lca._analysis import records_to_numpy, summarize
from jaxnn.lca._plots import plot_all
from jaxnn.lca._stream import LCAStream
from jaxnn.models import count_params
from jaxnn.train import (
  data_parallel,
  from_nnx,
  init_train_state,
  make_evaluator,
  make_optimizer,
  make_train_step,
  run_loop,
  write_json_atomic,
)


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


def init_model(config: LCAConfig, input_shape, num_classes: int) -> nnx.Module:
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


def run_lca(config: LCAConfig, workdir: str | pathlib.Path | None = None, dataset=None) -> dict:
  """Trains `config`'s network with LCA accumulated at every iteration.

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
  if dataset.num_classes is None:
    raise JaxnnError(f"{dataset.name} has no class labels; `jaxnn lca` trains classifiers")
  if config.validation_lca and not len(dataset.validation):
    raise JaxnnError(
      f"{dataset.name} has no validation examples; set a validation size "
      "or turn validation LCA off (--no-validation)"
    )
  options = compiler_options(config.fast_compile)
  model = from_nnx(init_model(config, dataset.input_shape, dataset.num_classes))
  optimizer = make_optimizer(config.optimizer, config.learning_rate, momentum=config.momentum)
  dp = data_parallel(config.batch_size, config.num_devices)
  batcher = EpochBatcher(dataset.train, config.batch_size, config.seed)
  num_steps = config.epochs * batcher.steps_per_epoch
  splits = {"train": _subset(dataset.train, config.lca_train_subset, config.seed)}
  if config.validation_lca:
    splits["validation"] = dataset.validation
  eval_set = make_eval_sets(list(splits.values()), config.chunk_size, dp.num_devices)
  names = tuple(splits)
  stream = None
  if config.stream:
    if workdir is None:
      raise JaxnnError("streaming the full LCA array needs an output directory")
    stream = LCAStream(workdir, num_steps, count_params(model.params), names)
  stem = None
  lca_set = eval_set  # what the accumulator evaluates: without the features 0 everywhere (stem)
  if config.stem and config.model == "fc":
    stem = fc_stem(model.params)
    check_stem(model, stem, eval_set.x[0], seed=config.seed, compiler_options=options)
    stem, lca_set = drop_zero_features(stem, eval_set)
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
    description="lca",
    extra_args=(lca_set,),
    compiler_options=options,
  )
  if stream is not None:
    jax.effects_barrier()  # every row written before the flush
    stream.flush()
  timings["train_with_lca"] = time.perf_counter() - t0 - sum(timings.values())
  records = records_to_numpy(accumulator, lca_state)
  summary = summarize(records, names, config.threshold, config.num_shuffles)
  timings["analyses"] = time.perf_counter() - t0 - sum(timings.values())
  # Batches of the LCA chunk size: one compiled evaluation step serves the LCA sets.
  evaluate = make_evaluator(model, dp, batch_size=eval_set.x.shape[1], compiler_options=options)
  for split in ("train", "validation", "test"):
    for k, v in evaluate(state.params, state.model_state, getattr(dataset, split)).items():
      summary[f"{split}_{k}"] = v
  timings["evaluation"] = time.perf_counter() - t0 - sum(timings.values())
  summary.update(
    dataset=dataset.name,
    model=config.model,
    params=count_params(model.params),
    steps=num_steps,
    epochs=config.epochs,
    devices=dp.num_devices,
    lca_examples={n: len(s) for n, s in splits.items()},
    config=dataclasses.asdict(config),
    data=dataset.info,
  )
  if workdir is not None:
    workdir = pathlib.Path(workdir)
    np.savez(workdir / "lca_records.npz", **records)
    if config.plots:
      summary["plots"] = [p.name for p in plot_all(records, names, workdir)]
    timings["write"] = time.perf_counter() - t0 - sum(timings.values())
  summary["seconds"] = time.perf_counter() - t0
  summary["timings"] = timings
  if workdir is not None:
    write_json_atomic(workdir / "summary.json", summary)
  return {**summary, "records": records, "state": (state, lca_state)}

"""d_int90 sweeps: train every (d, seed) config, resumably, and find d_int90.

`run_sweep(SweepConfig(...), out_dir)` is what `jaxnn subspace sweep` runs. It
trains the configs in programs of up to `configs_per_program` configs (one
vmapped, compiled program each, split across the local devices), saves every
finished program's configs atomically in `out_dir/configs/`, and writes
`results.json`, `results.csv` and `accuracy_vs_d.png`. Rerunning the same
command skips every saved config; because the configs left are chunked exactly
as an uninterrupted sweep chunks them, the final files are the same.

References:
  Li, Farkhoor, Liu, Yosinski. "Measuring the Intrinsic Dimension of Objective
  Landscapes", ICLR 2018 (d_int90, individual and global baselines).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import pathlib
import sys
from collections.abc import Sequence

import numpy as np

from jaxnn._errors import JaxnnError
from jaxnn.configs import SweepConfig
from jaxnn.subspace import _search
from jaxnn.subspace._projections import PROJECTIONS, get_projection
from jaxnn.subspace._sweep_engine import (
  direct_stack,
  make_stack_evaluator,
  pad_configs,
  subspace_stack,
  train_stack,
  vmap_chunk,
)

BASELINE_KINDS = ("individual", "global")


def validate(config: SweepConfig) -> None:
  """Raises `JaxnnError` for settings that cannot run, saying what to change."""
  if isinstance(config.baseline, str) and config.baseline != "individual":
    raise JaxnnError(
      f"baseline must be 'individual' or a number (a global accuracy), got {config.baseline!r}"
    )
  if not isinstance(config.baseline, str) and not 0 < float(config.baseline) <= 1:
    raise JaxnnError(f"a global baseline is an accuracy in (0, 1], got {config.baseline}")
  if config.dims is not None and (not config.dims or min(config.dims) < 1):
    raise JaxnnError(f"dims must be positive integers, got {config.dims}")
  if config.configs_per_vmap is not None and config.configs_per_vmap < 1:
    raise JaxnnError(f"configs_per_vmap must be at least 1, got {config.configs_per_vmap}")
  for name in ("seeds", "steps", "batch_size", "configs_per_program", "d_min"):
    if getattr(config, name) is not None and getattr(config, name) < 1:
      raise JaxnnError(f"{name} must be at least 1, got {getattr(config, name)}")
  if not 0 < config.fraction <= 1:
    raise JaxnnError(f"fraction must be in (0, 1], got {config.fraction}")
  if config.projection not in PROJECTIONS:
    raise JaxnnError(
      f"unknown projection {config.projection!r}; choose from {', '.join(PROJECTIONS)}"
    )
  for lr in (config.learning_rate, config.baseline_learning_rate):
    if lr is not None and not lr > 0:
      raise JaxnnError(f"learning rates must be positive, got {lr}")


def programs_size(model: str, platform: str, num_devices: int = 1) -> int:
  """Default configs per compiled program: 16; one per device for conv models on a CPU.

  On a CPU, XLA runs a LeNet train step 5x slower inside the `jax.lax.map` loop
  that trains a program's configs one after another (239 vs 46 ms per step at
  1 thread, mnist5k, batch 128) and 1.4x slower per config with two configs
  unrolled into one program (66 vs 46 ms); a program of one config has no loop.
  FC models gain from 16 configs per program (benchmarks/subspace_vmap.py).
  """
  return num_devices if platform == "cpu" and model != "fc" else 16


def _program_name(configs: Sequence[tuple[int, int]]) -> str:
  text = json.dumps(sorted(configs))
  return f"program_{configs[0][0]}-{configs[-1][0]}_{hashlib.sha1(text.encode()).hexdigest()[:10]}"


def _check_identity(out: pathlib.Path, config: SweepConfig) -> None:
  from jaxnn.train import write_json_atomic

  path = out / "sweep.json"
  if not path.exists():
    write_json_atomic(path, config.identity())
    return
  try:
    saved = json.loads(path.read_text())
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise JaxnnError(f"{path} is corrupt ({e}); move {out} away or use another --out") from None
  now = config.identity()
  diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
  if diff:
    details = "; ".join(f"{k}: saved {saved.get(k)!r}, now {now.get(k)!r}" for k in diff)
    raise JaxnnError(
      f"{out} holds a sweep with other settings ({details}). Nothing was changed: "
      "use another --out, or the same settings to resume it."
    )


class Sweep:
  """The state of one sweep directory: the data, the model, and the configs already done."""

  def __init__(self, config: SweepConfig, out: str | pathlib.Path):
    import jax

    from jaxnn.data import load_dataset
    from jaxnn.models import count_params, create_model
    from jaxnn.train import data_parallel, from_nnx, make_optimizer

    validate(config)
    self.config, self.out = config, pathlib.Path(out)
    self.data = load_dataset(
      config.dataset,
      seed=config.seed,
      validation_size=config.validation_size,
      shuffled_pixels=config.shuffled_pixels,
      shuffled_labels=config.shuffled_labels,
      max_train=config.max_train,
      data_dir=config.data_dir,
    )
    if self.data.num_classes is None or len(self.data.validation) == 0:
      raise JaxnnError(
        f"{config.dataset} needs class labels and a validation split for d_int90; "
        "set --validation-size"
      )
    self.model_init = lambda key: from_nnx(
      create_model(
        config.model, self.data.input_shape, self.data.num_classes, seed=key, widths=config.widths
      )
    )
    self.num_params = count_params(self.model_init(jax.random.PRNGKey(0)).params)
    self.projection = get_projection(config.projection)
    self.optimizer = make_optimizer("adam", config.learning_rate)
    self.baseline_optimizer = make_optimizer(
      "adam", config.baseline_learning_rate or config.learning_rate
    )
    devices = config.num_devices or jax.local_device_count()
    self.configs_per_program = config.configs_per_program or programs_size(
      config.model, jax.default_backend(), devices
    )
    self.dp = data_parallel(None, devices)
    _check_identity(self.out, config)
    self.done: dict[tuple[int, int], dict] = {}
    for path in sorted((self.out / "configs").glob("program_*.json")):
      try:
        records = json.loads(path.read_text())["configs"]
      except (json.JSONDecodeError, UnicodeDecodeError, KeyError) as e:
        raise JaxnnError(
          f"{path} is not a sweep program file ({type(e).__name__}: {e}); move it "
          "away to train its configs again"
        ) from e
      self.done.update({(r["d"], r["seed"]): r for r in records})

  def _train_program(self, member, stack, seeds, description, optimizer):
    chunk = self.config.configs_per_vmap or vmap_chunk(len(seeds) // self.dp.num_devices)
    stack = train_stack(
      member,
      stack,
      seeds,
      self.data.train,
      self.config.steps,
      dp=self.dp,
      optimizer=optimizer,
      batch_size=self.config.batch_size,
      weight_decay=self.config.weight_decay,
      chunk=chunk,
      progress=self.config.progress,
      description=description,
    )
    evaluate = make_stack_evaluator(member, self.dp, chunk=chunk)
    return {
      split: evaluate(stack, getattr(self.data, split)) for split in ("train", "validation", "test")
    }

  def _record(self, metrics, i, **fields) -> dict:
    return {
      **fields,
      **{f"{split}_{k}": float(v[i]) for split, m in metrics.items() for k, v in m.items()},
      "steps": self.config.steps,
      "epochs": self.config.steps / (len(self.data.train) // self.config.batch_size),
    }

  def train_configs(self, configs: Sequence[tuple[int, int]]) -> list[dict]:
    """Trains the (d, seed) configs not done yet, program by program; returns all records.

    With `progress`, each program shows a progress bar on a terminal and every
    saved program prints one line to stderr (also when logging to a file).
    """
    from jaxnn.train import write_json_atomic

    todo = [c for c in configs if c not in self.done]
    programs = program_chunks(todo, self.configs_per_program)
    for k, chunk in enumerate(programs, 1):
      padded = pad_configs(chunk, self.dp.num_devices)
      dims, seeds = [d for d, _ in padded], [s for _, s in padded]
      member, stack = subspace_stack(self.model_init, self.projection, dims, seeds, self.optimizer)
      label = f"program {k}/{len(programs)}: d={chunk[0][0]}..{chunk[-1][0]} ({len(chunk)} configs)"
      metrics = self._train_program(member, stack, seeds, label, self.optimizer)
      name = _program_name(chunk)
      records = [
        self._record(
          metrics,
          i,
          d=d,
          seed=s,
          projection=self.config.projection,
          D=self.num_params,
          d_allocated=max(dims),
          program=name,
        )
        for i, (d, s) in enumerate(chunk)
      ]
      write_json_atomic(self.out / "configs" / f"{name}.json", {"configs": records})
      self.done.update({(r["d"], r["seed"]): r for r in records})
      if self.config.progress:
        accuracy = ", ".join(
          f"d={r['d']} seed={r['seed']}: {r['validation_accuracy']:.4f}" for r in records
        )
        print(f"{label} saved; validation accuracy {accuracy}", file=sys.stderr, flush=True)
    return [self.done[c] for c in configs]

  def baseline(self) -> tuple[float, list[dict]]:
    """The baseline accuracy and, for "individual", the normal training runs behind it."""
    from jaxnn.train import write_json_atomic

    if self.config.baseline_kind == "global":
      return float(self.config.baseline), []
    path = self.out / "baseline.json"
    saved = {r["seed"]: r for r in json.loads(path.read_text())["runs"]} if path.exists() else {}
    todo = [s for s in range(self.config.seeds) if s not in saved]
    for start in range(0, len(todo), self.configs_per_program):
      chunk = todo[start : start + self.configs_per_program]
      seeds = pad_configs(chunk, self.dp.num_devices)
      member, stack = direct_stack(self.model_init, seeds, self.baseline_optimizer)
      metrics = self._train_program(
        member, stack, seeds, f"baseline ({len(chunk)} seed(s))", self.baseline_optimizer
      )
      saved.update(
        {s: self._record(metrics, i, seed=s, D=self.num_params) for i, s in enumerate(chunk)}
      )
      write_json_atomic(path, {"runs": [saved[s] for s in sorted(saved)]})
    runs = [saved[s] for s in range(self.config.seeds)]
    return float(np.mean([r["validation_accuracy"] for r in runs])), runs


def program_chunks(
  configs: Sequence[tuple[int, int]], size: int, max_padding: float = 2.0
) -> list[list[tuple[int, int]]]:
  """Consecutive (d, seed) configs, sorted by d, grouped into programs of at most `size`.

  A program pads every config to its largest d, so it grows only while its
  padded dims (count x largest d) stay within `max_padding` x the sum of its
  dims: configs of very different d (an automatic search's grid from 10 to D)
  do not all pay for the largest one, while seeds of one d always share.
  """
  programs: list[list[tuple[int, int]]] = []
  for config in configs:
    program = programs[-1] if programs else []
    dims = [d for d, _ in program] + [config[0]]
    if program and len(program) < size and len(dims) * max(dims) <= max_padding * sum(dims):
      program.append(config)
    else:
      programs.append([config])
  return programs


def config_grid(dims: Sequence[int], seeds: int) -> list[tuple[int, int]]:
  """Every (d, seed), sorted by d so that a program pads little."""
  return [(d, s) for d in sorted(set(dims)) for s in range(seeds)]


def run_sweep(config: SweepConfig, out: str | pathlib.Path) -> dict:
  """Runs (or resumes) a sweep; writes and returns `results.json`'s content."""
  from jaxnn.subspace._plots import plot_sweep
  from jaxnn.train import write_json_atomic

  sweep = Sweep(config, out)
  baseline, baseline_runs = sweep.baseline()
  threshold = _search.threshold_for(baseline, config.fraction)
  search = None
  if config.dims is not None:
    records = sweep.train_configs(config_grid(config.dims, config.seeds))
  else:

    def evaluate(dims):
      return _search.mean_by_dim(sweep.train_configs(config_grid(dims, config.seeds)))

    found = _search.search_intrinsic_dim(
      evaluate,
      threshold,
      d_min=config.d_min,
      d_max=config.d_max or sweep.num_params,
      resolution=config.resolution,
      points_per_round=max(1, sweep.configs_per_program // config.seeds),
    )
    search = {"rounds": found.rounds, "bracket": found.bracket, "resolution": config.resolution}
    records = sweep.train_configs(config_grid(sorted(found.scores), config.seeds))
  means = _search.mean_by_dim(records)
  results = {
    "dataset": config.dataset,
    "model": config.model,
    "projection": config.projection,
    "D": sweep.num_params,
    "steps": config.steps,
    "baseline": baseline,
    "baseline_kind": config.baseline_kind,
    "baseline_runs": baseline_runs,
    "fraction": config.fraction,
    "threshold": threshold,
    "d_int90": _search.intrinsic_dim(means, threshold),
    "mean_validation_accuracy_by_d": {str(d): a for d, a in means.items()},
    "search": search,
    "settings": config.identity(),
    "configs": records,
  }
  out = pathlib.Path(out)
  write_json_atomic(out / "results.json", results)
  _write_atomic_text(out / "results.csv", records_csv(records))
  if config.plots:
    plot_sweep(results, out / "accuracy_vs_d.png")
  return results


CSV_COLUMNS = (
  "d",
  "seed",
  "projection",
  "validation_accuracy",
  "validation_loss",
  "test_accuracy",
  "train_accuracy",
  "train_loss",
  "steps",
  "epochs",
  "D",
  "d_allocated",
  "program",
)


def records_csv(records: Sequence[dict]) -> str:
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
  writer.writeheader()
  writer.writerows(records)
  return buffer.getvalue()


def _write_atomic_text(path: pathlib.Path, text: str) -> None:
  tmp = path.with_name(f".{path.name}.tmp")
  tmp.write_text(text)
  tmp.replace(path)

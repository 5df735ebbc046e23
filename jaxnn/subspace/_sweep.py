"""d_int90 sweeps: train every (d, seed) config, resumably, and find d_int90.

`run_sweep(SweepConfig(...), out_dir)` is what `jaxnn subspace sweep` runs. It
trains the configs in programs of up to `configs_per_program` configs (one
vmapped, compiled program each, split across the local devices), saves every
finished program's configs atomically in `out_dir/configs/`, and writes
`results.json`, `results.csv` and `accuracy_vs_d.png`. Rerunning the same
command skips every saved config; because the configs left are chunked exactly
as an uninterrupted sweep chunks them, the final files are the same.

On several processes (`jax.distributed.initialize`, see
`jaxnn.train.initialize_distributed`) every process runs the same sweep: each
program's configs are split over the devices of all processes, and process 0
alone reads and writes `out_dir`. A config's numbers do not depend on the
device it ran on, so the results files are byte for byte the same on any
number of processes and devices, and a sweep stopped on N processes can be
finished on M.

References:
  Li, Farkhoor, Liu, Yosinski. "Measuring the Intrinsic Dimension of Objective
  Landscapes", ICLR 2018 (d_int90, individual and global baselines).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import pathlib
import time
from collections.abc import Callable, Sequence

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
from jaxnn.train import _multihost

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
    if lr is not None and not (lr > 0 and math.isfinite(lr)):
      raise JaxnnError(f"learning rates must be positive, got {lr}")
  if not (config.weight_decay >= 0 and math.isfinite(config.weight_decay)):
    raise JaxnnError(f"weight decay must be a non-negative number, got {config.weight_decay}")
  if config.d_max is not None and config.d_max < config.d_min:
    raise JaxnnError(f"need d_min <= d_max, got d_min={config.d_min}, d_max={config.d_max}")


def check_dims(config: SweepConfig, D: int) -> None:
  """Raises `JaxnnError` for subspace dimensions above the model's parameter count D."""
  if config.dims is not None and max(config.dims) > D:
    raise JaxnnError(
      f"subspace dimension {max(config.dims)} exceeds the model's {D} parameters; "
      f"use dims of at most D={D}"
    )
  for name in ("d_min", "d_max"):
    if config.dims is None and (getattr(config, name) or 0) > D:
      raise JaxnnError(
        f"{name}={getattr(config, name)} exceeds the model's {D} parameters; the search "
        f"ends at D={D} by default"
      )


def programs_size(model: str, platform: str, num_devices: int = 1) -> int:
  """Default configs per compiled program: 16; one per device for conv models on a CPU.

  On a CPU, XLA runs a LeNet train step 5x slower inside the `jax.lax.map` loop
  that trains a program's configs one after another (239 vs 46 ms per step at
  1 thread, mnist5k, batch 128) and 1.4x slower per config with two configs
  unrolled into one program (66 vs 46 ms); a program of one config has no loop.
  FC models gain from 16 configs per program, most for small ones
  (benchmarks/subspace_vmap.py).
  """
  return num_devices if platform == "cpu" and model != "fc" else 16


def _program_name(configs: Sequence[tuple[int, int]]) -> str:
  text = json.dumps(sorted(configs))
  return f"program_{configs[0][0]}-{configs[-1][0]}_{hashlib.sha1(text.encode()).hexdigest()[:10]}"


def _read_json(path: pathlib.Path, what: str):
  """A JSON file the sweep wrote, or a one-line `JaxnnError` naming it if it is damaged."""
  try:
    return json.loads(path.read_text())
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise JaxnnError(
      f"{path} is not a {what} ({type(e).__name__}: {e}); nothing was changed: "
      "move it away to redo its part of the sweep, or use another --out"
    ) from None


def _check_identity(out: pathlib.Path, identity: dict) -> None:
  from jaxnn.train import write_json_atomic

  path = out / "sweep.json"
  if not path.exists():
    write_json_atomic(path, identity)
    return
  saved = _read_json(path, "sweep settings file")
  if not isinstance(saved, dict):
    raise JaxnnError(
      f"{path} is not a sweep settings file (a JSON object); nothing was changed: "
      f"move {out} away or use another --out"
    )
  diff = sorted(k for k in set(saved) | set(identity) if saved.get(k) != identity.get(k))
  if diff:
    details = "; ".join(f"{k}: saved {saved.get(k)!r}, now {identity.get(k)!r}" for k in diff)
    raise JaxnnError(
      f"{out} holds a sweep with other settings ({details}). Nothing was changed: "
      "use another --out, or the same settings to resume it."
    )


def _load_programs(out: pathlib.Path, identity: dict) -> list[dict]:
  """Checks the directory's settings and returns the records of every saved program."""
  _check_identity(out, identity)
  records: list[dict] = []
  for path in sorted((out / "configs").glob("program_*.json")):
    content = _read_json(path, "sweep program file")
    try:
      got = content["configs"]
      if not all(isinstance(r["d"], int) and isinstance(r["seed"], int) for r in got):
        raise TypeError("d and seed must be integers")
    except (KeyError, TypeError) as e:
      raise JaxnnError(
        f"{path} is not a sweep program file ({type(e).__name__}: {e}); nothing was changed: "
        "move it away to train its configs again"
      ) from None
    records.extend(got)
  return records


def _load_baseline(path: pathlib.Path) -> list[dict]:
  if not path.exists():
    return []
  content = _read_json(path, "baseline file")
  try:
    runs = content["runs"]
    if not all(isinstance(r["seed"], int) and "validation_accuracy" in r for r in runs):
      raise TypeError("every run needs an integer seed and a validation_accuracy")
  except (KeyError, TypeError) as e:
    raise JaxnnError(
      f"{path} is not a baseline file ({type(e).__name__}: {e}); nothing was changed: "
      "move it away to train the baseline again"
    ) from None
  return runs


def _as_dataset(data, name: str):
  """A `Dataset` from a `Dataset` or a mapping of split name -> (x, y) arrays."""
  from jaxnn.data import Dataset, Split

  if isinstance(data, Dataset):
    return data
  if not isinstance(data, dict) or not {"train", "validation"} <= set(data):
    raise JaxnnError(
      "data must be a jaxnn.data.Dataset or a dict with 'train' and 'validation' (and "
      "optionally 'test') (x, y) pairs of arrays"
    )
  splits = {}
  for split in ("train", "validation", "test"):
    x, y = data.get(split, (data["train"][0][:0], data["train"][1][:0]))
    x, y = np.asarray(x, np.float32), np.asarray(y)
    if len(x) != len(y) or not np.issubdtype(y.dtype, np.integer):
      raise JaxnnError(
        f"data[{split!r}] needs as many integer class labels as inputs, got {len(x)} "
        f"inputs and {len(y)} labels of type {y.dtype}"
      )
    splits[split] = Split(x, y.astype(np.int32))
  num_classes = int(max(int(s.y.max()) for s in splits.values() if len(s)) + 1)
  return Dataset(name, splits["train"], splits["validation"], splits["test"], num_classes)


def _data_digest(data) -> str:
  digest = hashlib.sha1()
  for split in (data.train, data.validation, data.test):
    for a in split:
      a = np.ascontiguousarray(a)
      digest.update(f"{a.dtype}{a.shape}".encode())
      digest.update(a.tobytes())
  return digest.hexdigest()


def _as_model_init(model: Callable) -> Callable:
  """`model(key)` returning a `FunctionalModel` or a Flax NNX module, as a FunctionalModel."""
  from flax import nnx

  from jaxnn.train import FunctionalModel, from_nnx

  def model_init(key):
    built = model(key)
    if isinstance(built, FunctionalModel):
      return built
    if isinstance(built, nnx.Module):
      return from_nnx(built)
    raise JaxnnError(
      f"the model factory must return a jaxnn.train.FunctionalModel or a Flax NNX module, "
      f"got {type(built).__name__}"
    )

  return model_init


class Sweep:
  """The state of one sweep directory: the data, the model, and the configs already done.

  Args:
    config: the sweep's settings.
    out: the sweep directory.
    model: optional `model(key) -> FunctionalModel or NNX module` used instead
      of `config.model` (which then only names it in the results).
    data: optional `Dataset`, or {"train": (x, y), "validation": (x, y),
      "test": (x, y)} arrays with integer labels, used instead of
      `config.dataset` (which then only names it).
  """

  def __init__(
    self,
    config: SweepConfig,
    out: str | pathlib.Path,
    model: Callable | None = None,
    data=None,
  ):
    import jax

    from jaxnn.data import load_dataset
    from jaxnn.models import count_params, create_model
    from jaxnn.train import data_parallel, from_nnx, make_optimizer

    validate(config)
    self.config, self.out = config, pathlib.Path(out)
    if data is None:
      self.data = load_dataset(
        config.dataset,
        seed=config.seed,
        validation_size=config.validation_size,
        shuffled_pixels=config.shuffled_pixels,
        shuffled_labels=config.shuffled_labels,
        max_train=config.max_train,
        data_dir=config.data_dir,
      )
    else:
      self.data = _as_dataset(data, config.dataset)
    if self.data.num_classes is None or len(self.data.validation) == 0:
      raise JaxnnError(
        f"{config.dataset} needs class labels and a validation split for d_int90; "
        "set --validation-size"
      )
    if model is None:
      num_classes = self.data.num_classes
      self.model_init = lambda key: from_nnx(
        create_model(
          config.model, self.data.input_shape, num_classes, seed=key, widths=config.widths
        )
      )
    else:
      self.model_init = _as_model_init(model)
    self.num_params = count_params(self.model_init(jax.random.PRNGKey(0)).params)
    check_dims(config, self.num_params)
    self.identity = config.identity()
    if model is not None:
      self.identity["D"] = self.num_params
    if data is not None:
      self.identity["data_sha1"] = _data_digest(self.data)
    self.projection = get_projection(config.projection)
    self.optimizer = make_optimizer("adam", config.learning_rate)
    self.baseline_optimizer = make_optimizer(
      "adam", config.baseline_learning_rate or config.learning_rate
    )
    devices = config.num_devices or jax.device_count()
    if jax.process_count() > 1 and devices != jax.device_count():
      raise JaxnnError(
        f"a sweep on {jax.process_count()} processes uses all their {jax.device_count()} "
        f"devices; leave out --devices (got {devices})"
      )
    self.configs_per_program = config.configs_per_program or programs_size(
      config.model, jax.default_backend(), devices
    )
    self.dp = data_parallel(None, devices)
    self.progress = config.progress and _multihost.is_leader()
    records = _multihost.on_leader(lambda: _load_programs(self.out, self.identity))
    self.done: dict[tuple[int, int], dict] = {(r["d"], r["seed"]): r for r in records}

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
      progress=self.progress,
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

  def _log_time(self, program: str, configs: int, padded: int, start: float) -> None:
    """Appends a program's wall time to `timings.jsonl` (kept out of the results files)."""
    import jax

    record = {
      "program": program,
      "configs": configs,
      "padded_configs": padded,
      "steps": self.config.steps,
      "processes": jax.process_count(),
      "devices": self.dp.num_devices,
      "seconds": round(time.perf_counter() - start, 3),
    }
    with open(self.out / "timings.jsonl", "a") as f:
      f.write(json.dumps(record) + "\n")

  def train_configs(self, configs: Sequence[tuple[int, int]]) -> list[dict]:
    """Trains the (d, seed) configs not done yet, program by program; returns all records.

    With `progress`, each program shows a progress bar on a terminal and every
    saved program prints one line to stderr (also when logging to a file).
    """
    from jaxnn.train import write_json_atomic

    todo = [c for c in configs if c not in self.done]
    programs = program_chunks(todo, self.configs_per_program)
    for k, chunk in enumerate(programs, 1):
      start = time.perf_counter()
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
      path = self.out / "configs" / f"{name}.json"

      def save():
        write_json_atomic(path, {"configs": records})
        self._log_time(name, len(chunk), len(padded), start)

      _multihost.on_leader(save)
      self.done.update({(r["d"], r["seed"]): r for r in records})
      if self.progress:
        accuracy = ", ".join(
          f"d={r['d']} seed={r['seed']}: {r['validation_accuracy']:.4f}" for r in records
        )
        _multihost.say(f"{label} saved; validation accuracy {accuracy}")
    return [self.done[c] for c in configs]

  def baseline(self) -> tuple[float, list[dict]]:
    """The baseline accuracy and, for "individual", the normal training runs behind it."""
    from jaxnn.train import write_json_atomic

    if self.config.baseline_kind == "global":
      return float(self.config.baseline), []
    path = self.out / "baseline.json"
    saved = {r["seed"]: r for r in _multihost.on_leader(lambda: _load_baseline(path))}
    todo = [s for s in range(self.config.seeds) if s not in saved]
    for first in range(0, len(todo), self.configs_per_program):
      start = time.perf_counter()
      chunk = todo[first : first + self.configs_per_program]
      seeds = pad_configs(chunk, self.dp.num_devices)
      member, stack = direct_stack(self.model_init, seeds, self.baseline_optimizer)
      metrics = self._train_program(
        member, stack, seeds, f"baseline ({len(chunk)} seed(s))", self.baseline_optimizer
      )
      saved.update(
        {s: self._record(metrics, i, seed=s, D=self.num_params) for i, s in enumerate(chunk)}
      )
      runs = [saved[s] for s in sorted(saved)]

      def save():
        write_json_atomic(path, {"runs": runs})
        self._log_time("baseline", len(chunk), len(seeds), start)

      _multihost.on_leader(save)
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


def run_sweep(
  config: SweepConfig,
  out: str | pathlib.Path,
  *,
  model: Callable | None = None,
  data=None,
) -> dict:
  """Runs (or resumes) a sweep; writes and returns `results.json`'s content.

  Args:
    config: the sweep's settings.
    out: the sweep directory (created; a rerun resumes it).
    model: your own model instead of `config.model`: `model(key)` builds it
      from a PRNG key and returns a `jaxnn.train.FunctionalModel` (e.g.
      `from_function(apply, params)`) or a Flax NNX module; it is called
      inside `jax.vmap` (its key may be traced). `config.model` then only
      names it, and a resumed sweep must have the same parameter count.
    data: your own data instead of `config.dataset`: a `jaxnn.data.Dataset`
      or {"train": (x, y), "validation": (x, y), "test": (x, y)} arrays
      (integer labels; "test" optional). `config.dataset` then only names it,
      and a resumed sweep must have the same arrays (their SHA-1 is recorded);
      the config's data options (`validation_size`, `max_train`, shuffling)
      are not applied to it.

  Returns:
    The content of `out/results.json`; with several processes every process
    returns it and process 0 alone writes the files.

  Example:
    >>> run_sweep(SweepConfig(dims=(10, 50)), "out",
    ...           model=lambda key: from_nnx(MyMLP(rngs=nnx.Rngs(key))),
    ...           data={"train": (x, y), "validation": (xv, yv)})  # doctest: +SKIP
  """
  from jaxnn.subspace._plots import plot_sweep
  from jaxnn.train import write_json_atomic

  sweep = Sweep(config, out, model=model, data=data)
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
      d_max=config.d_max or sweep.num_params,  # check_dims refused d_max > D
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
    "settings": sweep.identity,
    "configs": records,
  }
  out = pathlib.Path(out)

  def write():
    write_json_atomic(out / "results.json", results)
    _write_atomic_text(out / "results.csv", records_csv(records))
    if config.plots:
      plot_sweep(results, out / "accuracy_vs_d.png")

  _multihost.on_leader(write)
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

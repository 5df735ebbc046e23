"""`load_run(DIR)`: any command's run directory, finished or interrupted, in one call.

Every `jaxnn` command writes `DIR/config.json` (the full config it ran with);
training commands also write Orbax checkpoints, `metrics.jsonl` and, once
done, `summary.json`. `load_run` reads them back: the config as its dataclass,
the latest checkpoint's parameters (as the model's NNX module where jaxnn can
rebuild it, else the params pytree), the summary and the metrics.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any, NamedTuple

from jaxnn import _config
from jaxnn._errors import CheckpointError, JaxnnError


class Run(NamedTuple):
  """A run directory, read back.

  Attributes:
    path: the directory.
    command: the command that wrote it ("train", "coordconv classify", "lca",
      "subspace sweep", "pplm generate", "pplm train-discriminator").
    config: its config dataclass (`TrainConfig`, `TaskConfig`, ...).
    params: the latest checkpoint's trainable parameters as a pytree (None for
      a sweep or a generation, which keep none).
    model: the parameters in their NNX module when jaxnn can rebuild the
      network (its own models; the discriminator head for
      `train-discriminator`), else None.
    model_state: non-trainable variables (BatchNorm statistics), a pytree.
    step: the latest checkpoint's step (None without checkpoints).
    summary: `summary.json` (a sweep's `results.json`); None if unfinished.
    metrics: the `metrics.jsonl` records, in order.
    finished: whether the run wrote its summary.
  """

  path: pathlib.Path
  command: str
  config: Any
  params: Any
  model: Any
  model_state: Any
  step: int | None
  summary: dict | None
  metrics: list[dict]
  finished: bool


def _config_class(command: str):
  from jaxnn import configs

  head = command.split()[0]
  if command == "pplm train-discriminator":
    return configs.DiscriminatorConfig
  return {
    "train": configs.TrainConfig,
    "coordconv": configs.TaskConfig,
    "lca": configs.LCAConfig,
    "subspace": configs.SweepConfig,
    "pplm": configs.GenerateConfig,
  }[head]


def _read_json(path: pathlib.Path):
  try:
    return json.loads(path.read_text())
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise JaxnnError(f"{path} is corrupt ({e})") from None


def _guess_command(path: pathlib.Path, summary: dict | None) -> str:
  """The command of a directory written without a CLI config.json (a library call)."""
  if (path / "sweep.json").exists() or (path / "results.json").exists():
    return "subspace sweep"
  if (path / "samples.txt").exists():
    return "pplm generate"
  if (path / "head.safetensors").exists():
    return "pplm train-discriminator"
  if (path / "lca_records.npz").exists() or (summary and "lca_sum" in summary):
    return "lca"
  task = (summary or {}).get("task") or (summary or {}).get("config", {}).get("task")
  if task:
    verbs = {"classification": "classify", "regression": "regress", "rendering": "render"}
    return f"coordconv {verbs[task]}"
  return "train"


def _restore(path: pathlib.Path):
  """(step, the raw carry as nested dicts/lists) of the latest checkpoint, or (None, None)."""
  directory = path / "checkpoints"
  if not directory.is_dir():
    return None, None
  import orbax.checkpoint as ocp

  manager = ocp.CheckpointManager(
    directory.absolute(), options=ocp.CheckpointManagerOptions(create=False)
  )
  try:
    step = manager.latest_step()
    if step is None:
      return None, None
    try:
      if (directory / str(step) / "state").is_dir():  # the state beside jaxnn's own record
        restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
        return step, restored["state"]
      return step, manager.restore(step, args=ocp.args.StandardRestore())
    except Exception as e:  # Orbax raises many kinds for unreadable files
      raise CheckpointError(
        f"the checkpoint at step {step} in {directory} cannot be read ({type(e).__name__}); "
        "move it away to load an earlier one"
      ) from e
  finally:
    manager.close()


def _train_state(carry):
  """The `TrainState` fields of a carry: a train run's, or the first of (state, lca_state)."""
  if isinstance(carry, list | tuple):
    carry = carry[0]
  return carry


def _nnx_module(command: str, config, params, model_state):
  """The network with the restored variables, for jaxnn's own models; None otherwise."""
  from flax import nnx

  if command.startswith("coordconv"):
    from jaxnn.coordconv import create_task_model

    module = create_task_model(
      config.task,
      config.model,
      mul=config.mul,
      kernel_size=config.kernel_size,
      with_r=config.with_r,
      widths=config.widths,
      seed=config.seed,
    )
  else:
    from jaxnn.data import load_dataset
    from jaxnn.models import create_model

    data = load_dataset(
      config.dataset,
      seed=config.seed,
      validation_size=config.validation_size,
      max_train=config.max_train,
      data_dir=config.data_dir,
    )
    assert data.num_classes is not None  # the saved run trained a classifier on it
    module = create_model(
      config.model, data.input_shape, data.num_classes, seed=config.seed, widths=config.widths
    )
  # One state per filter, so three parts (nnx.split's annotation says any number).
  graphdef, param_state, rest = nnx.split(module, nnx.Param, ...)  # type: ignore[misc]
  try:
    nnx.replace_by_pure_dict(param_state, params)
    if model_state:
      nnx.replace_by_pure_dict(rest, model_state)
  except (KeyError, ValueError, TypeError):
    return None  # a model of the user's own, trained through the library: the pytree stands
  return nnx.merge(graphdef, param_state, rest)


def load_run(path: str | pathlib.Path, *, rebuild: bool = True) -> Run:
  """Reads a run directory of any `jaxnn` command, finished or interrupted.

  Args:
    path: the directory a command wrote (its `--out`).
    rebuild: also rebuild the NNX module holding the parameters (for jaxnn's
      own models; loads the dataset to know the input shape of `train` and
      `lca` runs). False returns the params pytree only.

  Returns:
    A `Run`: `config`, `params` (and `model`, `model_state`), `step`,
    `summary`, `metrics`, `finished`.

  Raises:
    JaxnnError: `path` is not a run directory, or a file in it is corrupt.

  Example:
    >>> run = jaxnn.load_run("runs/fc")           # doctest: +SKIP
    >>> run.config.learning_rate, run.summary["test_accuracy"]  # doctest: +SKIP
    >>> logits = run.model(x)                     # doctest: +SKIP
  """
  path = pathlib.Path(path).expanduser()
  if not path.is_dir():
    raise JaxnnError(f"no run directory at {path}")
  summary_path = next(
    (path / name for name in ("summary.json", "results.json") if (path / name).exists()), None
  )
  summary = _read_json(summary_path) if summary_path else None
  saved = _read_json(path / "config.json") if (path / "config.json").exists() else None
  if summary is None and saved is None and not (path / "checkpoints").is_dir():
    raise JaxnnError(f"{path} is not a jaxnn run (no config.json, summary.json or checkpoints/)")
  if isinstance(saved, dict) and isinstance(saved.get("config"), dict):
    command, values = saved["command"], saved["config"]
  else:  # a library run: the summary holds the config; else the identity the checkpoints keep
    command = _guess_command(path, summary)
    values = (summary or {}).get("config") or (summary or {}).get("settings") or saved or {}
    if command == "subspace sweep" and "data_seed" in values:
      values = {**values, "seed": values["data_seed"]}
  cls = _config_class(command)
  known = {f for f in cls.__dataclass_fields__}
  config = _config.from_dict(cls, {k: v for k, v in values.items() if k in known}, what=str(path))
  metrics = []
  if (path / "metrics.jsonl").exists():
    for line in (path / "metrics.jsonl").read_text().splitlines():
      if line.strip():
        metrics.append(json.loads(line))
  params = model = model_state = step = None
  if command == "pplm train-discriminator" and (path / "head.safetensors").exists():
    from jaxnn.pplm._attributes import load_discriminator

    model = load_discriminator(path / "head.safetensors")
    params = model
  else:
    step, carry = _restore(path)
    if carry is not None:
      state = _train_state(carry)
      params, model_state = state["params"], state.get("model_state") or {}
      custom = "custom" in ((summary or {}).get("model"), (summary or {}).get("architecture"))
      if rebuild and not custom:
        model = _nnx_module(command, config, params, model_state)
  return Run(
    path, command, config, params, model, model_state, step, summary, metrics, summary is not None
  )

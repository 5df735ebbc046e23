"""`TaskConfig`: one Not-so-Clevr run, and held-out regions (no JAX imported here)."""

from __future__ import annotations

import ast
import dataclasses
import operator
import pathlib
from typing import Any

import numpy as np

from jaxnn._config import configclass, setting
from jaxnn._errors import JaxnnError
from jaxnn.configs._common import DEVICES, HELP

TASKS = ("classification", "regression", "rendering")
MODELS = ("coordconv", "conv")
SPLITS = ("uniform", "quadrant")  # the paper's, in jaxnn.data.not_so_clevr
# What `--model conv` means per task: the paper's baseline for that task.
BASELINES = {"classification": "deconv", "regression": "conv", "rendering": "deconv"}
# Paper settings (Liu et al. 2018, S4 / S6): Adam, batch 16; CoordConv 50 epochs at
# lr 1e-3..1e-2, the deconv baseline 1,000 epochs.
PAPER_DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
  ("classification", "coordconv"): dict(epochs=50, learning_rate=1e-2),
  ("classification", "conv"): dict(epochs=1000, learning_rate=1e-3),
  ("regression", "coordconv"): dict(epochs=50, learning_rate=1e-2),
  ("regression", "conv"): dict(epochs=50, learning_rate=1e-3),
  ("rendering", "coordconv"): dict(epochs=50, learning_rate=1e-3),
  ("rendering", "conv"): dict(epochs=1000, learning_rate=1e-3),
}

SPLIT_HELP = (
  "held-out test region: uniform (the paper's random 25%%), quadrant (bottom-right "
  "centres), an expression in the square's centre x, y (4..59) such as "
  "'x < 20 and y < 20', or a .npy boolean mask (64x64 [y, x], or 3136 in sweep order)"
).replace("%%", "%")


@configclass
class TaskConfig:
  """One Not-so-Clevr run, as `jaxnn coordconv classify|regress|render` takes it."""

  task: str = setting(
    "classification", "classification, regression or rendering", choices=TASKS, cli=False
  )
  split: str = setting("quadrant", SPLIT_HELP, metavar="REGION")
  model: str = setting(
    "coordconv", "coordconv, or conv: the task's deconv/conv baseline", choices=MODELS
  )
  epochs: int | None = setting(
    None, HELP["epochs"], positive=True, none="the paper's: 50, 1000 for the deconv baselines"
  )
  learning_rate: float | None = setting(
    None, "Adam learning rate", flag="--lr", positive=True, none="the paper's for the task"
  )
  batch_size: int = setting(16, HELP["batch_size"], positive=True)
  lr_schedule: str = setting(
    "constant", "constant (the paper) or cosine decay to 0", choices=("constant", "cosine")
  )
  weight_decay: float = setting(0.0, "L2 on the kernels (Keras convention)", nonnegative=True)
  seed: int = setting(0, "random seed: initialization and batch order (splits never move)")
  mirror: bool = setting(False, "mirror the canvas on both axes (the quadrant split: top left)")
  mul: int = setting(1, "width multiplier of the baselines and the renderer", positive=True)
  kernel_size: int = setting(3, "deconv kernel (baseline) / renderer conv kernel", positive=True)
  with_r: bool = setting(False, "add the radius channel")
  widths: tuple[int, ...] | None = setting(
    None, "CoordConv classifier 1x1 conv widths, e.g. 8,8", positive=True, none="32,32,64,64"
  )
  eval_every: int = setting(1, "epochs between train/test evaluations", positive=True)
  train_examples: int | None = setting(
    None,
    "train on a random subset of this many examples (quick runs)",
    flag="--max-train",
    aliases=("--train-examples",),
    positive=True,
    none="all",
  )
  stop_at_perfect: bool = setting(False, "stop once test accuracy reaches 100%")
  max_seconds: float | None = setting(
    None, "stop at the first evaluation after this wall time", positive=True, none="no limit"
  )
  num_devices: int | None = setting(None, HELP["num_devices"], **DEVICES)
  progress: bool = setting(True, HELP["progress"])
  data_dir: str | None = setting(None, HELP["data_dir"], none="$JAXNN_DATA_DIR or ~/.cache/jaxnn")
  plots: bool = setting(True, HELP["plots"])
  resume_from_previous: bool = setting(False, HELP["resume_from_previous"])

  def __post_init__(self):
    if self.split not in SPLITS:
      held_out_mask(self.split)  # a bad expression or file fails here, before any work

  def resolved(self) -> TaskConfig:
    """Validates and fills the paper's defaults for unset fields."""
    defaults = PAPER_DEFAULTS[(self.task, self.model)]
    config = dataclasses.replace(
      self,
      epochs=self.epochs if self.epochs is not None else defaults["epochs"],
      learning_rate=self.learning_rate
      if self.learning_rate is not None
      else defaults["learning_rate"],
    )
    if not 0 <= config.weight_decay < 1:
      raise JaxnnError(f"weight decay must be in [0, 1), got {config.weight_decay}")
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
      "plots",
      "resume_from_previous",
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


# ---- held-out regions ----------------------------------------------------------------------

CANVAS, HALF_SIZE = 64, 4  # as jaxnn.data.not_so_clevr: centres 4..59


def centres() -> np.ndarray:
  """(3136, 2) int32 square centres (x, y) in the paper's sweep order (x outer, y inner)."""
  c = np.arange(HALF_SIZE, CANVAS - HALF_SIZE)
  return np.stack(np.meshgrid(c, c, indexing="ij"), -1).reshape(-1, 2).astype(np.int32)


_BINARY = {
  ast.Add: operator.add,
  ast.Sub: operator.sub,
  ast.Mult: operator.mul,
  ast.Div: operator.truediv,
  ast.FloorDiv: operator.floordiv,
  ast.Mod: operator.mod,
  ast.Pow: operator.pow,
  ast.BitAnd: operator.and_,
  ast.BitOr: operator.or_,
}
_COMPARE = {
  ast.Lt: operator.lt,
  ast.LtE: operator.le,
  ast.Gt: operator.gt,
  ast.GtE: operator.ge,
  ast.Eq: operator.eq,
  ast.NotEq: operator.ne,
}


def _evaluate(node, names: dict):
  """Arithmetic, comparisons, and/or/not over `names`: nothing else is evaluated."""
  if isinstance(node, ast.Expression):
    return _evaluate(node.body, names)
  if isinstance(node, ast.Name) and node.id in names:
    return names[node.id]
  if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
    return node.value
  if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
    return _BINARY[type(node.op)](_evaluate(node.left, names), _evaluate(node.right, names))
  if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
    return -_evaluate(node.operand, names)
  if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
    return ~np.asarray(_evaluate(node.operand, names), bool)
  if isinstance(node, ast.BoolOp):
    values = [np.asarray(_evaluate(v, names), bool) for v in node.values]
    combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
    out = values[0]
    for v in values[1:]:
      out = combine(out, v)
    return out
  if isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
    left, result = _evaluate(node.left, names), True
    for op, right_node in zip(node.ops, node.comparators):
      right = _evaluate(right_node, names)
      result = np.logical_and(result, _COMPARE[type(op)](left, right))
      left = right
    return result
  raise JaxnnError(
    f"unsupported in a region expression: {ast.unparse(node)!r}; use x, y, numbers, "
    "+ - * / % **, comparisons, and/or/not"
  )


def held_out_mask(region, locations: np.ndarray | None = None) -> np.ndarray:
  """Boolean (N,) mask of the held-out (test) centres of a custom region.

  Args:
    region: an expression in x, y (the square's centre, 4..59), e.g.
      "x < 20 and y < 20"; a path to a .npy boolean array, (64, 64) indexed
      [y, x] or (N,) in sweep order; a boolean array of those shapes; or a
      predicate `region(x, y) -> bool array` over arrays of centres.
    locations: (N, 2) centres (x, y); default every centre in sweep order.

  Raises:
    JaxnnError: the region cannot be read, or holds out nothing or everything.
  """
  locations = centres() if locations is None else np.asarray(locations)
  x, y = locations[:, 0], locations[:, 1]
  if isinstance(region, str) and region.endswith(".npy"):
    path = pathlib.Path(region).expanduser()
    try:
      region = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
      raise JaxnnError(f"cannot read the region mask {path}: {e}") from None
  if isinstance(region, str):
    try:
      tree = ast.parse(region, mode="eval")
    except SyntaxError:
      raise JaxnnError(
        f"split {region!r} is neither uniform, quadrant, a .npy mask nor an expression in "
        "x, y such as 'x < 20 and y < 20'"
      ) from None
    mask = _evaluate(tree, {"x": x, "y": y})
  elif callable(region):
    mask = region(x, y)
  else:
    mask = np.asarray(region)
    if mask.shape == (CANVAS, CANVAS):
      mask = mask[y, x]
  mask = np.broadcast_to(np.asarray(mask), x.shape) if np.ndim(mask) == 0 else np.asarray(mask)
  if mask.shape != x.shape or mask.dtype.kind not in "bi":
    raise JaxnnError(
      f"a region mask must be boolean, (64, 64) [y, x] or ({len(x)},), got {mask.dtype} "
      f"{mask.shape}"
    )
  mask = mask.astype(bool)
  if not mask.any() or mask.all():
    raise JaxnnError(
      f"the region holds out {int(mask.sum())} of {len(mask)} positions: it must leave "
      "some to train on and some to test"
    )
  return mask

"""The LCA of a given trajectory: parameter iterates saved by any training code.

`trajectory_lca(loss_fn, iterates)` allocates the loss change between
consecutive iterates theta_0, ..., theta_T to the parameters, the way the
original LCA pipeline did after training: the gradient at every iterate once
(the end point of step t is the start of t + 1), and the adaptive Simpson rule
(`adaptive_simpson`) or the first-order rule between them. Iterates are a
sequence of pytrees, or a directory of safetensors files written by
`save_iterate` (one per step, `step_<t>.safetensors`, never pickle). Under
`jax_enable_x64` with float64 iterates, everything runs in float64.

References:
  Lan, Liu, Zhou, Yosinski. "LCA: Loss Change Allocation for Neural Network
  Training", NeurIPS 2019. https://arxiv.org/abs/1909.01440
"""

from __future__ import annotations

import json
import os
import pathlib
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn._errors import JaxnnError
from jaxnn.lca._integrate import (
  MAX_SPLITS,
  THRESHOLD,
  Point,
  adaptive_simpson,
  check_max_splits,
  first_order,
)
from jaxnn.lca._layout import layer_names

PyTree = Any
_STEP_FILE = re.compile(r"step_(\d+)\.safetensors")


class TrajectoryLCA(NamedTuple):
  """The allocation of a trajectory of T steps.

  Attributes:
    lca: a pytree like the parameters, each leaf with a leading axis of T:
      A[t, i], the loss change of step t allocated to parameter i.
    loss_T1: L(theta_t), t = 0..T.
    error_T: L(theta_{t+1}) - L(theta_t) - sum_i A[t, i], per step.
    splits_T: Simpson intervals used per step (0 for first order).
  """

  lca: PyTree
  loss_T1: np.ndarray
  error_T: np.ndarray
  splits_T: np.ndarray


def save_iterate(directory: str | os.PathLike, step: int, params: PyTree) -> pathlib.Path:
  """Writes `params` as `directory/step_<step>.safetensors` for `trajectory_lca`.

  Keys are the leaves' paths joined by "/" ("dense0/kernel"); the dtype of
  each leaf is kept (float64 stays float64). Returns the file's path.
  """
  from safetensors.numpy import save_file

  if int(step) < 0:
    raise JaxnnError(f"an iterate's step must be >= 0, got {step}")
  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  leaves = jax.tree_util.tree_leaves_with_path(params)
  keys = ["/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in p) for p, _ in leaves]
  path = directory / f"step_{int(step):08d}.safetensors"
  tmp = path.with_suffix(".tmp")
  arrays = {k: np.array(v, order="C") for k, (_, v) in zip(keys, leaves)}
  # safetensors stores 0-d arrays as (1,): the shapes travel in the metadata.
  shapes = json.dumps({k: list(v.shape) for k, v in arrays.items()})
  save_file(arrays, str(tmp), metadata={"jaxnn_shapes": shapes})
  os.replace(tmp, path)
  return path


def _nest(flat: dict[str, np.ndarray]) -> dict:
  tree: dict = {}
  for key, value in flat.items():
    *parents, last = key.split("/")
    node = tree
    for part in parents:
      node = node.setdefault(part, {})
    node[last] = value
  return tree


def load_iterates(directory: str | os.PathLike) -> list[PyTree]:
  """The iterates `save_iterate` wrote to `directory`, in step order, as nested dicts.

  Raises:
    JaxnnError: the directory has no `step_<t>.safetensors` file, a file
      cannot be read, or the files disagree on keys, shapes or dtypes.
  """
  from safetensors import SafetensorError, safe_open

  directory = pathlib.Path(directory)
  if not directory.is_dir():
    raise JaxnnError(f"{directory} is not a directory of iterates (step_<t>.safetensors)")
  files = sorted(
    (int(m.group(1)), p)
    for p in directory.iterdir()
    if (m := _STEP_FILE.fullmatch(p.name)) is not None
  )
  if len(files) < 2:
    raise JaxnnError(
      f"{directory} holds {len(files)} iterate files (step_<t>.safetensors); LCA needs at "
      "least two (write them with jaxnn.lca.save_iterate)"
    )
  iterates, first = [], None
  for _, path in files:
    try:
      with safe_open(str(path), framework="numpy") as f:
        shapes = json.loads((f.metadata() or {}).get("jaxnn_shapes", "{}"))
        flat = {k: f.get_tensor(k) for k in f.keys()}
      flat = {k: v.reshape(shapes.get(k, v.shape)) for k, v in flat.items()}
    except (SafetensorError, OSError, ValueError, TypeError) as e:
      raise JaxnnError(f"{path} is not a readable safetensors file ({e}); move it away") from None
    layout = {k: (v.shape, v.dtype) for k, v in flat.items()}
    if first is None:
      first = (path, layout)
    elif layout != first[1]:
      raise JaxnnError(
        f"{path} holds other parameters (keys, shapes or dtypes) than {first[0]}; the "
        "iterates of one trajectory must match"
      )
    iterates.append(_nest(flat))
  return iterates


def trajectory_lca(
  loss_fn: Callable[[PyTree], jax.Array],
  iterates: Sequence[PyTree] | str | os.PathLike,
  *,
  method: str = "simpson",
  threshold: float = THRESHOLD,
  max_splits: int = MAX_SPLITS,
) -> TrajectoryLCA:
  """LCA of the trajectory `iterates` for the loss `loss_fn`.

  Args:
    loss_fn: `loss_fn(params) -> scalar`, the loss to allocate (e.g. the data
      loss over the whole training set: close over the data).
    iterates: theta_0, ..., theta_T as pytrees of one structure, or a
      directory of `save_iterate` files.
    method: "simpson" (adaptive, the paper's "RK4") or "first_order".
    threshold: |error| per step above which Simpson doubles its splits.
    max_splits: Simpson's cap, a power of two (32 in the paper).

  Returns:
    A `TrajectoryLCA` (numpy arrays, in the iterates' precision: float64
    under `jax_enable_x64` with float64 iterates).

  Raises:
    JaxnnError: fewer than two iterates, iterates of different structure,
      a loss that is not a finite scalar, or bad settings.
  """
  if method not in ("simpson", "first_order"):
    raise JaxnnError(f"unknown LCA method {method!r}; choose from simpson, first_order")
  if not threshold > 0:
    raise JaxnnError(f"the LCA error threshold must be positive, got {threshold}")
  try:
    check_max_splits(max_splits)
  except ValueError as e:
    raise JaxnnError(str(e)) from None
  if isinstance(iterates, (str, os.PathLike)):
    iterates = load_iterates(iterates)
  iterates = list(iterates)
  if len(iterates) < 2:
    raise JaxnnError(f"a trajectory needs at least two iterates, got {len(iterates)}")
  shapes = [jax.tree.map(lambda a: (np.shape(a), np.result_type(a)), it) for it in iterates]
  for t, s in enumerate(shapes[1:], 1):
    if s != shapes[0]:
      raise JaxnnError(
        f"iterate {t} differs in structure, shapes or dtypes from iterate 0 (layers "
        f"{sorted(set(layer_names(iterates[0])))}); pass iterates of one model"
      )
  value_and_grad = jax.value_and_grad(loss_fn)
  point = jax.jit(value_and_grad)
  if method == "simpson":
    step = jax.jit(
      lambda a, b, s, e: adaptive_simpson(value_and_grad, a, b, s, e, threshold, max_splits)
    )
  else:
    step = jax.jit(lambda a, b, s, e: first_order(a, b, s, e.loss))
  thetas = [jax.tree.map(jnp.asarray, it) for it in iterates]

  def evaluate(t: int) -> Point:
    try:
      loss, grad = point(thetas[t])
    except TypeError as e:
      raise JaxnnError(f"loss_fn must return a scalar loss of the parameters ({e})") from None
    if not np.isfinite(float(loss)):
      raise JaxnnError(f"the loss at iterate {t} is {float(loss)}; LCA needs finite losses")
    return Point(loss, grad)

  start = evaluate(0)
  losses, errors, splits, lcas = [start.loss], [], [], []
  for t in range(len(thetas) - 1):
    end = evaluate(t + 1)
    alloc = step(thetas[t], thetas[t + 1], start, end)
    losses.append(end.loss)
    errors.append(alloc.error)
    splits.append(alloc.splits)
    lcas.append(jax.device_get(alloc.lca))
    start = end
  return TrajectoryLCA(
    jax.tree.map(lambda *a: np.stack(a), *lcas),
    np.asarray(jax.device_get(losses)),
    np.asarray(jax.device_get(errors)),
    np.asarray(jax.device_get(splits)),
  )

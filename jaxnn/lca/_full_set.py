"""The mean data loss of every evaluation set and its gradient, one chunk at a time.

`full_set_loss(model)` evaluates an `EvalSet` at one point of parameter space;
`points_loss(model)` at X points at once, sharing each chunk's reads (the
accumulator evaluates two points per round). Inference mode: `train=False`, no
dropout key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxnn.lca._eval_sets import EvalSet
from jaxnn.lca._integrate import Point
from jaxnn.train import CLASSIFICATION, FunctionalModel, Objective

PyTree = Any


def points_loss(
  model: FunctionalModel, objective: Objective = CLASSIFICATION, chunk_sharding=None
) -> Callable[[PyTree, PyTree, EvalSet], Point]:
  """`value_and_grad(params_X, model_state_X, eval_set) -> Point` at X points at once.

  `params_X` and `model_state_X` carry a leading axis of X points; the result
  holds the mean data loss of every set at every point, `loss` of shape
  (X, S) and each gradient leaf (X, S, ...). One chunk at a time (`lax.scan`
  over chunks), with the X points vmapped inside a chunk so that they share
  its reads (the matrix products of a dense layer become one wider product).
  Inference mode: `train=False`, no dropout key.
  """

  def chunk_loss(params, model_state, x, y, mask):
    outputs, _ = model.apply(params, model_state, x, False, None)
    return jnp.sum(objective.loss(outputs, y) * mask)

  grad_chunk = jax.vmap(jax.value_and_grad(chunk_loss), in_axes=(0, 0, None, None, None))

  def value_and_grad(params_X, model_state_X, eval_set: EvalSet) -> Point:
    S = eval_set.num_sets

    def body(acc, chunk):
      x, y, mask, s = chunk
      if chunk_sharding is not None:
        x, y, mask = (jax.lax.with_sharding_constraint(a, chunk_sharding) for a in (x, y, mask))
      value = grad_chunk(params_X, model_state_X, x, y, mask)
      return jax.tree.map(lambda a, v: a.at[:, s].add(v), acc, value), None

    X = jax.tree.leaves(params_X)[0].shape[0]
    zero = (
      jnp.zeros((X, S), jnp.float32),
      jax.tree.map(lambda p: jnp.zeros((X, S, *p.shape[1:]), p.dtype), params_X),
    )
    chunks = (eval_set.x, eval_set.y, eval_set.mask, eval_set.set_C)
    (loss, grad), _ = jax.lax.scan(body, zero, chunks)
    count_S = eval_set.count_S
    return Point(
      loss / count_S[None],
      jax.tree.map(lambda g: g / count_S.reshape(1, S, *(1,) * (g.ndim - 2)), grad),
    )

  return value_and_grad


def full_set_loss(
  model: FunctionalModel, objective: Objective = CLASSIFICATION, chunk_sharding=None
) -> Callable[[PyTree, PyTree, EvalSet], Point]:
  """`value_and_grad(params, model_state, eval_set) -> Point` of the mean data loss per set.

  The loss has shape (S,) and each gradient leaf (S, ...) for the S sets of
  `eval_set`, computed one chunk at a time (memory is that of one chunk) in
  inference mode: `train=False`, no dropout key. `chunk_sharding` (e.g.
  `DataParallel.batch`) splits each chunk across devices.
  """
  vg = points_loss(model, objective, chunk_sharding)

  def value_and_grad(params, model_state, eval_set: EvalSet) -> Point:
    add_axis = lambda tree: jax.tree.map(lambda a: a[None], tree)
    point = vg(add_axis(params), add_axis(model_state), eval_set)
    return jax.tree.map(lambda a: a[0], point)

  return value_and_grad

"""A model's first layer declared linear in its parameters (`LinearStem`): an exact saving.

When a model's first layer maps fixed inputs linearly in its own parameters
(z = x W + b), its output anywhere on a step is the interpolation of its
outputs at the step's ends, and its LCA over the step needs one transposed
product per iteration instead of one per gradient point. This module declares
such a stem (`LinearStem`, `fc_stem`), checks a declaration (`check_stem`),
drops the input features that are 0 in every evaluation example
(`drop_zero_features`), and provides the pieces the accumulator uses: the
full-set loss of the rest of the model on interpolated stem outputs
(`stem_points_loss`) and the stem's forward, adjoint and summed LCA over all
chunks (`stem_apply`, `stem_transpose`, `stem_sum`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn._errors import JaxnnError
from jaxnn.lca._eval_sets import EvalSet
from jaxnn.lca._integrate import Point
from jaxnn.train import CLASSIFICATION, FunctionalModel, Objective

PyTree = Any


class LinearStem(NamedTuple):
  """A model's first layer, linear in its parameters on fixed inputs, and the rest of it.

  Declaring it lets the accumulator skip most of the first layer's products,
  exactly. If z = A_x(theta_stem) with A_x linear (e.g. x @ W + b), every
  point of the step theta_t + s dtheta has z = (1 - s) z(theta_t) +
  s z(theta_{t+1}): z is computed at the end point only (its value at
  theta_t is kept from the previous iteration) and interpolated at the
  midpoint and at every refinement point. The stem's gradient at a point is
  A_x^T(dL/dz), so its LCA over the iteration, dtheta_stem * sum_k w_k
  A_x^T(dL/dz_k) with the Simpson weights w_k, is dtheta_stem *
  A_x^T(sum_k w_k dL/dz_k): the accumulator carries dL/dz per evaluation
  example instead of the stem's gradient (the end point's for the next
  iteration too) and transposes once per iteration (for `fc_stem`, one
  x^T (dL/dz) product instead of one per point). Its LCA summed over the
  stem's parameters, which the refinement decision needs at every level, is
  <dz, sum_k w_k dL/dz_k> with dz = z(theta_{t+1}) - z(theta_t)
  (`jax.linear_transpose` is the adjoint). On MNIST-FC this leaves two of
  the first layer's products per iteration instead of four (a forward and a
  weight-gradient product at each of two points; three with the output
  interpolated alone). `check_stem` verifies a declaration (linearity
  and that the two parts rebuild the model); `fc_stem` declares the first
  layer of `jaxnn.models.FC`.

  Attributes:
    keys: the top-level keys of the parameter dict that the stem uses; the
      head gets the other keys only.
    apply: `apply(stem_params, x) -> z`, linear in `stem_params` (a dict of
      `keys`; a bias is linear in itself), in inference mode.
    head: `head(params, model_state, z, train, rng) -> (outputs, new_state)`,
      the model from z on, with `params` lacking `keys`.
    restrict: optional; `restrict(index_F) -> apply_r` with `apply_r(stem_params,
      x_r)` the stem's output from the input features `index_F` alone (x
      reshaped to (examples, features), `x_r = x[:, index_F]`), equal to
      `apply` when the other features are 0. Lets `drop_zero_features` skip
      the features that are 0 in every evaluation example.
  """

  keys: tuple[str, ...]
  apply: Callable[[dict, jax.Array], jax.Array]
  head: Callable[..., tuple[jax.Array, PyTree]]
  restrict: Callable[[np.ndarray], Callable[[dict, jax.Array], jax.Array]] | None = None


def fc_stem(params: dict) -> LinearStem:
  """The first dense layer of a `jaxnn.models.FC` (params "dense0".."denseK") as a stem."""
  names = [f"dense{i}" for i in range(len(params))]
  if not isinstance(params, dict) or sorted(params) != sorted(names) or not names:
    raise JaxnnError(
      f"fc_stem needs the parameters of a jaxnn FC (dense0..denseK), got "
      f"{list(params) if isinstance(params, dict) else type(params).__name__}"
    )

  def apply(p, x):
    return x.reshape(x.shape[0], -1) @ p["dense0"]["kernel"] + p["dense0"]["bias"][None]

  def head(p, model_state, z, train=False, rng=None):
    del train, rng
    h = z
    for name in names[1:]:
      h = jax.nn.relu(h) @ p[name]["kernel"] + p[name]["bias"][None]
    return h, model_state

  def restrict(index_F):
    index_F = np.asarray(index_F)

    def apply_r(p, x_r):
      if x_r.shape[-1] != index_F.size:
        raise JaxnnError(
          f"the LCA stem keeps {index_F.size} input features, got inputs with "
          f"{x_r.shape[-1]}; pass the evaluation set that drop_zero_features "
          "returned with this stem"
        )
      return x_r @ p["dense0"]["kernel"][index_F] + p["dense0"]["bias"][None]

    return apply_r

  return LinearStem(("dense0",), apply, head, restrict)


def drop_zero_features(stem: LinearStem, eval_set: EvalSet) -> tuple[LinearStem, EvalSet]:
  """The stem and evaluation set without the input features that are 0 in every example.

  Exact: such a feature adds nothing to the stem's output, and the gradient
  of every parameter that only multiplies it (e.g. its row of a dense
  kernel) is exactly 0 on these sets, so its LCA is exactly 0 (it may still
  move by weight decay). The stem's two products per iteration (its output
  at the end point and the transpose of the integrated dL/dz) then skip
  those features; the transpose scatters zeros into the dropped parameters
  (`jax.linear_transpose` of the gather). On mnist5k, 132 of the 784 pixels
  are black in every training and validation image. Found once, on the host.

  Returns:
    `(stem, eval_set)` unchanged when the stem declares no `restrict` or no
    feature is 0 everywhere; otherwise the stem applied to the kept features
    and the set whose `x` holds only them, (chunks, chunk_size, kept). Use
    the two together: the accumulator's stem path reads `x` only through
    the stem.
  """
  x_N = eval_set.x.reshape(-1, math.prod(eval_set.x.shape[2:]))
  keep_F = np.any(x_N != 0, 0)
  if stem.restrict is None or keep_F.all():
    return stem, eval_set
  index_F = np.flatnonzero(keep_F)
  x_r = np.ascontiguousarray(eval_set.x.reshape(*eval_set.x.shape[:2], -1)[..., index_F])
  return stem._replace(apply=stem.restrict(index_F), restrict=None), eval_set._replace(x=x_r)


def split_stem(stem: LinearStem, params: dict) -> tuple[dict, dict]:
  """`(stem's parameters, the head's)`: `params` split by the stem's top-level keys."""
  return (
    {k: params[k] for k in stem.keys},
    {k: v for k, v in params.items() if k not in stem.keys},
  )


def check_stem(
  model: FunctionalModel,
  stem: LinearStem,
  x: jax.Array,
  seed: int = 0,
  rtol: float = 1e-4,
  compiler_options: dict | None = None,
) -> None:
  """Raises a `JaxnnError` unless `stem` is a valid declaration for `model` on inputs `x`.

  Checks that the stem's keys are top-level keys of the parameter dict, that
  its `apply` is affine in them (its transpose exists, and the midpoint of
  two random parameter points maps to the mean of their outputs), that
  `head(apply(...))` gives `model.apply`'s outputs, at the model's parameters
  and at a random perturbation of them, and that its `restrict` (if any)
  gives `apply`'s output with every other feature set to 0 and dropped (one
  small compiled function, with `compiler_options`).
  """
  params = model.params
  if not isinstance(params, dict) or not stem.keys or any(k not in params for k in stem.keys):
    raise JaxnnError(
      f"the LCA stem's keys {stem.keys} are not top-level keys of the model's "
      f"parameters ({list(params) if isinstance(params, dict) else 'not a dict'}); "
      "declare the keys of its first layer, or pass no stem"
    )

  # restrict: every other input feature set to 0 and dropped.
  index_F = np.arange(0, math.prod(np.shape(x)[1:]), 2)
  zeroed_F = np.zeros(math.prod(np.shape(x)[1:]), np.float32)
  zeroed_F[index_F] = 1

  def outputs(params, other, x):
    stem0, rest0 = split_stem(stem, params)
    stem1, rest1 = split_stem(stem, other)
    z0, z1 = stem.apply(stem0, x), stem.apply(stem1, x)
    zmid = stem.apply(jax.tree.map(lambda a, b: (a + b) / 2, stem0, stem1), x)
    jax.linear_transpose(lambda p: stem.apply(p, x), stem0)(z0)
    restricted = []
    if stem.restrict is not None:
      x_F = x.reshape(x.shape[0], -1)
      restricted = [
        stem.restrict(index_F)(stem1, x_F[:, index_F]),
        stem.apply(stem1, (x_F * zeroed_F[None]).reshape(x.shape)),
      ]
    return (
      zmid,
      (z0 + z1) / 2,
      stem.head(rest0, model.state, z0, False, None)[0],
      model.apply(params, model.state, x, False, None)[0],
      stem.head(rest1, model.state, z1, False, None)[0],
      model.apply(other, model.state, x, False, None)[0],
      *restricted,
    )

  rng = np.random.default_rng(seed)  # numpy: no random-number kernel to compile
  other = jax.tree.map(
    lambda p: np.asarray(p) + 0.1 * rng.standard_normal(np.shape(p)).astype(np.asarray(p).dtype),
    params,
  )
  try:
    zmid, zmean, *outs = jax.jit(outputs, compiler_options=compiler_options)(params, other, x)
  except (NotImplementedError, TypeError, ValueError) as e:
    raise JaxnnError(
      f"the LCA stem is not affine in its parameters {stem.keys} or does not fit "
      f"the model ({type(e).__name__}: {str(e).splitlines()[0]}); pass no "
      "stem"
    ) from e
  close = lambda a, b: np.allclose(a, b, rtol=rtol, atol=rtol * float(np.max(np.abs(b))))
  if not close(zmid, zmean):
    raise JaxnnError(
      f"the LCA stem's output is not affine in its parameters {stem.keys}; pass no stem"
    )
  if not (close(outs[0], outs[1]) and close(outs[2], outs[3])):
    raise JaxnnError(
      "the LCA stem's head(apply(x)) differs from the model's outputs; fix the "
      "declaration or pass no stem"
    )
  if stem.restrict is not None and not close(outs[4], outs[5]):
    raise JaxnnError(
      "the LCA stem's restrict(index)(x[:, index]) differs from its apply(x) with "
      "the other features 0; fix the declaration or declare no restrict"
    )


def stem_points_loss(
  model: FunctionalModel,
  stem: LinearStem,
  objective: Objective = CLASSIFICATION,
  chunk_sharding=None,
) -> Callable:
  """`points_loss` with the stem's output interpolated between the step's ends (`LinearStem`).

  `value_and_grad(params_X, model_state_X, eval_set, s_X, z0_C, z1_C) ->
  (Point, dz_XxC)`: `z0_C` and `z1_C` hold the stem's output at the start
  and end of the step for every chunk (`stem_apply`); point x uses (1 -
  s_X[x]) z0 + s_X[x] z1. The Point's gradient holds the head's parameters
  only; `dz_XxC` is the gradient of each set's mean loss with respect to the
  stem's output, (X, chunks, chunk_size, ...) (zero on padding).
  """

  def head_loss(rest, model_state, z, y, mask):
    outputs, _ = stem.head(rest, model_state, z, False, None)
    return jnp.sum(objective.loss(outputs, y) * mask)

  head_grad = jax.vmap(jax.value_and_grad(head_loss, argnums=(0, 2)), in_axes=(0, 0, 0, None, None))

  def value_and_grad(params_X, model_state_X, eval_set, s_X, z0_C, z1_C):
    S = eval_set.num_sets
    rest_X = split_stem(stem, params_X)[1]

    def body(acc, chunk):
      y, mask, s, z0, z1 = chunk
      if chunk_sharding is not None:
        y, mask, z0, z1 = (
          jax.lax.with_sharding_constraint(a, chunk_sharding) for a in (y, mask, z0, z1)
        )
      w = s_X.reshape(-1, *(1,) * z0.ndim).astype(z0.dtype)
      z_X = (1 - w) * z0[None] + w * z1[None]
      loss, (grad_rest, dz_X) = head_grad(rest_X, model_state_X, z_X, y, mask)
      acc = jax.tree.map(lambda a, v: a.at[:, s].add(v), acc, (loss, grad_rest))
      return acc, dz_X / eval_set.count_S[s].astype(dz_X.dtype)

    X = s_X.shape[0]
    zero = (
      jnp.zeros((X, S), jnp.float32),
      jax.tree.map(lambda p: jnp.zeros((X, S, *p.shape[1:]), p.dtype), rest_X),
    )
    chunks = (eval_set.y, eval_set.mask, eval_set.set_C, z0_C, z1_C)
    (loss, grad), dz_CxX = jax.lax.scan(body, zero, chunks)
    count_S = eval_set.count_S
    point = Point(
      loss / count_S[None],
      jax.tree.map(lambda g: g / count_S.reshape(1, S, *(1,) * (g.ndim - 2)), grad),
    )
    return point, jnp.moveaxis(dz_CxX, 1, 0)

  return value_and_grad


def chunks_sharding(chunk_sharding):
  """The sharding of (chunks, chunk_size, ...) arrays whose chunks have `chunk_sharding`."""
  if isinstance(chunk_sharding, jax.sharding.NamedSharding):
    return jax.sharding.NamedSharding(
      chunk_sharding.mesh, jax.sharding.PartitionSpec(None, *chunk_sharding.spec)
    )
  return None


def stem_apply(
  stem: LinearStem, stem_params: dict, eval_set: EvalSet, chunk_sharding=None
) -> jax.Array:
  """The stem's output on every chunk at once, (chunks, chunk_size, ...).

  The same size as the chunks' stored outputs; one product over all chunks
  (for a dense stem) reads the inputs in place, where a loop over chunks
  would copy each chunk out first.
  """
  sharding = chunks_sharding(chunk_sharding)
  x_C = eval_set.x
  if sharding is not None:
    x_C = jax.lax.with_sharding_constraint(x_C, sharding)
  z_C = jax.vmap(lambda x: stem.apply(stem_params, x))(x_C).astype(jnp.float32)
  return z_C if sharding is None else jax.lax.with_sharding_constraint(z_C, sharding)


def stem_sum(eval_set: EvalSet, dz_C: jax.Array, a_C: jax.Array) -> jax.Array:
  """sum over each set's examples of <dz, a> (stem outputs, per chunk): shape (S,)."""
  per_chunk = jnp.sum((dz_C * a_C).reshape(dz_C.shape[0], -1), 1, dtype=jnp.float32)
  return jax.ops.segment_sum(per_chunk, eval_set.set_C, eval_set.num_sets)


def stem_transpose(
  stem: LinearStem, stem_params: dict, eval_set: EvalSet, a_C: jax.Array, chunk_sharding=None
) -> dict:
  """sum over each set's chunks of A_x^T(a) (the stem's adjoint): leaves (S, ...).

  One batched product over the chunks (for a dense stem), then a sum of the
  chunks of each set: (chunks x stem parameters) in between.
  """
  sharding = chunks_sharding(chunk_sharding)
  x_C = eval_set.x
  if sharding is not None:
    x_C, a_C = (jax.lax.with_sharding_constraint(v, sharding) for v in (x_C, a_C))

  def transpose(x, a):
    apply = lambda p: stem.apply(p, x)
    return jax.linear_transpose(apply, stem_params)(
      a.astype(jax.eval_shape(apply, stem_params).dtype)
    )[0]

  grad_C = jax.vmap(transpose)(x_C, a_C)
  return jax.tree.map(lambda g: jax.ops.segment_sum(g, eval_set.set_C, eval_set.num_sets), grad_C)

"""LCA integrators: how one iteration's loss change is split among parameters.

The loss change of iteration t is a path integral along the straight segment
from theta_t to theta_{t+1}:

  L(theta_{t+1}) - L(theta_t) = sum_i dtheta_i * int_0^1 d_iL(theta_t + s dtheta) ds,

and the term of parameter i is its loss change allocation A[t, i] (Lan et al.
2019, Eq. 1-2). `first_order` takes the gradient at the start; `simpson` and
`adaptive_simpson` use composite Simpson's rule (the paper's "RK4": the
integrand depends only on the position, so Runge-Kutta 4 reduces to Simpson)
and double the splits until the iteration's error is below a threshold.

`refine_simpson` is the one adaptive rule of the package: `adaptive_simpson`
runs it one point at a time, and the accumulator (`lca_accumulator`) two
points at a time for a batch of evaluation sets.

Everything here is a pure function on pytrees, usable under `jax.jit`, in
float32 or (under `jax_enable_x64`) float64.

References:
  Lan, Liu, Zhou, Yosinski. "LCA: Loss Change Allocation for Neural Network
  Training", NeurIPS 2019. https://arxiv.org/abs/1909.01440
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

PyTree = Any
ValueAndGrad = Callable[[PyTree], tuple[jax.Array, PyTree]]

MAX_SPLITS = 32  # The paper's cap: 2, 4, 8, 16, 32 splits.
THRESHOLD = 1e-3  # Absolute error per iteration, in loss units.


class Point(NamedTuple):
  """The loss and its gradient at one point of parameter space."""

  loss: jax.Array
  grad: PyTree


class Allocation(NamedTuple):
  """One iteration's loss change allocation.

  Attributes:
    lca: pytree like the parameters, A[t, i] for every parameter.
    error: L(theta_{t+1}) - L(theta_t) - sum_i A[t, i], the integration error.
    splits: the number of Simpson intervals used (0 for first order).
  """

  lca: PyTree
  error: jax.Array
  splits: jax.Array


def tree_sum(tree: PyTree) -> jax.Array:
  """Sum of all entries of a pytree, in float32 (float64 for float64 leaves, under x64)."""
  leaves = jax.tree.leaves(tree)
  dtype = jnp.result_type(jnp.float32, *leaves)
  return sum((jnp.sum(x, dtype=dtype) for x in leaves), jnp.zeros((), dtype))


def _along(theta0: PyTree, delta: PyTree, s: jax.Array) -> PyTree:
  return jax.tree.map(lambda a, d: a + s.astype(a.dtype) * d, theta0, delta)


def _delta(theta0: PyTree, theta1: PyTree) -> PyTree:
  return jax.tree.map(jnp.subtract, theta1, theta0)


def first_order(theta0: PyTree, theta1: PyTree, start: Point, end_loss: jax.Array) -> Allocation:
  """A[t, i] = d_iL(theta_t) * (theta_{t+1, i} - theta_{t, i}).

  Args:
    theta0, theta1: parameters before and after the iteration.
    start: loss and gradient at `theta0`.
    end_loss: L(theta1), to report the error.
  """
  lca = jax.tree.map(jnp.multiply, start.grad, _delta(theta0, theta1))
  return Allocation(lca, end_loss - start.loss - tree_sum(lca), jnp.zeros((), jnp.int32))


def simpson_weights(splits: int) -> jax.Array:
  """Composite Simpson weights [1, 4, 2, 4, ..., 4, 1] / (3 * splits) on splits + 1 points."""
  if splits < 2 or splits % 2:
    raise ValueError(f"Simpson's rule needs an even number of splits >= 2, got {splits}")
  w = jnp.where(jnp.arange(splits + 1) % 2 == 1, 4.0, 2.0).at[0].set(1.0).at[-1].set(1.0)
  return w / (3.0 * splits)


def simpson(
  value_and_grad: ValueAndGrad,
  theta0: PyTree,
  theta1: PyTree,
  start: Point,
  end: Point,
  splits: int = 2,
) -> Allocation:
  """Composite Simpson's rule with a fixed, even number of `splits`.

  Exact (to rounding) when the gradient is a polynomial of degree <= 3 along
  the segment, e.g. for a quadratic or cubic loss.

  Examples:
    On a quadratic loss the allocation is exact: parameter i gets
    `theta1_i**2 - theta0_i**2`.

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jaxnn.lca import Point, simpson
    >>> value_and_grad = jax.value_and_grad(lambda theta: jnp.sum(theta**2))
    >>> theta0, theta1 = jnp.array([1.0, 2.0]), jnp.array([0.0, 0.5])
    >>> start, end = Point(*value_and_grad(theta0)), Point(*value_and_grad(theta1))
    >>> allocation = simpson(value_and_grad, theta0, theta1, start, end)
    >>> allocation.lca.round(4).tolist()  # the loss change 0.25 - 5.0, split in two
    [-1.0, -3.75]
    >>> abs(float(allocation.error)) < 1e-6  # float32 rounding only
    True
  """
  delta = _delta(theta0, theta1)
  w = simpson_weights(splits)
  grads = (
    [start.grad]
    + [value_and_grad(_along(theta0, delta, jnp.asarray(j / splits)))[1] for j in range(1, splits)]
    + [end.grad]
  )
  mean_grad = jax.tree.map(lambda *g: sum(wj * gj for wj, gj in zip(w, g)), *grads)
  lca = jax.tree.map(jnp.multiply, mean_grad, delta)
  return Allocation(lca, end.loss - start.loss - tree_sum(lca), jnp.asarray(splits, jnp.int32))


# What a round of `refine_simpson` evaluates.
_START, _BASE, _REFINE = 0, 1, 2


class SimpsonLoop(NamedTuple):
  """The carry of `refine_simpson`: an adaptive Simpson integration in progress.

  The loss may carry batch axes B (e.g. one per evaluation set); every batch
  element stops refining at its own level. Gradients are any pytree, the
  integrand.

  Attributes:
    round: what the next round evaluates: 0 the start point, 1 the base level
      (the midpoint, with the end point when it is not given), 2 odd points
      of the next level.
    pair: rounds done at the level being refined.
    splits: Simpson intervals of the last complete level (0 before the first).
    start: loss and gradient at the step's start.
    end: loss and gradient at the step's end.
    odd: sum of the gradients at the odd points of the last complete level.
    even: sum of the gradients at its other interior points.
    new_odd: partial sum of the gradients at the odd points being evaluated.
    start_losses: the losses of the start round, one per point of a round
      (the points function may evaluate them differently, e.g. with another
      model state); the given start loss when there was no start round.
    mean: per batch element, the Simpson mean gradient of the level where it
      stopped (the allocation is `mean * (theta_1 - theta_0)`).
    error: per batch element, loss change minus the allocated sum at that level.
    splits_done: per batch element, the intervals of that level.
    done: per batch element, whether it stopped.
  """

  round: jax.Array
  pair: jax.Array
  splits: jax.Array
  start: Point
  end: Point
  odd: PyTree
  even: PyTree
  new_odd: PyTree
  start_losses: jax.Array
  mean: PyTree
  error: jax.Array
  splits_done: jax.Array
  done: jax.Array


def _select_leading(mask_B: jax.Array, new: PyTree, old: PyTree) -> PyTree:
  """`new` where `mask_B` (broadcast over the trailing axes of each leaf), else `old`."""
  return jax.tree.map(
    lambda a, b: jnp.where(mask_B.reshape(*mask_B.shape, *(1,) * (a.ndim - mask_B.ndim)), a, b),
    new,
    old,
  )


def check_max_splits(max_splits: int) -> None:
  """Raises ValueError unless `max_splits` is a power of two >= 2."""
  if max_splits < 2 or max_splits & (max_splits - 1):
    raise ValueError(f"max_splits must be a power of two >= 2, got {max_splits}")


def refine_simpson(
  points: Callable[[jax.Array, jax.Array], Point],
  start: Point,
  allocated: Callable[[PyTree], jax.Array],
  *,
  end: Point | None = None,
  need_start: bool | jax.Array = False,
  threshold: float = THRESHOLD,
  max_splits: int = MAX_SPLITS,
  select: Callable[[jax.Array, PyTree, PyTree], PyTree] | None = None,
) -> SimpsonLoop:
  """Composite Simpson's rule along one step, doubling the splits while |error| > `threshold`.

  A `lax.while_loop` of rounds; each round makes one call of `points`, so the
  gradient computation is compiled once whatever the refinement. Levels: 2
  splits (the midpoint), then 4, 8, ... up to `max_splits`; doubling from n
  to 2n splits evaluates only the n new odd points, the others keep their
  gradients folded into two running sums, since the composite weights give

    mean_{2n} = [g_0 + g_2n + 4 * odd_{2n} + 2 * (odd_n + even_n)] / (6n).

  With `end` given, a round evaluates one point (the midpoint, then the odd
  points one by one). Without, it evaluates two: the end point with the
  midpoint, then the odd points two by two (their evaluations share the
  reads of the data, e.g. a wider matrix product), and the end point's
  gradient is returned to serve as the next step's start. With `need_start`
  (may be traced), a first round evaluates the start point.

  Args:
    points: `points(s_X, at_start) -> Point` at the X points theta_0 + s_X[x]
      (theta_1 - theta_0) of a round (X = 1 with `end` given, else 2); the
      loss has shape (X, *B), each gradient leaf a leading X axis. `at_start`
      (a traced bool) flags the start round, whose X points are all s = 0.
    start: loss (shape B) and gradient at theta_0 (ignored with `need_start`
      but for their shapes and dtypes).
    allocated: `allocated(mean) -> (B,)`, the allocation's sum over the
      parameters for a mean gradient `mean` (a pytree like the gradients).
    end: loss and gradient at theta_1, or None to evaluate them.
    need_start: evaluate the start point in a first round.
    threshold: absolute error (loss units) below which refinement stops.
    max_splits: a power of two >= 2, the cap (32 in the paper).
    select: `select(mask_B, new, old)` of gradient pytrees, per batch element;
      by default each leaf's leading axes are the batch axes.

  Returns:
    The loop's last `SimpsonLoop`: every batch element is `done`; its `error`
    exceeds `threshold` only where `max_splits` was reached.
  """
  check_max_splits(max_splits)
  num_points = 2 if end is None else 1
  select = select or _select_leading
  start = Point(jnp.asarray(start.loss), start.grad)
  loss_dtype = start.loss.dtype

  def positions(c: SimpsonLoop) -> jax.Array:
    n = jnp.maximum(2 * c.splits, 1).astype(jnp.float32)  # the level being refined
    odd_X = (2 * (num_points * c.pair + jnp.arange(num_points)) + 1).astype(jnp.float32) / n
    base_X = jnp.asarray([1.0, 0.5] if end is None else [0.5], jnp.float32)
    return jnp.select([c.round == _START, c.round == _BASE], [jnp.zeros_like(odd_X), base_X], odd_X)

  def body(c: SimpsonLoop) -> SimpsonLoop:
    at_start, at_base, at_refine = (c.round == r for r in (_START, _BASE, _REFINE))
    n = 2 * c.splits
    point = points(positions(c), at_start)
    loss_X = point.loss.astype(loss_dtype)
    grad_X = point.grad
    pick = lambda cond, x, old: jax.tree.map(lambda g, o: jnp.where(cond, g[x], o), grad_X, old)
    start = Point(jnp.where(at_start, loss_X[0], c.start.loss), pick(at_start, 0, c.start.grad))
    end = c.end
    if num_points == 2:
      end = Point(jnp.where(at_base, loss_X[0], end.loss), pick(at_base, 0, end.grad))
    new_odd = jax.tree.map(
      lambda a, g: a + jnp.where(at_refine, g[0] + g[1] if num_points == 2 else g[0], 0.0),
      c.new_odd,
      grad_X,
    )
    pair = c.pair + at_refine.astype(jnp.int32)
    refined = at_refine & (pair == n // (2 * num_points))
    level_done = at_base | refined
    even = jax.tree.map(lambda e, o: jnp.where(refined, e + o, e), c.even, c.odd)
    odd = jax.tree.map(
      lambda g, o, a: jnp.where(at_base, g[num_points - 1], jnp.where(refined, a, o)),
      grad_X,
      c.odd,
      new_odd,
    )
    new_odd = jax.tree.map(lambda a: jnp.where(refined, 0.0, a), new_odd)
    splits = jnp.where(at_base, 2, jnp.where(refined, n, c.splits))
    mean = jax.tree.map(
      lambda a, b, o, e: (a + b + 4.0 * o + 2.0 * e) / (3.0 * splits).astype(a.dtype),
      start.grad,
      end.grad,
      odd,
      even,
    )
    error = (end.loss - start.loss - allocated(mean)).astype(loss_dtype)
    update = level_done & ~c.done
    done = c.done | (level_done & ((jnp.abs(error) <= threshold) | (splits >= max_splits)))
    return SimpsonLoop(
      round=jnp.where(at_start, _BASE, _REFINE).astype(jnp.int32),
      pair=jnp.where(refined, 0, pair),
      splits=splits,
      start=start,
      end=end,
      odd=odd,
      even=even,
      new_odd=new_odd,
      start_losses=jnp.where(at_start, loss_X, c.start_losses),
      mean=select(update, mean, c.mean),
      error=jnp.where(update, error, c.error),
      splits_done=jnp.where(update, splits, c.splits_done),
      done=done,
    )

  zeros = jax.tree.map(jnp.zeros_like, start.grad)
  batch = start.loss.shape
  init = SimpsonLoop(
    round=jnp.where(need_start, _START, _BASE).astype(jnp.int32),
    pair=jnp.zeros((), jnp.int32),
    splits=jnp.zeros((), jnp.int32),
    start=start,
    end=start if end is None else Point(jnp.asarray(end.loss, loss_dtype), end.grad),
    odd=zeros,
    even=zeros,
    new_odd=zeros,
    start_losses=jnp.broadcast_to(start.loss, (num_points, *batch)),
    mean=zeros,
    error=jnp.zeros(batch, loss_dtype),
    splits_done=jnp.zeros(batch, jnp.int32),
    done=jnp.zeros(batch, bool),
  )
  return jax.lax.while_loop(lambda c: ~jnp.all(c.done), body, init)


def adaptive_simpson(
  value_and_grad: ValueAndGrad,
  theta0: PyTree,
  theta1: PyTree,
  start: Point,
  end: Point,
  threshold: float = THRESHOLD,
  max_splits: int = MAX_SPLITS,
) -> Allocation:
  """Simpson's rule with 2 splits, doubled while |error| > `threshold` (`refine_simpson`).

  The gradients at the two endpoints are given (the end point of iteration t
  is the start of t + 1, so each is computed once per run). Doubling from n
  to 2n splits only evaluates the n new odd points, one at a time; memory
  stays at a few parameter-sized pytrees whatever the splits. Under `jit`
  only the iterations that need more splits pay for them. Works in float64
  under `jax_enable_x64`.

  Args:
    value_and_grad: `f(theta) -> (loss, grad)` on the loss being allocated.
    theta0, theta1: parameters before and after the iteration.
    start, end: loss and gradient at `theta0` and `theta1`.
    threshold: absolute error (loss units) below which refinement stops.
    max_splits: a power of two >= 2, the cap (32 in the paper).

  Returns:
    An `Allocation`; its `error` may exceed `threshold` only when
    `max_splits` was reached.
  """
  check_max_splits(max_splits)
  delta = _delta(theta0, theta1)

  def points(s_X, at_start):
    del at_start  # the start point is given
    loss, grad = value_and_grad(_along(theta0, delta, s_X[0]))
    return Point(jnp.asarray(loss)[None], jax.tree.map(lambda g: g[None], grad))

  allocated = lambda mean: tree_sum(jax.tree.map(jnp.multiply, mean, delta))
  loop = refine_simpson(
    points, start, allocated, end=end, threshold=threshold, max_splits=max_splits
  )
  return Allocation(jax.tree.map(jnp.multiply, loop.mean, delta), loop.error, loop.splits_done)

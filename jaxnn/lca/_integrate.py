"""LCA integrators: how one iteration's loss change is split among parameters.

The loss change of iteration t is a path integral along the straight segment
from theta_t to theta_{t+1}:

  L(theta_{t+1}) - L(theta_t) = sum_i dtheta_i * int_0^1 d_iL(theta_t + s dtheta) ds,

and the term of parameter i is its loss change allocation A[t, i] (Lan et al.
2019, Eq. 1-2). `first_order` takes the gradient at the start; `simpson` and
`adaptive_simpson` use composite Simpson's rule (the paper's "RK4": the
integrand depends only on the position, so Runge-Kutta 4 reduces to Simpson)
and double the splits until the iteration's error is below a threshold.

Everything here is a pure function on pytrees, usable under `jax.jit`.

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
  """Sum of all entries of a pytree, in float32."""
  return sum(
    (jnp.sum(x, dtype=jnp.float32) for x in jax.tree.leaves(tree)), jnp.zeros((), jnp.float32)
  )


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
    + [value_and_grad(_along(theta0, delta, jnp.float32(j / splits)))[1] for j in range(1, splits)]
    + [end.grad]
  )
  mean_grad = jax.tree.map(lambda *g: sum(wj * gj for wj, gj in zip(w, g)), *grads)
  lca = jax.tree.map(jnp.multiply, mean_grad, delta)
  return Allocation(lca, end.loss - start.loss - tree_sum(lca), jnp.asarray(splits, jnp.int32))


def adaptive_simpson(
  value_and_grad: ValueAndGrad,
  theta0: PyTree,
  theta1: PyTree,
  start: Point,
  end: Point,
  threshold: float = THRESHOLD,
  max_splits: int = MAX_SPLITS,
) -> Allocation:
  """Simpson's rule with 2 splits, doubled while |error| > `threshold`.

  The gradients at the two endpoints are given (the end point of iteration t
  is the start of t + 1, so each is computed once per run). Doubling from n
  to 2n splits only evaluates the n new odd points: the points already used
  keep their gradients, folded into two running sums (the even interior points
  `even` and the newest odd points `odd`), since the composite weights are

    sum_{2n} = [g_0 + g_2n + 4 * odd_{2n} + 2 * (odd_n + even_n)] / (6n).

  Memory stays at a few parameter-sized pytrees whatever the splits. The loop
  is a `lax.while_loop`, so under `jit` only the iterations that need more
  splits pay for them.

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
  if max_splits < 2 or max_splits & (max_splits - 1):
    raise ValueError(f"max_splits must be a power of two >= 2, got {max_splits}")
  delta = _delta(theta0, theta1)
  loss_change = end.loss - start.loss
  ends = jax.tree.map(jnp.add, start.grad, end.grad)

  def allocate(splits, odd, even):
    mean_grad = jax.tree.map(
      lambda e, o, v: (e + 4.0 * o + 2.0 * v) / (3.0 * splits), ends, odd, even
    )
    lca = jax.tree.map(jnp.multiply, mean_grad, delta)
    return lca, loss_change - tree_sum(lca)

  def odd_points(splits):
    """Sum of the gradients at (2k + 1) / splits, k < splits / 2."""

    def body(k, acc):
      s = (2 * k + 1).astype(jnp.float32) / splits.astype(jnp.float32)
      return jax.tree.map(jnp.add, acc, value_and_grad(_along(theta0, delta, s))[1])

    return jax.lax.fori_loop(0, splits // 2, body, jax.tree.map(jnp.zeros_like, start.grad))

  def refine(state):
    splits, odd, even, _, _ = state
    splits = 2 * splits
    even = jax.tree.map(jnp.add, even, odd)
    odd = odd_points(splits)
    return (splits, odd, even, *allocate(splits, odd, even))

  def needs_more(state):
    splits, _, _, _, error = state
    return (splits < 2) | ((jnp.abs(error) > threshold) & (splits < max_splits))

  # Start from one interval (no interior point): the first pass evaluates the midpoint, so one
  # copy of the gradient computation serves every level (less to compile under jit).
  zeros = jax.tree.map(jnp.zeros_like, start.grad)
  init = (jnp.asarray(1, jnp.int32), zeros, zeros, zeros, jnp.asarray(jnp.inf, jnp.float32))
  splits, _, _, lca, error = jax.lax.while_loop(needs_more, refine, init)
  return Allocation(lca, error, splits)

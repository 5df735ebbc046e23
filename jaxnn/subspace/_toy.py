"""The toy problem of Li et al. (2018), whose intrinsic dimension is exactly 10.

D = 1,000 parameters in 10 blocks of 100; the loss asks block k (k = 0..9) to
sum to k: `loss = sum_k (sum(theta_block_k) - k)^2`. The solutions form an
affine subspace of codimension 10, so a random subspace of dimension d reaches
one (loss 0) for d >= 10 and almost surely none for d <= 9.

References:
  Li, Farkhoor, Liu, Yosinski. "Measuring the Intrinsic Dimension of Objective
  Landscapes", ICLR 2018, Section 2.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxnn._errors import JaxnnError
from jaxnn.subspace._projections import Projection
from jaxnn.subspace._wrapper import make_subspace
from jaxnn.train import FunctionalModel, from_function

TOY_BLOCKS = 10
TOY_BLOCK_SIZE = 100


def toy_model(key: jax.Array) -> FunctionalModel:
  """The toy "model": its output is the 10 block sums; theta_0 ~ N(0, 0.01)."""
  theta0 = 0.1 * jax.random.normal(key, (TOY_BLOCKS * TOY_BLOCK_SIZE,), jnp.float32)
  return from_function(lambda theta, x: theta.reshape(TOY_BLOCKS, TOY_BLOCK_SIZE).sum(1), theta0)


def toy_loss(block_sums: jax.Array) -> jax.Array:
  """sum_k (block sum k - k)^2."""
  return jnp.sum(jnp.square(block_sums - jnp.arange(TOY_BLOCKS, dtype=block_sums.dtype)))


class ToyResult(NamedTuple):
  """A toy run: `solved` when the final loss is below `tolerance`."""

  d: int
  loss: float
  initial_loss: float
  solved: bool


@partial(jax.jit, static_argnums=(0, 1, 3, 4))
def _train(projection: Projection, d: int, key, method: str, steps: int, learning_rate):
  subspace = make_subspace(toy_model, d, projection)
  model = subspace.bind(subspace.init(key))
  block_sums = lambda theta_d: model.apply(theta_d, model.state, None)[0]
  loss_fn = lambda theta_d: toy_loss(block_sums(theta_d))

  if method == "gauss_newton":
    # The block sums are linear in theta_d: one least-squares step on the
    # Jacobian (through the projection, by reverse mode) is the exact minimum;
    # the others polish float32 round-off.
    def step(theta_d, _):
      residual = block_sums(theta_d) - jnp.arange(TOY_BLOCKS, dtype=theta_d.dtype)
      J_10xd = jax.jacrev(block_sums)(theta_d)
      return theta_d - jnp.linalg.lstsq(J_10xd, residual)[0], None

    theta_d, _ = jax.lax.scan(step, model.params, None, steps)
  else:
    optimizer = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))

    def step(carry, _):
      theta_d, opt_state = carry
      updates, opt_state = optimizer.update(jax.grad(loss_fn)(theta_d), opt_state)
      return (theta_d + updates, opt_state), None

    (theta_d, _), _ = jax.lax.scan(step, (model.params, optimizer.init(model.params)), None, steps)
  return loss_fn(theta_d), loss_fn(model.params)


TOY_METHODS = ("gauss_newton", "adam")


def train_toy(
  d: int,
  projection: Projection,
  seed: int = 0,
  *,
  method: str = "gauss_newton",
  steps: int | None = None,
  learning_rate: float = 0.05,
  tolerance: float = 1e-3,
) -> ToyResult:
  """Trains the toy problem in a random d-dimensional subspace.

  Args:
    d: the subspace dimension.
    projection: the `Projection` (pass the same object for repeated calls so
      the compiled program is reused).
    seed: draws theta_0 and P.
    method: "gauss_newton" (least-squares steps on the Jacobian: exact for this
      linear least-squares problem, so `solved` says whether the subspace
      holds a solution) or "adam" (first order, as in the paper; a 10 x 10
      random system can be ill-conditioned, so it may need many steps at
      d = 10).
    steps: optimizer steps (default 3 for Gauss-Newton, 3,000 for Adam).
    learning_rate: Adam's initial step size (cosine-decayed).
    tolerance: the loss below which the problem counts as solved (the initial
      loss is about 300).
  """
  if method not in TOY_METHODS:
    raise JaxnnError(f"unknown toy method {method!r}; choose from {', '.join(TOY_METHODS)}")
  steps = steps if steps is not None else (3 if method == "gauss_newton" else 3000)
  if steps < 1:
    raise JaxnnError(f"the toy needs at least one step, got {steps}")
  loss, initial = _train(projection, d, jax.random.PRNGKey(seed), method, steps, learning_rate)
  return ToyResult(d, float(loss), float(initial), bool(loss < tolerance))


def toy_intrinsic_dim(projection: Projection, max_d: int = 20, seed: int = 0, **kwargs) -> int:
  """The smallest d <= max_d whose subspace solves the toy (checks every d).

  Raises:
    JaxnnError: no d up to `max_d` solves it.
  """
  for d in range(1, max_d + 1):
    if train_toy(d, projection, seed, **kwargs).solved:
      return d
  raise JaxnnError(f"no subspace of dimension <= {max_d} solved the toy; raise max_d or steps")

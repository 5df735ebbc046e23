"""Exact checks of the LCA integrators on losses with known integrals."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn.lca import Point, adaptive_simpson, first_order, simpson, simpson_weights, tree_sum


def _quadratic():
  rng = np.random.default_rng(0)
  m = rng.normal(size=(7, 7))
  a = jnp.asarray(m @ m.T / 7, jnp.float32)
  b = jnp.asarray(rng.normal(size=7), jnp.float32)

  def loss(theta):
    v = jnp.concatenate([theta["w"].ravel(), theta["b"]])
    return 0.5 * v @ a @ v + b @ v

  theta0 = {
    "w": jnp.asarray(rng.normal(size=(2, 2)), jnp.float32),
    "b": jnp.asarray(rng.normal(size=3), jnp.float32),
  }
  theta1 = jax.tree.map(
    lambda t: t + 0.3 * jnp.asarray(rng.normal(size=t.shape), jnp.float32), theta0
  )
  return loss, theta0, theta1


def _point(loss, theta):
  return Point(*jax.value_and_grad(loss)(theta))


def test_simpson_weights_are_composite_simpson():
  np.testing.assert_allclose(simpson_weights(2), np.array([1, 4, 1]) / 6)
  np.testing.assert_allclose(simpson_weights(4), np.array([1, 4, 2, 4, 1]) / 12)
  np.testing.assert_allclose(np.sum(simpson_weights(32)), 1.0, rtol=1e-6)
  with pytest.raises(ValueError):
    simpson_weights(3)


def test_quadratic_simpson_is_exact_per_entry_and_in_sum():
  loss, theta0, theta1 = _quadratic()
  vg = jax.value_and_grad(loss)
  start, end = _point(loss, theta0), _point(loss, theta1)
  for alloc in (
    simpson(vg, theta0, theta1, start, end, 2),
    adaptive_simpson(vg, theta0, theta1, start, end),
  ):
    mid = jax.tree.map(lambda a, b: (a + b) / 2, theta0, theta1)
    expected = jax.tree.map(lambda g, a, b: g * (b - a), jax.grad(loss)(mid), theta0, theta1)
    jax.tree.map(
      lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), alloc.lca, expected
    )
    np.testing.assert_allclose(
      float(tree_sum(alloc.lca)), float(end.loss - start.loss), rtol=1e-5, atol=1e-6
    )
    assert abs(float(alloc.error)) < 1e-5
  assert int(adaptive_simpson(vg, theta0, theta1, start, end).splits) == 2


def test_separable_quartic_is_exact_per_parameter():
  rng = np.random.default_rng(1)
  c = jnp.asarray(rng.uniform(0.5, 2, size=6), jnp.float32)
  d = jnp.asarray(rng.normal(size=6), jnp.float32)
  per_param = lambda t: c * t**4 + d * t**3 - t
  loss = lambda theta: jnp.sum(per_param(theta))
  theta0 = jnp.asarray(rng.normal(size=6), jnp.float32)
  theta1 = theta0 + jnp.asarray(rng.normal(size=6) * 0.5, jnp.float32)
  alloc = adaptive_simpson(
    jax.value_and_grad(loss), theta0, theta1, _point(loss, theta0), _point(loss, theta1)
  )
  np.testing.assert_allclose(alloc.lca, per_param(theta1) - per_param(theta0), rtol=1e-5, atol=1e-5)


def test_simpson_beats_first_order():
  loss = lambda theta: jnp.sum(jnp.log1p(jnp.exp(3 * theta)) + jnp.cos(theta))
  theta0 = jnp.linspace(-1.0, 1.0, 9)
  theta1 = theta0 + 0.4
  vg = jax.value_and_grad(loss)
  start, end = _point(loss, theta0), _point(loss, theta1)
  simpson_error = abs(float(simpson(vg, theta0, theta1, start, end, 2).error))
  first_error = abs(float(first_order(theta0, theta1, start, end.loss).error))
  assert simpson_error < first_error / 20


def _counting(loss):
  """value_and_grad that counts its calls, also inside jit / while loops."""
  calls = []
  vg = jax.value_and_grad(loss)

  def counted(theta):
    jax.debug.callback(lambda: calls.append(1))
    return vg(theta)

  return counted, calls


@pytest.mark.parametrize("omega,min_splits", [(1.0, 2), (9.0, 4), (16.0, 8)])
def test_adaptive_refinement_triggers_and_reuses_gradients(omega, min_splits):
  """A loss that oscillates along the step needs more splits; each point is evaluated once."""
  loss = lambda theta: jnp.sum(jnp.sin(omega * theta)) / omega
  theta0, theta1 = jnp.zeros(3), jnp.array([1.0, 0.8, -0.6])
  start, end = _point(loss, theta0), _point(loss, theta1)
  vg, calls = _counting(loss)
  alloc = jax.jit(lambda a, b, s, e: adaptive_simpson(vg, a, b, s, e, 1e-3, 32))(
    theta0, theta1, start, end
  )
  jax.effects_barrier()
  # The first count of splits whose fixed-rule error is within the threshold.
  fixed = {
    n: simpson(jax.value_and_grad(loss), theta0, theta1, start, end, n) for n in (2, 4, 8, 16, 32)
  }
  expected = next(n for n, a in fixed.items() if abs(float(a.error)) <= 1e-3)
  splits = int(alloc.splits)
  assert splits == expected >= min_splits
  assert abs(float(alloc.error)) <= 1e-3
  assert len(calls) == splits - 1  # only interior points, each once
  np.testing.assert_allclose(alloc.lca, fixed[splits].lca, rtol=1e-5, atol=1e-6)


def test_adaptive_refinement_stops_at_the_cap():
  loss = lambda theta: jnp.sum(jnp.sin(40.0 * theta)) / 40.0
  theta0, theta1 = jnp.zeros(2), jnp.array([1.0, 0.7])
  alloc = adaptive_simpson(
    jax.value_and_grad(loss),
    theta0,
    theta1,
    _point(loss, theta0),
    _point(loss, theta1),
    1e-6,
    max_splits=4,
  )
  assert int(alloc.splits) == 4
  assert abs(float(alloc.error)) > 1e-6


def test_adaptive_rejects_bad_cap():
  loss = lambda theta: jnp.sum(theta**2)
  p = _point(loss, jnp.zeros(2))
  with pytest.raises(ValueError, match="power of two"):
    adaptive_simpson(jax.value_and_grad(loss), jnp.zeros(2), jnp.ones(2), p, p, max_splits=12)

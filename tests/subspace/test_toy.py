"""The toy problem's intrinsic dimension is exactly 10 (Li et al. 2018, Section 2)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import JaxnnError
from jaxnn.subspace import fastfood_projection, get_projection, toy_loss, toy_model, train_toy


@pytest.mark.parametrize("name", ["dense", "fastfood"])
def test_toy_solved_at_10_not_at_9(name):
  projection = get_projection(name)
  for seed in (0, 1):
    at_9, at_10 = train_toy(9, projection, seed), train_toy(10, projection, seed)
    assert at_10.solved and at_10.loss < 1e-5, at_10
    # Not a failure to converge: 9 directions cannot reach a codimension-10 set,
    # and the least-squares minimum stays far from 0.
    assert not at_9.solved and at_9.loss > 1e-2, at_9
    assert at_9.initial_loss == at_10.initial_loss  # same theta_0 for the seed


def test_toy_residual_at_9_is_the_least_squares_minimum():
  """Independent check: materialize A P (block sums of P's columns) with numpy."""
  projection = get_projection("dense")
  result = train_toy(9, projection, seed=0)
  k_model, k_proj = jax.random.split(jax.random.PRNGKey(0))
  theta0 = np.asarray(toy_model(k_model).params)
  P = np.asarray(projection.init(k_proj, 1000, 9).P_dxD).T
  A_10x1000 = np.kron(np.eye(10), np.ones((1, 100)))
  residual = np.arange(10) - A_10x1000 @ theta0
  theta_d = np.linalg.lstsq(A_10x1000 @ P, residual, rcond=None)[0]
  expected = float(toy_loss(jnp.asarray(A_10x1000 @ (theta0 + P @ theta_d), jnp.float32)))
  np.testing.assert_allclose(result.loss, expected, rtol=1e-3)


def test_toy_trains_with_adam_in_a_larger_subspace():
  result = train_toy(30, fastfood_projection(), 0, method="adam", steps=1500)
  assert result.solved, result


def test_toy_errors():
  with pytest.raises(JaxnnError, match="unknown toy method"):
    train_toy(10, fastfood_projection(), method="lbfgs")
  with pytest.raises(JaxnnError, match="at least one step"):
    train_toy(10, fastfood_projection(), steps=0)

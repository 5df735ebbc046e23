"""The pixel softmax cross-entropy keeps its value and gradient where float32 would round them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn.coordconv._objectives import softmax_cross_entropy


def _reference(z_BxP, label_B):
  """-log softmax[label] and its gradient in float64 numpy (the exact values)."""
  z = np.asarray(z_BxP, np.float64)
  m = z.max(-1, keepdims=True)
  p = np.exp(z - m) / np.exp(z - m).sum(-1, keepdims=True)
  loss = -np.log(p[np.arange(len(z)), label_B])
  grad = p.copy()
  grad[np.arange(len(z)), label_B] -= 1.0
  # The label's entry as the exact small difference when the label dominates.
  others = np.where(np.arange(z.shape[1])[None] == label_B[:, None], 0.0, p).sum(-1)
  grad[np.arange(len(z)), label_B] = np.where(
    p[np.arange(len(z)), label_B] > 0.5, -others, grad[np.arange(len(z)), label_B]
  )
  return loss, grad


@pytest.mark.parametrize("margin", [0.5, 5.0, 30.0, 80.0])
def test_value_and_gradient_match_float64(margin):
  rng = np.random.default_rng(0)
  z = rng.normal(size=(4, 4096)).astype(np.float32)
  label = np.array([3, 100, 4095, 7])
  z[np.arange(4), label] += margin  # the label on top by about `margin`
  z[3, 9] += margin + 2.0  # one example whose label is not on top
  loss, grad = jax.value_and_grad(lambda z: jnp.sum(softmax_cross_entropy(z, label)))(z)
  want_loss, want_grad = _reference(z, label)
  np.testing.assert_allclose(softmax_cross_entropy(z, label), want_loss, rtol=2e-5, atol=1e-30)
  np.testing.assert_allclose(grad, want_grad, rtol=2e-4, atol=1e-37)
  # The gradient sums to ~0 over the classes (softmax is shift invariant), also when saturated.
  assert np.all(np.abs(np.asarray(grad, np.float64).sum(-1)) <= 1e-6 * np.abs(grad).sum(-1))


def test_saturated_loss_is_not_rounded_to_zero():
  z = jnp.zeros((1, 4096), jnp.float32).at[0, 100].set(30.0)
  loss, grad = jax.value_and_grad(lambda z: softmax_cross_entropy(z, jnp.array([100]))[0])(z)
  assert float(loss) == pytest.approx(4095 * np.exp(-30.0), rel=1e-5)
  assert float(grad[0, 100]) == pytest.approx(-4095 * np.exp(-30.0), rel=1e-5)

"""`trajectory_lca`: the LCA of given iterates, in float64 under x64, from memory or files."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import JaxnnError
from jaxnn.lca import load_iterates, save_iterate, trajectory_lca


def _logistic(dtype):
  """A small logistic regression and its gradient-descent trajectory (6 iterates)."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(40, 5)), dtype)
  y = jnp.asarray(rng.integers(0, 2, size=40), dtype)

  def loss(params):
    z = x @ params["w"] + params["b"]
    return jnp.mean(jnp.logaddexp(0.0, z) - y * z)

  params = {"w": jnp.asarray(rng.normal(size=5), dtype), "b": jnp.zeros((), dtype)}
  iterates = [params]
  for _ in range(5):
    grad = jax.grad(loss)(iterates[-1])
    iterates.append(jax.tree.map(lambda p, g: p - 0.5 * g, iterates[-1], grad))
  return loss, iterates


def test_float64_under_x64_allocates_the_loss_change_to_1e12():
  with jax.enable_x64(True):
    # Quadratic: Simpson is exact, each entry is dtheta_i * d_iL(midpoint).
    rng = np.random.default_rng(1)
    m = rng.normal(size=(6, 6))
    a, b = jnp.asarray(m @ m.T / 6), jnp.asarray(rng.normal(size=6))
    quadratic = lambda theta: 0.5 * theta @ a @ theta + b @ theta
    thetas = [jnp.asarray(rng.normal(size=6))]
    for _ in range(4):
      thetas.append(thetas[-1] - 0.3 * jax.grad(quadratic)(thetas[-1]))
    result = trajectory_lca(quadratic, thetas)
    assert result.lca.dtype == np.float64 and result.loss_T1.dtype == np.float64
    for t in range(4):
      mid = (thetas[t] + thetas[t + 1]) / 2
      expected = np.asarray(jax.grad(quadratic)(mid) * (thetas[t + 1] - thetas[t]))
      np.testing.assert_allclose(result.lca[t], expected, rtol=1e-12, atol=1e-15)
    change = float(quadratic(thetas[-1]) - quadratic(thetas[0]))
    assert abs(result.lca.sum() - change) <= 1e-12 * abs(change)
    # A loss that is not polynomial: refinement until each step's error is below 1e-13.
    loss, iterates = _logistic(jnp.float64)
    result = trajectory_lca(loss, iterates, threshold=1e-13)
    assert np.all(np.abs(result.error_T) <= 1e-13) and np.any(result.splits_T > 2)
    change = float(loss(iterates[-1]) - loss(iterates[0]))
    total = sum(float(v.sum()) for v in jax.tree.leaves(result.lca))
    assert abs(total - change) <= 1e-12
    np.testing.assert_allclose(result.loss_T1, [float(loss(p)) for p in iterates], rtol=1e-15)


def test_first_order_and_simpson_in_float32():
  loss, iterates = _logistic(jnp.float32)
  simpson = trajectory_lca(loss, iterates)
  first = trajectory_lca(loss, iterates, method="first_order")
  assert simpson.lca["w"].shape == (5, 5) and simpson.lca["w"].dtype == np.float32
  assert np.all(np.abs(simpson.error_T) <= 1e-3)
  assert np.sum(np.abs(simpson.error_T)) < np.sum(np.abs(first.error_T))
  # First order: exactly the gradient at the start times the step.
  for t in range(5):
    grad = jax.grad(loss)(iterates[t])
    np.testing.assert_allclose(
      first.lca["w"][t], grad["w"] * (iterates[t + 1]["w"] - iterates[t]["w"]), rtol=1e-5
    )


def test_iterates_from_a_directory_and_bad_files(tmp_path):
  with jax.enable_x64(True):
    loss, iterates = _logistic(jnp.float64)
    for t, params in enumerate(iterates):
      save_iterate(tmp_path, t * 10, params)
    loaded = load_iterates(tmp_path)
    assert loaded[3]["w"].dtype == np.float64
    jax.tree.map(np.testing.assert_array_equal, loaded, [jax.device_get(p) for p in iterates])
    from_files = trajectory_lca(loss, tmp_path)
    in_memory = trajectory_lca(loss, iterates)
    jax.tree.map(np.testing.assert_array_equal, from_files, in_memory)
  loss, iterates = _logistic(jnp.float32)
  bad = tmp_path / "step_00000020.safetensors"
  bad.write_bytes(bad.read_bytes()[:40])
  with pytest.raises(JaxnnError, match="step_00000020.safetensors"):
    trajectory_lca(loss, tmp_path)
  save_iterate(tmp_path, 20, {"w": np.zeros(4, np.float32), "b": np.zeros((), np.float32)})
  with pytest.raises(JaxnnError, match="other parameters"):
    load_iterates(tmp_path)
  with pytest.raises(JaxnnError, match="at least two"):
    trajectory_lca(loss, iterates[:1])
  with pytest.raises(JaxnnError, match="not a directory"):
    load_iterates(tmp_path / "nowhere")
  with pytest.raises(JaxnnError, match="finite"):
    trajectory_lca(lambda p: loss(p) / 0.0 * 0.0, iterates)

"""Your own models in the engine: NNX, Linen, Equinox and pure functions.

Each wrapper is checked two ways: its outputs equal the framework's own call
(parity), and it trains through `train_and_evaluate` on arrays to a separable
problem's near-perfect accuracy, with a checkpoint that resumes.
"""

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxnn import JaxnnError
from jaxnn.train import (
  FunctionalModel,
  TrainConfig,
  as_dataset,
  as_model,
  from_equinox,
  from_function,
  from_linen,
  from_nnx,
  train_and_evaluate,
)

D, K = 6, 3


def _blobs(n=240, seed=0):
  """Three well-separated Gaussian blobs in 6 dimensions (a perfect classifier exists)."""
  rng = np.random.default_rng(seed)
  y = rng.integers(0, K, n).astype(np.int32)
  centres = 4.0 * np.eye(K, D, dtype=np.float32)
  return (centres[y] + rng.normal(size=(n, D)).astype(np.float32) * 0.5), y


class PlainMLP(nnx.Module):
  """An NNX module as a user writes it: `__call__(self, x)`, no train or rngs."""

  def __init__(self, rngs: nnx.Rngs):
    self.hidden = nnx.Linear(D, 16, rngs=rngs)
    self.dropout = nnx.Dropout(0.1, rngs=rngs)
    self.out = nnx.Linear(16, K, rngs=rngs)

  def __call__(self, x):
    return self.out(self.dropout(nnx.relu(self.hidden(x))))


class LinenMLP(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.relu(nn.Dense(16)(x))
    x = nn.BatchNorm(use_running_average=not train)(x)
    return nn.Dense(K)(x)


def _apply(params, x):
  return jnp.tanh(x @ params["w1"] + params["b1"][None]) @ params["w2"] + params["b2"][None]


def _function_model(key):
  k1, k2 = jax.random.split(key)
  params = {
    "w1": jax.random.normal(k1, (D, 16)) / np.sqrt(D),
    "b1": jnp.zeros(16),
    "w2": jax.random.normal(k2, (16, K)) / 4.0,
    "b2": jnp.zeros(K),
  }
  return from_function(_apply, params)


def _linen_model(key):
  module = LinenMLP()
  return from_linen(module, module.init(key, jnp.ones((1, D))))


FACTORIES = {
  "nnx": lambda key: PlainMLP(nnx.Rngs(params=key, dropout=1)),
  "linen": _linen_model,
  "equinox": lambda key: eqx.nn.MLP(D, K, 16, 1, key=key),
  "function": _function_model,
}
CONFIG = TrainConfig(epochs=4, batch_size=32, learning_rate=1e-2, log_every=4, progress=False)


def test_plain_nnx_module_matches_its_own_call():
  module = PlainMLP(nnx.Rngs(0))
  model = from_nnx(module)
  x = jnp.asarray(_blobs(8)[0])
  module.eval()
  out, state = model.apply(model.params, model.state, x, False, None)
  np.testing.assert_allclose(out, module(x), rtol=1e-6)
  # In training the dropout is on: the same input gives other outputs, and its counter moves.
  train_out, new_state = model.apply(model.params, model.state, x, True, None)
  assert not np.allclose(train_out, out)
  assert jax.tree.structure(new_state) == jax.tree.structure(state)


def test_linen_matches_apply_and_updates_batch_stats():
  module = LinenMLP()
  x = jnp.asarray(_blobs(8)[0])
  variables = module.init(jax.random.key(0), x)
  model = from_linen(module, variables)
  out, state = model.apply(model.params, model.state, x, False, None)
  np.testing.assert_allclose(out, module.apply(variables, x), rtol=1e-6)
  _, new_state = model.apply(model.params, model.state, x, True, None)
  _, ref_updates = module.apply(variables, x, train=True, mutable=["batch_stats"])
  jax.tree.map(np.testing.assert_allclose, new_state["batch_stats"], ref_updates["batch_stats"])
  assert not np.allclose(new_state["batch_stats"]["BatchNorm_0"]["mean"], 0.0)
  # Params alone (no collections) work too.
  dense = nn.Dense(K)
  params = dense.init(jax.random.key(1), x)["params"]
  out, _ = from_linen(dense, params).apply(params, {}, x, False, None)
  np.testing.assert_allclose(out, dense.apply({"params": params}, x), rtol=1e-6)


def test_equinox_vmaps_one_example_modules():
  mlp = eqx.nn.MLP(D, K, 16, 1, key=jax.random.key(0))
  model = from_equinox(mlp)
  x = jnp.asarray(_blobs(8)[0])
  out, _ = model.apply(model.params, model.state, x, False, None)
  np.testing.assert_allclose(out, jnp.stack([mlp(xi) for xi in x]), rtol=1e-6, atol=1e-6)
  batched = from_equinox(eqx.nn.Linear(D, K, key=jax.random.key(1)), batched=False)
  assert batched.apply(batched.params, {}, x, False, None)[0].shape == (8, K)


def test_function_gets_train_and_rng_only_if_it_takes_them():
  seen = {}

  def with_mode(params, x, train, rng):
    seen.update(train=train, rng=rng)
    return x * params

  model = from_function(with_mode, jnp.ones(()))
  model.apply(model.params, {}, jnp.ones(2), True, jax.random.key(0))
  assert seen["train"] is True and seen["rng"] is not None
  plain = from_function(lambda params, x: x * params, jnp.ones(()))
  np.testing.assert_allclose(plain.apply(jnp.full((), 2.0), {}, jnp.ones(2), True, None)[0], 2.0)


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_own_model_trains_through_train_and_evaluate(kind, tmp_path):
  x, y = _blobs()
  xt, yt = _blobs(90, seed=1)
  data = {"train": (x, y), "test": (xt, yt)}
  summary = train_and_evaluate(CONFIG, tmp_path, data, model=FACTORIES[kind])
  assert summary["model"] == "custom"
  assert summary["test_accuracy"] > 0.95, summary
  assert summary["steps"] == 4 * (240 // 32)
  # Rerunning the finished run resumes from its checkpoint instead of training again.
  again = train_and_evaluate(CONFIG, tmp_path, data, model=FACTORIES[kind])
  assert again["test_accuracy"] == summary["test_accuracy"]


def test_as_model_explains_what_to_pass():
  with pytest.raises(JaxnnError, match="from_linen"):
    as_model(LinenMLP())
  with pytest.raises(JaxnnError, match="from_function"):
    as_model(lambda key: _apply)
  with pytest.raises(JaxnnError, match="cannot use"):
    as_model(3)
  assert isinstance(as_model(FACTORIES["equinox"]), FunctionalModel)


def test_as_dataset_from_arrays():
  x, y = _blobs(20)
  data = as_dataset((x, y))
  assert data.num_classes == K and len(data.train) == 20 and len(data.test) == 0
  assert as_dataset((x, y.astype(np.float32))).num_classes is None
  with pytest.raises(JaxnnError, match="inputs but"):
    as_dataset((x, y[:5]))
  with pytest.raises(JaxnnError, match="keys"):
    as_dataset({"training": (x, y)})

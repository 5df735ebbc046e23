"""`run_lca`'s faster setup (compile options, first-layer stem) gives the plain results."""

import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx

from jaxnn import JaxnnError
from jaxnn.data import load_dataset
from jaxnn.lca import LCAConfig, compiler_options, init_lca_model, run_lca
from jaxnn.models import create_model
from jaxnn.train import from_function, from_nnx


def test_jitted_initialization_equals_eager_create_model():
  for name, shape in (("fc", (8, 8, 1)), ("lenet", (16, 16, 1))):
    config = LCAConfig(model=name, widths=(12,), seed=3)
    ours = nnx.to_pure_dict(nnx.state(init_lca_model(config, shape, 10), nnx.Param))
    eager = nnx.to_pure_dict(
      nnx.state(create_model(name, shape, 10, seed=3, widths=(12,)), nnx.Param)
    )
    jax.tree.map(np.testing.assert_array_equal, ours, eager)


def test_fast_compile_and_stem_give_the_plain_results():
  assert compiler_options(False) is None
  dataset = load_dataset("digits")
  runs = []
  for fast in (True, False):  # fast compile and the stem, or neither
    config = LCAConfig(
      dataset="digits",
      widths=(12,),
      batch_size=200,
      epochs=1,
      chunk_size=500,
      num_devices=1,
      num_shuffles=10,
      plots=False,
      progress=False,
      fast_compile=fast,
      stem=fast,
    )
    runs.append(run_lca(config, dataset=dataset))
  fast, default = runs
  # No run directory: the summary still says how long it took, and where.
  assert fast["seconds"] > 0 and set(fast["timings"]) == {
    "setup",
    "train_with_lca",
    "analyses",
    "evaluation",
  }
  for key in (
    "train/lca_T",
    "train/layer_TxL",
    "validation/total_P",
    "train/loss_T1",
    "train/helped_T",
  ):
    np.testing.assert_allclose(fast["records"][key], default["records"][key], rtol=1e-6, atol=1e-9)
  assert fast["train_accuracy"] == default["train_accuracy"]


def test_stem_on_two_devices_gives_the_plain_results(tmp_path):
  """Chunks split across 2 devices, refinement forced: the stem's LCA = the plain path's."""
  dataset = load_dataset("digits")
  runs = []
  for stem in (True, False):
    config = LCAConfig(
      dataset="digits",
      widths=(12,),
      batch_size=200,
      epochs=1,
      chunk_size=500,
      learning_rate=0.3,
      threshold=1e-5,
      max_splits=8,
      num_devices=2,
      num_shuffles=10,
      num_tracked=200,
      stream=True,
      plots=False,
      progress=False,
      stem=stem,
    )
    runs.append(run_lca(config, tmp_path / str(stem), dataset=dataset))
  ours, plain = runs
  assert ours["devices"] == 2
  assert np.any(plain["records"]["train/splits_T"] > 2)
  for name in ("train", "validation"):
    # The full per-parameter, per-iteration arrays, streamed from 2 devices.
    a, b = (np.load(tmp_path / str(stem) / f"lca_{name}.npy") for stem in (True, False))
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * np.max(np.abs(b)))
    np.testing.assert_array_equal(a == 0, b == 0)
    np.testing.assert_allclose(a.sum(0), plain["records"][f"{name}/total_P"], rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(
      ours["records"][f"{name}/splits_T"], plain["records"][f"{name}/splits_T"]
    )
    for key in (
      "lca_T",
      "error_T",
      "first_order_T",
      "layer_TxL",
      "neuron_TxN",
      "total_P",
      "tracked_TxK",
    ):  # tracked: per parameter and iteration
      ref = plain["records"][f"{name}/{key}"]
      np.testing.assert_allclose(
        ours["records"][f"{name}/{key}"], ref, rtol=1e-4, atol=max(1e-5 * np.max(np.abs(ref)), 1e-6)
      )
    tracked = plain["records"][f"{name}/tracked_TxK"]
    np.testing.assert_array_equal(ours["records"][f"{name}/tracked_TxK"] == 0, tracked == 0)
    # Signs can differ only where float rounding can flip them.
    near_zero = np.sum(np.abs(plain["records"][f"{name}/total_P"]) <= 1e-6)
    assert np.all(
      np.abs(ours["records"][f"{name}/helped_T"] - plain["records"][f"{name}/helped_T"])
      <= near_zero
    )


class _ZetaAlpha(nnx.Module):
  """Layers defined zeta then alpha: their names sort the other way."""

  def __init__(self, rngs):
    self.zeta = nnx.Linear(64, 12, rngs=rngs)
    self.alpha = nnx.Linear(12, 10, rngs=rngs)

  def __call__(self, x, train=False, rngs=None):
    del train, rngs
    return self.alpha(jax.nn.relu(self.zeta(x.reshape(x.shape[0], -1))))


def test_own_model_and_arrays_report_layers_in_definition_order():
  dataset = load_dataset("digits")
  arrays = {
    "train": (dataset.train.x[:360], dataset.train.y[:360]),
    "validation": (dataset.validation.x[:40], dataset.validation.y[:40]),
  }
  config = LCAConfig(
    batch_size=100, epochs=1, chunk_size=500, num_devices=1, num_shuffles=10, plots=False
  )
  factory = lambda key: _ZetaAlpha(nnx.Rngs(key))
  result = run_lca(dataclasses.replace(config, progress=False), dataset=arrays, model=factory)
  records = result["records"]
  assert list(records["layers"]) == ["zeta", "alpha"]
  assert list(result["train"]["layer_totals"]) == ["zeta", "alpha"]
  assert result["model"] == "_ZetaAlpha" and result["lca_examples"] == {
    "train": 360,
    "validation": 40,
  }
  # Each layer's column is the sum of that layer's parameters (flat order: jax.tree.leaves).
  module = factory(jax.random.key(0))
  params = nnx.to_pure_dict(nnx.state(module, nnx.Param))
  sizes = {
    name: sum(np.size(v) for v in jax.tree.leaves(params[name])) for name in ("alpha", "zeta")
  }
  total_P = records["train/total_P"]
  by_layer = {"alpha": total_P[: sizes["alpha"]].sum(), "zeta": total_P[sizes["alpha"] :].sum()}
  np.testing.assert_allclose(
    records["train/layer_TxL"].sum(0), [by_layer["zeta"], by_layer["alpha"]], rtol=1e-4, atol=1e-7
  )
  neuron_layer = records["neuron_layer_N"]
  np.testing.assert_array_equal(neuron_layer, [0] * 12 + [1] * 10)
  s = result["train"]
  np.testing.assert_allclose(s["lca_sum"], s["loss_change"], rtol=1e-3, atol=1e-5)


class _Plain(nnx.Module):
  """A plain NNX module: `__call__(self, x)`, no train / rngs keywords."""

  def __init__(self, rngs):
    self.out = nnx.Linear(64, 10, rngs=rngs)
    self.hidden = nnx.Linear(64, 64, rngs=rngs)

  def __call__(self, x):
    return self.out(jax.nn.relu(self.hidden(x.reshape(x.shape[0], -1))))


def _from_nnx_takes_plain_modules() -> bool:
  try:
    from_nnx(_Plain(nnx.Rngs(0))).apply(
      nnx.to_pure_dict(nnx.state(_Plain(nnx.Rngs(0)), nnx.Param)), {}, np.zeros((1, 64), np.float32)
    )
  except TypeError:
    return False
  return True


@pytest.mark.skipif(
  not _from_nnx_takes_plain_modules(),
  reason="jaxnn.train.from_nnx does not call plain __call__(x) modules yet",
)
def test_plain_nnx_module_and_a_functional_model():
  dataset = load_dataset("digits")
  config = LCAConfig(
    dataset="digits",
    batch_size=200,
    epochs=1,
    chunk_size=500,
    num_devices=1,
    num_shuffles=10,
    plots=False,
    progress=False,
    validation_lca=False,
  )
  plain = run_lca(config, dataset=dataset, model=_Plain(nnx.Rngs(0)))
  assert list(plain["records"]["layers"]) == ["out", "hidden"]
  # The same network as a pure function of a parameter dict (insertion order: hidden, out).
  params = nnx.to_pure_dict(nnx.state(_Plain(nnx.Rngs(0)), nnx.Param))
  params = {"hidden": params["hidden"], "out": params["out"]}

  def apply(p, x):
    h = jax.nn.relu(x.reshape(x.shape[0], -1) @ p["hidden"]["kernel"] + p["hidden"]["bias"][None])
    return h @ p["out"]["kernel"] + p["out"]["bias"][None]

  functional = run_lca(config, dataset=dataset, model=from_function(apply, params))
  assert list(functional["records"]["layers"]) == ["hidden", "out"]
  np.testing.assert_allclose(
    functional["records"]["train/lca_T"], plain["records"]["train/lca_T"], rtol=1e-4, atol=1e-7
  )


def test_bad_model_data_and_weight_decay_are_refused():
  config = LCAConfig(dataset="digits", progress=False)
  with pytest.raises(JaxnnError, match="weight.decay must be (>= 0|non-negative)"):
    run_lca(dataclasses.replace(config, weight_decay=-0.1))
  x = np.zeros((20, 8), np.float32)
  with pytest.raises(JaxnnError, match="integer class labels"):
    run_lca(config, dataset=(x, np.zeros(20, np.float32)))
  with pytest.raises(JaxnnError, match="train required"):
    run_lca(config, dataset={"x": x})
  with pytest.raises(JaxnnError, match="dataset must be"):
    run_lca(config, dataset=x)
  with pytest.raises(JaxnnError, match="no validation examples"):
    run_lca(config, dataset=(x, np.zeros(20, np.int32)))
  no_validation = dataclasses.replace(config, validation_lca=False)
  with pytest.raises(JaxnnError, match="model must be"):
    run_lca(no_validation, dataset=(x, np.zeros(20, np.int32)), model=lambda key: "fc")

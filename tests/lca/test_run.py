"""`run_lca`'s faster setup (compile options, first-layer stem) gives the plain results."""

import jax
import numpy as np
from flax import nnx

from jaxnn.data import load_dataset
from jaxnn.lca import LCAConfig, compiler_options, init_model, run_lca
from jaxnn.models import create_model


def test_jitted_initialization_equals_eager_create_model():
  for name, shape in (("fc", (8, 8, 1)), ("lenet", (16, 16, 1))):
    config = LCAConfig(model=name, widths=(12,), seed=3)
    ours = nnx.to_pure_dict(nnx.state(init_model(config, shape, 10), nnx.Param))
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

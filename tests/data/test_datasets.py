"""Data layer: split determinism, transforms, batching, readers, errors."""

import gzip

import numpy as np
import pytest

from jaxnn import JaxnnError
from jaxnn._errors import DatasetUnavailableError
from jaxnn.data import (
  EpochBatcher,
  Split,
  _sources,
  eval_batches,
  load_dataset,
  permute_pixels,
  registered_datasets,
  shuffle_labels,
)


def test_offline_sizes_and_ranges():
  ds = load_dataset("digits")
  assert len(ds.train) + len(ds.validation) + len(ds.test) == 1797
  assert ds.input_shape == (8, 8, 1) and ds.num_classes == 10
  assert ds.train.x.dtype == np.float32 and ds.train.y.dtype == np.int32
  assert ds.train.x.min() == 0.0 and ds.train.x.max() == 1.0
  m = load_dataset("mnist5k", validation_size=0)
  assert (len(m.train), len(m.validation), len(m.test)) == (4000, 0, 1000)
  # Stratified: every class in the fixed test split has 100 of its 500 examples.
  np.testing.assert_array_equal(np.bincount(m.test.y), [100] * 10)


def test_splits_deterministic_by_seed_and_test_fixed():
  a, b, c = (load_dataset("digits", seed=s) for s in (0, 0, 1))
  np.testing.assert_array_equal(a.validation.x, b.validation.x)
  np.testing.assert_array_equal(a.train.y, b.train.y)
  assert not np.array_equal(a.validation.y, c.validation.y)
  np.testing.assert_array_equal(a.test.x, c.test.x)
  # Train and validation partition the training data: no example in both.
  rows = lambda s: {r.tobytes() for r in s.x}
  assert not rows(a.train) & rows(a.validation)


def test_validation_size_count_and_fraction():
  assert len(load_dataset("digits", validation_size=100).validation) == 100
  ds = load_dataset("digits", validation_size=0.25)
  assert len(ds.validation) == round(0.25 * (len(ds.train) + len(ds.validation)))
  for bad in (-1, 1.5, 10**6):
    with pytest.raises(JaxnnError, match="validation_size"):
      load_dataset("digits", validation_size=bad)


def test_permute_pixels_is_one_fixed_permutation():
  x = np.random.default_rng(0).random((5, 4, 3, 2)).astype(np.float32)
  p = permute_pixels(x)
  np.testing.assert_array_equal(p, permute_pixels(x))
  # The same permutation of positions for every example, channels kept together.
  perm = np.random.default_rng(0).permutation(12)
  np.testing.assert_array_equal(p.reshape(5, 12, 2), x.reshape(5, 12, 2)[:, perm])
  ds, shuffled = load_dataset("digits"), load_dataset("digits", shuffled_pixels=True)
  np.testing.assert_array_equal(
    np.sort(ds.test.x.reshape(len(ds.test), -1), 1),
    np.sort(shuffled.test.x.reshape(len(ds.test), -1), 1),
  )
  np.testing.assert_array_equal(ds.train.y, shuffled.train.y)


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 1.0])
def test_shuffle_labels_keeps_histogram_and_touches_only_fraction(fraction):
  y = np.repeat(np.arange(10), 100).astype(np.int32)
  s = shuffle_labels(y, fraction, seed=3)
  np.testing.assert_array_equal(np.bincount(s), np.bincount(y))
  assert np.sum(s != y) <= round(fraction * len(y))
  if fraction >= 0.5:
    assert np.sum(s != y) > 0.8 * fraction * len(y)  # a random relabeling rarely keeps labels
  with pytest.raises(JaxnnError):
    shuffle_labels(y, 1.5)


def test_epoch_batcher_deterministic_and_covers_epoch():
  split = Split(np.arange(100, dtype=np.float32)[:, None], np.arange(100, dtype=np.int32))
  b1, b2 = EpochBatcher(split, 32, seed=7), EpochBatcher(split, 32, seed=7)
  assert b1.steps_per_epoch == 3
  seen = np.concatenate([b1.at_step(s)[1] for s in range(3)])
  assert len(np.unique(seen)) == 96
  for step in (0, 4, 2, 5, 0):  # random access gives the same batch as in order
    np.testing.assert_array_equal(b1.at_step(step)[0], b2.at_step(step)[0])
  assert not np.array_equal(b1.at_step(0)[1], b1.at_step(3)[1])  # epochs reshuffle
  with pytest.raises(JaxnnError, match="batch size"):
    EpochBatcher(split, 101, seed=0)


def test_eval_batches_pad_with_mask():
  split = Split(np.ones((10, 2), np.float32), np.arange(10, dtype=np.int32))
  batches = list(eval_batches(split, 4))
  assert [b[0].shape for b in batches] == [(4, 2)] * 3
  np.testing.assert_array_equal(batches[-1][2], [1, 1, 0, 0])
  assert sum(b[2].sum() for b in batches) == 10


def _write_idx(path, array):
  header = bytes([0, 0, 8, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


def test_idx_reader_and_fashion_mnist_layout(tmp_path, monkeypatch):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (30, 28, 28))
  labels = rng.integers(0, 10, 30)
  for prefix in ("train", "t10k"):
    _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images)
    _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", labels)
  monkeypatch.setenv("JAXNN_FASHION_MNIST_DIR", str(tmp_path))
  raw = _sources.load_fashion_mnist()
  np.testing.assert_allclose(raw.train.x[..., 0] * 255, images, atol=1e-4)
  np.testing.assert_array_equal(raw.test.y, labels)
  (tmp_path / "bad.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x09abc"))
  with pytest.raises(DatasetUnavailableError, match="truncated"):
    _sources._read_idx(tmp_path / "bad.gz")


@pytest.mark.skipif(
  _sources._find_fashion_mnist_dir() is None,
  reason="Debian's dataset-fashion-mnist is not installed",
)
def test_fashion_mnist_offline_real_files():
  ds = load_dataset("fashion_mnist", validation_size=0)
  assert (len(ds.train), len(ds.test)) == (60000, 10000)
  np.testing.assert_array_equal(np.bincount(ds.test.y), [1000] * 10)


def test_unknown_and_online_datasets_fail_clearly(monkeypatch):
  with pytest.raises(JaxnnError, match="unknown dataset 'nope'.*offline: .*mnist5k"):
    load_dataset("nope")
  import builtins

  real_import = builtins.__import__

  def no_tensorflow(name, *args, **kwargs):
    if name == "tensorflow":
      raise ImportError("No module named 'tensorflow'")
    return real_import(name, *args, **kwargs)

  monkeypatch.setattr(builtins, "__import__", no_tensorflow)
  for name in ("mnist", "cifar10"):
    with pytest.raises(DatasetUnavailableError, match="TensorFlow.*Offline datasets: .*mnist5k"):
      load_dataset(name)
  assert {"digits", "mnist5k", "fashion_mnist", "mnist", "cifar10"} <= set(registered_datasets())

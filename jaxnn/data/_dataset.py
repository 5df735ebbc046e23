"""The dataset container and the registry that maps names to loaders."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from jaxnn._errors import JaxnnError


class Split(NamedTuple):
  """One split: inputs `x` (float32, channels-last images or vectors) and targets `y`."""

  x: np.ndarray
  y: np.ndarray

  def __len__(self) -> int:
    return len(self.x)


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Train / validation / test splits of one dataset, as numpy arrays.

  Attributes:
    name: the registry name, e.g. "mnist5k".
    train: the training split (minus validation).
    validation: held out from the training data, deterministically by seed.
    test: the dataset's own test split (fixed, independent of the seed).
    num_classes: number of classes, or None for regression targets.
    info: provenance (source, transforms applied, sizes) for summaries.
  """

  name: str
  train: Split
  validation: Split
  test: Split
  num_classes: int | None
  info: dict[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def input_shape(self) -> tuple[int, ...]:
    """Shape of one input example, e.g. (28, 28, 1)."""
    return tuple(self.train.x.shape[1:])


class RawData(NamedTuple):
  """What a source loader returns: the dataset's own train and test splits."""

  train: Split
  test: Split
  num_classes: int | None
  source: str


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """A registered dataset.

  Attributes:
    loader: `loader(data_dir, **options) -> RawData`.
    offline: whether it can be had without the internet.
    description: one line for `jaxnn datasets` and error messages.
    default_validation_size: validation examples held out of train by default
      (an int count or a float fraction).
  """

  loader: Callable[..., RawData]
  offline: bool
  description: str
  default_validation_size: int | float = 0.1


_REGISTRY: dict[str, DatasetSpec] = {}


def register_dataset(name: str, spec: DatasetSpec) -> None:
  """Makes `name` loadable by `load_dataset`; generated datasets register here."""
  _REGISTRY[name] = spec


def registered_datasets() -> dict[str, DatasetSpec]:
  """All registered datasets by name."""
  return dict(_REGISTRY)


def offline_dataset_names() -> list[str]:
  """Sorted names of the registered datasets that load without a network connection."""
  return sorted(name for name, spec in _REGISTRY.items() if spec.offline)


def get_spec(name: str) -> DatasetSpec:
  if name not in _REGISTRY:
    raise JaxnnError(
      f"unknown dataset {name!r}; available: {', '.join(sorted(_REGISTRY))}"
      f" (offline: {', '.join(offline_dataset_names())})"
    )
  return _REGISTRY[name]


def check_split(split: Split, what: str) -> None:
  """Raises a clear error for inconsistent arrays a user passed in."""
  if len(split.x) != len(split.y):
    raise JaxnnError(f"{what}: {len(split.x)} inputs but {len(split.y)} targets; they must match")
  if split.x.dtype.kind == "f" and len(split.x) and not np.isfinite(split.x).all():
    raise JaxnnError(f"{what}: inputs contain NaN or inf values; clean the data first")

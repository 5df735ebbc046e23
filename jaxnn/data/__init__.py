"""Datasets by name, as numpy arrays, deterministic by seed.

`load_dataset("mnist5k")` returns train / validation / test splits. Offline:
digits, mnist5k, fashion_mnist (Debian files); online through TFDS: mnist,
cifar10. Generated datasets register themselves with `register_dataset`.
"""

from jaxnn.data import (
  _sources,  # noqa: F401  (registers the built-in datasets)
  not_so_clevr,  # noqa: F401  (registers not_so_clevr)
)
from jaxnn.data._batching import EpochBatcher, eval_batches, iterate_batches
from jaxnn.data._dataset import (
  Dataset,
  DatasetSpec,
  RawData,
  Split,
  offline_dataset_names,
  register_dataset,
  registered_datasets,
)
from jaxnn.data._load import load_dataset, permute_pixels, shuffle_labels

__all__ = [
  "Dataset",
  "DatasetSpec",
  "EpochBatcher",
  "RawData",
  "Split",
  "eval_batches",
  "iterate_batches",
  "load_dataset",
  "offline_dataset_names",
  "permute_pixels",
  "register_dataset",
  "registered_datasets",
  "shuffle_labels",
]

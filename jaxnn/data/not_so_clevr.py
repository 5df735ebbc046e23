"""Not-so-Clevr: one 9x9 grey square on a black 64x64 canvas, at every position.

The dataset of Liu et al. (2018), "An intriguing failing of convolutional
neural networks and the CoordConv solution", generated in code exactly as the
paper's `not_so_clevr_generator.py`: square centres x, y in [4, 59] (3,136
examples, swept x outer, y inner), grey value 128 on black, and two
train/test splits:

- "uniform": `np.random.seed(20202)`, then one `np.random.random()` per example
  in sweep order; below 0.25 goes to test (2,368 train / 768 test).
- "quadrant": test when x/64 > 0.5 and y/64 > 0.5, the bottom-right quadrant
  of centres 33..59 (2,407 train / 729 test).

The three supervised tasks read different fields:

- "classification": raw (x, y) -> the one-hot pixel, as the class index
  `y * 64 + x` of the flattened 64x64 canvas (row y, column x).
- "regression": the one-hot 64x64x1 image -> the normalized location (x, y)/64.
- "rendering": raw (x, y) -> the square image / 255.

The arrays are written once by a TFDS builder (array_record files, no
TensorFlow needed) and read back with `tfds.data_source`. Loaded through
`jaxnn.data.load_dataset("not_so_clevr", split=..., task=...)`.

References:
  Liu et al., NeurIPS 2018, https://arxiv.org/abs/1807.03247, Section 3.
"""

from __future__ import annotations

import functools
import os
import pathlib
from typing import NamedTuple

import numpy as np

from jaxnn._errors import DatasetUnavailableError, JaxnnError
from jaxnn.data._dataset import DatasetSpec, RawData, Split, register_dataset

CANVAS = 64
HALF_SIZE = 4  # the square spans centre - 4 .. centre + 4: 9 pixels
GREY = 128
UNIFORM_SEED = 20202  # the paper's MAGIC_SEED_OF_WONDER
UNIFORM_TEST_PROBABILITY = 0.25
SPLITS = ("uniform", "quadrant")
TASKS = ("classification", "regression", "rendering")
VERSION_STRING = "1.0.0"


class NotSoClevr(NamedTuple):
  """All 3,136 examples in sweep order (x outer, y inner).

  Attributes:
    locations: (N, 2) int32 square centres (x, y); x is the column, y the row.
    images: (N, 64, 64, 1) uint8, 128 inside the square, 0 elsewhere.
  """

  locations: np.ndarray
  images: np.ndarray

  @property
  def normalized_locations(self) -> np.ndarray:
    """(x, y) / 64 as float32, the regression target of the paper."""
    return (self.locations / CANVAS).astype(np.float32)

  @property
  def pixel_index(self) -> np.ndarray:
    """Index of the centre in the flattened canvas, `y * 64 + x` (int32)."""
    return (self.locations[:, 1] * CANVAS + self.locations[:, 0]).astype(np.int32)

  def onehots(self) -> np.ndarray:
    """(N, 64, 64, 1) float32 with a single 1 at [row=y, col=x]."""
    out = np.zeros((len(self.locations), CANVAS * CANVAS), np.float32)
    out[np.arange(len(out)), self.pixel_index] = 1.0
    return out.reshape(-1, CANVAS, CANVAS, 1)


def generate() -> NotSoClevr:
  """Renders every square position, in the paper's sweep order."""
  centres = np.arange(HALF_SIZE, CANVAS - HALF_SIZE)
  locations = np.array([(x, y) for x in centres for y in centres], np.int32)
  images = np.zeros((len(locations), CANVAS, CANVAS, 1), np.uint8)
  for i, (x, y) in enumerate(locations):
    images[i, y - HALF_SIZE : y + HALF_SIZE + 1, x - HALF_SIZE : x + HALF_SIZE + 1] = GREY
  return NotSoClevr(locations, images)


def test_mask(locations: np.ndarray, split: str) -> np.ndarray:
  """Boolean (N,) mask of the test examples of `split`, for locations in sweep order."""
  if split == "uniform":
    state = np.random.get_state()
    try:
      np.random.seed(UNIFORM_SEED)
      draws = np.array([np.random.random() for _ in range(len(locations))])
    finally:
      np.random.set_state(state)
    return draws < UNIFORM_TEST_PROBABILITY
  if split == "quadrant":
    normalized = locations / CANVAS
    return (normalized[:, 0] > 0.5) & (normalized[:, 1] > 0.5)
  raise JaxnnError(f"unknown Not-so-Clevr split {split!r}; choose from {', '.join(SPLITS)}")


def task_arrays(data: NotSoClevr, task: str) -> tuple[np.ndarray, np.ndarray, int | None]:
  """(inputs, targets, num_classes) of one task over all examples."""
  if task == "classification":
    return data.locations.astype(np.float32), data.pixel_index, CANVAS * CANVAS
  if task == "regression":
    return data.onehots(), data.normalized_locations, None
  if task == "rendering":
    return data.locations.astype(np.float32), data.images.astype(np.float32) / 255.0, None
  raise JaxnnError(f"unknown Not-so-Clevr task {task!r}; choose from {', '.join(TASKS)}")


@functools.cache
def _tfds_builder_class():
  import tensorflow_datasets as tfds

  class NotSoClevrTfds(tfds.core.GeneratorBasedBuilder):
    """TFDS builder of Not-so-Clevr: every position of the square, one split per holdout."""

    VERSION = tfds.core.Version(VERSION_STRING)
    RELEASE_NOTES = {VERSION_STRING: "Liu et al. (2018) Not-so-Clevr, one square per image."}
    # Generated in code: no download checksums to look up next to a source file (looking
    # for them needs `importlib_resources` on a builder defined in a function).
    code_path = None

    def _info(self):
      features = tfds.features.FeaturesDict(
        {
          "image": tfds.features.Tensor(shape=(CANVAS, CANVAS, 1), dtype=np.uint8),
          "location": tfds.features.Tensor(shape=(2,), dtype=np.int32),
          "normalized_location": tfds.features.Tensor(shape=(2,), dtype=np.float32),
          "index": tfds.features.Tensor(shape=(), dtype=np.int32),
        }
      )
      return self.dataset_info_from_configs(
        description=__doc__.split("\n\n")[0],
        features=features,
        homepage="https://github.com/uber-research/CoordConv",
      )

    def _split_generators(self, dl_manager):
      del dl_manager
      data = generate()
      return {
        f"{split}_{part}": self._generate_examples(data, split, part == "test")
        for split in SPLITS
        for part in ("train", "test")
      }

    def _generate_examples(self, data, split, is_test):
      mask = test_mask(data.locations, split) == is_test
      normalized = data.normalized_locations
      for i in np.flatnonzero(mask):
        yield (
          int(i),
          {
            "image": data.images[i],
            "location": data.locations[i],
            "normalized_location": normalized[i],
            "index": np.int32(i),
          },
        )

  return NotSoClevrTfds


def default_data_dir() -> pathlib.Path:
  """`$JAXNN_DATA_DIR/tfds`, or ~/.cache/jaxnn/tfds."""
  root = os.environ.get("JAXNN_DATA_DIR") or pathlib.Path.home() / ".cache" / "jaxnn"
  return pathlib.Path(root) / "tfds"


def prepare(data_dir: str | os.PathLike | None = None):
  """Writes the array_record files once (idempotent) and returns the builder."""
  data_dir = pathlib.Path(data_dir) if data_dir else default_data_dir()
  try:
    import tensorflow_datasets  # noqa: F401  (checked here for a clear error)
  except ImportError as e:
    raise DatasetUnavailableError(
      "not_so_clevr is written with tensorflow-datasets: pip install tensorflow-datasets "
      "array_record"
    ) from e
  builder = _tfds_builder_class()(data_dir=str(data_dir), file_format="array_record")
  builder.download_and_prepare()
  return builder


def read_split(builder, name: str) -> NotSoClevr:
  """Reads one TFDS split back into numpy with `tfds.data_source` (random access)."""
  import tensorflow_datasets as tfds

  source = tfds.data_source(
    builder.name, split=name, data_dir=builder.data_dir_root, download=False
  )
  examples = sorted((source[i] for i in range(len(source))), key=lambda e: int(e["index"]))
  return NotSoClevr(
    np.stack([e["location"] for e in examples]).astype(np.int32),
    np.stack([e["image"] for e in examples]).astype(np.uint8),
  )


@functools.lru_cache(maxsize=8)
def _cached_split(data_dir: str, name: str) -> NotSoClevr:
  return read_split(prepare(data_dir), name)


def load(data_dir=None, *, split: str = "quadrant", task: str = "classification") -> RawData:
  """The `load_dataset` loader: one holdout split, one task's inputs and targets."""
  if split not in SPLITS:
    raise JaxnnError(f"unknown Not-so-Clevr split {split!r}; choose from {', '.join(SPLITS)}")
  if task not in TASKS:
    raise JaxnnError(f"unknown Not-so-Clevr task {task!r}; choose from {', '.join(TASKS)}")
  parts = []
  for part in ("train", "test"):
    x, y, num_classes = task_arrays(
      _cached_split(str(data_dir or default_data_dir()), f"{split}_{part}"), task
    )
    parts.append(Split(x, y))
  return RawData(
    parts[0],
    parts[1],
    num_classes,
    f"Not-so-Clevr ({split} split, {task}; Liu et al. 2018), TFDS array_record",
  )


register_dataset(
  "not_so_clevr",
  DatasetSpec(
    load,
    offline=True,
    description="Liu et al. (2018) square-at-every-position data; split=uniform|quadrant, "
    "task=classification|regression|rendering",
    default_validation_size=0,
  ),
)

"""Not-so-Clevr: counts, pixel values and splits against the paper's generator logic."""

import numpy as np
import pytest

from jaxnn import JaxnnError
from jaxnn.data import load_dataset, not_so_clevr


@pytest.fixture(scope="module")
def data():
  return not_so_clevr.generate()


def test_every_position_once_in_sweep_order(data):
  assert data.locations.shape == (3136, 2) and data.images.shape == (3136, 64, 64, 1)
  assert data.images.dtype == np.uint8
  expected = [(x, y) for x in range(4, 60) for y in range(4, 60)]  # x outer, y inner
  np.testing.assert_array_equal(data.locations, expected)


def test_pixel_values(data):
  for i in (0, 1, 57, 1500, 3135):
    x, y = data.locations[i]
    image = data.images[i, ..., 0]
    assert set(np.unique(image)) == {0, 128}
    assert (image == 128).sum() == 81
    rows, cols = np.nonzero(image)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (y - 4, y + 4, x - 4, x + 4)
  assert (data.images == 128).sum(axis=(1, 2, 3)).tolist() == [81] * 3136


def test_uniform_split_counts_and_draws(data):
  rng = np.random.RandomState(20202)  # the paper's np.random.seed(20202), one draw per example
  expected = np.array([rng.random_sample() < 0.25 for _ in range(3136)])
  mask = not_so_clevr.test_mask(data.locations, "uniform")
  np.testing.assert_array_equal(mask, expected)
  assert (int((~mask).sum()), int(mask.sum())) == (2368, 768)


def test_uniform_split_leaves_global_numpy_state_alone(data):
  np.random.seed(5)
  before = np.random.random()
  np.random.seed(5)
  not_so_clevr.test_mask(data.locations, "uniform")
  assert np.random.random() == before


def test_quadrant_split(data):
  mask = not_so_clevr.test_mask(data.locations, "quadrant")
  assert (int((~mask).sum()), int(mask.sum())) == (2407, 729)
  held = data.locations[mask]
  assert held.min() == 33 and held.max() == 59
  assert not np.any((data.locations[~mask] >= 33).all(axis=1))


def test_tfds_round_trip(tmp_path, data):
  builder = not_so_clevr.prepare(tmp_path)
  assert sorted(p.name for p in pathlib_files(builder.data_dir) if "array_record" in p.name)
  for split in ("uniform", "quadrant"):
    mask = not_so_clevr.test_mask(data.locations, split)
    for part, want in (("train", ~mask), ("test", mask)):
      back = not_so_clevr.read_split(builder, f"{split}_{part}")
      np.testing.assert_array_equal(back.locations, data.locations[want])
      np.testing.assert_array_equal(back.images, data.images[want])


def pathlib_files(directory):
  import pathlib

  return list(pathlib.Path(directory).iterdir())


@pytest.mark.parametrize("split, sizes", [("uniform", (2368, 768)), ("quadrant", (2407, 729))])
def test_load_dataset_tasks(tmp_path_factory, split, sizes):
  data_dir = tmp_path_factory.getbasetemp() / "nsc"
  cls = load_dataset("not_so_clevr", split=split, task="classification", data_dir=data_dir)
  assert (len(cls.train), len(cls.validation), len(cls.test)) == (sizes[0], 0, sizes[1])
  assert cls.num_classes == 4096 and cls.train.x.shape[1:] == (2,)
  x, y = cls.test.x.astype(int).T
  np.testing.assert_array_equal(cls.test.y, y * 64 + x)

  reg = load_dataset("not_so_clevr", split=split, task="regression", data_dir=data_dir)
  assert reg.num_classes is None and reg.train.x.shape[1:] == (64, 64, 1)
  for onehot, target in zip(reg.test.x[:5], reg.test.y[:5]):
    assert onehot.sum() == 1.0
    row, col = np.argwhere(onehot[..., 0] == 1)[0]
    np.testing.assert_allclose(target, [col / 64, row / 64])

  ren = load_dataset("not_so_clevr", split=split, task="rendering", data_dir=data_dir)
  assert ren.train.y.shape[1:] == (64, 64, 1)
  np.testing.assert_allclose(np.unique(ren.train.y), [0.0, 128 / 255])
  np.testing.assert_array_equal(ren.test.x, cls.test.x)


def test_bad_options(tmp_path):
  with pytest.raises(JaxnnError, match="split"):
    load_dataset("not_so_clevr", split="corner", data_dir=tmp_path)
  with pytest.raises(JaxnnError, match="task"):
    load_dataset("not_so_clevr", task="detection", data_dir=tmp_path)

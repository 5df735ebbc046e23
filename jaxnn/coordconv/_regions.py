"""Not-so-Clevr with any held-out region: a predicate or mask over square positions.

The paper holds out a random 25% ("uniform") or the bottom-right quadrant;
`task_data` also takes an expression in the square's centre `x, y`
(`"x < 20 and y < 20"`), a boolean mask, or a predicate `region(x, y)` (see
`jaxnn.configs.held_out_mask`), and splits the same generated data by it.
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np

from jaxnn.configs._coordconv import SPLITS, TaskConfig, held_out_mask
from jaxnn.data import Dataset, Split, load_dataset
from jaxnn.data import not_so_clevr as nsc


@functools.cache
def _all_examples() -> nsc.NotSoClevr:
  return nsc.generate()


def task_data(config: TaskConfig, held_out=None) -> Dataset:
  """The task's train / test splits: the paper's split by name, or a custom region.

  Args:
    config: the run (`task`, `split`, `seed`, `data_dir`).
    held_out: overrides `config.split`: a predicate `held_out(x, y) -> bool
      array` over arrays of centres, or a boolean mask ((64, 64) indexed [y, x],
      or (3136,) in the paper's sweep order). True = a test position.
  """
  if held_out is None and config.split in SPLITS:
    return load_dataset(
      "not_so_clevr",
      seed=config.seed,
      validation_size=0,
      data_dir=config.data_dir,
      split=config.split,
      task=config.task,
    )
  data = _all_examples()
  test = held_out_mask(config.split if held_out is None else held_out, data.locations)
  x, y, num_classes = nsc.task_arrays(data, config.task)
  train, test_split = Split(x[~test], y[~test]), Split(x[test], y[test])
  region = "custom predicate or mask" if held_out is not None else config.split
  info = dict(
    source=f"Not-so-Clevr (held out: {region}; {config.task}; Liu et al. 2018), generated",
    seed=config.seed,
    split=region,
    task=config.task,
    sizes=dict(train=len(train), validation=0, test=len(test_split)),
    held_out=np.flatnonzero(test).tolist(),
    held_out_sha1=hashlib.sha1(np.packbits(test).tobytes()).hexdigest(),
  )
  return Dataset("not_so_clevr", train, Split(x[:0], y[:0]), test_split, num_classes, info)

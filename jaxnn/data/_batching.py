"""Deterministic minibatches: batch `i` of epoch `e` depends only on (seed, e, i).

That is what makes a resumed run see exactly the batches an uninterrupted run
would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np

from jaxnn._errors import JaxnnError
from jaxnn.data._dataset import Split


class Batcher(Protocol):
  """What `run_loop` needs of a batcher: `EpochBatcher`, or a stack of them."""

  steps_per_epoch: int

  def at_step(self, step: int) -> tuple[np.ndarray, np.ndarray]: ...


class EpochBatcher:
  """Shuffled minibatches of a split, addressable by (epoch, index).

  Args:
    split: the data.
    batch_size: examples per batch; the last partial batch of an epoch is
      dropped (so every step has the same shape and compiles once).
    seed: the shuffling seed.
  """

  def __init__(self, split: Split, batch_size: int, seed: int):
    if batch_size < 1:
      raise JaxnnError(f"batch size must be positive, got {batch_size}")
    if batch_size > len(split):
      raise JaxnnError(
        f"batch size {batch_size} is larger than the {len(split)} training examples; "
        "use a smaller --batch-size"
      )
    self.split, self.batch_size, self.seed = split, batch_size, seed
    self.steps_per_epoch = len(split) // batch_size
    self._epoch: int | None = None
    self._perm: np.ndarray | None = None

  def batch(self, epoch: int, index: int) -> tuple[np.ndarray, np.ndarray]:
    if self._epoch != epoch:
      self._perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.split))
      self._epoch = epoch
    assert self._perm is not None
    idx = np.sort(self._perm[index * self.batch_size : (index + 1) * self.batch_size])
    return self.split.x[idx], self.split.y[idx]

  def at_step(self, step: int) -> tuple[np.ndarray, np.ndarray]:
    """The batch used by global training step `step` (0-based)."""
    return self.batch(*divmod(step, self.steps_per_epoch))


def iterate_batches(
  split: Split, batch_size: int, *, seed: int = 0, epoch: int = 0
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Yields the shuffled full batches of one epoch."""
  batcher = EpochBatcher(split, batch_size, seed)
  for i in range(batcher.steps_per_epoch):
    yield batcher.batch(epoch, i)


def eval_batches(
  split: Split, batch_size: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """Yields (x, y, mask) in order, the last batch zero-padded with mask 0.

  Every batch has the same shape, so an evaluation step compiles once.
  """
  n = len(split)
  for start in range(0, n, batch_size):
    x, y = split.x[start : start + batch_size], split.y[start : start + batch_size]
    mask = np.ones(len(x), np.float32)
    pad = batch_size - len(x)
    if pad:
      x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
      y = np.concatenate([y, np.zeros((pad, *y.shape[1:]), y.dtype)])
      mask = np.concatenate([mask, np.zeros(pad, np.float32)])
    yield x, y, mask

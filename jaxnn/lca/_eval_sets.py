"""Evaluation sets for full-set gradients: whole splits cut into chunks of one size.

LCA integrates the gradient of the loss over whole evaluation sets (the
training set or a fixed subset of it, and the validation set), not the
minibatch that drove a step (Lan et al. 2019). An `EvalSet` holds one or more
such sets as chunks of one size, padded with mask 0, so that a single
`lax.scan` over the chunks (`full_set_loss`) gives the gradient of every set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from jaxnn._errors import JaxnnError
from jaxnn.data import Split


class EvalSet(NamedTuple):
  """One or more evaluation sets cut into chunks of one size, padded with mask 0.

  Every chunk holds examples of a single set, so one pass over the chunks
  gives the gradient of every set (train and validation share the compiled
  computation and its matrix products).

  Attributes:
    x: inputs, shape (chunks, chunk_size, ...).
    y: targets, shape (chunks, chunk_size, ...).
    mask: 1 for real examples, 0 for padding, shape (chunks, chunk_size).
    set_C: the set of each chunk, int32, shape (chunks,).
    count_S: real examples per set, float32, shape (sets,).
  """

  x: np.ndarray
  y: np.ndarray
  mask: np.ndarray
  set_C: np.ndarray
  count_S: np.ndarray

  @property
  def num_sets(self) -> int:
    return self.count_S.shape[0]


def _chunk_size(sizes: Sequence[int], chunk_size: int, num_devices: int) -> int:
  """The chunk size <= `chunk_size` (a multiple of `num_devices`) padding the sets least.

  Each extra chunk is charged as 32 padded examples (a chunk has a fixed cost),
  so 3,600 + 400 examples with chunks of at most 1,000 make 10 chunks of 400.
  """
  candidates = range(num_devices, max(chunk_size, num_devices) + 1, num_devices)
  cost = lambda c: sum(-(-n // c) * (c + 32) for n in sizes)
  return min(candidates, key=lambda c: (cost(c), -c))


def make_eval_sets(
  splits: Sequence[Split], chunk_size: int = 1000, num_devices: int = 1
) -> EvalSet:
  """Cuts `splits` into chunks of one size for full-set gradients of each.

  Args:
    splits: the evaluation sets (whole splits, or fixed subsets the user
      picked), e.g. (train, validation).
    chunk_size: the most examples per chunk (a chunk's activations bound the
      memory); the size is picked to pad the sets least.
    num_devices: devices a chunk is split across.
  """
  if not splits:
    raise JaxnnError("LCA needs at least one evaluation set (e.g. the training set)")
  if chunk_size < 1:
    raise JaxnnError(f"chunk size must be positive, got {chunk_size}")
  sizes = [len(s) for s in splits]
  if min(sizes) == 0:
    raise JaxnnError(
      "an LCA evaluation set is empty; pass a split with examples (or no validation set)"
    )
  chunk = _chunk_size(sizes, chunk_size, num_devices)
  xs, ys, masks, sets = [], [], [], []
  for i, split in enumerate(splits):
    chunks = -(-len(split) // chunk)
    pad = chunks * chunk - len(split)
    pad_rows = lambda a: np.concatenate([a, np.zeros((pad, *a.shape[1:]), a.dtype)]) if pad else a
    shape = lambda a: a.reshape(chunks, chunk, *a.shape[1:])
    xs.append(shape(pad_rows(split.x)))
    ys.append(shape(pad_rows(split.y)))
    masks.append(
      shape(np.concatenate([np.ones(len(split), np.float32), np.zeros(pad, np.float32)]))
    )
    sets.append(np.full(chunks, i, np.int32))
  return EvalSet(
    np.concatenate(xs),
    np.concatenate(ys),
    np.concatenate(masks),
    np.concatenate(sets),
    np.asarray(sizes, np.float32),
  )


def make_eval_set(split: Split, chunk_size: int = 1000, num_devices: int = 1) -> EvalSet:
  """`make_eval_sets` of one split."""
  return make_eval_sets([split], chunk_size, num_devices)

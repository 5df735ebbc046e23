"""`LCAStream`: the full (iterations x parameters) LCA array, written to disk as it comes.

Only on request: the summaries in `LCAState` answer the paper's questions
without it. Each evaluation set gets `lca_<name>.npy`, a float32 array of shape
(T, P) opened as a memory map, so one row (one iteration) is written at a time
and a resumed run rewrites the rows it recomputes.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import numpy as np

from jaxnn._errors import JaxnnError


class LCAStream:
  """Writes row t of `lca_<set>.npy` for every iteration; pass it as `stream=`.

  Args:
    directory: where the `.npy` files go.
    num_steps: T.
    num_params: P (`LCAAccumulator.layout.num_params`).
    set_names: the accumulator's evaluation set names.
    flush_every: rows between flushes to disk.
  """

  def __init__(
    self,
    directory: str | pathlib.Path,
    num_steps: int,
    num_params: int,
    set_names: Sequence[str],
    flush_every: int = 100,
  ):
    self.directory = pathlib.Path(directory)
    self.directory.mkdir(parents=True, exist_ok=True)
    self.flush_every = flush_every
    self.arrays = []
    for name in set_names:
      path = self.directory / f"lca_{name}.npy"
      if path.exists():
        array = np.load(path, mmap_mode="r+")
        if array.shape != (num_steps, num_params) or array.dtype != np.float32:
          raise JaxnnError(
            f"{path} holds an array of shape {array.shape} ({array.dtype}), not "
            f"({num_steps}, {num_params}) float32; move it away or use another --out"
          )
      else:
        array = np.lib.format.open_memmap(
          path, mode="w+", dtype=np.float32, shape=(num_steps, num_params)
        )
      self.arrays.append(array)
    self._rows = 0

  def __call__(self, set_index, t, lca_P) -> None:
    array = self.arrays[int(set_index)]
    t = int(t)
    if 0 <= t < array.shape[0]:
      array[t] = np.asarray(lca_P)
    self._rows += 1
    if self._rows % self.flush_every == 0:
      self.flush()

  def flush(self) -> None:
    for array in self.arrays:
      array.flush()

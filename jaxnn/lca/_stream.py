"""`LCAStream`: the full (iterations x parameters) LCA array, written to disk as it comes.

Only on request: the summaries in `LCAState` answer the paper's questions
without it. Each evaluation set gets `lca_<name>.npy`, a float32 array of shape
(T, P) opened as a memory map, so one row (one iteration) is written at a time
and a resumed run rewrites the rows it recomputes. An existing file is checked
before it is opened (a readable .npy header, the run's shape and dtype, and
exactly the bytes that shape needs): a truncated or foreign file is refused,
never extended with zero rows.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Sequence

import numpy as np

from jaxnn._errors import JaxnnError


def _check_stream_file(path: pathlib.Path, shape: tuple[int, int]) -> None:
  """Raises a one-line `JaxnnError` unless `path` is a complete float32 .npy array of `shape`."""
  fix = "move it away (its rows cannot be trusted) or use another --out"
  try:
    with open(path, "rb") as f:
      version = np.lib.format.read_magic(f)
      read_header = (
        np.lib.format.read_array_header_1_0
        if version == (1, 0)
        else np.lib.format.read_array_header_2_0
      )
      file_shape, fortran_order, dtype = read_header(f)
      offset = f.tell()
  except (OSError, ValueError, EOFError) as e:
    raise JaxnnError(f"{path} is not a readable .npy array ({e}); {fix}") from None
  if tuple(file_shape) != shape or dtype != np.float32 or fortran_order:
    raise JaxnnError(
      f"{path} holds an array of shape {tuple(file_shape)} ({dtype}), not {shape} float32; {fix}"
    )
  expected = offset + math.prod(shape) * 4
  size = path.stat().st_size
  if size != expected:
    raise JaxnnError(
      f"{path} is {'truncated' if size < expected else 'longer than its header says'} "
      f"({size} bytes, a {shape} float32 array needs {expected}); {fix}"
    )


def stream_paths(directory: str | pathlib.Path, set_names: Sequence[str]) -> list[pathlib.Path]:
  """The stream file of each evaluation set: `directory/lca_<name>.npy`."""
  return [pathlib.Path(directory) / f"lca_{name}.npy" for name in set_names]


def check_stream_files(
  directory: str | pathlib.Path, num_steps: int, num_params: int, set_names: Sequence[str]
) -> None:
  """Raises a one-line `JaxnnError` if an existing stream file is not a complete float32
  (T, P) array (truncated, foreign, corrupt header); creates and changes nothing."""
  for path in stream_paths(directory, set_names):
    if path.exists():
      _check_stream_file(path, (num_steps, num_params))


class LCAStream:
  """Writes row t of `lca_<set>.npy` for every iteration; pass it as `stream=`.

  Args:
    directory: where the `.npy` files go.
    num_steps: T.
    num_params: P (`LCAAccumulator.layout.num_params`).
    set_names: the accumulator's evaluation set names.
    flush_every: rows between flushes to disk.
    resume_step: the step the run resumes from (its checkpoint's); rows
      before it must be in the files already, so a missing file is refused.

  Raises:
    JaxnnError: an existing file is not a complete float32 array of shape
      (T, P), or a file is missing although the run resumes; nothing is
      created or changed then.
  """

  def __init__(
    self,
    directory: str | pathlib.Path,
    num_steps: int,
    num_params: int,
    set_names: Sequence[str],
    flush_every: int = 100,
    resume_step: int = 0,
  ):
    self.directory = pathlib.Path(directory)
    self.flush_every = flush_every
    shape = (num_steps, num_params)
    paths = stream_paths(directory, set_names)
    check_stream_files(directory, num_steps, num_params, set_names)  # before anything is created
    for path in paths:
      if not path.exists() and resume_step > 0:
        raise JaxnnError(
          f"{path} is missing, but the run resumes from step {resume_step} and its rows "
          "before that step were streamed there; restore the file, or use another --out "
          "to start over"
        )
    self.directory.mkdir(parents=True, exist_ok=True)
    self.arrays = [
      np.load(path, mmap_mode="r+")
      if path.exists()
      else np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
      for path in paths
    ]
    self._rows = 0

  def __call__(self, set_index, t, lca_P) -> None:
    """Writes `lca_P` as row `t` of set `set_index`'s file (rows past T are dropped)."""
    array = self.arrays[int(set_index)]
    t = int(t)
    if 0 <= t < array.shape[0]:
      array[t] = np.asarray(lca_P)
    self._rows += 1
    if self._rows % self.flush_every == 0:
      self.flush()

  def flush(self) -> None:
    """Writes the rows held in memory to disk."""
    for array in self.arrays:
      array.flush()

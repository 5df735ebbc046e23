"""What a command needs to run as one job of several processes (multi-host JAX).

Every process runs the same command; process 0 alone reads and writes the
run's files (a sweep directory then need not be on a shared filesystem) and
hands what it read, or the error it met, to the others, so that all processes
agree on the work left and stop together.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jaxnn._errors import JaxnnError


def is_leader() -> bool:
  """Whether this is process 0, the one that writes files and prints progress."""
  return jax.process_index() == 0


def _broadcast_bytes(data: bytes) -> bytes:
  from jax.experimental import multihost_utils

  size = int(multihost_utils.broadcast_one_to_all(np.int32(len(data))))
  buffer = np.zeros(size, np.uint8)
  if is_leader():
    buffer[:] = np.frombuffer(data, np.uint8)
  return np.asarray(multihost_utils.broadcast_one_to_all(buffer)).tobytes()


def on_leader(fn: Callable[[], Any]) -> Any:
  """`fn()` run on process 0; every process returns its (JSON-able) result.

  With several processes this is also a barrier: no process goes on before
  process 0 has finished `fn`, and an error there (a corrupt file, a full
  disk) is raised on every process, as a `JaxnnError` with its one line
  (process 0 raises the original exception).
  """
  if jax.process_count() == 1:
    return fn()
  error, result = None, None
  if is_leader():
    try:
      result = fn()
    except Exception as e:
      error = e
  payload = {"error": f"{type(error).__name__}: {error}"} if error else {"result": result}
  received = json.loads(_broadcast_bytes(json.dumps(payload).encode()).decode())
  if error is not None:
    raise error
  if "error" in received:
    raise JaxnnError(f"process 0 stopped the job: {received['error']}")
  return received["result"]


def say(message: str) -> None:
  """Prints a progress line to stderr, on process 0 only."""
  if is_leader():
    print(message, file=sys.stderr, flush=True)

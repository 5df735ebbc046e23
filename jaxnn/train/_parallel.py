"""Data parallelism over local devices with `jax.jit` and `NamedSharding`.

The batch is split along a "data" mesh axis, parameters are replicated; a loss
that averages over the global batch makes XLA average the gradients across
devices (what `pmap` + `pmean` used to do). On several hosts, call
`jax.distributed.initialize()` first: every process then feeds its own slice of
each global batch (`shard_batch`) and the same code runs unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxnn._errors import JaxnnError


@dataclasses.dataclass(frozen=True)
class DataParallel:
  """A 1-D device mesh with the two shardings a data-parallel step needs."""

  mesh: jax.sharding.Mesh

  @property
  def num_devices(self) -> int:
    return self.mesh.size

  @property
  def replicated(self) -> NamedSharding:
    return NamedSharding(self.mesh, P())

  @property
  def batch(self) -> NamedSharding:
    return NamedSharding(self.mesh, P("data"))

  def replicate(self, tree: Any) -> Any:
    return jax.device_put(tree, self.replicated)

  def shard_batch(self, *arrays: np.ndarray, sharding: jax.sharding.Sharding | None = None):
    """Places global-batch arrays with `sharding` (default: split along axis 0).

    Every process holds the same global batch (the batchers are deterministic),
    so with several processes each one fills the shards of its own devices.
    """
    sharding = sharding or self.batch
    if jax.process_count() == 1:
      return tuple(jax.device_put(a, sharding) for a in arrays)
    return tuple(jax.make_array_from_callback(a.shape, sharding, a.__getitem__) for a in arrays)


def data_parallel(batch_size: int | None = None, num_devices: int | None = None) -> DataParallel:
  """A mesh over `num_devices` devices (default: as many as divide `batch_size`).

  Args:
    batch_size: the global batch; the mesh size must divide it.
    num_devices: devices to use; None picks the largest count of the available
      devices that divides the batch (and says so when that is not all).
  """
  available = jax.device_count()
  if num_devices is None:
    num_devices = available
    if batch_size is not None:
      while batch_size % num_devices:
        num_devices -= 1
      if num_devices < available:
        print(
          f"jaxnn: using {num_devices} of {available} devices: batch size {batch_size} "
          f"is not divisible by {available}",
          flush=True,
        )
  if not 1 <= num_devices <= available:
    raise JaxnnError(f"asked for {num_devices} devices but {available} are available")
  if batch_size is not None and batch_size % num_devices:
    raise JaxnnError(
      f"batch size {batch_size} is not divisible by {num_devices} devices; "
      f"use a multiple of {num_devices}"
    )
  devices = np.array(jax.devices()[:num_devices])
  return DataParallel(jax.sharding.Mesh(devices, ("data",)))

"""Data parallelism over local devices with `jax.jit` and `NamedSharding`.

The batch is split along a "data" mesh axis, parameters are replicated; a loss
that averages over the global batch makes XLA average the gradients across
devices (what `pmap` + `pmean` used to do). On several hosts, call
`jax.distributed.initialize()` first (`initialize_distributed` does when the
environment describes a multi-process job): every process then feeds its own
slice of each global batch (`shard_batch`) and the same code runs unchanged.
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


# Environment variables that `initialize_distributed` reads besides JAX's own
# JAX_COORDINATOR_ADDRESS (which `jax.distributed.initialize` reads itself).
DISTRIBUTED_ENV = ("JAXNN_DISTRIBUTED", "JAXNN_NUM_PROCESSES", "JAXNN_PROCESS_ID")
# What JAX's SLURM detection reads; SLURM_STEP_NUM_TASKS tells an `srun` step of several
# tasks from a batch script that runs the command once.
_SLURM_ENV: tuple[str, ...] = (
  "SLURM_JOB_ID",
  "SLURM_STEP_NODELIST",
  "SLURM_NTASKS",
  "SLURM_PROCID",
)
_SLURM_ENV += ("SLURM_LOCALID", "SLURM_STEP_NUM_TASKS")


def initialize_distributed(environ: dict | None = None) -> bool:
  """Joins a multi-process (multi-host) JAX job if the environment describes one.

  Every process of the job runs the same command; this calls
  `jax.distributed.initialize` (before any JAX computation) when:

  - JAX_COORDINATOR_ADDRESS (host:port of process 0) is set, with
    JAXNN_NUM_PROCESSES and JAXNN_PROCESS_ID (localhost, Kubernetes, any
    launcher that can set per-process variables);
  - or it runs as one of several tasks of a SLURM job step (`srun` with
    several tasks), which JAX detects by itself (one process per GPU);
  - or JAXNN_DISTRIBUTED=1: JAX's own detection (Cloud TPU pod slices, GKE,
    SLURM, Open MPI).

  JAXNN_DISTRIBUTED=0 turns it off. Without any of these (a single machine,
  Colab) it does nothing and JAX uses the local devices.

  Returns:
    Whether this process joined a distributed job.

  Raises:
    JaxnnError: incomplete or invalid settings, or the job could not be joined.
  """
  import os

  env = os.environ if environ is None else environ
  switch = env.get("JAXNN_DISTRIBUTED", "auto").strip().lower()
  if switch not in ("auto", "0", "1"):
    raise JaxnnError(f"JAXNN_DISTRIBUTED must be 0, 1 or unset, got {switch!r}")
  if switch == "0":
    return False
  address = env.get("JAX_COORDINATOR_ADDRESS")
  kwargs: dict[str, Any] = {}
  if address:
    try:
      kwargs = {
        "coordinator_address": address,
        "num_processes": int(env["JAXNN_NUM_PROCESSES"]),
        "process_id": int(env["JAXNN_PROCESS_ID"]),
      }
    except (KeyError, ValueError):
      raise JaxnnError(
        "JAX_COORDINATOR_ADDRESS is set: also set JAXNN_NUM_PROCESSES (the number of "
        "processes) and JAXNN_PROCESS_ID (0 .. JAXNN_NUM_PROCESSES - 1) to integers"
      ) from None
    if not 0 <= kwargs["process_id"] < kwargs["num_processes"]:
      raise JaxnnError(
        f"need 0 <= JAXNN_PROCESS_ID < JAXNN_NUM_PROCESSES, got {kwargs['process_id']} "
        f"and {kwargs['num_processes']}"
      )
  elif switch == "auto":
    slurm = all(k in env for k in _SLURM_ENV) and env["SLURM_STEP_NUM_TASKS"] not in ("", "1")
    if not slurm:
      return False
  try:
    jax.distributed.initialize(**kwargs)
  except (RuntimeError, ValueError) as e:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise JaxnnError(
      f"could not join the distributed job ({first[:300]}); every process must run the same "
      "command with the same JAX_COORDINATOR_ADDRESS, reachable from all hosts"
    ) from None
  return True

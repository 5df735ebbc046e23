"""One process of a multi-process (multi-host style) training run on CPU.

Usage: python multiprocess_worker.py PROCESS_ID NUM_PROCESSES PORT WORKDIR OUT.npz
Each process has 2 CPU devices; gloo carries the cross-process all-reduce.
"""

import sys

import jax

process_id, num_processes, port, workdir, out = sys.argv[1:]
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.config.update("jax_num_cpu_devices", 2)
jax.distributed.initialize(
  coordinator_address=f"localhost:{port}",
  num_processes=int(num_processes),
  process_id=int(process_id),
)

import numpy as np  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402
from multiprocess_run import train  # noqa: E402

state = train(workdir)
params = multihost_utils.process_allgather(state.params, tiled=True)
if jax.process_index() == 0:
  np.savez(out, *jax.tree.leaves(jax.device_get(params)))

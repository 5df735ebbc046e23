"""One process of a multi-process `jaxnn` command, as a launcher would start it.

Usage: python cli_worker.py JAXNN_ARGS...  (the environment says which process it is:
JAX_COORDINATOR_ADDRESS, JAXNN_NUM_PROCESSES, JAXNN_PROCESS_ID, JAX_NUM_CPU_DEVICES).
Runs the `jaxnn` command unchanged, then prints the job's shape as one JSON line
so the test can check that it really ran on several processes.
"""

import json
import sys

from jaxnn.cli import main

status = main(sys.argv[1:])
import jax  # noqa: E402

shape = {"process_index": jax.process_index(), "process_count": jax.process_count()}
print("JOB " + json.dumps(shape), flush=True)
sys.exit(status)

"""Starting a multi-process JAX job on this machine, as SLURM or a pod's launcher would.

Every process runs the same script with its own environment: the coordinator
(a free port on 127.0.0.1), the number of processes, its id and its number of
CPU devices. Each process's output goes to `LOGS/process_<tag>_<i>.log`.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys

ROOT = pathlib.Path(__file__).parents[1]


def free_port() -> int:
  """A TCP port on 127.0.0.1 that nothing listens on now."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def log_path(logs: pathlib.Path, tag: str, i: int) -> pathlib.Path:
  return logs / f"process_{tag}_{i}.log"


def start_job(
  script: pathlib.Path, args: list[str], processes: int, devices: int, logs: pathlib.Path, tag: str
) -> list[subprocess.Popen]:
  """Starts `python SCRIPT ARGS...` once per process of a job; returns the processes."""
  port = free_port()
  procs = []
  for i in range(processes):
    env = {
      **os.environ,
      "JAX_PLATFORMS": "cpu",
      "JAX_NUM_CPU_DEVICES": str(devices),
      "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
      "JAXNN_NUM_PROCESSES": str(processes),
      "JAXNN_PROCESS_ID": str(i),
      "PYTHONPATH": str(ROOT),  # this checkout's jaxnn, like the test itself
    }
    env.pop("XLA_FLAGS", None)
    with open(log_path(logs, tag, i), "w") as log:
      procs.append(
        subprocess.Popen(
          [sys.executable, str(script), *map(str, args)],
          env=env,
          stdout=log,
          stderr=subprocess.STDOUT,
          cwd=ROOT,
        )
      )
  return procs


def finish_job(procs: list[subprocess.Popen], logs: pathlib.Path, tag: str) -> list[dict]:
  """Waits for every process; each must exit 0 and end with `JOB {json}`: returns those."""
  shapes = []
  for i, p in enumerate(procs):
    p.wait(timeout=400)
    text = log_path(logs, tag, i).read_text()
    assert p.returncode == 0, text[-3000:]
    shapes.append(json.loads(text.split("JOB ")[-1]))
  return shapes

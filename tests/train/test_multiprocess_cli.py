"""`jaxnn train` and `jaxnn lca` on two processes (multi-host JAX, simulated on 127.0.0.1).

Each process runs the same command through cli_worker.py, told by the
environment who it is (as SLURM or a pod's launcher would); each has one CPU
device and the two talk over gloo. The reference is the same command run in
this process on two devices: the metrics log, the LCA records and the
streamed LCA arrays must be the same bytes, and the summary the same numbers.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys

import pytest

from jaxnn.cli import main

HERE = pathlib.Path(__file__).parent
ROOT = HERE.parents[1]
COMMANDS = {
  "train": ["train", "--dataset", "digits", "--widths", "16", "--epochs", "2"],
  "lca": [
    *["lca", "--dataset", "digits", "--widths", "8", "--batch-size", "200", "--epochs", "2"],
    *["--chunk-size", "500", "--compile-cache", "none", "--stream"],
  ],
}
SAME_BYTES = {
  "train": ["metrics.jsonl"],
  "lca": ["metrics.jsonl", "lca_records.npz", "lca_train.npy", "lca_validation.npy"],
}


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _run_job(args: list[str], processes: int, logs: pathlib.Path) -> list[dict]:
  port = _free_port()
  procs = []
  for i in range(processes):
    env = {
      **os.environ,
      "JAX_PLATFORMS": "cpu",
      "JAX_NUM_CPU_DEVICES": "1",
      "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
      "JAXNN_NUM_PROCESSES": str(processes),
      "JAXNN_PROCESS_ID": str(i),
      "PYTHONPATH": str(ROOT),
    }
    env.pop("XLA_FLAGS", None)
    with open(logs / f"process_{i}.log", "w") as log:
      procs.append(
        subprocess.Popen(
          [sys.executable, str(HERE / "cli_worker.py"), *args],
          env=env,
          stdout=log,
          stderr=subprocess.STDOUT,
          cwd=ROOT,
        )
      )
  shapes = []
  for i, p in enumerate(procs):
    p.wait(timeout=400)
    text = (logs / f"process_{i}.log").read_text()
    assert p.returncode == 0, text[-3000:]
    shapes.append(json.loads(text.split("JOB ")[-1]))
  return shapes


def _summary(path: pathlib.Path) -> dict:
  summary = json.loads(path.read_text())
  for wall_time in ("seconds", "timings"):
    summary.pop(wall_time, None)
  return summary


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_two_processes_write_what_one_process_writes(command, tmp_path):
  args = [*COMMANDS[command], "--devices", "2", "--no-progress", "--no-plots"]
  args = [a for a in args if not (command == "train" and a == "--no-plots")]
  one, two = tmp_path / "one", tmp_path / "two"
  assert main([*args, "--out", str(one)]) == 0
  shapes = _run_job([*args, "--out", str(two)], 2, tmp_path)
  assert sorted((s["process_index"], s["process_count"]) for s in shapes) == [(0, 2), (1, 2)]
  for name in SAME_BYTES[command]:
    assert (two / name).read_bytes() == (one / name).read_bytes(), name
  assert _summary(two / "summary.json") == _summary(one / "summary.json")
  assert json.loads((two / "config.json").read_text()) == json.loads(
    (one / "config.json").read_text()
  )

"""`jaxnn train` and `jaxnn lca` on two processes (multi-host JAX, simulated on 127.0.0.1).

Each process runs the same command through cli_worker.py, told by the
environment who it is (as SLURM or a pod's launcher would); each has one CPU
device and the two talk over gloo. The reference is the same command run in
this process on two devices: the metrics log, the LCA records and the
streamed LCA arrays must be the same bytes, and the summary the same numbers.
"""

import json
import pathlib

import pytest
from jobs import finish_job, start_job

from jaxnn.cli import main

HERE = pathlib.Path(__file__).parent
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
  procs = start_job(HERE / "cli_worker.py", [*args, "--out", two], 2, 1, tmp_path, command)
  shapes = finish_job(procs, tmp_path, command)
  assert sorted((s["process_index"], s["process_count"]) for s in shapes) == [(0, 2), (1, 2)]
  for name in SAME_BYTES[command]:
    assert (two / name).read_bytes() == (one / name).read_bytes(), name
  assert _summary(two / "summary.json") == _summary(one / "summary.json")
  assert json.loads((two / "config.json").read_text()) == json.loads(
    (one / "config.json").read_text()
  )

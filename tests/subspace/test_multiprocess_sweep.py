"""`jaxnn subspace sweep` on several processes (multi-host JAX, simulated on 127.0.0.1).

Each process runs the same command (sweep_worker.py calls the `jaxnn` CLI);
the environment tells it the coordinator (a free local port), the number of
processes and its id; every process has 1 or 2 CPU devices and the processes
talk over gloo. The reference is the same sweep run in one process on one
device: the results files must be byte for byte the same. A process killed
mid-sweep brings the job down; the same command rerun on another number of
processes finishes it, again with the same bytes.
"""

import json
import pathlib
import time

import pytest
from jobs import finish_job, start_job

from jaxnn.cli import main

HERE = pathlib.Path(__file__).parent
# Several processes per test, minutes in all: CI runs these after the default suite (-m slow).
pytestmark = pytest.mark.slow
TINY = [
  "--dataset",
  "digits",
  "--model",
  "fc",
  "--widths",
  "16",
  "--batch-size",
  "32",
  "--projection",
  "fastfood",
  "--lr",
  "0.01",
  "--baseline-lr",
  "0.002",
  "--no-progress",
]
# The individual baseline (one program), then two programs of two configs (d=3 and d=24,
# seeds 0 and 1).
FIXED = [*TINY, "--dims", "3,24", "--seeds", "2", "--steps", "10", "--configs-per-program", "2"]
# The automatic search, one seed, two configs per program (one round each).
AUTO = [
  *TINY,
  "--dims",
  "auto",
  "--d-min",
  "4",
  "--d-max",
  "64",
  "--resolution",
  "0.5",
  "--baseline",
  "0.05",
  "--seeds",
  "1",
  "--steps",
  "10",
  "--configs-per-program",
  "2",
]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """{name: files} of each sweep run in this (one) process on one device."""
  files = {}
  for name, args in (("fixed", FIXED), ("auto", AUTO)):
    out = tmp_path_factory.mktemp(name)
    assert main(["subspace", "sweep", *args, "--devices", "1", "--out", str(out)]) == 0
    files[name] = _files(out)
  return files


def _start(out, args, processes: int, devices: int, logs: pathlib.Path) -> list:
  """Starts the job's processes, as SLURM or a pod's launcher would: same command, own env."""
  return start_job(
    HERE / "sweep_worker.py",
    [*args, "--out", out],
    processes,
    devices,
    logs,
    _tag(processes, devices),
  )


def _tag(processes: int, devices: int) -> str:
  return f"{processes}x{devices}"


def _run(out, args, processes, devices, logs) -> list[dict]:
  procs = _start(out, args, processes, devices, logs)
  return finish_job(procs, logs, _tag(processes, devices))


def _files(out: pathlib.Path) -> dict[str, bytes]:
  """Every results and state file of a sweep directory (the plot aside)."""
  names = ["results.json", "results.csv", "sweep.json", "baseline.json"]
  files = {n: (out / n).read_bytes() for n in names if (out / n).exists()}
  files.update({f"configs/{p.name}": p.read_bytes() for p in (out / "configs").glob("*.json")})
  return files


def _check_job(shapes, processes, devices):
  assert sorted(s["process_index"] for s in shapes) == list(range(processes))
  assert {(s["process_count"], s["device_count"], s["local_device_count"]) for s in shapes} == {
    (processes, processes * devices, devices)
  }


def _assert_same(got: dict, expected: dict, what: str):
  assert got.keys() == expected.keys()
  for name in expected:
    assert got[name] == expected[name], f"{name} differs {what}"


def test_four_processes_write_the_same_bytes_as_one(tmp_path, reference):
  expected = reference["fixed"]
  assert {"results.json", "results.csv", "baseline.json"} <= set(expected)
  assert len([n for n in expected if n.startswith("configs/")]) == 2
  results = json.loads(expected["results.json"])
  assert [(c["d"], c["seed"]) for c in results["configs"]] == [(3, 0), (3, 1), (24, 0), (24, 1)]
  out = tmp_path / "4x1"
  _check_job(_run(out, FIXED, 4, 1, tmp_path), 4, 1)
  _assert_same(_files(out), expected, "on 4 processes")


def test_automatic_search_on_two_processes_of_two_devices(tmp_path, reference):
  expected = reference["auto"]
  assert len(json.loads(expected["results.json"])["search"]["rounds"]) >= 2
  out = tmp_path / "2x2"
  _check_job(_run(out, AUTO, 2, 2, tmp_path), 2, 2)
  _assert_same(_files(out), expected, "on 2 processes")


def test_killed_process_takes_the_job_down_and_a_rerun_on_one_process_finishes(tmp_path, reference):
  expected = reference["fixed"]
  out = tmp_path / "killed"
  procs = _start(out, FIXED, 2, 1, tmp_path)
  deadline = time.monotonic() + 400
  while not list((out / "configs").glob("program_*.json")):
    assert all(p.poll() is None for p in procs), "a process ended before the first program"
    assert time.monotonic() < deadline
    time.sleep(0.02)
  procs[1].kill()
  # The survivor's next collective fails (gloo: "Connection closed / reset by peer") with
  # a traceback; JAX then ends it once the coordination service misses the dead process's
  # heartbeats. A launcher (srun, the pod runtime) ends the job as soon as one task dies;
  # so does this test.
  log = tmp_path / "process_2x1_0.log"
  waited = time.monotonic() + 120
  while procs[0].poll() is None and "Gloo" not in log.read_text():
    assert time.monotonic() < waited, log.read_text()[-2000:]
    time.sleep(0.1)
  procs[0].kill()
  for p in procs:
    p.wait(timeout=60)
  saved = _files(out)
  assert "results.json" not in saved
  done = [n for n in saved if n.startswith("configs/")]
  assert len(done) == 1 and saved[done[0]] == expected[done[0]]
  assert saved["baseline.json"] == expected["baseline.json"]

  # The same command on one process (one device) trains only the program left.
  assert main(["subspace", "sweep", *FIXED, "--devices", "1", "--out", str(out)]) == 0
  _assert_same(_files(out), expected, "after the rerun")
  programs = [
    json.loads(line)["program"] for line in (out / "timings.jsonl").read_text().splitlines()
  ]
  assert programs.count("baseline") == 1 and len(programs) == 3

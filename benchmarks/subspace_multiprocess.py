"""Sweep throughput of 1, 2 and 4 processes on one machine: the cost of going multi-process.

Every job is the same `jaxnn subspace sweep` (digits, FC 16, fastfood, 4 dims
x 2 seeds = 8 configs in one program, a global baseline, each process 1 CPU
device), started as N processes on 127.0.0.1 exactly as the tests and
docs/distributed.md start them, all pinned to the same cores. On one box the
processes share the CPU, so this measures overhead (each process starts
Python and JAX, loads the data and compiles every program; each step gathers
the metrics across processes; each program ends with a barrier), not
speed-up. Each job runs at two step counts, so that its wall time splits into
a fixed part (start, compile, save) and a per-step part:

  wall(steps) = fixed + steps x per_step     (two points, solved exactly)

The cost model of docs/distributed.md, for N processes sharing the cores,
predicts N x fixed(1 process) + steps x per_step(1 process): the same total
work, every process paying its own start-up and compilation; the difference
from the measured wall time is the cost of the collectives (the per-step
gather of losses, the per-program barrier) and of N processes contending.
The sweep's own `timings.jsonl` (per-program seconds, written by process 0)
gives the start-up part: the wall time minus the program's time. Results:
benchmarks/results/subspace_multiprocess.json.

Usage (the machine is shared: take the lock, pin the cores):
  PYTHONPATH=$PWD flock /tmp/jaxnn_bench.lock taskset -c 0 \
    python benchmarks/subspace_multiprocess.py
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
SWEEP = [
  "subspace",
  "sweep",
  "--dataset",
  "digits",
  "--widths",
  "16",
  "--batch-size",
  "32",
  "--projection",
  "fastfood",
  "--dims",
  "8,16,32,64",
  "--seeds",
  "2",
  "--configs-per-program",
  "8",
  "--baseline",
  "0.5",
  "--lr",
  "0.01",
  "--no-progress",
]
CONFIGS = 8


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def run_job(processes: int, steps: int, workdir: pathlib.Path) -> dict:
  """Runs the sweep as `processes` processes; returns wall seconds and the programs' seconds."""
  out = workdir / f"p{processes}_s{steps}"
  shutil.rmtree(out, ignore_errors=True)
  port = _free_port()
  env = {
    **os.environ,
    "JAX_PLATFORMS": "cpu",
    "JAX_NUM_CPU_DEVICES": "1",
    "PYTHONPATH": str(ROOT),
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
  }
  if processes > 1:
    env.update(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAXNN_NUM_PROCESSES=str(processes))
  start = time.perf_counter()
  procs = [
    subprocess.Popen(
      [sys.executable, "-m", "jaxnn.cli", *SWEEP, "--steps", str(steps), "--out", str(out)],
      env={**env, "JAXNN_PROCESS_ID": str(i)},
      stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in range(processes)
  ]
  for p in procs:
    _, err = p.communicate(timeout=1800)
    if p.returncode:
      raise SystemExit(f"a process failed:\n{err[-2000:]}")
  wall = time.perf_counter() - start
  programs = [json.loads(line) for line in (out / "timings.jsonl").read_text().splitlines()]
  return {
    "processes": processes,
    "steps": steps,
    "wall_s": round(wall, 3),
    "programs_s": round(sum(p["seconds"] for p in programs), 3),
    "configs_per_s": round(CONFIGS / wall, 4),
    "results_sha1": __import__("hashlib").sha1((out / "results.json").read_bytes()).hexdigest(),
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--processes", default="1,2,4")
  parser.add_argument("--steps", default="20,200", help="two step counts for the fit")
  parser.add_argument("--out", default=str(ROOT / "benchmarks/results/subspace_multiprocess.json"))
  args = parser.parse_args()
  counts = [int(n) for n in args.processes.split(",")]
  low, high = (int(s) for s in args.steps.split(","))
  runs = []
  with tempfile.TemporaryDirectory() as tmp:
    # Interleaved (1, 2, 4, 1, 2, 4), so that a burst of load does not hit one count only.
    for steps in (low, high):
      for n in counts:
        runs.append(run_job(n, steps, pathlib.Path(tmp)))
        print(json.dumps(runs[-1]), flush=True)
  fits = {}
  for n in counts:
    by_steps = {r["steps"]: r for r in runs if r["processes"] == n}
    per_step = (by_steps[high]["wall_s"] - by_steps[low]["wall_s"]) / (high - low)
    fits[n] = {
      "fixed_s": round(by_steps[low]["wall_s"] - low * per_step, 3),
      "per_step_ms": round(1000 * per_step, 3),
      "startup_s": round(by_steps[low]["wall_s"] - by_steps[low]["programs_s"], 3),
    }
  one = fits[counts[0]]
  for n in counts:
    for steps in (low, high):
      predicted = n * one["fixed_s"] + steps * one["per_step_ms"] / 1000
      measured = next(r["wall_s"] for r in runs if (r["processes"], r["steps"]) == (n, steps))
      fits[n][f"model_wall_s_at_{steps}"] = round(predicted, 3)
      fits[n][f"measured_wall_s_at_{steps}"] = measured
      fits[n][f"measured_over_model_at_{steps}"] = round(measured / predicted, 3)
  hashes = {r["results_sha1"] for r in runs if r["steps"] == high}
  report = {
    "command": "flock /tmp/jaxnn_bench.lock taskset -c "
    + ",".join(sorted(str(c) for c in os.sched_getaffinity(0)))
    + " python benchmarks/subspace_multiprocess.py "
    + " ".join(sys.argv[1:]),
    "cores": len(os.sched_getaffinity(0)),
    "sweep": " ".join(["jaxnn", *SWEEP]),
    "configs": CONFIGS,
    "runs": runs,
    "fits": {str(n): f for n, f in fits.items()},
    "same_results_for_every_process_count": len(hashes) == 1,
  }
  pathlib.Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
  print(json.dumps(report["fits"], indent=2))


if __name__ == "__main__":
  main()

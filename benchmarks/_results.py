"""Writes a benchmark script's result as JSON, with the command line that produced it.

Import this module before `_threads` (it notes the XLA settings the caller gave before the
script changes them). Every result records `command`: the CPU affinity as `taskset -c`, the
`XLA_FLAGS` / `JAX_PLATFORMS` set in the environment, and the script's arguments as given.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

ENV_AT_START = {k: os.environ[k] for k in ("XLA_FLAGS", "JAX_PLATFORMS") if k in os.environ}


def command_line(argv: list[str] | None = None) -> str:
  """The command that reruns this process: taskset, environment, `python <script> <args>`."""
  argv = sys.argv if argv is None else argv
  script = Path(argv[0]).resolve()
  root = Path(__file__).resolve().parents[1]
  try:
    script_name = str(script.relative_to(root))
  except ValueError:
    script_name = str(script)
  words = ["taskset", "-c", ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))]
  if ENV_AT_START:
    words += ["env"] + [f"{k}={v}" for k, v in ENV_AT_START.items()]
  return shlex.join(words + ["python", script_name] + list(argv[1:]))


def write(path: str | Path, result: dict, runs_key: tuple[str, ...] | None = None) -> dict:
  """Writes `result` (plus `command`) as JSON at `path`; returns what was written.

  Without `runs_key`, the file is `result` with this process's `command`. With `runs_key`,
  `result["runs"]` are this process's runs (each gets `command`): they replace the runs of the
  existing file that have the same values of `runs_key` (e.g. the same thread count), the
  others are kept (each with the command that wrote it), and the top-level fields are
  `result`'s.
  """
  path = Path(path)
  command = command_line()
  if runs_key is None:
    out = {"command": command, **result}
  else:
    new = [{"command": command, **run} for run in result["runs"]]
    key = lambda run: tuple(run.get(k) for k in runs_key)
    old = []
    if path.exists():
      previous = json.loads(path.read_text())
      old = [run for run in previous.get("runs", []) if "command" in run]
    keys = {key(run) for run in new}
    runs = [run for run in old if key(run) not in keys] + new
    runs.sort(key=key)
    out = {**result, "runs": runs}
  path.write_text(json.dumps(out, indent=1) + "\n")
  print(f"wrote {path}", flush=True)
  return out

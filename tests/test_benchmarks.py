"""The benchmark results: each written by its script, with the command that reruns it."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


def _commands(result) -> list[str]:
  """Every command recorded in a result: `command`, `commands` and those of its runs."""
  if isinstance(result, dict):
    found = []
    for key, value in result.items():
      if key == "command":
        found.append(value)
      elif key == "commands":
        found += list(value.values())
      else:
        found += _commands(value)
    return found
  if isinstance(result, list):
    return [c for item in result for c in _commands(item)]
  return []


def _results_module():
  sys.path.insert(0, str(BENCHMARKS))
  try:
    spec = importlib.util.spec_from_file_location("_results", BENCHMARKS / "_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
  finally:
    sys.path.remove(str(BENCHMARKS))


def test_every_result_records_commands_of_its_own_script_which_accepts_out():
  for path in sorted((BENCHMARKS / "results").glob("*.json")):
    result = json.loads(path.read_text())
    assert "transcribed" not in json.dumps(result), f"{path.name}: a transcribed result"
    commands = _commands(result)
    assert commands, f"{path.name} records no command"
    for command in commands:
      scripts = re.findall(r"benchmarks/(\w+)\.py", command)
      assert scripts[:1] == [path.stem], f"{path.name}: {command!r} runs another script"
    source = (BENCHMARKS / f"{path.stem}.py").read_text()
    assert '"--out"' in source, f"benchmarks/{path.stem}.py has no --out"


def test_the_six_scripts_wrote_their_results_with_out():
  for name in (
    "train_step",
    "coordconv_layer",
    "coordconv_time_to_perfect",
    "subspace_vmap",
    "subspace_kernel_calls",
    "lca_bench",
  ):
    result = json.loads((BENCHMARKS / "results" / f"{name}.json").read_text())
    for command in _commands(result):
      assert command.endswith(f"--out benchmarks/results/{name}.json") or (
        f" --out benchmarks/results/{name}.json " in command
      ), f"{name}.json: {command!r} does not write it"


def test_write_replaces_the_run_with_the_same_key_and_keeps_the_others(tmp_path, monkeypatch):
  results = _results_module()
  path = tmp_path / "r.json"
  monkeypatch.setattr(sys, "argv", ["benchmarks/x.py", "--threads", "1", "--out", str(path)])
  results.write(path, {"unit": "ms", "runs": [{"threads": 1, "ms": 3.0}]}, runs_key=("threads",))
  monkeypatch.setattr(sys, "argv", ["benchmarks/x.py", "--threads", "2", "--out", str(path)])
  results.write(path, {"unit": "ms", "runs": [{"threads": 2, "ms": 2.0}]}, runs_key=("threads",))
  monkeypatch.setattr(sys, "argv", ["benchmarks/x.py", "--threads", "1", "--out", str(path)])
  out = results.write(
    path, {"unit": "ms", "runs": [{"threads": 1, "ms": 4.0}]}, runs_key=("threads",)
  )
  assert json.loads(path.read_text()) == out
  assert [(r["threads"], r["ms"]) for r in out["runs"]] == [(1, 4.0), (2, 2.0)]
  assert out["runs"][0]["command"].endswith(f"python benchmarks/x.py --threads 1 --out {path}")
  assert out["runs"][0]["command"].startswith("taskset -c ")
  assert out["unit"] == "ms"

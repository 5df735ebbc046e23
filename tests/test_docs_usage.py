"""docs/usage.md's Python examples run as written, and print what the page says."""

import pathlib
import re
import subprocess
import sys

import pytest

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "usage.md"


@pytest.mark.slow
def test_usage_examples_run_as_written(tmp_path):
  blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
  script = "\n".join(blocks).replace("def get_config", "def _get_config")
  proc = subprocess.run(
    [sys.executable, "-c", script],
    cwd=tmp_path,
    capture_output=True,
    text=True,
    timeout=900,
    env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(DOC.parents[1])},
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stdout.splitlines()
  assert lines[0] == "0.001" and lines[1] == "epochs must be positive, got 0"
  assert float(lines[2]) > 0.9  # the NNX example's test accuracy
  assert lines[3] == "305 3136"
  assert lines[4] == "train True 10 True"
  assert lines[-1] == "(1, 10)"

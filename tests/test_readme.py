"""The README's Python examples run as written (each in a fresh interpreter)."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
# A block whose first line is this comment needs what the tests cannot have (the hub).
SKIP_MARK = "# needs the internet"


def python_blocks(path: pathlib.Path) -> list[str]:
  """The ```python blocks of a Markdown file, in order."""
  return re.findall(r"^```python\n(.*?)^```", path.read_text(), re.S | re.M)


README_BLOCKS = python_blocks(ROOT / "README.md")


def test_readme_has_an_example_per_method():
  text = "\n".join(README_BLOCKS)
  for package in ("jaxnn.coordconv", "jaxnn.subspace", "jaxnn.lca", "jaxnn.pplm"):
    assert f"from {package} import" in text, package


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(README_BLOCKS)))
def test_readme_python_example_runs(index, tmp_path):
  code = README_BLOCKS[index]
  if code.startswith(SKIP_MARK):
    pytest.skip("needs the internet")
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
  result = subprocess.run(
    [sys.executable, "-c", code],
    cwd=tmp_path,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip(), "an example should print what it computed"

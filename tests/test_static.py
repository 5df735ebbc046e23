"""The toolchain checks the code itself: ruff (lint and format) and mypy, as CI runs them.

Each check runs from the repository root with the configuration in pyproject.toml
and fails with the tool's own output on any finding. The tools' versions are
pinned in the `test` extra, and a different installed version fails here too:
findings then differ from CI's.
"""

import pathlib
import re
import subprocess
import sys
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _pinned(tool: str) -> str:
  pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
  for spec in pyproject["project"]["optional-dependencies"]["test"]:
    match = re.fullmatch(rf"{tool}==(\S+)", spec.replace(" ", ""))
    if match:
      return match.group(1)
  raise AssertionError(f"{tool} is not pinned (==) in the test extra of pyproject.toml")


def _run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, "-m", *args],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=timeout,
  )


@pytest.mark.parametrize("tool", ["ruff", "mypy"])
def test_tool_version_is_the_pinned_one(tool):
  result = _run(tool, "--version")
  assert result.returncode == 0, result.stdout + result.stderr
  version = _pinned(tool)
  assert re.search(rf"\b{re.escape(version)}\b", result.stdout), (
    f'installed {result.stdout.strip()}, pinned {tool}=={version}: run pip install -e ".[test]"'
  )


@pytest.mark.parametrize(
  "command",
  [("ruff", "check", "."), ("ruff", "format", "--check", ".")],
  ids=["ruff-check", "ruff-format"],
)
def test_ruff_is_clean(command):
  result = _run(*command)
  if result.returncode:
    pytest.fail(f"{' '.join(command)}:\n{result.stdout}{result.stderr}", pytrace=False)


def test_mypy_is_clean():
  # The files to check and the options are [tool.mypy] in pyproject.toml.
  result = _run("mypy")
  if result.returncode:
    pytest.fail(f"mypy:\n{result.stdout}{result.stderr}", pytrace=False)

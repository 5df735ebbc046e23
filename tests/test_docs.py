"""The documentation site builds with warnings as errors, and every public name has a docstring.

`test_site_builds` runs the command of docs/contributing.md: a broken reference, a malformed
docstring, a public name without a docstring or a missing page fails it.
"""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs" / "_ext"))
import jaxnn_api  # noqa: E402 - the site's extension


@pytest.mark.parametrize("module_name", jaxnn_api.public_modules())
def test_every_public_name_has_a_docstring(module_name):
  assert jaxnn_api.missing_docstrings(module_name) == []


def test_the_api_covers_every_public_subpackage():
  modules = jaxnn_api.public_modules()
  for name in ("jaxnn", "jaxnn.data", "jaxnn.models", "jaxnn.train", "jaxnn.coordconv"):
    assert name in modules
  for name in ("jaxnn.subspace", "jaxnn.lca", "jaxnn.pplm"):
    assert name in modules
  page = jaxnn_api.module_page("jaxnn.train")
  assert ".. autofunction:: run_loop" in page and ".. py:data:: CLASSIFICATION" in page
  # A re-export is documented once, in the public module that defines it, and linked.
  config_home = jaxnn_api.home_module(__import__("jaxnn.train").train.TrainConfig, modules)
  if config_home != "jaxnn.train":
    assert f":py:obj:`{config_home}.TrainConfig`" in page
    assert ".. autoclass:: TrainConfig" in jaxnn_api.module_page(config_home)


def test_the_missing_docstring_check_catches_a_missing_docstring(tmp_path, monkeypatch):
  package = tmp_path / "fakepkg"
  package.mkdir()
  (package / "__init__.py").write_text(
    '"""A package."""\n\nfrom dataclasses import dataclass\n\n'
    "def documented():\n  '''Has one.'''\n\n"
    "def bare():\n  pass\n\n"
    "@dataclass\nclass Config:\n  x: int = 0\n\n"
    "#: A documented constant.\nLIMIT = 3\n\nOTHER = 4\n\n"
    '__all__ = ["documented", "bare", "Config", "LIMIT", "OTHER"]\n'
  )
  monkeypatch.syspath_prepend(str(tmp_path))
  assert jaxnn_api.missing_docstrings("fakepkg") == [
    "fakepkg.bare",
    "fakepkg.Config",
    "fakepkg.OTHER",
  ]


@pytest.mark.slow
def test_site_builds(tmp_path):
  """`sphinx-build -W --keep-going -b html docs <dir>`: warnings are errors."""
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "sphinx",
      "-W",
      "--keep-going",
      "-q",
      "-b",
      "html",
      "-d",
      str(tmp_path / "doctrees"),
      str(ROOT / "docs"),
      str(tmp_path / "html"),
    ],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert result.returncode == 0, result.stderr[-6000:]
  html = tmp_path / "html"
  assert (html / "index.html").exists()
  for module_name in jaxnn_api.public_modules():
    assert (html / "api" / f"{module_name}.html").exists()
  for notebook in sorted((ROOT / "colabs").glob("*.ipynb")):
    assert (html / "colabs" / f"{notebook.stem}.html").exists()


def _write_results():
  spec = importlib.util.spec_from_file_location(
    "write_results", ROOT / "benchmarks" / "write_results.py"
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_performance_page_is_generated_from_the_current_results():
  assert (ROOT / "docs" / "performance.md").read_text() == _write_results().render(), (
    "docs/performance.md is out of date: run python benchmarks/write_results.py"
  )


def test_one_result_per_benchmark_script_with_its_command():
  for path in sorted((ROOT / "benchmarks" / "results").iterdir()):
    assert path.suffix == ".json", f"{path.name}: benchmarks/results holds <script>.json only"
    assert (ROOT / "benchmarks" / f"{path.stem}.py").exists(), f"{path.name}: no such script"
    text = path.read_text()
    assert f"benchmarks/{path.stem}.py" in text, f"{path.name} does not name its command"


def test_documentation_pages_hold_no_work_log():
  for name in ("index.md", "contributing.md", "performance.md"):
    text = (ROOT / "docs" / name).read_text().lower()
    for word in ("session", "load average", " utc", "engineer"):
      assert word not in text, f"docs/{name} mentions {word!r}"


PRIVATE_IMPORT = re.compile(r"(from\s+jaxnn(\.\w+)*\._\w+\s+import|import\s+jaxnn(\.\w+)*\._\w+)")


def test_readme_docs_and_notebooks_import_only_public_names():
  """What users copy from the README, the guides and the notebooks is public API."""
  files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
  files += sorted((ROOT / "colabs").glob("*.ipynb"))
  assert len(files) > 10
  found = [
    f"{path.relative_to(ROOT)}: {match.group(0)}"
    for path in files
    for match in PRIVATE_IMPORT.finditer(path.read_text())
  ]
  assert not found, found
  assert PRIVATE_IMPORT.search("from jaxnn.subspace._sweep import run_sweep")
  assert not PRIVATE_IMPORT.search("from jaxnn.subspace import run_sweep")

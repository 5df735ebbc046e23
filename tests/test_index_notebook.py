"""colabs/index.ipynb runs `jaxnn reproduce` through its API and shows the report (one stage)."""

import json

import pytest


@pytest.mark.slow
def test_index_notebook_runs(run_notebook, tmp_path):
  outputs, images = run_notebook(
    "index.ipynb", {"JAXNN_REPRODUCE_PRESET": "quick", "JAXNN_REPRODUCE_ONLY": "lca"}
  )
  assert "the same as: jaxnn reproduce --quick --only lca --out reproduce_report" in outputs
  summary = json.loads((tmp_path / "reproduce_report" / "summary.json").read_text())
  assert f"lca        {summary['stages']['lca']['verdict']}" in outputs
  assert images == len(summary["stages"]["lca"]["plots"]) == 2

"""colabs/lca.ipynb runs unchanged at small settings (digits, one epoch)."""

import pytest


@pytest.mark.slow
def test_notebook_runs(run_notebook, tmp_path):
  outputs, images = run_notebook(
    "lca.ipynb", {"JAXNN_LCA_DATASET": "digits", "JAXNN_LCA_EPOCHS": "1", "JAXNN_LCA_WIDTHS": "16"}
  )
  assert "fraction helped per iteration" in outputs
  assert "all_layers: observed" in outputs
  assert "= LCA sum + error" in outputs
  assert images == 6
  assert (tmp_path / "lca_run" / "summary.json").exists()

"""colabs/lca.ipynb runs unchanged at small settings (digits, one epoch)."""

from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[2] / "colabs" / "lca.ipynb"


def test_notebook_runs(monkeypatch, tmp_path):
  import nbclient
  import nbformat
  monkeypatch.setenv("JAXNN_LCA_DATASET", "digits")
  monkeypatch.setenv("JAXNN_LCA_EPOCHS", "1")
  monkeypatch.setenv("JAXNN_LCA_WIDTHS", "16")
  monkeypatch.setenv("MPLBACKEND", "Agg")
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                          resources={"metadata": {"path": str(tmp_path)}}).execute()
  outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                    for o in c.get("outputs", []))
  images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
               for o in c.get("outputs", []))
  assert "fraction helped per iteration" in outputs
  assert "all_layers: observed" in outputs
  assert "= LCA sum + error" in outputs
  assert images == 6
  assert (tmp_path / "lca_run" / "summary.json").exists()

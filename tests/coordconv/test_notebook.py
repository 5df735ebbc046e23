"""colabs/coordconv.ipynb runs unchanged at tiny settings (64 training examples, one epoch)."""

from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[2] / "colabs" / "coordconv.ipynb"


def test_notebook_runs(monkeypatch, tmp_path):
  import nbclient
  import nbformat
  monkeypatch.setenv("JAXNN_COORDCONV_EPOCHS", "1")
  monkeypatch.setenv("JAXNN_COORDCONV_BASELINE_EPOCHS", "1")
  monkeypatch.setenv("JAXNN_COORDCONV_TRAIN_EXAMPLES", "64")
  monkeypatch.setenv("MPLBACKEND", "Agg")
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                          resources={"metadata": {"path": str(tmp_path)}}).execute()
  outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                    for o in c.get("outputs", []))
  images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
               for o in c.get("outputs", []))
  assert "coordconv params   7,553" in outputs
  assert "2407 train / 729 test" in outputs and "2368 train / 768 test" in outputs
  assert images == 5
  for model in ("conv", "coordconv"):
    assert (tmp_path / f"coordconv_{model}" / "summary.json").exists()

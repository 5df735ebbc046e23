"""colabs/pplm.ipynb runs unchanged, at small settings, on the tiny GPT-2."""

from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[2] / "colabs" / "pplm.ipynb"


def test_notebook_runs_offline(tiny_gpt2_dir, monkeypatch, tmp_path):
  import nbclient
  import nbformat
  monkeypatch.setenv("JAXNN_PPLM_MODEL", str(tiny_gpt2_dir))
  monkeypatch.setenv("JAXNN_PPLM_LENGTH", "4")
  monkeypatch.setenv("JAXNN_PPLM_SAMPLES", "2")
  monkeypatch.setenv("MPLBACKEND", "Agg")
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                          resources={"metadata": {"path": str(tmp_path)}}).execute()
  outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                    for o in c.get("outputs", []))
  assert f"model: {tiny_gpt2_dir}" in outputs
  assert "steered tokens/s (batch 2)" in outputs
  assert "== baseline ==" in outputs

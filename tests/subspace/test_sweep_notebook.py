"""colabs/intrinsic_dimension.ipynb runs unchanged at small settings (digits, a few steps)."""

import json
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[2] / "colabs" / "intrinsic_dimension.ipynb"


def test_notebook_runs(monkeypatch, tmp_path):
  import nbclient
  import nbformat
  for name, value in {"DATASET": "digits", "WIDTHS": "16", "DIMS": "4,16", "SEEDS": "1",
                      "STEPS": "20", "TOY_MAX_D": "4"}.items():
    monkeypatch.setenv(f"JAXNN_ID_{name}", value)
  monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                          resources={"metadata": {"path": str(tmp_path)}}).execute()
  outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                    for o in c.get("outputs", []))
  images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
               for o in c.get("outputs", []))
  assert "toy d_int (dense): 10, bracket (9, 10)" in outputs
  assert "toy d_int (fastfood): 10, bracket (9, 10)" in outputs
  assert "d_int90 = " in outputs and "after 20 steps" in outputs
  assert images == 2
  results = json.loads((tmp_path / "intrinsic_dimension_sweep" / "results.json").read_text())
  assert [c["d"] for c in results["configs"]] == [4, 16]

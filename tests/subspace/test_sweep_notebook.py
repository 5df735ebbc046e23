"""colabs/intrinsic_dimension.ipynb runs unchanged at small settings (digits, a few steps).

The toy search runs for Fastfood only here: the dense one, the slower to compile, is
checked by test_sweep_search.py (both projections) and test_toy.py.
"""

import json

import pytest


@pytest.mark.slow
def test_notebook_runs(run_notebook, tmp_path):
  env = {
    f"JAXNN_ID_{name}": value
    for name, value in {
      "DATASET": "digits",
      "WIDTHS": "16",
      "DIMS": "4,16",
      "SEEDS": "1",
      "STEPS": "20",
      "TOY_MAX_D": "4",
      "TOY_PROJECTIONS": "fastfood",
    }.items()
  }
  outputs, images = run_notebook(
    "intrinsic_dimension.ipynb", env, backend="module://matplotlib_inline.backend_inline"
  )
  assert "toy d_int (dense)" not in outputs
  assert "toy d_int (fastfood): 10, bracket (9, 10)" in outputs
  assert "d_int90 = " in outputs and "after 20 steps" in outputs
  assert images == 2
  results = json.loads((tmp_path / "intrinsic_dimension_sweep" / "results.json").read_text())
  assert [c["d"] for c in results["configs"]] == [4, 16]

"""colabs/pplm.ipynb runs unchanged, at small settings, on the tiny GPT-2."""

import pytest


@pytest.mark.slow
def test_notebook_runs_offline(tiny_gpt2_dir, run_notebook):
  outputs, _ = run_notebook(
    "pplm.ipynb",
    {"JAXNN_PPLM_MODEL": str(tiny_gpt2_dir), "JAXNN_PPLM_LENGTH": "4", "JAXNN_PPLM_SAMPLES": "2"},
  )
  assert f"model: {tiny_gpt2_dir}" in outputs
  assert "steered tokens/s (batch 2)" in outputs
  assert "== baseline ==" in outputs

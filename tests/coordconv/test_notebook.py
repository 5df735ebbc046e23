"""colabs/coordconv.ipynb runs unchanged at tiny settings (64 training examples, one epoch)."""

import pytest


@pytest.mark.slow
def test_notebook_runs(run_notebook, tmp_path):
  outputs, images = run_notebook(
    "coordconv.ipynb",
    {
      "JAXNN_COORDCONV_EPOCHS": "1",
      "JAXNN_COORDCONV_BASELINE_EPOCHS": "1",
      "JAXNN_COORDCONV_TRAIN_EXAMPLES": "64",
    },
  )
  assert "coordconv params   7,553" in outputs
  assert "2407 train / 729 test" in outputs and "2368 train / 768 test" in outputs
  assert images == 5
  for model in ("conv", "coordconv"):
    assert (tmp_path / f"coordconv_{model}" / "summary.json").exists()

"""End to end through the CLI: a short regression run, errors, help."""

import json

import numpy as np
import pytest

from jaxnn.cli import main


def test_cli_regression_writes_summary_and_plots(tmp_path, capsys):
  out = tmp_path / "reg"
  code = main(["coordconv", "regress", "--split", "quadrant", "--model", "coordconv", "--epochs", "1",
               "--train-examples", "64", "--devices", "1", "--no-progress", "--data-dir",
               str(tmp_path / "data"), "--out", str(out)])
  assert code == 0
  summary = json.loads((out / "summary.json").read_text())
  assert summary["params"] == 906 and np.isfinite(summary["test_pixel_error"])
  assert (out / "predictions.png").exists() and (out / "learning_curves.png").exists()
  assert '"test_pixel_error"' in capsys.readouterr().out


def test_cli_bad_input_is_one_line(tmp_path, capsys):
  code = main(["coordconv", "classify", "--epochs", "1", "--batch-size", "5000", "--devices", "1",
               "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "x")])
  assert code == 2
  err = capsys.readouterr().err  # TFDS's progress bars come first when it writes the data
  last = err.strip().splitlines()[-1].split("\r")[-1]
  assert last.startswith("jaxnn: error:") and "batch size" in last and "Traceback" not in err


@pytest.mark.parametrize("command", ["classify", "regress", "render"])
def test_cli_help(command, capsys):
  with pytest.raises(SystemExit):
    main(["coordconv", command, "--help"])
  assert "--split" in capsys.readouterr().out


def test_stop_at_perfect_stops_at_the_first_perfect_evaluation(tmp_path, monkeypatch):
  import jax.numpy as jnp

  from jaxnn.coordconv import _tasks
  from jaxnn.train import Objective
  real = _tasks.PIXEL_SOFTMAX
  always_right = Objective(real.loss, lambda logits, labels: {
      **real.metrics(logits, labels), "accuracy": jnp.ones(labels.shape[0])})
  monkeypatch.setitem(_tasks.OBJECTIVES, "classification", always_right)
  summary = _tasks.run_task(_tasks.TaskConfig(
      task="classification", epochs=3, train_examples=16, stop_at_perfect=True, num_devices=1,
      progress=False, data_dir=str(tmp_path / "data")), tmp_path / "run", plots=False)
  assert summary["steps"] == 1 and summary["first_perfect_test"]["epoch"] == 1.0
  lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
  assert json.loads(lines[-1])["test_accuracy"] == 1.0

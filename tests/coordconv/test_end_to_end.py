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

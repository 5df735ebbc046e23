"""`jaxnn lca` end to end on a tiny run: files, identities, resume, errors."""

import hashlib
import json
import shutil

import numpy as np
import pytest

from jaxnn import cli


@pytest.mark.slow
def test_lca_command_writes_summary_plots_and_resumes(tmp_path, capsys):
  out = tmp_path / "run"
  args = lambda epochs: [
    "lca",
    "--dataset",
    "digits",
    "--widths",
    "12",
    "--batch-size",
    "200",
    "--epochs",
    str(epochs),
    "--devices",
    "2",
    "--chunk-size",
    "500",
    "--checkpoint-every",
    "4",
    "--compile-cache",
    "none",
    "--out",
    str(out),
    "--no-progress",
  ]
  assert cli.main(args(2)) == 0
  summary = json.loads((out / "summary.json").read_text())
  for key in (
    "fraction_helped_mean",
    "layer_totals",
    "max_abs_iteration_error",
    "relative_error",
    "loss_change",
    "lca_sum",
  ):
    assert key in summary
  for view in (
    "loss_vs_lca",
    "layer_totals",
    "helped_histograms",
    "cumulative_layers",
    "neuron_heatmap",
    "trajectories",
  ):
    assert (out / f"train_{view}.png").stat().st_size > 1000
    assert (out / f"validation_{view}.png").exists()
  steps = summary["steps"]
  for name in ("train", "validation"):
    s = summary[name]
    np.testing.assert_allclose(s["lca_sum"], s["loss_change"], rtol=1e-3, atol=1e-5)
    assert s["max_abs_iteration_error"] <= 1e-3
    assert s["num_params"] == 64 * 12 + 12 + 12 * 10 + 10
  # Resume from an earlier checkpoint: the LCA records come out as in the uninterrupted run.
  first = dict(np.load(out / "lca_records.npz"))
  shutil.rmtree(out / "checkpoints" / str(steps))
  assert cli.main(args(2)) == 0
  resumed = np.load(out / "lca_records.npz")
  for key in ("train/lca_T", "train/layer_TxL", "validation/lca_T", "train/total_P"):
    np.testing.assert_allclose(resumed[key], first[key], rtol=1e-5, atol=1e-8)
  # A run is not extended: its per-iteration records are sized for its length.
  assert cli.main(args(3)) == 2
  assert "epochs" in capsys.readouterr().err
  assert set(summary["timings"]) == {"setup", "train_with_lca", "analyses", "evaluation", "write"}


def test_lca_command_bad_input_is_one_line(tmp_path, capsys):
  code = cli.main(
    ["lca", "--dataset", "digits", "--max-splits", "12", "--out", str(tmp_path / "x")]
  )
  err = capsys.readouterr().err
  assert code == 2 and "power of two" in err and "Traceback" not in err
  code = cli.main(
    ["lca", "--dataset", "digits", "--lca-subset", "100000", "--out", str(tmp_path / "y")]
  )
  err = capsys.readouterr().err
  assert code == 2 and "subset" in err


def _hashes(directory):
  return {
    str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
    for p in sorted(directory.rglob("*"))
    if p.is_file()
  }


@pytest.mark.slow
def test_lca_stream_files_are_checked_and_other_runs_left_unchanged(tmp_path, capsys):
  """Negative weight decay, a directory holding another run, a truncated, a corrupt and a
  missing stream file: one line naming the problem, exit 2, nothing changed."""

  def lca(out, *extra):
    return cli.main(
      [
        "lca", "--dataset", "digits", "--widths", "8", "--batch-size", "400", "--epochs", "2",
        "--devices", "1", "--chunk-size", "500", "--checkpoint-every", "1",
        "--compile-cache", "none", "--no-plots", "--no-progress", "--out", str(out), *extra,
      ]
    )  # fmt: skip

  def refused(out, *extra):
    before = _hashes(out)
    code = lca(out, *extra)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert _hashes(out) == before
    return err

  other = tmp_path / "other"
  other.mkdir()
  (other / "config.json").write_text(json.dumps({"model": "lenet"}))
  assert "--weight-decay: must be non-negative" in refused(other, "--weight-decay", "-0.1")
  assert "another configuration" in refused(other, "--stream")
  assert sorted(p.name for p in other.iterdir()) == ["config.json"]
  stray = tmp_path / "stray"  # no run yet, a foreign lca_train.npy: nothing else is created
  stray.mkdir()
  (stray / "lca_train.npy").write_bytes(b"\x93NUMPY garbage")
  assert "lca_train.npy is not a readable .npy array" in refused(stray, "--stream")
  assert sorted(p.name for p in stray.iterdir()) == ["lca_train.npy"]

  out = tmp_path / "run"
  assert lca(out, "--stream") == 0
  capsys.readouterr()
  steps = sorted(int(p.name) for p in (out / "checkpoints").iterdir() if p.name.isdigit())
  shutil.rmtree(out / "checkpoints" / str(steps[-1]))  # resume: earlier rows come from the file
  train = out / "lca_train.npy"
  whole = train.read_bytes()
  train.write_bytes(whole[: len(whole) - 100])
  assert "lca_train.npy is truncated" in refused(out, "--stream")
  train.write_bytes(b"not an npy file" + whole[15:])
  assert "lca_train.npy is not a readable .npy array" in refused(out, "--stream")
  train.unlink()
  assert f"lca_train.npy is missing, but the run resumes from step {steps[-2]}" in refused(
    out, "--stream"
  )
  train.write_bytes(whole)
  assert lca(out, "--stream") == 0

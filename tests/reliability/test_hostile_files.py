"""Hand-edited, truncated or foreign files in a run directory: named in one line, never lost.

config.json and metrics.jsonl are read by the engine when a run resumes; a
metrics log cut short by a kill or a full disk is repaired, anything else that
is not what jaxnn wrote stops the run with one line naming the file.
"""

from __future__ import annotations

import json
import shutil

import pytest
from hostile import assert_one_line_error, snapshot, summary_without_timing, train_args


@pytest.mark.parametrize(
  "content",
  [b"[]", b"null", b'"fc"', b"{not json", b"\xff\xfe\x00\x01binary", b""],
  ids=["list", "null", "string", "garbage", "binary", "empty"],
)
def test_config_json_that_is_not_a_configuration(run, jaxnn, content):
  (run / "config.json").write_bytes(content)
  before = snapshot(run)
  assert_one_line_error(
    jaxnn(train_args(run)), f"{run / 'config.json'} is not a jaxnn run configuration"
  )
  assert snapshot(run) == before


def test_config_json_with_edited_values(run, jaxnn):
  config = json.loads((run / "config.json").read_text())
  (run / "config.json").write_text(json.dumps({**config, "widths": "sixteen", "extra": 1}))
  before = snapshot(run)
  assert_one_line_error(
    jaxnn(train_args(run)), "another configuration", "widths: saved 'sixteen'", "extra"
  )
  assert snapshot(run) == before


@pytest.mark.parametrize(
  "content, problem",
  [
    (b"\x00\x01\x02\xff" * 64, "not text"),
    (b'{"step": 10}\nnot json at all\n{"step": 20}\n', "line 2 is not a JSON record"),
    (b'{"step": 10}\n[1, 2]\n', "line 2 is not a metrics record"),
    (b'{"step": "ten"}\n', "line 1 is not a metrics record"),
  ],
  ids=["binary", "garbage-line", "not-an-object", "step-not-a-number"],
)
def test_metrics_log_that_is_not_a_log(run, jaxnn, content, problem):
  (run / "metrics.jsonl").write_bytes(content)
  before = snapshot(run)
  assert_one_line_error(jaxnn(train_args(run)), f"{run / 'metrics.jsonl'}", problem)
  assert snapshot(run) == before


def test_partial_last_metrics_line_is_dropped_on_resume(run, trained_run, jaxnn):
  """A kill (or full disk) mid-write leaves half a line; the resumed log is whole."""
  with open(run / "metrics.jsonl", "a") as f:
    f.write('{"step": 20, "epoch": 2.0, "split": "tr')
  assert jaxnn(train_args(run)).code == 0
  assert (run / "metrics.jsonl").read_bytes() == (trained_run / "metrics.jsonl").read_bytes()


def test_killed_before_the_first_checkpoint_leaves_no_duplicate_lines(run, trained_run, jaxnn):
  """The state a kill before the first checkpoint leaves: config.json and some log lines."""
  shutil.rmtree(run / "checkpoints")
  lines = (run / "metrics.jsonl").read_text().splitlines(keepends=True)
  (run / "metrics.jsonl").write_text("".join(lines[:1]))
  assert jaxnn(train_args(run)).code == 0
  assert (run / "metrics.jsonl").read_bytes() == (trained_run / "metrics.jsonl").read_bytes()
  assert summary_without_timing(run / "summary.json") == summary_without_timing(
    trained_run / "summary.json"
  )


def test_hand_edited_summary_is_recomputed_from_the_verified_checkpoint(run, trained_run, jaxnn):
  """summary.json is an output: a rerun writes it again from the last (verified) checkpoint."""
  (run / "summary.json").write_bytes(b'{"test_accuracy": 1.0, "steps": 99999')
  assert jaxnn(train_args(run)).code == 0
  assert summary_without_timing(run / "summary.json") == summary_without_timing(
    trained_run / "summary.json"
  )


def test_no_file_is_loaded_with_pickle():
  """Weights load with safetensors, training state with Orbax, arrays with np.load's default
  allow_pickle=False: nothing in the package can run code hidden in a file."""
  import pathlib

  import jaxnn

  forbidden = ("import pickle", "allow_pickle=True", "torch.load(", "cloudpickle", "import dill")
  for path in pathlib.Path(jaxnn.__file__).parent.rglob("*.py"):
    text = path.read_text()
    assert not [f for f in forbidden if f in text], path

"""Checkpoints: silent corruption is caught, runs are never mislabelled, nothing is overwritten.

Each test damages a copy of one finished 2-epoch `jaxnn train` run (checkpoints
at steps 10 and 20) as a user's disk or hands might, reruns the command, and
checks the exit status, the one-line message and that every saved byte is
unchanged.
"""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
from hostile import (
  assert_one_line_error,
  flip_array_bytes,
  snapshot,
  summary_without_timing,
  train_args,
)


def _rewrite_arrays(step_dir, change):
  """Rewrites a step's arrays with Orbax itself (valid files), changed by `change(path, x)`.

  This is silent corruption as the storage layer cannot see it: every file is
  well formed, only the values differ from what was saved.
  """
  import jax
  import orbax.checkpoint as ocp

  checkpointer = ocp.StandardCheckpointer()
  tree = checkpointer.restore(step_dir / "state")
  tree = jax.tree_util.tree_map_with_path(
    lambda path, x: change(jax.tree_util.keystr(path), np.asarray(x)), tree
  )
  scratch = step_dir.parent.parent / "scratch"
  checkpointer.save(scratch, tree)
  checkpointer.wait_until_finished()
  shutil.rmtree(step_dir / "state")
  shutil.move(scratch, step_dir / "state")


def test_flipped_bytes_in_the_latest_checkpoint_are_refused(run, jaxnn):
  flip_array_bytes(run / "checkpoints" / "20")
  before = snapshot(run)
  line = assert_one_line_error(
    jaxnn(train_args(run)), "checkpoints/20", "--resume-from-previous", "step 10"
  )
  assert "corrupt" in line or "cannot be read" in line
  assert snapshot(run) == before


def test_silently_changed_parameters_are_caught_by_the_digest(run, jaxnn):
  _rewrite_arrays(run / "checkpoints" / "20", lambda k, x: x + 1e-3 if "params" in k else x)
  before = snapshot(run)
  assert_one_line_error(
    jaxnn(train_args(run)),
    "checkpoints/20 is corrupt: the bytes of params/dense0/bias",
    "--resume-from-previous to resume from step 10",
  )
  assert snapshot(run) == before


def test_a_corrupt_optimizer_state_is_corruption_not_a_nan_loss(run, jaxnn):
  """A NaN in Adam's second moment: caught on restore, not blamed on the next training step."""
  _rewrite_arrays(
    run / "checkpoints" / "20", lambda k, x: np.full_like(x, np.nan) if "nu" in k else x
  )
  before = snapshot(run)
  line = assert_one_line_error(jaxnn(train_args(run, 3)), "corrupt", "opt_state/0/nu/dense0/bias")
  assert "loss became" not in line and "last good checkpoint" not in line
  assert snapshot(run) == before


def test_resume_from_previous_uses_the_intact_checkpoint_and_keeps_the_corrupt_one(
  run, trained_run, jaxnn
):
  _rewrite_arrays(run / "checkpoints" / "20", lambda k, x: x * 0 if "params" in k else x)
  corrupt = snapshot(run / "checkpoints" / "20")
  result = jaxnn(train_args(run, 2, "--resume-from-previous"))
  assert result.code == 0, result.err
  assert snapshot(run / "corrupt_checkpoints" / "20") == corrupt  # set aside, not deleted
  # Steps 10 -> 20 retrained from the intact checkpoint: the same bits as the first time.
  assert summary_without_timing(run / "summary.json") == summary_without_timing(
    trained_run / "summary.json"
  )
  assert (run / "metrics.jsonl").read_bytes() == (trained_run / "metrics.jsonl").read_bytes()


def test_every_checkpoint_corrupt_says_so(run, jaxnn):
  for step in ("10", "20"):
    flip_array_bytes(run / "checkpoints" / step)
  before = snapshot(run)
  assert_one_line_error(
    jaxnn(train_args(run, 2, "--resume-from-previous")), "no earlier intact checkpoint"
  )
  assert snapshot(run) == before


@pytest.mark.parametrize(
  "damage",
  ["manifest deleted", "manifest garbled", "record deleted", "record garbled", "arrays gone"],
)
def test_damaged_checkpoint_files_give_a_short_line(run, jaxnn, damage):
  step = run / "checkpoints" / "20"
  if damage == "manifest deleted":
    (step / "state" / "manifest.ocdbt").unlink()
  elif damage == "manifest garbled":
    (step / "state" / "manifest.ocdbt").write_bytes(b"\x00garbage" * 10)
  elif damage == "record deleted":
    (step / "jaxnn" / "metadata").unlink()
  elif damage == "record garbled":
    (step / "jaxnn" / "metadata").write_text("{not json")
  else:
    shutil.rmtree(step / "state" / "ocdbt.process_0")
  before = snapshot(run)
  line = assert_one_line_error(jaxnn(train_args(run)), "checkpoints/20", "step 10")
  assert len(line) < 600 and "tensorstore_spec" not in line
  assert snapshot(run) == before


def test_garbled_orbax_metadata_with_intact_arrays_resumes_verified(run, trained_run, jaxnn):
  """Orbax's own step metadata is not needed to read the arrays; their digests prove them."""
  (run / "checkpoints" / "20" / "_CHECKPOINT_METADATA").write_text("{not json")
  result = jaxnn(train_args(run))
  assert result.code == 0 and not result.err.strip(), result.err
  assert summary_without_timing(run / "summary.json") == summary_without_timing(
    trained_run / "summary.json"
  )


def test_fewer_epochs_than_the_checkpoint_holds_are_refused(run, jaxnn):
  before = snapshot(run)
  assert_one_line_error(
    jaxnn(train_args(run, 1)), "trained for 20 steps (2 epochs), more than the 10 asked for"
  )
  assert snapshot(run) == before


def test_deleted_config_json_then_other_settings_are_refused(run, jaxnn):
  (run / "config.json").unlink()
  before = snapshot(run)
  args = train_args(run)
  args[args.index("--lr") + 1] = "0.05"
  assert_one_line_error(jaxnn(args), "made with other settings", "learning_rate: saved 0.01")
  assert snapshot(run) == before  # not even config.json was written back


def test_deleted_config_json_then_same_settings_resume(run, trained_run, jaxnn):
  (run / "config.json").unlink()
  assert jaxnn(train_args(run)).code == 0
  assert (run / "config.json").read_bytes() == (trained_run / "config.json").read_bytes()


def test_other_settings_with_config_json_are_refused(run, jaxnn):
  before = snapshot(run)
  assert_one_line_error(jaxnn(train_args(run, 2, "--seed", "3")), "another configuration", "seed")
  assert snapshot(run) == before


def test_checkpoints_labelled_with_other_settings_are_refused(run, jaxnn):
  """Checkpoints of a run with another learning rate under this run's config.json."""
  for step in ("10", "20"):
    path = run / "checkpoints" / step / "jaxnn" / "metadata"
    metadata = json.loads(path.read_text())
    metadata["run"]["learning_rate"] = 0.05
    path.write_text(json.dumps(metadata))
  before = snapshot(run)
  assert_one_line_error(
    jaxnn(train_args(run)), "made with other settings", "learning_rate: saved 0.05, now 0.01"
  )
  assert snapshot(run) == before


def test_a_finished_run_rerun_reports_the_same(run, trained_run, jaxnn):
  """The rerun restores the verified last checkpoint and reports what the run trained."""
  assert jaxnn(train_args(run)).code == 0
  assert summary_without_timing(run / "summary.json") == summary_without_timing(
    trained_run / "summary.json"
  )
  assert json.loads((run / "summary.json").read_text())["steps"] == 20


def test_nan_parameters_are_never_saved_as_the_last_good_checkpoint(tmp_path):
  """The loss of step s is computed before its update: a finite loss does not prove the
  parameters saved after it finite. Parameters turned NaN by step 4's update (whose loss
  was finite) stop the run before step 4 is saved; step 2, the claimed last good one, is."""
  import jax
  import jax.numpy as jnp

  from jaxnn._errors import NonFiniteLossError
  from jaxnn.data import EpochBatcher, load_dataset
  from jaxnn.train import (
    Checkpointer,
    data_parallel,
    from_function,
    init_train_state,
    make_optimizer,
    make_train_step,
    run_loop,
  )

  model = from_function(lambda p, x: x.reshape(len(x), -1) @ p["w"], {"w": jnp.zeros((64, 10))})
  optimizer = make_optimizer("sgd", 0.1)
  step = make_train_step(model, optimizer)

  def poisoned(state, x, y):
    state, metrics = step(state, x, y)
    params = jax.tree.map(lambda p: jnp.where(state.step >= 4, jnp.nan, p), state.params)
    return state._replace(params=params), metrics

  state = init_train_state(model, optimizer)
  with pytest.raises(NonFiniteLossError, match="at step 4.*last good checkpoint \\(step 2\\)"):
    run_loop(
      poisoned,
      state,
      EpochBatcher(load_dataset("digits").train, 64, 0),
      10,
      dp=data_parallel(64, 1),
      workdir=tmp_path,
      log_every=1,
      checkpoint_every=2,
      progress=False,
    )
  checkpointer = Checkpointer(tmp_path, {})
  assert checkpointer.all_steps() == [2]
  _, restored = checkpointer.restore(state)
  checkpointer.close()
  assert np.all(np.isfinite(np.asarray(restored.params["w"])))


def test_abandoned_orbax_reads_are_not_logged_but_other_asyncio_errors_are(caplog):
  """After a failed restore, the reads Orbax abandoned print nothing when collected."""
  import asyncio
  import gc

  from jaxnn.train._checkpoint import _drop_late_storage_callbacks

  _drop_late_storage_callbacks()

  async def async_deserialize():  # named like Orbax's read
    raise ValueError("NOT_FOUND: an array of a damaged checkpoint")

  async def other_work():
    raise ValueError("a failure nobody else reports")

  def abandon(coroutine):
    loop = asyncio.new_event_loop()
    task = loop.create_task(coroutine)
    loop.run_until_complete(asyncio.sleep(0))  # the task runs and fails; its error is never read
    loop.close()
    del task
    gc.collect()

  with caplog.at_level(logging.ERROR, logger="asyncio"):
    abandon(async_deserialize())
    assert not [r for r in caplog.records if r.name == "asyncio"]
    abandon(other_work())
  [record] = [r for r in caplog.records if r.name == "asyncio"]
  assert "other_work" in record.getMessage()


def test_abandoned_orbax_coroutines_are_dropped_when_collected(monkeypatch):
  """Their errors on collection (GeneratorExit turned into Exception) reach no user."""
  import sys
  import types

  from jaxnn.train import _checkpoint

  seen = []
  monkeypatch.setattr(sys, "unraisablehook", seen.append)
  _checkpoint._drop_late_storage_callbacks()
  source = "async def _read_array_index_and_device_put():\n  pass\n"
  for filename in ("/site-packages/orbax/checkpoint/_src/serialization.py", "/elsewhere/mine.py"):
    namespace: dict = {}
    exec(compile(source, filename, "exec"), namespace)
    coroutine = namespace["_read_array_index_and_device_put"]()
    sys.unraisablehook(
      types.SimpleNamespace(
        exc_type=Exception,
        exc_value=Exception("Encountered error while reading array index"),
        exc_traceback=None,
        err_msg=None,
        object=coroutine,
      )
    )
    coroutine.close()
  assert [u.object.cr_code.co_filename for u in seen] == ["/elsewhere/mine.py"]

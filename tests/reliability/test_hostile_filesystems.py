"""Read-only, missing, forbidden and full disks: one line, exit 2, nothing partial left.

Real read-only and full filesystems are small tmpfs mounts (skipped where the
tests may not mount); permission denied (which root never sees) and a full
disk at each write are also simulated by making the write calls fail.
"""

from __future__ import annotations

import errno
import json
import os
import shutil

from hostile import (
  assert_one_line_error,
  checkpoint_save_on_a_full_disk,
  remount_readonly,
  snapshot,
  train_args,
)


def _no_partial_files(folder):
  leftovers = [
    p for p in folder.rglob("*") if "orbax-checkpoint-tmp" in p.name or p.name.startswith(".")
  ]
  assert not leftovers, leftovers


def test_read_only_out_of_an_existing_run(run, tmpfs, jaxnn):
  mount = tmpfs("size=4m")
  shutil.copytree(run, mount / "run")
  before = snapshot(mount / "run")
  remount_readonly(mount)
  assert_one_line_error(
    jaxnn(train_args(mount / "run", 3)), "Read-only file system", str(mount / "run")
  )
  assert snapshot(mount / "run") == before


def test_read_only_out_for_a_new_run(tmpfs, jaxnn):
  mount = tmpfs("size=1m,ro")
  assert_one_line_error(jaxnn(train_args(mount / "new")), "Read-only file system")
  assert not list(mount.iterdir())


def test_full_disk_during_a_checkpoint_keeps_the_last_complete_one(run, tmpfs, jaxnn):
  """Too little space for step 30's checkpoint: one line, no temporary folder, 10 and 20 intact."""
  mount = tmpfs("size=512k")
  shutil.copytree(run, mount / "run")
  before = snapshot(mount / "run" / "checkpoints")
  stat = os.statvfs(mount)
  filler = mount / "filler"
  filler.write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - 24 * 1024))
  assert_one_line_error(jaxnn(train_args(mount / "run", 3)), "No space left on device")
  assert snapshot(mount / "run" / "checkpoints") == before
  _no_partial_files(mount / "run")
  # With space again, the same command resumes from step 20 and finishes.
  filler.unlink()
  assert jaxnn(train_args(mount / "run", 3)).code == 0
  assert json.loads((mount / "run" / "summary.json").read_text())["steps"] == 30


def test_full_disk_simulated_in_the_checkpoint_writer(run, jaxnn, monkeypatch):
  """The same without a mount: Orbax's save leaves a temporary folder, then fails."""
  import orbax.checkpoint as ocp

  monkeypatch.setattr(ocp.CheckpointManager, "save", checkpoint_save_on_a_full_disk(run))
  before = snapshot(run / "checkpoints")
  line = assert_one_line_error(
    jaxnn(train_args(run, 3)), "checkpoint at step 30 could not be written", "No space left"
  )
  assert "last complete checkpoint (step 20) is intact" in line
  assert snapshot(run / "checkpoints") == before
  _no_partial_files(run)


def test_full_disk_while_writing_the_summary_keeps_the_old_one(run, jaxnn, monkeypatch):
  def full_disk(fd):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  monkeypatch.setattr(os, "fsync", full_disk)
  before = snapshot(run)
  assert_one_line_error(jaxnn(train_args(run)), "No space left on device", "free some space")
  assert snapshot(run) == before
  _no_partial_files(run)


def test_permission_denied(run, jaxnn, monkeypatch):
  import tempfile

  def denied(*args, **kwargs):
    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), kwargs.get("dir"))

  monkeypatch.setattr(tempfile, "mkstemp", denied)
  before = snapshot(run)
  assert_one_line_error(jaxnn(train_args(run, 3)), "Permission denied", str(run))
  assert snapshot(run) == before


def test_out_below_a_file(tmp_path, jaxnn):
  (tmp_path / "file").write_text("mine")
  assert_one_line_error(jaxnn(train_args(tmp_path / "file" / "run")), "Not a directory")
  assert (tmp_path / "file").read_text() == "mine"


def test_out_is_a_file(tmp_path, jaxnn):
  (tmp_path / "file").write_text("mine")
  assert_one_line_error(jaxnn(train_args(tmp_path / "file")), "is a file; give a directory")
  assert (tmp_path / "file").read_text() == "mine"

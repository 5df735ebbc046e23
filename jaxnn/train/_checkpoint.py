"""Orbax checkpoints of a run's carry: verified, labelled, never overwritten.

A run directory holds `checkpoints/<step>/` (written atomically by Orbax) and
`config.json`, the settings the run was started with. Each step folder holds
the carry (`state/`) and jaxnn's record (`jaxnn/metadata`, JSON), written in
the same atomic save; the record holds:
- the run's settings (its identity), so a run whose `config.json` is gone
  still cannot be continued with other settings;
- a SHA-256 digest of every array's bytes, computed on the host before the
  save, which `restore` checks after reading the arrays back.

Resuming with other settings, from a checkpoint that cannot be read or whose
bytes changed, raises a `CheckpointError` (one line saying what to do) and
touches nothing. A save that fails (full disk, read-only directory) leaves no
temporary folder behind and the earlier checkpoints intact.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pathlib
import re
import shutil
import sys
import warnings
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxnn._errors import (
  CheckpointError,
  CorruptCheckpointError,
  StorageError,
  describe_os_error,
)
from jaxnn.train._io import check_writable, read_json, write_json_atomic

FORMAT = 1  # version of the record jaxnn keeps in each checkpoint
RECORD = "jaxnn/metadata"  # the record's file in a step folder (Orbax's JsonSave item "jaxnn")
_TMP_SUFFIX = ".orbax-checkpoint-tmp"


def host_array(x: Any) -> np.ndarray | None:
  """The value of an array leaf on this host (None if this host holds only part of it)."""
  if isinstance(x, jax.Array):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      x = jax.random.key_data(x)
    if x.is_fully_addressable:
      return np.asarray(x)
    if x.is_fully_replicated:
      return np.asarray(x.addressable_data(0))
    return None
  return np.asarray(x)


def tree_digest(tree: Any) -> dict[str, str | None]:
  """SHA-256 of each leaf's dtype, shape and bytes, keyed by its path in `tree`.

  A leaf split across hosts (none of the engine's carries on one host) has no
  digest here (None) and is not checked.
  """
  digests: dict[str, str | None] = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    value = host_array(leaf)
    if value is None:
      digests[jax.tree_util.keystr(path, simple=True, separator="/")] = None
      continue
    h = hashlib.sha256(f"{value.dtype.str}{value.shape}".encode())
    h.update(np.ascontiguousarray(value).tobytes())
    digests[jax.tree_util.keystr(path, simple=True, separator="/")] = h.hexdigest()
  return digests


@contextlib.contextmanager
def _quiet_storage():
  """Silences Orbax's log lines: its failures come back as one-line errors instead."""
  logger = logging.getLogger("absl")
  level = logger.level
  logger.setLevel(logging.CRITICAL)
  try:
    yield
  finally:
    logger.setLevel(level)


def _drop_late_storage_callbacks() -> None:
  """Keeps the reads still in flight after a failed restore from printing tracebacks.

  When one array of a checkpoint cannot be read, Orbax stops its event loop
  while tensorstore still reads the others; each of those reads then reports
  `RuntimeError: Event loop is closed` through `sys.unraisablehook`, a
  traceback per array, after the error itself was handled. Those (only those)
  are dropped, as are asyncio's log lines for those reads' unretrieved errors,
  the errors Orbax's abandoned coroutines raise when they are collected, and
  Python's warning that they were never awaited; every other unraisable error
  is reported as before.
  """
  previous = sys.unraisablehook
  if getattr(previous, "_jaxnn_drops_closed_loop", False):
    return

  def hook(unraisable):
    value = unraisable.exc_value
    if isinstance(value, RuntimeError) and str(value) == "Event loop is closed":
      return
    if _is_orbax_coroutine(unraisable.object):  # an abandoned read, closed when collected
      return
    previous(unraisable)

  hook._jaxnn_drops_closed_loop = True  # type: ignore[attr-defined]  # a marker on the function
  sys.unraisablehook = hook
  logging.getLogger("asyncio").addFilter(_drop_orphaned_reads)
  warnings.filterwarnings(
    "ignore", message=_ABANDONED_READS, category=RuntimeWarning
  )  # printed when the abandoned reads are collected unawaited


# Orbax's coroutines of one restore (reading metadata and arrays) that a failed restore abandons.
_ABANDONED_READS = (
  r"coroutine '(Store\._get_array_metadatas|_read_array_index_and_device_put|async_deserialize)' "
  "was never awaited"
)


def _is_orbax_coroutine(obj: object) -> bool:
  """Whether `obj` is a coroutine defined in Orbax's package."""
  code = getattr(obj, "cr_code", None)
  return code is not None and f"{os.sep}orbax{os.sep}" in code.co_filename


def _drop_orphaned_reads(record: logging.LogRecord) -> bool:
  """Drops asyncio's report of an abandoned Orbax read (`Task exception was never retrieved`).

  The same failed restore leaves the other reads' tasks unawaited; when they are
  garbage collected, asyncio logs each one's traceback. Only tasks of Orbax's
  `async_deserialize` are dropped: the error itself was already reported.
  """
  message = record.getMessage()
  return not (
    message.startswith("Task exception was never retrieved") and "async_deserialize" in message
  )


def _short(e: BaseException) -> str:
  """The first line of an error, without a storage spec, at most 160 characters.

  Tensorstore's errors ("DATA_LOSS: Error opening "cast" driver: ... Error
  reading "params.dense0.bias/.zarray" in OCDBT database at ...") become their
  status and the array they name.
  """
  text = (str(e).strip().splitlines() or [""])[0].split(" [tensorstore_spec")[0]
  status = re.match(r"([A-Z_]{4,}): ", text)
  array = re.search(r'(?:reading|Metadata at) "([^"/]+)/', text)
  if status and array:
    return f"{status.group(1)} reading the array {array.group(1)}"
  text = f"{type(e).__name__}: {text}" if text else type(e).__name__
  return text if len(text) <= 160 else text[:157] + "..."


class Checkpointer:
  """Saves and restores a pytree `carry` keyed by training step.

  Creating one reads and checks `config.json` but writes nothing; `commit()`
  writes the run's files once every check has passed.

  Args:
    workdir: the run directory.
    config: a JSON-able dict identifying the run; must match to resume.
    max_to_keep: how many recent checkpoints to keep.
  """

  def __init__(self, workdir: str | pathlib.Path, config: dict, max_to_keep: int = 2):
    self.workdir = pathlib.Path(workdir).absolute()
    self.directory = self.workdir / "checkpoints"
    self.config = json.loads(json.dumps(config))
    self._config_path = self.workdir / "config.json"
    self._check_config()
    with _quiet_storage():
      self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
          max_to_keep=max_to_keep, create=False, enable_async_checkpointing=False
        ),
      )

  def _check_config(self) -> None:
    if not self._config_path.exists():
      return
    saved = read_json(self._config_path, dict, "a jaxnn run configuration")
    if isinstance(saved.get("identity"), dict):  # the CLI's: the full config and its identity
      extra = {k: v for k, v in saved.items() if k not in ("command", "config", "identity")}
      saved = {**saved["identity"], **extra}
    self._compare(saved, f"{self.workdir} holds a run with another configuration")

  def _compare(self, saved: dict, what: str) -> None:
    keys = sorted(set(saved) | set(self.config))
    diff = [k for k in keys if saved.get(k) != self.config.get(k)]
    if diff:
      details = "; ".join(f"{k}: saved {saved.get(k)!r}, now {self.config.get(k)!r}" for k in diff)
      raise CheckpointError(
        f"{what} ({details}). Nothing was changed: use another --out, or the same settings "
        "to resume it."
      )

  def commit(self) -> None:
    """Creates the run directory and its `config.json` (if missing)."""
    if jax.process_index() != 0:
      return
    self.workdir.mkdir(parents=True, exist_ok=True)
    check_writable(self.workdir)
    if not self._config_path.exists():
      write_json_atomic(self._config_path, self.config)

  def latest_step(self) -> int | None:
    """The newest step with a complete checkpoint (None if there is none)."""
    with _quiet_storage():
      return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    """Every step with a complete checkpoint, oldest first."""
    with _quiet_storage():
      return sorted(self.manager.all_steps())

  def step_path(self, step: int) -> pathlib.Path:
    """The folder of the checkpoint at `step`."""
    return self.directory / str(step)

  def save(self, step: int, carry: Any) -> None:
    """Saves `carry` at `step` with its digest and the run's settings.

    Raises:
      StorageError: the disk is full, read-only or otherwise failed; the
        partial checkpoint was removed and the earlier ones are intact.
    """
    record = {"format": FORMAT, "step": step, "run": self.config, "digests": tree_digest(carry)}
    try:
      with _quiet_storage():
        self.manager.save(
          step,
          args=ocp.args.Composite(
            state=ocp.args.StandardSave(carry), jaxnn=ocp.args.JsonSave(record)
          ),
        )
        self.manager.wait_until_finished()
    except Exception as e:  # Orbax raises many kinds for failing storage.
      self._remove_partial_saves()
      problem = describe_os_error(e) or _short(e)
      raise StorageError(
        f"the checkpoint at step {step} could not be written to {self.directory} ({problem}); "
        f"the last complete checkpoint (step {self._latest_on_disk()}) is intact"
      ) from e

  def _remove_partial_saves(self) -> None:
    if jax.process_index() != 0 or not self.directory.is_dir():
      return
    for path in self.directory.iterdir():
      if _TMP_SUFFIX in path.name:
        shutil.rmtree(path, ignore_errors=True)

  def _latest_on_disk(self) -> int | None:
    with _quiet_storage(), contextlib.suppress(Exception):
      self.manager.reload()
      return self.manager.latest_step()
    return None

  def _record(self, step: int) -> dict:
    """jaxnn's record in the checkpoint's metadata (CorruptCheckpointError if unreadable)."""
    path = self.step_path(step) / RECORD
    try:
      record = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
      raise CorruptCheckpointError(f"its integrity record {RECORD} is missing") from None
    except (UnicodeDecodeError, ValueError) as e:
      raise CorruptCheckpointError(
        f"its integrity record {RECORD} is unreadable ({type(e).__name__})"
      ) from None
    digests = record.get("digests") if isinstance(record, dict) else None
    if not isinstance(digests, dict) or not isinstance(record.get("run"), dict):
      raise CorruptCheckpointError(f"its integrity record {RECORD} is incomplete")
    return record

  def check_settings(self, step: int) -> None:
    """Raises a `CheckpointError` if the checkpoint at `step` was made with other settings."""
    try:
      record = self._record(step)
    except CorruptCheckpointError:
      return  # restore() reports it, with the previous intact checkpoint if any
    self._compare(
      record["run"], f"the checkpoints in {self.directory} were made with other settings"
    )

  def restore(self, carry_like: Any, step: int | None = None) -> tuple[int, Any]:
    """Restores the checkpoint at `step` (default latest) into `carry_like`'s structure, verified.

    Leaves of `carry_like` that are jax Arrays keep their sharding; numpy
    leaves are restored onto the first local device, so a checkpoint written
    on other devices or hosts loads anywhere.

    Raises:
      CorruptCheckpointError: the checkpoint cannot be read, or its bytes no
        longer match the digest saved with it.
      CheckpointError: it was made with other settings.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise CheckpointError(f"there is no checkpoint in {self.directory} to restore")
    where = self.step_path(step)
    try:
      record = self._record(step)
    except CorruptCheckpointError as e:
      raise CorruptCheckpointError(f"the checkpoint {where} cannot be verified: {e}") from None
    self._compare(record["run"], f"the checkpoint {where} was made with other settings")
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.tree.map(
      lambda x: (
        jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device)
        if isinstance(x, np.ndarray)
        else ocp.utils.to_shape_dtype_struct(x)
      ),
      carry_like,
    )
    _drop_late_storage_callbacks()
    try:
      with _quiet_storage():
        carry = self.manager.restore(
          step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
        )["state"]
    except Exception as e:  # Orbax raises many kinds for unreadable or mismatched files.
      raise CorruptCheckpointError(f"the checkpoint {where} cannot be read ({_short(e)})") from None
    saved = record["digests"]
    found = tree_digest(carry)
    if set(saved) != set(found):
      names = sorted(set(saved) ^ set(found))
      raise CorruptCheckpointError(
        f"the checkpoint {where} holds other arrays than this run ({names[0]} is "
        f"{'missing' if names[0] in saved else 'unexpected'} in its record)"
      )
    bad = [
      k for k in found if saved[k] is not None and found[k] is not None and saved[k] != found[k]
    ]
    if bad:
      shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
      raise CorruptCheckpointError(
        f"the checkpoint {where} is corrupt: the bytes of {shown} differ from those saved"
      )
    return step, carry

  def restore_latest(self, carry_like: Any, resume_from_previous: bool = False) -> tuple[int, Any]:
    """Restores the newest checkpoint, or, if asked, the newest intact one.

    Args:
      carry_like: the structure to restore into.
      resume_from_previous: if the newest checkpoint is corrupt, move it (and
        any other corrupt one newer than the intact one) to
        `workdir/corrupt_checkpoints/` and resume from the newest intact one.

    Raises:
      CheckpointError: the newest checkpoint is corrupt and `resume_from_previous`
        is off (the message names the intact one to resume from, if any), or no
        checkpoint is intact.
    """
    steps = self.all_steps()[::-1]
    try:
      return self.restore(carry_like, steps[0])
    except CorruptCheckpointError as e:
      first_error = e
    intact = None
    for step in steps[1:]:
      try:
        intact = self.restore(carry_like, step)
        break
      except CorruptCheckpointError:
        continue
    if intact is None:
      raise CheckpointError(
        f"{first_error}; there is no earlier intact checkpoint. Nothing was changed: use another "
        f"--out to start over, or move {self.directory} away to restart this run from scratch"
      )
    if not resume_from_previous:
      raise CheckpointError(
        f"{first_error}. Nothing was changed: rerun with --resume-from-previous to resume from "
        f"step {intact[0]}, the last intact checkpoint (the corrupt ones are moved to "
        f"{self.workdir / 'corrupt_checkpoints'}), or use another --out"
      )
    for step in steps:
      if step > intact[0]:
        self._set_aside(step)
    with _quiet_storage():
      self.manager.reload()
    return intact

  def _set_aside(self, step: int) -> None:
    """Moves a corrupt checkpoint out of the way, keeping its files."""
    if jax.process_index() != 0:
      return
    target = self.workdir / "corrupt_checkpoints" / str(step)
    n = 1
    while target.exists():
      target, n = self.workdir / "corrupt_checkpoints" / f"{step}-{n}", n + 1
    target.parent.mkdir(parents=True, exist_ok=True)
    self.step_path(step).rename(target)

  def close(self) -> None:
    """Releases Orbax's resources."""
    with _quiet_storage():
      self.manager.close()

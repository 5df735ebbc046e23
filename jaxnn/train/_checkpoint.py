"""Orbax checkpoints of a run's carry, with clear errors and no overwriting.

A run directory holds `checkpoints/<step>/` (written atomically by Orbax) and
`config.json`, the configuration the checkpoints belong to. Resuming with a
different configuration, or from a checkpoint that cannot be read, raises a
`CheckpointError` and touches nothing.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxnn._errors import CheckpointError
from jaxnn.train._io import write_json_atomic


class Checkpointer:
  """Saves and restores a pytree `carry` keyed by training step.

  Args:
    workdir: the run directory.
    config: a JSON-able dict identifying the run; must match to resume.
    max_to_keep: how many recent checkpoints to keep.
  """

  def __init__(self, workdir: str | pathlib.Path, config: dict, max_to_keep: int = 2):
    self.workdir = pathlib.Path(workdir).absolute()
    self.config = json.loads(json.dumps(config))
    self._check_config()
    self.manager = ocp.CheckpointManager(
      self.workdir / "checkpoints",
      options=ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False
      ),
    )

  def _check_config(self) -> None:
    path = self.workdir / "config.json"
    if not path.exists():
      self.workdir.mkdir(parents=True, exist_ok=True)
      write_json_atomic(path, self.config)
      return
    try:
      saved = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      raise CheckpointError(
        f"{path} is corrupt ({e}); move the directory away or use another --out"
      ) from None
    if isinstance(saved, dict) and isinstance(saved.get("identity"), dict):
      saved = saved["identity"]  # the CLI's config.json: the full config and its identity
    diff = sorted(k for k in set(saved) | set(self.config) if saved.get(k) != self.config.get(k))
    if diff:
      details = "; ".join(f"{k}: saved {saved.get(k)!r}, now {self.config.get(k)!r}" for k in diff)
      raise CheckpointError(
        f"{self.workdir} holds a run with another configuration ({details}). Nothing was "
        "changed: use another --out, or the same settings to resume it."
      )

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, carry: Any) -> None:
    self.manager.save(step, args=ocp.args.StandardSave(carry))
    self.manager.wait_until_finished()

  def restore(self, carry_like: Any, step: int | None = None) -> tuple[int, Any]:
    """Restores the checkpoint at `step` (default latest) into `carry_like`'s structure.

    Leaves of `carry_like` that are jax Arrays keep their sharding; numpy
    leaves are restored onto the first local device, so a checkpoint written
    on other devices or hosts loads anywhere.
    """
    step = self.latest_step() if step is None else step
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.tree.map(
      lambda x: (
        jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device)
        if isinstance(x, np.ndarray)
        else ocp.utils.to_shape_dtype_struct(x)
      ),
      carry_like,
    )
    try:
      carry = self.manager.restore(step, args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # Orbax raises many kinds for unreadable or mismatched files.
      raise CheckpointError(
        f"the checkpoint at step {step} in {self.workdir / 'checkpoints'} cannot be read "
        f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). It was left as it is: "
        "move it away to resume from an earlier one, or use another --out to start over."
      ) from e
    return step, carry

  def close(self) -> None:
    self.manager.close()

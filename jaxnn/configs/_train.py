"""`TrainConfig`: a supervised run, as `jaxnn train` takes it (no JAX imported here)."""

from __future__ import annotations

import dataclasses

from jaxnn._config import configclass, setting
from jaxnn.configs._common import DEVICES, HELP, MODEL_NAMES, OPTIMIZERS, count_or_fraction


@configclass
class TrainConfig:
  """A supervised run, as `jaxnn train` takes it."""

  dataset: str = setting("mnist5k", HELP["dataset"])
  model: str = setting("fc", HELP["model"], choices=MODEL_NAMES)
  widths: tuple[int, ...] = setting((200, 200), HELP["widths"], positive=True)
  epochs: int = setting(5, HELP["epochs"], positive=True)
  batch_size: int = setting(128, HELP["batch_size"], positive=True)
  optimizer: str = setting("adam", HELP["optimizer"], choices=OPTIMIZERS)
  learning_rate: float = setting(1e-3, HELP["learning_rate"], flag="--lr", positive=True)
  momentum: float = setting(0.9, HELP["momentum"], fraction=True)
  weight_decay: float = setting(0.0, HELP["weight_decay"], nonnegative=True)
  seed: int = setting(0, HELP["seed"])
  validation_size: int | float | None = setting(
    None, HELP["validation_size"], parse=count_or_fraction, none="the dataset's", nonnegative=True
  )
  shuffled_pixels: bool = setting(False, HELP["shuffled_pixels"])
  shuffled_labels: float = setting(0.0, HELP["shuffled_labels"], fraction=True)
  max_train: int | None = setting(None, HELP["max_train"], positive=True, none="all")
  data_dir: str | None = setting(None, HELP["data_dir"], none="$JAXNN_DATA_DIR or ~/.cache/jaxnn")
  num_devices: int | None = setting(None, HELP["num_devices"], **DEVICES)
  log_every: int = setting(50, "steps between metric lines", positive=True)
  checkpoint_every: int | None = setting(
    None, "steps between checkpoints", positive=True, none="every epoch"
  )
  eval_batch_size: int = setting(1000, "examples per evaluation batch", positive=True)
  progress: bool = setting(True, HELP["progress"])
  resume_from_previous: bool = setting(False, HELP["resume_from_previous"])

  def run_identity(self) -> dict:
    """The fields a resumed run must share (not its length, devices or resume options)."""
    skip = {
      "epochs",
      "num_devices",
      "log_every",
      "progress",
      "eval_batch_size",
      "checkpoint_every",
      "data_dir",
      "resume_from_previous",
    }
    return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}

"""`LCAConfig`: an LCA run, as `jaxnn lca` takes it (no JAX imported here)."""

from __future__ import annotations

import dataclasses

from jaxnn._config import configclass, setting
from jaxnn._errors import JaxnnError
from jaxnn.configs._common import DEVICES, HELP, MODEL_NAMES, OPTIMIZERS, count_or_fraction

# Kept equal to jaxnn.lca._integrate's THRESHOLD and MAX_SPLITS (tests/test_commands.py checks).
THRESHOLD = 1e-3  # absolute error per iteration, in loss units
MAX_SPLITS = 32  # the paper's cap: 2, 4, 8, 16, 32 splits


@configclass
class LCAConfig:
  """An LCA run. Defaults: the paper's MNIST-FC 784-100-50-10, SGD lr 0.01 momentum 0.9,
  batch 250, on the offline mnist5k."""

  dataset: str = setting("mnist5k", HELP["dataset"])
  model: str = setting("fc", HELP["model"], choices=MODEL_NAMES)
  widths: tuple[int, ...] = setting((100, 50), HELP["widths"], positive=True)
  epochs: int = setting(1, HELP["epochs"], positive=True)
  batch_size: int = setting(250, HELP["batch_size"], positive=True)
  optimizer: str = setting("momentum", HELP["optimizer"], choices=OPTIMIZERS)
  learning_rate: float = setting(0.01, HELP["learning_rate"], flag="--lr", positive=True)
  momentum: float = setting(0.9, HELP["momentum"], fraction=True)
  weight_decay: float = setting(
    0.0, "L2 used in training (LCA allocates the data loss only)", nonnegative=True
  )
  seed: int = setting(0, HELP["seed"])
  validation_size: int | float | None = setting(
    None, HELP["validation_size"], parse=count_or_fraction, none="the dataset's", nonnegative=True
  )
  max_train: int | None = setting(None, HELP["max_train"], positive=True, none="all")
  data_dir: str | None = setting(None, HELP["data_dir"], none="$JAXNN_DATA_DIR or ~/.cache/jaxnn")
  lca_train_subset: int | None = setting(
    None,
    "evaluate LCA on this many fixed random training examples",
    flag="--lca-subset",
    positive=True,
    none="all",
  )
  validation_lca: bool = setting(
    True, "do not allocate the validation loss", flag="--no-validation"
  )
  method: str = setting(
    "simpson", "simpson (adaptive, the paper's) or first_order", choices=("simpson", "first_order")
  )
  threshold: float = setting(
    THRESHOLD, "absolute per-iteration error that triggers more Simpson splits", positive=True
  )
  max_splits: int = setting(MAX_SPLITS, "most Simpson splits (a power of two >= 2)")
  chunk_size: int = setting(
    1000, "examples per chunk of the full-set gradients (bounds memory)", positive=True
  )
  num_tracked: int = setting(64, "parameters whose trajectories are kept", positive=True)
  stream: bool = setting(
    False, "also write the full iterations x parameters LCA to OUT/lca_<set>.npy"
  )
  num_devices: int | None = setting(None, HELP["num_devices"], **DEVICES)
  log_every: int = setting(50, "steps between metric lines", positive=True)
  checkpoint_every: int | None = setting(
    None, "steps between checkpoints", positive=True, none="every 10 epochs and the last step"
  )
  compile_cache: str | None = setting(
    None, "JAX persistent compilation cache directory: reruns skip XLA compilation", none="off"
  )
  fast_compile: bool = setting(
    True,
    "compile with XLA's default CPU options (slower to compile, same results)",
    flag="--slow-compile",
  )
  stem: bool = setting(
    True,
    "fc: evaluate the first layer at every gradient point instead of interpolating its "
    "output (same LCA, more products)",
  )
  num_shuffles: int = setting(1000, "shuffles for the synchronization test", positive=True)
  plots: bool = setting(True, HELP["plots"])
  progress: bool = setting(True, HELP["progress"])
  resume_from_previous: bool = setting(False, HELP["resume_from_previous"])

  def __post_init__(self):
    if self.max_splits < 2 or self.max_splits & (self.max_splits - 1):
      raise JaxnnError(f"max_splits must be a power of two >= 2, got {self.max_splits}")

  def run_identity(self) -> dict:
    # The per-iteration records are sized for the run, so epochs stays in the identity: a run
    # resumes to the same length, it is not extended.
    skip = {
      "num_devices",
      "log_every",
      "progress",
      "checkpoint_every",
      "num_shuffles",
      "plots",
      "chunk_size",
      "compile_cache",
      "fast_compile",
      "data_dir",
      "resume_from_previous",
    }
    return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}

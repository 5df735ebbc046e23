"""`SweepConfig`: a d_int90 sweep, as `jaxnn subspace sweep` takes it (no JAX imported here)."""

from __future__ import annotations

import argparse
import json

from jaxnn._config import configclass, setting
from jaxnn.configs._common import DEVICES, HELP, MODEL_NAMES, count_or_fraction

# Kept equal to jaxnn.subspace.PROJECTIONS (tests/test_commands.py checks).
PROJECTIONS = ("dense", "sparse", "fastfood")


def _dims(text: str):
  """ "auto" (None) or comma-separated positive integers."""
  if text.strip().lower() == "auto":
    return None
  try:
    return tuple(int(v) for v in text.split(",") if v.strip())
  except ValueError:
    raise argparse.ArgumentTypeError(
      f"expected comma-separated dimensions or 'auto', got {text!r}"
    ) from None


def _baseline(text: str):
  """ "individual" or a global accuracy in (0, 1]."""
  if text == "individual":
    return text
  try:
    value = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(
      f"expected 'individual' or an accuracy in (0, 1], got {text!r}"
    ) from None
  if not 0 < value <= 1:
    raise argparse.ArgumentTypeError(f"a global baseline is an accuracy in (0, 1], got {value}")
  return value


@configclass
class SweepConfig:
  """A d_int90 sweep, as `jaxnn subspace sweep` takes it.

  The default learning rates are the ones the measured sweeps use (Adam 3e-2
  for theta_d, the paper's 1e-3 for the individual baseline): at lr 1e-3,
  2,000 steps do not reach the baseline's 90% in small subspaces.
  """

  dataset: str = setting("mnist5k", HELP["dataset"])
  model: str = setting("fc", HELP["model"], choices=MODEL_NAMES)
  widths: tuple[int, ...] = setting((200, 200), HELP["widths"], positive=True)
  projection: str = setting("fastfood", "random projection", choices=PROJECTIONS)
  dims: tuple[int, ...] | None = setting(
    (100, 200, 400, 800),
    "subspace dimensions, or auto (a grid, then bisection)",
    parse=_dims,
    positive=True,
    none="auto",
    metavar="DIMS",
  )
  seeds: int = setting(
    3,
    "configs per dimension; they use seeds 0..N-1 (theta_0, projection, batch order)",
    flag="--num-seeds",
    aliases=("--seeds",),
    positive=True,
  )
  steps: int = setting(
    2000, "Adam steps per config (d_int90 depends on it: it is recorded)", positive=True
  )
  batch_size: int = setting(128, HELP["batch_size"], positive=True)
  learning_rate: float = setting(3e-2, "Adam learning rate of theta_d", flag="--lr", positive=True)
  baseline_learning_rate: float | None = setting(
    1e-3,
    "Adam learning rate of the individual baseline (none: --lr)",
    flag="--baseline-lr",
    positive=True,
  )
  weight_decay: float = setting(0.0, "L2 on the full theta_D", nonnegative=True)
  baseline: str | float = setting(
    "individual",
    "individual (normal training, done by the sweep) or a global accuracy",
    parse=_baseline,
  )
  fraction: float = setting(0.9, "d_int threshold = fraction x baseline", fraction=True)
  seed: int = setting(
    0,
    "random seed of the validation split (each d's configs use seeds 0..num_seeds-1)",
    aliases=("--data-seed",),
  )
  validation_size: int | float | None = setting(
    None, HELP["validation_size"], parse=count_or_fraction, none="the dataset's", nonnegative=True
  )
  shuffled_pixels: bool = setting(False, HELP["shuffled_pixels"])
  shuffled_labels: float = setting(0.0, HELP["shuffled_labels"], fraction=True)
  max_train: int | None = setting(None, HELP["max_train"], positive=True, none="all")
  data_dir: str | None = setting(None, HELP["data_dir"], none="$JAXNN_DATA_DIR or ~/.cache/jaxnn")
  d_min: int = setting(10, "auto: first grid point", positive=True)
  d_max: int | None = setting(None, "auto: last grid point", positive=True, none="D")
  resolution: float = setting(
    0.05, "auto: stop at this bracket width (>= 1: dims, < 1: relative)", positive=True
  )
  configs_per_program: int | None = setting(
    None,
    "configs trained together in one compiled program",
    positive=True,
    none="16; one per device for convolutional models on a CPU",
  )
  configs_per_vmap: int | None = setting(
    None,
    "configs vmapped at once per device",
    positive=True,
    none="1 on a CPU, all on accelerators",
  )
  num_devices: int | None = setting(None, HELP["num_devices"], **DEVICES)
  plots: bool = setting(True, HELP["plots"])
  progress: bool = setting(True, HELP["progress"])

  def identity(self) -> dict:
    """Settings every saved config of a directory must share (not dims, seeds, devices)."""
    keep = (
      "dataset",
      "model",
      "widths",
      "projection",
      "steps",
      "batch_size",
      "learning_rate",
      "baseline_learning_rate",
      "weight_decay",
      "seed",
      "validation_size",
      "shuffled_pixels",
      "shuffled_labels",
      "max_train",
    )
    identity = {k: getattr(self, k) for k in keep}
    identity["data_seed"] = identity.pop("seed")  # its name in sweeps saved before configs
    return json.loads(json.dumps(identity))

  @property
  def baseline_kind(self) -> str:
    return "individual" if self.baseline == "individual" else "global"

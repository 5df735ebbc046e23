"""Settings several commands share, stated once: same flag, same meaning."""

from __future__ import annotations

import argparse
from typing import Any

# Kept equal to jaxnn.models.MODEL_NAMES and jaxnn.train.OPTIMIZERS (tests/test_commands.py checks).
MODEL_NAMES = ("fc", "lenet", "lca_lenet", "resnet20")
OPTIMIZERS = ("adam", "momentum", "sgd")


def device_count(text: str) -> int | None:
  """A positive number of devices, or "all" (None: every local device)."""
  if text.strip().lower() in ("all", "none"):
    return None
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(
      f"expected a number of devices or 'all', got {text!r}"
    ) from None
  if value < 1:
    raise argparse.ArgumentTypeError(f"expected a positive number of devices, got {value}")
  return value


def count_or_fraction(text: str) -> int | float:
  """A count ("500") or a fraction ("0.1")."""
  try:
    return int(text)
  except ValueError:
    pass
  try:
    value = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a count or a fraction, got {text!r}") from None
  if not 0 <= value < 1:
    raise argparse.ArgumentTypeError(f"a fraction must be in [0, 1), got {value}")
  return value


# Help lines of the shared settings, so every command says the same.
HELP = dict(
  dataset="registered dataset (see `jaxnn datasets`)",
  model="network: " + ", ".join(MODEL_NAMES),
  widths="hidden widths of the fc model",
  epochs="passes over the training data",
  batch_size="examples per step (split across the devices)",
  optimizer="adam (beta2 0.99), momentum or sgd",
  learning_rate="learning rate",
  momentum="momentum coefficient of optimizer momentum",
  weight_decay="L2 coefficient on the weights (Keras convention)",
  seed="random seed: initialization, validation split and batch order",
  validation_size="count or fraction of the training data held out for validation",
  shuffled_pixels="apply one fixed pixel permutation to every image",
  shuffled_labels="fraction of training labels shuffled",
  max_train="keep at most this many training examples (quick runs)",
  data_dir="where datasets are cached",
  num_devices="number of devices to use, or all",
  progress="no progress output",
  plots="write no plots",
  resume_from_previous=(
    "if the newest checkpoint is corrupt, set it aside and resume from the last intact one"
  ),
)
DEVICES: dict[str, Any] = dict(flag="--devices", parse=device_count, none="all", metavar="N")

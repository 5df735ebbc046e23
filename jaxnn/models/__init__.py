"""The papers' networks in Flax NNX (FC, LeNet, the LCA LeNet, ResNet-20)."""

from jaxnn.models._networks import FC, LCALeNet, LeNet, ResNet20, count_params, kernel_init
from jaxnn.models._registry import MODEL_NAMES, create_model, init_model

__all__ = [
  "FC",
  "LCALeNet",
  "LeNet",
  "MODEL_NAMES",
  "ResNet20",
  "count_params",
  "create_model",
  "init_model",
  "kernel_init",
]

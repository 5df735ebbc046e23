"""Models by name, as used by the CLI and the method modules."""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
from flax import nnx

from jaxnn._errors import JaxnnError
from jaxnn.models._networks import FC, LCALeNet, LeNet, ResNet20

#: Names `create_model` and the command line accept.
MODEL_NAMES = ("fc", "lenet", "lca_lenet", "resnet20")


def create_model(
  name: str,
  input_shape: Sequence[int],
  num_classes: int,
  *,
  seed: int = 0,
  widths: Sequence[int] = (200, 200),
  init: str = "he_normal",
) -> nnx.Module:
  """Builds a registered network for inputs of `input_shape`.

  Args:
    name: one of `MODEL_NAMES`.
    input_shape: one example's shape, e.g. (28, 28, 1).
    num_classes: output size.
    seed: initialization seed.
    widths: hidden widths of "fc" (default 784-200-200-10 on MNIST).
    init: kernel initializer name.
  """
  rngs = nnx.Rngs(params=seed)
  if name == "fc":
    return FC(math.prod(input_shape), tuple(widths), num_classes, init=init, rngs=rngs)
  if name == "lenet":
    return LeNet(input_shape, num_classes, init=init, rngs=rngs)
  if name == "lca_lenet":
    return LCALeNet(input_shape, num_classes, init=init, rngs=rngs)
  if name == "resnet20":
    return ResNet20(input_shape, num_classes, init=init, rngs=rngs)
  raise JaxnnError(f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}")


def init_model(
  name: str,
  input_shape: Sequence[int],
  num_classes: int,
  *,
  seed: int = 0,
  widths: Sequence[int] = (200, 200),
  init: str = "he_normal",
  compiler_options: dict | None = None,
) -> nnx.Module:
  """`create_model(...)` with its initialization compiled as one executable.

  The same weights, bit for bit, as the eager `create_model`; eagerly every
  random initializer and shape is its own compiled executable, which is most
  of a short run's setup on a CPU. `compiler_options` go to `jax.jit`.
  """
  make = lambda: create_model(name, input_shape, num_classes, seed=seed, widths=widths, init=init)
  graphdef, _ = nnx.split(nnx.eval_shape(make))
  variables = jax.jit(lambda: nnx.split(make())[1], compiler_options=compiler_options)()
  return nnx.merge(graphdef, variables)

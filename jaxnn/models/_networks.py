"""The papers' networks in Flax NNX, with exact parameter counts.

Every model is called as `model(x, train=False, rngs=None)` on channels-last
float inputs and returns logits. `rngs` carries the dropout key in training.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxnn._errors import JaxnnError

_INITS: dict[str, Callable] = {
  "he_normal": jax.nn.initializers.he_normal(),
  "glorot_uniform": jax.nn.initializers.glorot_uniform(),
  "lecun_normal": jax.nn.initializers.lecun_normal(),
}


def kernel_init(name: str) -> Callable:
  """The kernel initializer called `name`: "he_normal", "glorot_uniform" or "lecun_normal".

  Raises:
    JaxnnError: for any other name.
  """
  if name not in _INITS:
    raise JaxnnError(f"unknown initializer {name!r}; choose from {', '.join(_INITS)}")
  return _INITS[name]


class FC(nnx.Module):
  """A fully connected ReLU network on flattened inputs.

  `FC(784, (200, 200), 10)` is the MNIST FC of Li et al. (2018) (199,210
  parameters); `FC(784, (100, 50), 10)` the MNIST-FC of Lan et al. (2019)
  (84,060).
  """

  def __init__(
    self,
    in_features: int,
    widths: Sequence[int],
    num_classes: int,
    *,
    init: str = "he_normal",
    rngs: nnx.Rngs,
  ):
    if in_features < 1 or num_classes < 1 or any(w < 1 for w in widths):
      raise JaxnnError(f"FC sizes must be positive, got {in_features}-{list(widths)}-{num_classes}")
    sizes = [in_features, *widths, num_classes]
    self.num_hidden = len(widths)
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
      setattr(self, f"dense{i}", nnx.Linear(a, b, kernel_init=kernel_init(init), rngs=rngs))

  def __call__(self, x, *, train: bool = False, rngs: nnx.Rngs | None = None):
    del train, rngs
    h = x.reshape(x.shape[0], -1)
    for i in range(self.num_hidden):
      h = jax.nn.relu(getattr(self, f"dense{i}")(h))
    return getattr(self, f"dense{self.num_hidden}")(h)


class LeNet(nnx.Module):
  """LeNet-5 of Li et al. (2018): conv5x5(6) pool conv5x5(16) pool 120 84 classes.

  Valid padding, ReLU, 2x2 max pooling. 44,426 parameters on MNIST (28x28x1),
  62,006 on CIFAR-10 (32x32x3).
  """

  def __init__(
    self, input_shape: Sequence[int], num_classes: int, *, init: str = "he_normal", rngs: nnx.Rngs
  ):
    h, w, c = _image_shape(input_shape, min_size=12, model="LeNet")
    k = kernel_init(init)
    self.conv0 = nnx.Conv(c, 6, (5, 5), padding="VALID", kernel_init=k, rngs=rngs)
    self.conv1 = nnx.Conv(6, 16, (5, 5), padding="VALID", kernel_init=k, rngs=rngs)
    flat = ((h - 4) // 2 - 4) // 2 * (((w - 4) // 2 - 4) // 2) * 16
    self.dense0 = nnx.Linear(flat, 120, kernel_init=k, rngs=rngs)
    self.dense1 = nnx.Linear(120, 84, kernel_init=k, rngs=rngs)
    self.dense2 = nnx.Linear(84, num_classes, kernel_init=k, rngs=rngs)

  def __call__(self, x, *, train: bool = False, rngs: nnx.Rngs | None = None):
    del train, rngs
    pool = lambda h: nnx.max_pool(h, (2, 2), strides=(2, 2))
    h = pool(jax.nn.relu(self.conv0(x)))
    h = pool(jax.nn.relu(self.conv1(h)))
    h = h.reshape(h.shape[0], -1)
    h = jax.nn.relu(self.dense0(h))
    h = jax.nn.relu(self.dense1(h))
    return self.dense2(h)


class LCALeNet(nnx.Module):
  """The modified LeNet of Lan et al. (2019): 808,970 parameters on MNIST.

  conv 20@5x5 (same), maxpool, conv 40@5x5 (same), maxpool, dropout 0.25,
  dense 400, dropout 0.5, dense classes.
  """

  def __init__(
    self, input_shape: Sequence[int], num_classes: int, *, init: str = "he_normal", rngs: nnx.Rngs
  ):
    h, w, c = _image_shape(input_shape, min_size=4, model="LCALeNet")
    k = kernel_init(init)
    self.conv0 = nnx.Conv(c, 20, (5, 5), padding="SAME", kernel_init=k, rngs=rngs)
    self.conv1 = nnx.Conv(20, 40, (5, 5), padding="SAME", kernel_init=k, rngs=rngs)
    self.dense0 = nnx.Linear((h // 4) * (w // 4) * 40, 400, kernel_init=k, rngs=rngs)
    self.dense1 = nnx.Linear(400, num_classes, kernel_init=k, rngs=rngs)
    self.dropout0 = nnx.Dropout(0.25)
    self.dropout1 = nnx.Dropout(0.5)

  def __call__(self, x, *, train: bool = False, rngs: nnx.Rngs | None = None):
    pool = lambda h: nnx.max_pool(h, (2, 2), strides=(2, 2))
    h = pool(jax.nn.relu(self.conv0(x)))
    h = pool(jax.nn.relu(self.conv1(h)))
    h = self.dropout0(h.reshape(h.shape[0], -1), deterministic=not train, rngs=rngs)
    h = self.dropout1(jax.nn.relu(self.dense0(h)), deterministic=not train, rngs=rngs)
    return self.dense1(h)


class _ResidualBlock(nnx.Module):
  """Two 3x3 conv-BN layers; a 1x1 conv-BN projection when the shape changes."""

  def __init__(self, c_in: int, c_out: int, stride: int, k, rngs: nnx.Rngs):
    self.conv0 = nnx.Conv(
      c_in, c_out, (3, 3), strides=stride, padding="SAME", use_bias=False, kernel_init=k, rngs=rngs
    )
    self.bn0 = nnx.BatchNorm(c_out, momentum=0.9, rngs=rngs)
    self.conv1 = nnx.Conv(
      c_out, c_out, (3, 3), padding="SAME", use_bias=False, kernel_init=k, rngs=rngs
    )
    self.bn1 = nnx.BatchNorm(c_out, momentum=0.9, rngs=rngs)
    self.has_projection = stride != 1 or c_in != c_out
    if self.has_projection:
      self.proj = nnx.Conv(
        c_in, c_out, (1, 1), strides=stride, use_bias=False, kernel_init=k, rngs=rngs
      )
      self.proj_bn = nnx.BatchNorm(c_out, momentum=0.9, rngs=rngs)

  def __call__(self, x, train: bool):
    eval_mode = not train
    h = jax.nn.relu(self.bn0(self.conv0(x), use_running_average=eval_mode))
    h = self.bn1(self.conv1(h), use_running_average=eval_mode)
    shortcut = (
      self.proj_bn(self.proj(x), use_running_average=eval_mode) if self.has_projection else x
    )
    return jax.nn.relu(h + shortcut)


class ResNet20(nnx.Module):
  """ResNet-20 for CIFAR (He et al. 2016) as used by Lan et al. (2019).

  A 3x3 conv of 16, three stages of three residual blocks (16, 32, 64 filters,
  stride 2 between stages), BatchNorm, 1x1 projection shortcuts, global average
  pooling, dense classes.
  """

  def __init__(
    self, input_shape: Sequence[int], num_classes: int, *, init: str = "he_normal", rngs: nnx.Rngs
  ):
    _, _, c = _image_shape(input_shape, min_size=4, model="ResNet20")
    k = kernel_init(init)
    self.stem = nnx.Conv(c, 16, (3, 3), padding="SAME", use_bias=False, kernel_init=k, rngs=rngs)
    self.stem_bn = nnx.BatchNorm(16, momentum=0.9, rngs=rngs)
    blocks, c_in = [], 16
    for stage, c_out in enumerate((16, 32, 64)):
      for b in range(3):
        blocks.append(_ResidualBlock(c_in, c_out, 2 if (stage and not b) else 1, k, rngs))
        c_in = c_out
    self.blocks = nnx.List(blocks)
    self.head = nnx.Linear(64, num_classes, kernel_init=k, rngs=rngs)

  def __call__(self, x, *, train: bool = False, rngs: nnx.Rngs | None = None):
    del rngs
    h = jax.nn.relu(self.stem_bn(self.stem(x), use_running_average=not train))
    for block in self.blocks:
      h = block(h, train)
    return self.head(jnp.mean(h, axis=(1, 2)))


def _image_shape(input_shape: Sequence[int], min_size: int, model: str) -> tuple[int, int, int]:
  if len(input_shape) == 2:
    input_shape = (*input_shape, 1)
  if len(input_shape) != 3 or min(input_shape[:2]) < min_size:
    raise JaxnnError(
      f"{model} needs images of shape (H, W, C) with H, W >= {min_size}, got {tuple(input_shape)}; "
      "use the fc model for vector or tiny inputs"
    )
  return tuple(int(s) for s in input_shape)


def count_params(params) -> int:
  """Number of scalars in a parameter pytree.

  Examples:
    >>> from flax import nnx
    >>> from jaxnn.models import count_params, create_model
    >>> model = create_model("fc", (28, 28, 1), 10)  # 784-200-200-10
    >>> count_params(nnx.state(model, nnx.Param))
    199210
  """
  return sum(math.prod(jnp.shape(p)) for p in jax.tree.leaves(params))

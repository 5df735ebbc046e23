"""The paper's Not-so-Clevr models, with the reference code's exact parameter counts.

Every model is called `model(x, train=False, rngs=None)` (the jaxnn
convention). Classification models return logits over the 64 * 64 = 4,096
pixels (B, 4096), indexed `row * 64 + col`; regression models return
(B, 2) normalized (x, y); the renderer returns per-pixel logits (B, 64, 64, 1).

| model | task | params |
|---|---|---|
| `CoordConvClassifier()` | (x, y) -> one-hot pixel | 7,553 |
| `DeconvClassifier(mul, kernel_size)` | same | 46,465 (1, 2) .. 1,632,001 (3, 4) |
| `CoordConvRegressor()` | one-hot -> (x, y) / 64 | 906 |
| `ConvRegressor()` | same | 72,850 |
| `CoordConvRenderer(kernel_size=3, mul=1)` | (x, y) -> square image | 11,850 |

References:
  Liu et al., "An intriguing failing of convolutional neural networks and the
  CoordConv solution", NeurIPS 2018, https://arxiv.org/abs/1807.03247,
  Sections 3-4 and Table S1; uber-research/CoordConv `model_builders.py`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxnn._errors import JaxnnError
from jaxnn.coordconv._coords import tile_coords
from jaxnn.coordconv._layers import CoordConv2D

CANVAS = 64
_HE = jax.nn.initializers.he_normal()


def _conv(cin: int, cout: int, k: int, rngs: nnx.Rngs) -> nnx.Conv:
  return nnx.Conv(cin, cout, (k, k), padding="SAME", kernel_init=_HE, rngs=rngs)


def _check_coords(x: jax.Array, model: str) -> jax.Array:
  """Raw pixel coordinates (B, 2) -> the [-1, 1] frame of the coordinate channels.

  `v / 63 * 2 - 1` is the same map `add_coords` applies to pixel indices, so
  pixel (x, y) and the channels `xx, yy` at that pixel carry equal values; the
  baselines get the same inputs. Raw values of 4..59 leave Adam stalled at
  chance for epochs (measured), which the paper's runs of 1,000 epochs hide.
  """
  if x.ndim != 2 or x.shape[-1] != 2:
    raise JaxnnError(f"{model} takes raw (x, y) coordinates of shape (B, 2), got {tuple(x.shape)}")
  return x.astype(jnp.float32) / (CANVAS - 1) * 2 - 1


PAPER_CLASSIFIER_WIDTHS = (32, 32, 64, 64)


class CoordConvClassifier(nnx.Module):
  """(x, y) -> logits over the 4,096 pixels: tile, AddCoords, 1x1 convs.

  Raw coordinates (B, 2) are tiled to (B, 64, 64, 2), the CoordConv adds `xx,
  yy` (4 channels), then 1x1 convs of `widths` (the paper's 32, 32, 64, 64,
  times `mul`) with ReLU and a 1x1 conv to 1 channel; softmax over the
  flattened canvas. 7,553 parameters for the paper's widths.

  Narrower `widths` are the same network at a fraction of the cost: (8, 8)
  has 121 parameters, about 70x fewer multiply-adds per pixel, and reaches
  100% test accuracy on the quadrant split within one epoch (measured, see
  docs/coordconv.md), where the paper's widths need about 11.
  """

  def __init__(
    self,
    *,
    mul: int = 1,
    widths: tuple[int, ...] = PAPER_CLASSIFIER_WIDTHS,
    with_r: bool = False,
    rngs: nnx.Rngs,
  ):
    if not widths or mul < 1 or min(widths) < 1:
      raise JaxnnError(f"CoordConvClassifier needs positive widths and mul, got {widths}, {mul}")
    widths = tuple(w * mul for w in widths)
    self.first = CoordConv2D(2, widths[0], (1, 1), with_r=with_r, kernel_init=_HE, rngs=rngs)
    self.hidden = nnx.List([_conv(a, b, 1, rngs) for a, b in zip(widths[:-1], widths[1:])])
    self.out = _conv(widths[-1], 1, 1, rngs)

  def canvas_logits(self, x_Bx2: jax.Array) -> jax.Array:
    """(B, 64, 64, 1) logits before the flattening softmax."""
    h = jax.nn.relu(
      self.first(tile_coords(_check_coords(x_Bx2, "CoordConvClassifier"), (CANVAS, CANVAS)))
    )
    for conv in self.hidden:
      h = jax.nn.relu(conv(h))
    return self.out(h)

  def __call__(self, x_Bx2, *, train: bool = False, rngs: nnx.Rngs | None = None):
    del train, rngs
    return self.canvas_logits(x_Bx2).reshape(x_Bx2.shape[0], -1)


class DeconvClassifier(nnx.Module):
  """The paper's deconvolution baseline: (B, 1, 1, 2) -> six stride-2 transposed convs.

  Channels 64m, 64m, 64m, 32m, 32m, 1 with BatchNorm (momentum 0.9, eps 1e-5)
  and ReLU between, 'SAME' padding: 1x1 -> 64x64. 46,465 parameters for
  (mul=1, kernel_size=2), 1,632,001 for (3, 4) (BatchNorm scale and bias
  counted; its running statistics are state).
  """

  def __init__(self, *, mul: int = 1, kernel_size: int = 3, rngs: nnx.Rngs):
    if mul < 1 or kernel_size < 1:
      raise JaxnnError(
        f"DeconvClassifier needs mul >= 1 and kernel_size >= 1, got {mul}, {kernel_size}"
      )
    widths = [2, 64 * mul, 64 * mul, 64 * mul, 32 * mul, 32 * mul, 1]
    self.deconvs = nnx.List(
      [
        nnx.ConvTranspose(
          a, b, (kernel_size, kernel_size), (2, 2), padding="SAME", kernel_init=_HE, rngs=rngs
        )
        for a, b in zip(widths[:-1], widths[1:])
      ]
    )
    self.norms = nnx.List(
      [nnx.BatchNorm(w, momentum=0.9, epsilon=1e-5, rngs=rngs) for w in widths[1:-1]]
    )

  def canvas_logits(self, x_Bx2: jax.Array, train: bool = False) -> jax.Array:
    h = _check_coords(x_Bx2, "DeconvClassifier").reshape(-1, 1, 1, 2)
    for deconv, norm in zip(self.deconvs[:-1], self.norms):
      h = jax.nn.relu(norm(deconv(h), use_running_average=not train))
    return self.deconvs[-1](h)

  def __call__(self, x_Bx2, *, train: bool = False, rngs: nnx.Rngs | None = None):
    del rngs
    return self.canvas_logits(x_Bx2, train).reshape(x_Bx2.shape[0], -1)


class CoordConvRegressor(nnx.Module):
  """One-hot image -> (x, y) / 64: AddCoords, 1x1 convs 8, 8, 8, 3x3 convs 8, 2, global max.

  No nonlinearities, as the reference `coordconv_model`. 906 parameters.
  """

  def __init__(self, *, rngs: nnx.Rngs):
    self.first = CoordConv2D(1, 8, (1, 1), kernel_init=_HE, rngs=rngs)
    self.convs = nnx.List(
      [_conv(8, 8, 1, rngs), _conv(8, 8, 1, rngs), _conv(8, 8, 3, rngs), _conv(8, 2, 3, rngs)]
    )

  def __call__(self, x_BxHxWx1, *, train: bool = False, rngs: nnx.Rngs | None = None):
    del train, rngs
    h = self.first(x_BxHxWx1)
    for conv in self.convs:
      h = conv(h)
    return jnp.max(h, axis=(1, 2))


class ConvRegressor(nnx.Module):
  """The conv baseline: 4x [3x3 conv 16, ReLU] with 3 max-pools, dense 64, dense 2.

  The reference `big_conv`; 72,850 parameters on 64x64 inputs.
  """

  def __init__(self, *, mul: int = 1, rngs: nnx.Rngs):
    w = 16 * mul
    self.convs = nnx.List(
      [_conv(1, w, 3, rngs), _conv(w, w, 3, rngs), _conv(w, w, 3, rngs), _conv(w, w, 3, rngs)]
    )
    self.hidden = nnx.Linear(8 * 8 * w, 64, kernel_init=_HE, rngs=rngs)
    self.out = nnx.Linear(64, 2, kernel_init=_HE, rngs=rngs)

  def __call__(self, x_BxHxWx1, *, train: bool = False, rngs: nnx.Rngs | None = None):
    del train, rngs
    h = x_BxHxWx1
    for i, conv in enumerate(self.convs):
      h = jax.nn.relu(conv(h))
      if i < 3:
        h = nnx.max_pool(h, (2, 2), (2, 2))
    return self.out(jax.nn.relu(self.hidden(h.reshape(h.shape[0], -1))))


class _Renderer(nnx.Module):
  """A coordinate classifier head, a softmax "sharpen", five kxk convs painting the square."""

  def __init__(self, head: nnx.Module, kernel_size: int, mul: int, rngs: nnx.Rngs):
    self.head = head
    widths = [1, 8 * mul, 8 * mul, 16 * mul, 16 * mul, 1]
    self.convs = nnx.List([_conv(a, b, kernel_size, rngs) for a, b in zip(widths[:-1], widths[1:])])

  def center_probabilities(self, x_Bx2: jax.Array, train: bool = False) -> jax.Array:
    """(B, 64, 64, 1) softmax over the canvas: where the head puts the centre."""
    logits = self.head(x_Bx2, train=train)
    return jax.nn.softmax(logits, axis=-1).reshape(-1, CANVAS, CANVAS, 1)

  def __call__(self, x_Bx2, *, train: bool = False, rngs: nnx.Rngs | None = None):
    del rngs
    h = self.center_probabilities(x_Bx2, train)
    for conv in self.convs[:-1]:
      h = jax.nn.relu(conv(h))
    return self.convs[-1](h)


class CoordConvRenderer(_Renderer):
  """(x, y) -> the 9x9 square: `CoordConvClassifier`, softmax "sharpen", five kxk convs.

  The CoordConv head paints a one-hot-like map (softmax over the 4,096
  pixels), which convs 8m, 8m, 16m, 16m (ReLU) and 1 grow into the square's
  per-pixel logits. 11,850 parameters for (kernel_size=3, mul=1).
  """

  def __init__(self, *, kernel_size: int = 3, mul: int = 1, rngs: nnx.Rngs):
    super().__init__(CoordConvClassifier(rngs=rngs), kernel_size, mul, rngs)


class DeconvRenderer(_Renderer):
  """The rendering baseline (reference `DeconvBottleneckPainter`): a `DeconvClassifier` head."""

  def __init__(
    self, *, kernel_size: int = 3, mul: int = 1, deconv_kernel_size: int = 3, rngs: nnx.Rngs
  ):
    super().__init__(
      DeconvClassifier(mul=mul, kernel_size=deconv_kernel_size, rngs=rngs), kernel_size, mul, rngs
    )

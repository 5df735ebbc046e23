"""Per-example objectives of the three Not-so-Clevr tasks, for `jaxnn.train`.

References:
  Liu et al. (2018), Sections 3-4; the losses and metrics of the reference
  `model_builders.py` (softmax over pixels, MSE, per-pixel sigmoid CE, IoU).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxnn.train import Objective

CANVAS = 64
# The square's grey value as a rendering target (128 / 255). A pixel counts as painted
# when its probability is nearer that value than the black background (0): above half of
# it. The reference rounds at 0.5, which a target of 0.502 puts on a knife edge.
SQUARE_VALUE = 128 / 255
PAINT_THRESHOLD = SQUARE_VALUE / 2


def _pixel_xy(index_B: jax.Array) -> tuple[jax.Array, jax.Array]:
  return (index_B % CANVAS).astype(jnp.float32), (index_B // CANVAS).astype(jnp.float32)


def softmax_cross_entropy(logits_BxP: jax.Array, label_B: jax.Array) -> jax.Array:
  """-log softmax(logits)[label], with its value and gradient exact in float32.

  The usual `logsumexp(z) - z[label]` computes `log(1 + S)`, S the mass of the
  classes other than the largest; once the label is the largest logit by ~17
  (S < 2^-24), `1 + S` rounds to 1: the loss is exactly 0 and the label
  logit's gradient `softmax[label] - 1` is exactly 0 while the other logits'
  gradients (about exp(-margin)) survive, so the gradient no longer sums to 0
  over the classes and points the wrong way (docs/coordconv.md). Here, with
  the label on top, the loss is `log1p(sum_{i != label} exp(z_i - z_label))`,
  whose gradient on the label logit is the direct sum `-S / (1 + S)`.
  Elsewhere it equals the usual formula.
  """
  z_BxP = logits_BxP.astype(jnp.float32)
  top_B = jnp.argmax(z_BxP, axis=-1)
  z_top_B = jnp.take_along_axis(z_BxP, top_B[:, None], axis=-1)[:, 0]
  is_top_BxP = jnp.arange(z_BxP.shape[-1])[None] == top_B[:, None]
  rest_B = jnp.sum(jnp.where(is_top_BxP, 0.0, jnp.exp(z_BxP - z_top_B[:, None])), axis=-1)
  log_rest_B = jnp.log1p(rest_B)
  z_label_B = jnp.take_along_axis(z_BxP, label_B[:, None], axis=-1)[:, 0]
  return jnp.where(top_B == label_B, log_rest_B, z_top_B - z_label_B + log_rest_B)


def _pixel_softmax_loss(logits_BxP, label_B):
  return softmax_cross_entropy(logits_BxP, label_B)


def _pixel_softmax_metrics(logits_BxP, label_B):
  guess_B = jnp.argmax(logits_BxP, axis=-1)
  (gx, gy), (tx, ty) = _pixel_xy(guess_B), _pixel_xy(label_B)
  return {
    "accuracy": (guess_B == label_B).astype(jnp.float32),
    "pixel_error": jnp.sqrt(jnp.square(gx - tx) + jnp.square(gy - ty)),
  }


#: Coordinate classification: softmax over the 4,096 pixels, label = row * 64 + col.
PIXEL_SOFTMAX = Objective(_pixel_softmax_loss, _pixel_softmax_metrics)


def _coordinate_mse(pred_Bx2, target_Bx2):
  return jnp.mean(jnp.square(pred_Bx2 - target_Bx2), axis=-1)


def _coordinate_metrics(pred_Bx2, target_Bx2):
  return {"pixel_error": CANVAS * jnp.sqrt(jnp.sum(jnp.square(pred_Bx2 - target_Bx2), axis=-1))}


#: Coordinate regression: MSE on (x, y) / 64; the error is reported in pixels (Euclidean).
COORDINATE_MSE = Objective(_coordinate_mse, _coordinate_metrics)


def painted_mask(logits: jax.Array) -> jax.Array:
  """Where a renderer paints the square: sigmoid probability above `PAINT_THRESHOLD`."""
  return jax.nn.sigmoid(logits.astype(jnp.float32)) > PAINT_THRESHOLD


def _pixel_sigmoid_loss(logits_BxHxWx1, target_BxHxWx1):
  b = logits_BxHxWx1.shape[0]
  return jnp.mean(
    optax.sigmoid_binary_cross_entropy(
      logits_BxHxWx1.astype(jnp.float32).reshape(b, -1), target_BxHxWx1.reshape(b, -1)
    ),
    axis=-1,
  )


def _pixel_sigmoid_metrics(logits_BxHxWx1, target_BxHxWx1):
  b = logits_BxHxWx1.shape[0]
  painted = painted_mask(logits_BxHxWx1).reshape(b, -1)
  truth = (target_BxHxWx1 > 0).reshape(b, -1)
  intersection = jnp.sum(painted & truth, axis=-1).astype(jnp.float32)
  union = jnp.sum(painted | truth, axis=-1).astype(jnp.float32)
  return {
    "iou": intersection / jnp.maximum(union, 1.0),
    "accuracy": jnp.all(painted == truth, axis=-1).astype(jnp.float32),
    "pixel_accuracy": jnp.mean((painted == truth).astype(jnp.float32), axis=-1),
  }


#: Rendering: per-pixel sigmoid cross-entropy against image / 255; IoU of the painted
#: square, `accuracy` = the whole 64x64 mask painted exactly right.
PIXEL_SIGMOID = Objective(_pixel_sigmoid_loss, _pixel_sigmoid_metrics)

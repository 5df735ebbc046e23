"""The paper's task models: exact parameter counts and output shapes."""

import chex
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxnn import JaxnnError
from jaxnn.coordconv import (
  PIXEL_SIGMOID,
  PIXEL_SOFTMAX,
  ConvRegressor,
  CoordConvClassifier,
  CoordConvRegressor,
  CoordConvRenderer,
  DeconvClassifier,
  TaskConfig,
)
from jaxnn.models import count_params


def _params(m):
  return count_params(nnx.state(m, nnx.Param))


@pytest.mark.parametrize(
  "make, expected",
  [
    (lambda r: CoordConvClassifier(rngs=r), 7_553),
    (lambda r: CoordConvClassifier(widths=(8, 8), rngs=r), 4 * 8 + 8 + 8 * 8 + 8 + 8 + 1),
    (lambda r: DeconvClassifier(mul=1, kernel_size=2, rngs=r), 46_465),
    (lambda r: DeconvClassifier(mul=3, kernel_size=4, rngs=r), 1_632_001),
    (lambda r: CoordConvRegressor(rngs=r), 906),
    (lambda r: ConvRegressor(rngs=r), 72_850),
    (lambda r: CoordConvRenderer(kernel_size=3, mul=1, rngs=r), 11_850),
  ],
)
def test_parameter_counts_match_the_paper(make, expected):
  assert _params(nnx.eval_shape(lambda: make(nnx.Rngs(0)))) == expected


def test_deconv_counts_formula():
  # Transposed-conv kernels + biases, BatchNorm scale + bias after the first five.
  for mul, k in [(1, 3), (2, 2), (2, 4)]:
    w = [2, 64 * mul, 64 * mul, 64 * mul, 32 * mul, 32 * mul, 1]
    convs = sum(a * b * k * k + b for a, b in zip(w[:-1], w[1:]))
    model = nnx.eval_shape(lambda: DeconvClassifier(mul=mul, kernel_size=k, rngs=nnx.Rngs(0)))
    assert _params(model) == convs + 2 * sum(w[1:-1])


@pytest.mark.slow
def test_output_shapes():
  r = nnx.Rngs(0)
  coords = jnp.array([[4.0, 59.0], [33.0, 12.0]])
  chex.assert_shape(CoordConvClassifier(rngs=r)(coords), (2, 4096))
  chex.assert_shape(DeconvClassifier(rngs=r)(coords, train=True), (2, 4096))
  chex.assert_shape(CoordConvRenderer(rngs=r)(coords), (2, 64, 64, 1))
  onehot = jnp.zeros((2, 64, 64, 1)).at[0, 5, 7, 0].set(1.0)
  chex.assert_shape(CoordConvRegressor(rngs=r)(onehot), (2, 2))
  chex.assert_shape(ConvRegressor(rngs=r)(onehot), (2, 2))
  with pytest.raises(JaxnnError, match=r"\(B, 2\)"):
    CoordConvClassifier(rngs=r)(jnp.zeros((2, 3)))


def test_regressor_can_represent_the_exact_answer():
  """With hand-set weights the 906-parameter linear net outputs (x, y) / 64 exactly.

  The one-hot selects its pixel under the max pool when the one-hot's weight is
  large; the coordinate channels then give the location.
  """
  m = CoordConvRegressor(rngs=nnx.Rngs(0))
  k = np.zeros((1, 1, 3, 8), np.float32)
  k[0, 0, 0, 0] = k[0, 0, 0, 1] = 100.0  # one-hot -> both outputs
  k[0, 0, 1, 0] = k[0, 0, 2, 1] = 1.0  # xx -> output x, yy -> output y
  m.first.conv.kernel[...] = jnp.asarray(k)
  m.first.conv.bias[...] = jnp.zeros(8)
  for conv in m.convs:
    kernel = np.zeros(conv.kernel.shape, np.float32)
    c = kernel.shape[0] // 2
    for i in range(kernel.shape[3]):
      kernel[c, c, i, i] = 1.0
    conv.kernel[...] = jnp.asarray(kernel)
    conv.bias[...] = jnp.zeros_like(conv.bias[...])
  x, y = 37, 50
  onehot = jnp.zeros((1, 64, 64, 1)).at[0, y, x, 0].set(1.0)
  out = np.asarray(m(onehot))[0] - 100.0  # remove the one-hot's offset
  np.testing.assert_allclose(out, [x / 63 * 2 - 1, y / 63 * 2 - 1], atol=1e-5)


def test_narrow_classifier_can_represent_the_exact_answer():
  """1x1 convs 8, 8 hold logit = -100 (|xx - x| + |yy - y|), peaked at pixel (x, y) anywhere.

  Channels into the first conv: [x, y (tiled, in the [-1, 1] frame), xx, yy].
  Four ReLU units give |xx - x| and |yy - y|, which depend on differences only,
  so the same weights are right in the held-out quadrant.
  """
  m = CoordConvClassifier(widths=(8, 8), rngs=nnx.Rngs(0))
  k1 = np.zeros((1, 1, 4, 8), np.float32)
  for unit, (coord, channel, sign) in enumerate([(0, 2, 1), (0, 2, -1), (1, 3, 1), (1, 3, -1)]):
    k1[0, 0, channel, unit], k1[0, 0, coord, unit] = sign, -sign  # relu(+-(xx - x)), ...
  k2 = np.zeros((1, 1, 8, 8), np.float32)
  k2[0, 0, np.arange(4), np.arange(4)] = 1.0
  k3 = np.zeros((1, 1, 8, 1), np.float32)
  k3[0, 0, :4, 0] = -100.0
  for conv, kernel in [(m.first.conv, k1), (m.hidden[0], k2), (m.out, k3)]:
    conv.kernel[...] = jnp.asarray(kernel)
    conv.bias[...] = jnp.zeros_like(conv.bias[...])
  xy = jnp.array([[4.0, 4.0], [59.0, 59.0], [33.0, 45.0], [12.0, 50.0]])
  guess = np.asarray(jnp.argmax(m(xy), axis=-1))
  np.testing.assert_array_equal(guess, [y * 64 + x for x, y in np.asarray(xy, int)])


def test_objective_metrics_by_hand():
  logits = jnp.full((2, 4096), -10.0).at[0, 5 * 64 + 7].set(10.0).at[1, 0].set(10.0)
  labels = jnp.array([5 * 64 + 7, 3 * 64 + 4])
  m = PIXEL_SOFTMAX.metrics(logits, labels)
  np.testing.assert_array_equal(m["accuracy"], [1.0, 0.0])
  np.testing.assert_allclose(m["pixel_error"], [0.0, 5.0])
  target = jnp.zeros((1, 64, 64, 1)).at[0, 10:19, 20:29].set(128 / 255)
  painted = jnp.full((1, 64, 64, 1), -10.0).at[0, 10:19, 20:30].set(10.0)  # one column too many
  r = PIXEL_SIGMOID.metrics(painted, target)
  np.testing.assert_allclose(r["iou"], [81 / 90])
  np.testing.assert_array_equal(r["accuracy"], [0.0])


def test_task_config_errors():
  with pytest.raises(JaxnnError, match="unknown task"):
    TaskConfig(task="detection").resolved()
  with pytest.raises(JaxnnError, match="coordconv or conv"):
    TaskConfig(model="resnet").resolved()
  assert TaskConfig(task="classification", model="conv").resolved().epochs == 1000
  with pytest.raises(JaxnnError, match="classification and model coordconv"):
    TaskConfig(task="regression", widths=(8, 8)).resolved()
  with pytest.raises(JaxnnError, match="max_seconds"):
    TaskConfig(max_seconds=0).resolved()

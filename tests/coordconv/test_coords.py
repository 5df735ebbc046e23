"""add_coords against the formula `i / (n - 1) * 2 - 1`, written out with numpy loops."""

import fractions
import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import JaxnnError
from jaxnn.coordconv import add_coords, coordinate_ramp, tile_coords


def _expected_coord(i: int, n: int) -> float:
  return 0.0 if n == 1 else i / (n - 1) * 2 - 1


def _reference_channels(spatial, with_r):
  """Coordinate channels by explicit loops: channel k varies along spatial axis -1-k."""
  out = np.zeros((*spatial, len(spatial) + int(with_r)), np.float64)
  for idx in itertools.product(*(range(n) for n in spatial)):
    coords = [_expected_coord(i, n) for i, n in zip(idx, spatial)][::-1]
    out[idx + (slice(None),)] = coords + ([np.sqrt(np.sum(np.square(coords)))] if with_r else [])
  return out


SHAPES = [
  (7,),
  (1,),
  (2,),
  (64, 64),
  (5, 9),
  (9, 5),
  (1, 6),
  (6, 1),
  (1, 1),
  (3, 1, 4),
  (2, 5, 3),
  (4, 4, 4),
  (1, 1, 1),
]


@pytest.mark.parametrize("spatial", SHAPES)
@pytest.mark.parametrize("with_r", [False, True])
def test_values_match_formula(spatial, with_r):
  x = np.random.default_rng(0).normal(size=(2, *spatial, 3)).astype(np.float32)
  out = np.asarray(add_coords(x, with_r=with_r))
  chex.assert_shape(out, (2, *spatial, 3 + len(spatial) + int(with_r)))
  np.testing.assert_array_equal(out[..., :3], x)
  for b in range(2):
    np.testing.assert_allclose(out[b, ..., 3:], _reference_channels(spatial, with_r), atol=1e-6)


@pytest.mark.parametrize("spatial", [(5, 9), (64, 3), (2, 2), (3, 7, 11)])
def test_each_channel_spans_exactly_minus_one_to_one(spatial):
  out = np.asarray(add_coords(jnp.zeros((1, *spatial, 1))))
  for k in range(len(spatial)):
    channel = out[..., 1 + k]
    assert channel.min() == -1.0 and channel.max() == 1.0


SIZES = range(2, 257)
# Sizes whose ramp ended at 0.99999988 in float32 when it was computed by XLA
# as arange / (n - 1) * 2 - 1 (XLA multiplies by a rounded reciprocal).
ONCE_INEXACT = (42, 48, 56, 95, 142, 210, 250)


def _check_ramp(ramp, n, dtype):
  """Exactly -1 and 1 at the ends, antisymmetric, increasing, and within half an
  ulp of the exact value (2i - (n - 1)) / (n - 1) (computed in fractions)."""
  ramp = np.asarray(ramp)
  assert ramp.dtype == dtype and ramp.shape == (n,)
  assert ramp[0] == -1.0 and ramp[-1] == 1.0, (n, ramp[0], ramp[-1])
  np.testing.assert_array_equal(ramp, -ramp[::-1])
  assert np.all(np.diff(ramp) > 0)
  half_ulp = np.spacing(np.abs(ramp)) / 2
  for r, h, i in zip(ramp.tolist(), half_ulp.tolist(), range(n)):
    assert abs(fractions.Fraction(r) - fractions.Fraction(2 * i - (n - 1), n - 1)) <= h, (n, i)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ramp_is_exact_at_the_ends_for_every_size_up_to_256(dtype):
  with jax.enable_x64(dtype == np.float64):
    for n in SIZES:
      _check_ramp(coordinate_ramp(n, dtype), n, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_add_coords_channels_are_the_exact_ramps_under_jit(dtype):
  with jax.enable_x64(dtype == np.float64):
    f = jax.jit(add_coords)
    for h, w in zip(ONCE_INEXACT, (2, 3, 256, 255, *ONCE_INEXACT[::-1])):
      out = np.asarray(f(jnp.zeros((1, h, w, 1), dtype)))
      assert out.dtype == dtype
      np.testing.assert_array_equal(
        out[0, ..., 1], np.broadcast_to(coordinate_ramp(w, dtype), (h, w))
      )
      np.testing.assert_array_equal(
        out[0, ..., 2], np.broadcast_to(coordinate_ramp(h, dtype)[:, None], (h, w))
      )
      _check_ramp(out[0, 0, :, 1], w, dtype)  # xx along the width
      _check_ramp(out[0, :, 0, 2], h, dtype)  # yy along the height


def test_order_is_input_xx_yy_for_images():
  out = np.asarray(add_coords(jnp.zeros((1, 3, 5, 2))))
  np.testing.assert_allclose(out[0, 0, :, 2], [-1, -0.5, 0, 0.5, 1])  # xx along the width
  np.testing.assert_allclose(out[0, :, 0, 3], [-1, 0, 1])  # yy along the height


def test_size_one_axis_gets_zero():
  out = np.asarray(add_coords(jnp.zeros((2, 1, 4, 1))))
  np.testing.assert_array_equal(out[..., 2], 0.0)
  np.testing.assert_array_equal(coordinate_ramp(1), [0.0])


def test_radius_range():
  out = np.asarray(add_coords(jnp.zeros((1, 33, 17, 1)), with_r=True))
  r = out[..., 3]
  np.testing.assert_allclose(r.max(), np.sqrt(2), rtol=1e-6)
  assert r.min() == 0.0  # odd sizes have an exact centre pixel
  np.testing.assert_allclose(r, np.sqrt(out[..., 1] ** 2 + out[..., 2] ** 2), rtol=1e-6)
  r3 = np.asarray(add_coords(jnp.zeros((1, 3, 3, 3, 1)), with_r=True))[..., 4]
  np.testing.assert_allclose(r3.max(), np.sqrt(3), rtol=1e-6)


@pytest.mark.parametrize("spatial", [(6,), (4, 7), (2, 3, 5)])
def test_channels_first_matches_channels_last(spatial):
  x = np.random.default_rng(1).normal(size=(2, *spatial, 3)).astype(np.float32)
  last = np.asarray(add_coords(x, with_r=True))
  first = np.asarray(add_coords(np.moveaxis(x, -1, 1), with_r=True, channels_first=True))
  np.testing.assert_array_equal(np.moveaxis(first, 1, -1), last)


def test_tiling_mode():
  raw = np.array([[3.0, 7.0], [-1.0, 2.0]], np.float32)
  for x in (raw, raw.reshape(2, 1, 1, 2)):
    out = np.asarray(add_coords(x, tile_to=(4, 6)))
    chex.assert_shape(out, (2, 4, 6, 4))
    np.testing.assert_array_equal(out[..., :2], np.broadcast_to(raw[:, None, None], (2, 4, 6, 2)))
    np.testing.assert_allclose(out[0, ..., 2:], _reference_channels((4, 6), False), atol=1e-6)
  first = np.asarray(tile_coords(raw.reshape(2, 2, 1, 1), (3, 3), channels_first=True))
  chex.assert_shape(first, (2, 2, 3, 3))


def test_dtypes():
  assert add_coords(jnp.zeros((1, 4, 4, 1), jnp.bfloat16)).dtype == jnp.bfloat16
  assert add_coords(jnp.zeros((1, 4, 4, 1), jnp.int32)).dtype == jnp.float32


def test_bad_inputs_raise_clear_errors():
  with pytest.raises(JaxnnError, match="1 to 3 spatial axes"):
    add_coords(jnp.zeros((4, 4)))
  with pytest.raises(JaxnnError, match="1 to 3 spatial axes"):
    add_coords(jnp.zeros((1, 2, 2, 2, 2, 1)))
  with pytest.raises(JaxnnError, match="size-1 spatial axes"):
    add_coords(jnp.zeros((2, 3, 3, 2)), tile_to=(4, 4))


def test_under_jit_vmap_grad():
  x = jnp.asarray(np.random.default_rng(2).normal(size=(3, 2, 5, 4, 1)), jnp.float32)
  eager = jnp.stack([add_coords(xi, with_r=True) for xi in x])
  chex.assert_trees_all_close(jax.jit(jax.vmap(lambda xi: add_coords(xi, with_r=True)))(x), eager)
  grad = jax.grad(lambda xi: jnp.sum(add_coords(xi, with_r=True) ** 2))(x[0])
  chex.assert_trees_all_close(grad, 2 * x[0])  # coordinates are constants

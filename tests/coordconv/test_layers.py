"""The NNX CoordConv layers equal the wrapped conv on explicitly concatenated coordinates."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxnn import JaxnnError
from jaxnn.coordconv import (
  CoordConv1D,
  CoordConv2D,
  CoordConv3D,
  CoordConvTranspose,
  add_coords,
  coordinate_channels,
)
from jaxnn.models import count_params


def _params(m):
  return count_params(nnx.state(m, nnx.Param))


@pytest.mark.parametrize(
  "cls, spatial, k", [(CoordConv1D, (9,), 3), (CoordConv2D, (6, 5), 3), (CoordConv3D, (3, 4, 5), 2)]
)
@pytest.mark.parametrize("with_r", [False, True])
def test_matches_conv_on_concatenated_coordinates(cls, spatial, k, with_r):
  c, c_out = 3, 4
  layer = cls(c, c_out, k, with_r=with_r, rngs=nnx.Rngs(0))
  n_coord = len(spatial) + with_r
  assert _params(layer) == (c + n_coord) * c_out * k ** len(spatial) + c_out
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, *spatial, c)), jnp.float32)
  coords = jnp.broadcast_to(coordinate_channels(spatial, with_r=with_r), (2, *spatial, n_coord))
  kernel, bias = layer.conv.kernel[...], layer.conv.bias[...]
  expected = jax.lax.conv_general_dilated(
    jnp.concatenate([x, coords], -1),
    kernel,
    (1,) * len(spatial),
    "SAME",
    dimension_numbers=jax.lax.conv_dimension_numbers(
      (1, *spatial, c + n_coord),
      kernel.shape,
      (
        "N" + "DHW"[-len(spatial) :] + "C",
        "DHW"[-len(spatial) :] + "IO",
        "N" + "DHW"[-len(spatial) :] + "C",
      ),
    ),
  ) + bias.reshape((1,) * (len(spatial) + 1) + (-1,))
  chex.assert_trees_all_close(layer(x), expected, atol=1e-5)


def test_paper_parameter_cost_formula():
  # (c + 2) * c' * k^2 + c' for 2D; + 1 input channel with r.
  assert _params(CoordConv2D(16, 32, (3, 3), rngs=nnx.Rngs(0))) == 18 * 32 * 9 + 32
  assert (
    _params(CoordConv2D(16, 32, 3, with_r=True, use_bias=False, rngs=nnx.Rngs(0))) == 19 * 32 * 9
  )


def test_same_arguments_as_the_wrapped_conv():
  layer = CoordConv2D(
    3,
    8,
    (3, 3),
    (2, 2),
    padding="VALID",
    kernel_dilation=(1, 1),
    kernel_init=nnx.initializers.zeros,
    rngs=nnx.Rngs(0),
  )
  out = layer(jnp.ones((2, 9, 11, 3)))
  chex.assert_shape(out, (2, 4, 5, 8))
  np.testing.assert_array_equal(out, 0.0)


def test_transpose_variant():
  layer = CoordConvTranspose(4, 6, (2, 2), (2, 2), rngs=nnx.Rngs(0))
  assert _params(layer) == 6 * 6 * 4 + 6
  chex.assert_shape(layer(jnp.ones((3, 5, 7, 4))), (3, 10, 14, 6))
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 5, 7, 4)), jnp.float32)
  plain = nnx.ConvTranspose(6, 6, (2, 2), (2, 2), rngs=nnx.Rngs(0))
  plain.kernel[...] = layer.conv.kernel[...]
  plain.bias[...] = layer.conv.bias[...]
  coords = jnp.broadcast_to(coordinate_channels((5, 7)), (2, 5, 7, 2))
  chex.assert_trees_all_close(layer(x), plain(jnp.concatenate([x, coords], -1)), atol=1e-5)
  chex.assert_shape(
    CoordConvTranspose(2, 3, (3,), rngs=nnx.Rngs(0))(jnp.ones((1, 8, 2))), (1, 8, 3)
  )


def test_layer_inside_jit_vmap_grad():
  layer = CoordConv2D(2, 4, (3, 3), rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(layer)
  x = jnp.asarray(np.random.default_rng(2).normal(size=(3, 2, 8, 6, 2)), jnp.float32)

  def apply(p, xb):
    return nnx.merge(graphdef, p)(xb)

  eager = jnp.stack([layer(xb) for xb in x])
  chex.assert_trees_all_close(
    jax.jit(jax.vmap(apply, in_axes=(None, 0)))(params, x), eager, atol=1e-5
  )
  loss = lambda p: jnp.sum(apply(p, x[0]) ** 2)
  grads = jax.jit(jax.grad(loss))(params)
  kernel_grad = grads["conv"]["kernel"][...]
  chex.assert_shape(kernel_grad, (3, 3, 4, 4))
  assert np.all(np.isfinite(kernel_grad)) and np.any(kernel_grad[:, :, 2:, :] != 0)
  # Finite difference along one kernel entry of a coordinate channel.
  eps = 1e-2
  bumped = jax.tree.map(lambda a: a, params)
  bumped["conv"]["kernel"][...] = params["conv"]["kernel"][...].at[1, 1, 3, 0].add(eps)
  fd = (loss(bumped) - loss(params)) / eps
  np.testing.assert_allclose(fd, kernel_grad[1, 1, 3, 0], rtol=0.05)


def test_nnx_jit_module_call():
  layer = CoordConv1D(1, 2, 3, rngs=nnx.Rngs(0))
  out = nnx.jit(lambda m, x: m(x))(layer, jnp.ones((2, 10, 1)))
  chex.assert_shape(out, (2, 10, 2))


def test_errors():
  with pytest.raises(JaxnnError, match="kernel_size with 2 entries"):
    CoordConv2D(1, 2, (3,), rngs=nnx.Rngs(0))
  with pytest.raises(JaxnnError, match="feature_group_count"):
    CoordConv2D(4, 4, 3, feature_group_count=2, rngs=nnx.Rngs(0))
  with pytest.raises(JaxnnError, match="takes \\(batch, 2 spatial axes"):
    CoordConv2D(1, 2, 3, rngs=nnx.Rngs(0))(jnp.ones((4, 4, 1)))


@pytest.mark.parametrize(
  "conv_kwargs",
  [
    dict(padding="SAME"),
    dict(padding="VALID", strides=(2, 1)),
    dict(padding=((1, 2), (0, 1)), input_dilation=(2, 1), kernel_dilation=(1, 2)),
    dict(padding="CIRCULAR"),
    dict(padding="REFLECT", use_bias=False),
  ],
)
def test_coordinate_share_computed_once_equals_the_concatenation(conv_kwargs):
  layer = CoordConv2D(3, 5, (3, 3), with_r=True, rngs=nnx.Rngs(0), **conv_kwargs)
  plain = nnx.Conv(6, 5, (3, 3), rngs=nnx.Rngs(0), **conv_kwargs)
  nnx.update(plain, nnx.state(layer.conv, nnx.Param))
  x = jnp.asarray(np.random.default_rng(2).normal(size=(4, 7, 6, 3)), jnp.float32)
  assert layer.split == (conv_kwargs["padding"] not in ("CIRCULAR", "REFLECT"))
  chex.assert_trees_all_close(layer(x), plain(add_coords(x, with_r=True)), atol=1e-5)
  grads = [
    jax.grad(lambda m, x: jnp.sum(jnp.sin(m(x))), argnums=(0, 1))(m, v)
    for m, v in ((layer, x), (plain, add_coords(x, with_r=True)))
  ]
  chex.assert_trees_all_close(
    nnx.state(grads[0][0].conv, nnx.Param), nnx.state(grads[1][0], nnx.Param), atol=1e-4, rtol=1e-5
  )
  chex.assert_trees_all_close(grads[0][1], grads[1][1][..., :3], atol=1e-5)

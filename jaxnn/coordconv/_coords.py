"""AddCoords: a convolution's own input coordinates as extra channels.

References:
  Liu et al., "An intriguing failing of convolutional neural networks and the
  CoordConv solution", NeurIPS 2018, https://arxiv.org/abs/1807.03247, Section 4
  and Figure 3.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn._errors import JaxnnError


def coordinate_ramp(size: int, dtype=jnp.float32) -> jax.Array:
  """`index / (size - 1) * 2 - 1` for index 0..size-1: exactly -1 and 1 at the ends.

  Computed as one correctly rounded division of integers,
  `(2 * index - (size - 1)) / (size - 1)` (the same value in exact
  arithmetic; the formula as written rounds twice and can end at 0.99999988
  in float32), so the ends are exactly -1 and 1, the ramp is antisymmetric
  (`ramp[i] == -ramp[size - 1 - i]`, an odd size's centre exactly 0) and
  increasing. A size-1 axis has no extent: its single position gets 0, the
  centre of [-1, 1] (the formula divides by zero there).

  Examples:
    >>> from jaxnn.coordconv import coordinate_ramp
    >>> coordinate_ramp(5).tolist()
    [-1.0, -0.5, 0.0, 0.5, 1.0]
  """
  if size < 1:
    raise JaxnnError(f"cannot make coordinates for an axis of size {size}")
  if size == 1:
    return jnp.zeros((1,), dtype)
  numerators = 2 * np.arange(size, dtype=np.int64) - (size - 1)  # exact integers
  # float64 division then one rounding to `dtype`: both are monotone and odd,
  # and +-(size - 1) / (size - 1) is exactly +-1 in every float format.
  return jax.device_put((numerators / np.float64(size - 1)).astype(jnp.dtype(dtype)))


def num_coord_channels(spatial_dims: int, with_r: bool = False) -> int:
  """How many channels `add_coords` appends: one per spatial axis, plus r."""
  return spatial_dims + int(with_r)


def tile_coords(
  x_Bx1xC: jax.Array, spatial_shape: Sequence[int], *, channels_first: bool = False
) -> jax.Array:
  """Tiles raw per-example values, shape `(B, 1, ..., 1, C)`, to `(B, *spatial_shape, C)`.

  The paper's "tiling" of a coordinate input (B, 1, 1, 2) to the full 64x64
  canvas before the coordinate channels are added. A (B, C) input is taken
  as (B, 1, ..., 1, C).
  """
  spatial_shape = tuple(int(s) for s in spatial_shape)
  if not spatial_shape or min(spatial_shape) < 1:
    raise JaxnnError(f"tiling needs positive spatial sizes, got {spatial_shape}")
  if x_Bx1xC.ndim == 2:
    x_Bx1xC = (
      x_Bx1xC.reshape(x_Bx1xC.shape[0], *([1] * len(spatial_shape)), x_Bx1xC.shape[1])
      if not channels_first
      else x_Bx1xC.reshape(*x_Bx1xC.shape, *([1] * len(spatial_shape)))
    )
  spatial = x_Bx1xC.shape[2:] if channels_first else x_Bx1xC.shape[1:-1]
  if len(spatial) != len(spatial_shape) or any(s != 1 for s in spatial):
    raise JaxnnError(
      f"tiling takes inputs with size-1 spatial axes, (B, {', '.join(['1'] * len(spatial_shape))}, "
      f"C) for {len(spatial_shape)}D; got shape {tuple(x_Bx1xC.shape)}"
    )
  b = x_Bx1xC.shape[0]
  c = x_Bx1xC.shape[1] if channels_first else x_Bx1xC.shape[-1]
  target = (b, c, *spatial_shape) if channels_first else (b, *spatial_shape, c)
  return jnp.broadcast_to(x_Bx1xC, target)


def coordinate_channels(
  spatial_shape: Sequence[int], *, with_r: bool = False, dtype=jnp.float32
) -> jax.Array:
  """The coordinate channels alone, shape `(*spatial_shape, n)`, channels-last.

  Channel 0 varies along the last spatial axis (x, the width of an HW image),
  channel 1 along the one before (y, the height), channel 2 along the third
  from last (z, the depth of a DHW volume). With `with_r`, a last channel
  `r = sqrt(x^2 + y^2 (+ z^2))`, the distance from the centre.
  """
  spatial_shape = tuple(int(s) for s in spatial_shape)
  # float32 at least (the radius is computed in it); float64 stays float64.
  compute = jnp.promote_types(dtype, jnp.float32)
  ramps = [coordinate_ramp(n, compute) for n in spatial_shape]
  grids = jnp.meshgrid(*ramps, indexing="ij")
  channels = grids[::-1]
  if with_r:
    channels = [*channels, jnp.sqrt(sum(jnp.square(g) for g in grids))]
  return jnp.stack(channels, axis=-1).astype(dtype)


def add_coords(
  x: jax.Array,
  *,
  with_r: bool = False,
  channels_first: bool = False,
  tile_to: Sequence[int] | None = None,
) -> jax.Array:
  """Appends coordinate channels to a batch of 1D, 2D or 3D inputs.

  For an image (B, H, W, C) the output is (B, H, W, C + 2) with channels
  `[input, xx, yy]`: `xx` the column index and `yy` the row index, each mapped
  to exactly [-1, 1] by `i / (size - 1) * 2 - 1` on its own axis (so
  non-square inputs are right). A size-1 axis gets the coordinate 0. 1D inputs
  (B, L, C) get one channel, 3D inputs (B, D, H, W, C) three (`xx, yy, zz`).
  `with_r` appends `rr = sqrt(xx^2 + yy^2 ...)`, in [0, sqrt(2)] for 2D.

  Args:
    x: `(B, *spatial, C)`, or `(B, C, *spatial)` with `channels_first`; 1 to 3
      spatial axes.
    with_r: also append the radius channel.
    channels_first: the channel axis is 1 (PyTorch layout); coordinate
      channels are appended there.
    tile_to: the "tiling" mode: `x` holds raw per-example values of shape
      (B, 1, ..., 1, C) or (B, C), first broadcast to this spatial shape.

  Returns:
    `x` with `len(spatial) + with_r` more channels, in `x`'s float dtype
    (float32 for integer inputs).

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxnn.coordconv import add_coords
    >>> out = add_coords(jnp.zeros((1, 3, 5, 2)))
    >>> out.shape
    (1, 3, 5, 4)
    >>> out[0, 0, :, 2].tolist()  # xx: the column, from -1 to 1
    [-1.0, -0.5, 0.0, 0.5, 1.0]
    >>> out[0, :, 0, 3].tolist()  # yy: the row
    [-1.0, 0.0, 1.0]

  References:
    Liu et al. (2018), Section 4 and Figure 3 (AddCoords).
  """
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    x = x.astype(jnp.float32)
  if tile_to is not None:
    x = tile_coords(x, tile_to, channels_first=channels_first)
  if not 3 <= x.ndim <= 5:
    raise JaxnnError(
      f"add_coords takes (batch, *spatial, channels) with 1 to 3 spatial axes (3 to 5 dims); "
      f"got shape {tuple(x.shape)}. Add a batch axis with x[None] or pass tile_to= for raw "
      "coordinates"
    )
  spatial = x.shape[2:] if channels_first else x.shape[1:-1]
  coords = coordinate_channels(spatial, with_r=with_r, dtype=x.dtype)
  if channels_first:
    coords = jnp.moveaxis(coords, -1, 0)
  coords = jnp.broadcast_to(coords[None], (x.shape[0], *coords.shape))
  return jnp.concatenate([x, coords], axis=1 if channels_first else -1)

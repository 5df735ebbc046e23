"""CoordConv layers in Flax NNX: AddCoords, then the convolution they wrap.

Each layer takes the arguments of the Flax convolution it wraps
(`nnx.Conv` / `nnx.ConvTranspose`: `in_features, out_features, kernel_size,
strides, padding=..., use_bias=..., kernel_init=..., rngs=...`) plus
`with_r`. `in_features` is the number of channels of the input, without the
coordinates; the wrapped kernel has `in_features + spatial dims (+ 1)` input
channels, so a 2D layer costs `(c + 2) * c' * k * k` weights (+ c' biases).
Inputs are channels-last, as every Flax convolution.

The coordinate channels are the same for every example, so their share of
the convolution, `conv(coords, W[..., c:, :])`, is one (1, *spatial, c') map
added to `conv(x, W[..., :c, :])` over the batch: the layer never builds the
(B, *spatial, c + 2) input and costs less than a plain convolution on c + 2
channels. This is exact up to float rounding for the zero paddings of
`lax.conv_general_dilated` ("SAME", "VALID", explicit pairs); the paddings
Flax applies to the input first ("CIRCULAR", "REFLECT", "CAUSAL") use the
literal concatenation.

References:
  Liu et al., "An intriguing failing of convolutional neural networks and the
  CoordConv solution", NeurIPS 2018, https://arxiv.org/abs/1807.03247.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
from flax import nnx

from jaxnn._errors import JaxnnError
from jaxnn.coordconv._coords import add_coords, coordinate_channels, num_coord_channels

# Paddings that Flax applies to the input before calling the convolution.
_INPUT_PADDINGS = ("CIRCULAR", "REFLECT", "CAUSAL")


@dataclasses.dataclass(frozen=True)
class _CoordinateSplitConv:
  """`conv_general_dilated` for CoordConv: image part per example, coordinate part once.

  Called by `nnx.Conv` with the image channels alone (`lhs`: (N, *spatial, c))
  and the whole kernel (`rhs`: (*k, c + n, c')).
  """

  in_features: int
  with_r: bool
  conv: Callable = jax.lax.conv_general_dilated

  def __call__(self, lhs, rhs, window_strides, padding, **kwargs):
    coords = coordinate_channels(lhs.shape[1:-1], with_r=self.with_r, dtype=lhs.dtype)[None]
    image = self.conv(lhs, rhs[..., : self.in_features, :], window_strides, padding, **kwargs)
    return image + self.conv(
      coords, rhs[..., self.in_features :, :], window_strides, padding, **kwargs
    )


def _kernel_tuple(
  kernel_size: int | Sequence[int], spatial_dims: int, what: str
) -> tuple[int, ...]:
  kernel = (kernel_size,) * spatial_dims if isinstance(kernel_size, int) else tuple(kernel_size)
  if len(kernel) != spatial_dims:
    raise JaxnnError(f"{what} needs a kernel_size with {spatial_dims} entries, got {kernel_size}")
  return kernel


class _CoordConvND(nnx.Module):
  spatial_dims: int = 2

  def __init__(
    self,
    in_features: int,
    out_features: int,
    kernel_size: int | Sequence[int],
    strides: int | Sequence[int] = 1,
    *,
    with_r: bool = False,
    rngs: nnx.Rngs,
    **conv_kwargs,
  ):
    name = type(self).__name__
    if conv_kwargs.get("feature_group_count", 1) != 1:
      raise JaxnnError(
        f"{name}: grouped convolutions would split the coordinate channels from "
        "their group; use feature_group_count=1"
      )
    self.with_r = with_r
    padding = conv_kwargs.get("padding", "SAME")
    self.split = not (isinstance(padding, str) and padding.upper() in _INPUT_PADDINGS)
    if self.split:
      conv_kwargs["conv_general_dilated"] = _CoordinateSplitConv(
        in_features, with_r, conv_kwargs.get("conv_general_dilated", jax.lax.conv_general_dilated)
      )
    self.conv = nnx.Conv(
      in_features + num_coord_channels(self.spatial_dims, with_r),
      out_features,
      _kernel_tuple(kernel_size, self.spatial_dims, name),
      strides,
      rngs=rngs,
      **conv_kwargs,
    )

  def __call__(self, x: jax.Array) -> jax.Array:
    if x.ndim != self.spatial_dims + 2:
      raise JaxnnError(
        f"{type(self).__name__} takes (batch, {self.spatial_dims} spatial axes, "
        f"channels); got shape {tuple(x.shape)}"
      )
    return self.conv(x if self.split else add_coords(x, with_r=self.with_r))


class CoordConv1D(_CoordConvND):
  """CoordConv on sequences (B, L, C): one coordinate channel (and `r = |x|`)."""

  spatial_dims = 1


class CoordConv2D(_CoordConvND):
  """CoordConv on images (B, H, W, C): channels `[input, xx, yy (, rr)]` into `nnx.Conv`.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from jaxnn.coordconv import CoordConv2D
    >>> layer = CoordConv2D(3, 16, (3, 3), rngs=nnx.Rngs(0))
    >>> layer(jnp.zeros((8, 64, 48, 3))).shape
    (8, 64, 48, 16)
  """

  spatial_dims = 2


class CoordConv3D(_CoordConvND):
  """CoordConv on volumes (B, D, H, W, C): channels `xx, yy, zz (, rr)` appended."""

  spatial_dims = 3


class CoordConvTranspose(nnx.Module):
  """AddCoords then `nnx.ConvTranspose`; 1D, 2D or 3D by the length of `kernel_size`.

  An int `kernel_size` means 2D (k, k).
  """

  def __init__(
    self,
    in_features: int,
    out_features: int,
    kernel_size: int | Sequence[int],
    strides: int | Sequence[int] | None = None,
    *,
    with_r: bool = False,
    rngs: nnx.Rngs,
    **conv_kwargs,
  ):
    kernel = (kernel_size,) * 2 if isinstance(kernel_size, int) else tuple(kernel_size)
    if not 1 <= len(kernel) <= 3:
      raise JaxnnError(
        f"CoordConvTranspose supports 1 to 3 spatial axes, got kernel_size {kernel_size}"
      )
    self.with_r = with_r
    self.spatial_dims = len(kernel)
    self.conv = nnx.ConvTranspose(
      in_features + num_coord_channels(len(kernel), with_r),
      out_features,
      kernel,
      strides,
      rngs=rngs,
      **conv_kwargs,
    )

  def __call__(self, x: jax.Array) -> jax.Array:
    if x.ndim != self.spatial_dims + 2:
      raise JaxnnError(
        f"CoordConvTranspose takes (batch, {self.spatial_dims} spatial axes, "
        f"channels); got shape {tuple(x.shape)}"
      )
    return self.conv(add_coords(x, with_r=self.with_r))

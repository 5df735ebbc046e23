"""A CPU kernel for the Walsh-Hadamard and Fastfood transforms (XLA FFI).

XLA compiles the transform of `_projections` into one fused pass over memory
per radix-4 butterfly stage plus a matmul for the lowest bits (about 1 ms for
L = 2^18 on one core), and the Fastfood permutation into gathers over all L
entries. This kernel does in one call what the projection needs:

- `wht`: the unnormalized Walsh-Hadamard transform, cache-blocked: the
  levels above 8,192 by radix-4 passes over the whole vector (the first one
  reading the input), then, block by block while the 32 KB block sits in L1,
  the seven lowest levels in registers (one pass) and the others by two
  radix-8 passes.
- `fastfood_fwd`: `sum_b scale_b (H G_b Pi_b tile(H_K (B_b x_b)))[:D]` per
  block b. Block by block, the permutation as a gather from the K-entry
  vector and the block's levels; then the levels above, the last pass
  writing `scale * y[:D]` straight into the output.
- `fastfood_bwd`: its transpose. The first pass reads `scale * g` (zeros
  beyond D); then block by block, the block's levels and the permutation as
  a scatter-add into K entries while the block is in L1 (so no inverse
  permutation is read; K = L with several blocks).
- `fastfood_fwd_leaves` / `fastfood_bwd_leaves`: the same two directions for
  a subspace model, with theta_D = theta_0 + P theta_d cut into the model's
  parameter leaves: the forward's last pass writes `theta_0 + scale * y`
  straight into one output buffer per leaf (variadic FFI results), and the
  backward's first pass reads the leaves' cotangents in place (variadic FFI
  arguments). The flat (D,) theta_D, its slices into the leaves and the
  concatenated gradient never exist. Each pass is split into pieces over
  which every stream stays inside one leaf.

The source, fastfood_kernel.cc next to this module, is compiled on first use
and cached by `jaxnn._native` (keyed by the source, compiler, flags and jaxlib
version, so an edited source is rebuilt). It is plain C++17 built with
portable flags (no `-march=native`); on x86-64 with GCC the hot loops are
compiled for AVX-512, AVX2 and baseline x86-64, picked at run time
(`target_clones`), so the cached library is portable across machines of the
same OS. Every entry point handles leading batch axes
(`vmap_method="broadcast_all"`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxnn._native import NativeLibrary

_LIBRARY = NativeLibrary.from_package(
  "fastfood",
  __package__,
  "fastfood_kernel.cc",
  {
    "jaxnn_wht": "JaxnnWht",
    "jaxnn_fastfood_fwd": "JaxnnFastfoodFwd",
    "jaxnn_fastfood_bwd": "JaxnnFastfoodBwd",
    "jaxnn_fastfood_fwd_leaves": "JaxnnFastfoodFwdLeaves",
    "jaxnn_fastfood_bwd_leaves": "JaxnnFastfoodBwdLeaves",
  },
  title="the Fastfood CPU kernel",
  fallback="the XLA Walsh-Hadamard transform (about 2x slower on CPU)",
  alternative="use kernel='xla'",
)


def available() -> bool:
  """Builds and registers the kernel once; False (with the reason in `error()`) if it cannot."""
  return _LIBRARY.available()


def error() -> str:
  """Why `available()` is False ("" if it is not)."""
  return _LIBRARY.error()


def use(required: bool = False) -> bool:
  """Whether to call the kernel; if it cannot be built, raises if `required`, else warns once.

  See `jaxnn._native.NativeLibrary.use`.
  """
  return _LIBRARY.use(required)


def wht(x):
  """H x along the last axis (CPU only; `available()` must be True)."""
  return jax.ffi.ffi_call(
    "jaxnn_wht", jax.ShapeDtypeStruct(x.shape, jnp.float32), vmap_method="broadcast_all"
  )(x)


def fastfood_fwd(x_nxK, B_nxL, G_nxL, perm_nxL, scale_n, D: int):
  """`sum_b scale_b (H G_b Pi_b tile(H_K (B_b[:K] x_b)))[:D]` (CPU only)."""
  out = jax.ShapeDtypeStruct(x_nxK.shape[:-2] + (D,), jnp.float32)
  return jax.ffi.ffi_call("jaxnn_fastfood_fwd", out, vmap_method="broadcast_all")(
    x_nxK, B_nxL, G_nxL, perm_nxL, scale_n
  )


def fastfood_bwd(g_D, B_nxL, G_nxL, perm_nxL, scale_n, K: int):
  """The transpose of `fastfood_fwd`: (D,) -> (n, K) (CPU only)."""
  out = jax.ShapeDtypeStruct(B_nxL.shape[:-1] + (K,), jnp.float32)
  return jax.ffi.ffi_call("jaxnn_fastfood_bwd", out, vmap_method="broadcast_all")(
    g_D, B_nxL, G_nxL, perm_nxL, scale_n
  )


def fastfood_fwd_leaves(x_nxK, B_nxL, G_nxL, perm_nxL, scale_n, theta0_D, shapes):
  """`theta0_D + fastfood_fwd(...)` cut into arrays of `shapes` (consecutive, C order; CPU only)."""
  lead = x_nxK.shape[:-2]
  outs = [jax.ShapeDtypeStruct(lead + tuple(s), jnp.float32) for s in shapes]
  return jax.ffi.ffi_call("jaxnn_fastfood_fwd_leaves", outs, vmap_method="broadcast_all")(
    x_nxK, B_nxL, G_nxL, perm_nxL, scale_n, theta0_D
  )


def fastfood_bwd_leaves(g_leaves, B_nxL, G_nxL, perm_nxL, scale_n, K: int):
  """`fastfood_bwd` of the concatenation of the raveled `g_leaves`, read in place (CPU only)."""
  out = jax.ShapeDtypeStruct(B_nxL.shape[:-1] + (K,), jnp.float32)
  return jax.ffi.ffi_call("jaxnn_fastfood_bwd_leaves", out, vmap_method="broadcast_all")(
    B_nxL, G_nxL, perm_nxL, scale_n, *g_leaves
  )

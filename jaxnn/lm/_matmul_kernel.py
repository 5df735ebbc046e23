"""A CPU kernel for products of a few rows with weights streamed from memory (XLA FFI).

A one-token GPT-2 pass multiplies a few rows (the batch) by every weight
matrix once: 500 MB of weights for GPT-2 small, far beyond the caches, each
weight used M times. XLA's CPU dots (YNNPACK) run such a product at M = 8
with cold weights at 12-23 GFLOP/s on one core (the tied head 8-17), so a
batch-8 pass costs ~3x a batch-1 pass although both read the same weights
(see benchmarks/pplm_matmul.py). This kernel reads every weight once,
sequentially, and does the M multiply-adds per weight in registers:

- `matmul`:   y[M, N] = x[M, K] @ W[K, N] (W row-major: the dense layers'
  forward, the tied head's backward `dlogits @ wte`). Blocks of 8 rows of W
  (contiguous in memory) are read as 8 sequential streams while the next
  block is prefetched linearly into L2; for each 32-wide column chunk the
  M x 32 accumulators stay in registers over the 8 rows, x[m, k] enters as
  an embedded broadcast, and the M x N output (at most 96 KB for GPT-2
  small) sits in L1/L2 between blocks.
- `matmul_t`: y[M, N] = x[M, K] @ W[N, K]^T (the head's forward
  `hidden @ wte^T`, the dense layers' backward `dy @ W^T`): dot products
  along contiguous rows of W, R = 16 / M rows of W at once (the next R
  prefetched into L2) against the M rows of x, then one butterfly that
  reduces the R x M accumulators together. x is taken in column chunks of
  at most 24 KB so that it stays in L1 while all of W passes it.

Both forms read each weight once per 8 rows of x. On one Zen 4 core with
GPT-2 small's weights coming from memory, a whole one-token set of products
(forward and backward) at M = 8 ran 2.3x faster than XLA's dots and took
1.3-1.5x the time of M = 1 (benchmarks/pplm_matmul.py; results in
benchmarks/pplm_matmul.py).

The source, matmul_kernel.cc next to this module, is compiled on first use
and cached by `jaxnn._native` (keyed by the source, compiler, flags and jaxlib
version). It is plain C++17 with GCC
vector extensions built with portable flags (no `-march=native`); on x86-64
with GCC the loops are compiled for AVX-512, AVX2 and baseline x86-64,
picked at run time (`target_clones`). Leading axes of x are rows; under
`vmap` (vmap_method="expand_dims") x and W may both be batched.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxnn._native import NativeLibrary

_LIBRARY = NativeLibrary.from_package(
  "lm_matmul",
  __package__,
  "matmul_kernel.cc",
  {"jaxnn_lm_matmul": "JaxnnMatmulKn", "jaxnn_lm_matmul_t": "JaxnnMatmulNk"},
  title="the language model's matmul CPU kernel",
  fallback="XLA's dot (slower at batch 8 on CPU)",
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


def matmul(x_MxK, w_KxN):
  """`x @ w` for float32 x (..., K) and w (K, N) (CPU only; `available()` must be True)."""
  out = jax.ShapeDtypeStruct(x_MxK.shape[:-1] + (w_KxN.shape[1],), jnp.float32)
  return jax.ffi.ffi_call("jaxnn_lm_matmul", out, vmap_method="expand_dims")(x_MxK, w_KxN)


def matmul_t(x_MxK, w_NxK):
  """`x @ w.T` for float32 x (..., K) and w (N, K) (CPU only; `available()` must be True)."""
  out = jax.ShapeDtypeStruct(x_MxK.shape[:-1] + (w_NxK.shape[0],), jnp.float32)
  return jax.ffi.ffi_call("jaxnn_lm_matmul_t", out, vmap_method="expand_dims")(x_MxK, w_NxK)

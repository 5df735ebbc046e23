"""The language model's weight products with few rows: the CPU kernel in float32, XLA otherwise.

`dense_matmul(x, kernel)` (x @ W for weights stored W[in, out]) and
`tied_logits(hidden, wte)` (hidden @ wte^T, also an untied head stored V x D)
run through `_matmul_kernel` when CPU is JAX's default backend, both
operands are float32 and x has at most `MAX_KERNEL_ROWS` rows (the batch
times the new positions: every pass of PPLM's steering loop, and short
prompts), and through XLA's dot otherwise (other platforms, float64,
bfloat16, long prompts). Each is a `jax.custom_vjp` whose backward gives the
input's gradient by the kernel's other form (dy @ W^T, dlogits @ wte) and the
weights' gradient by a plain einsum (unused, and removed by XLA, when only
the input or the cache is differentiated, as in PPLM's steering).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxnn.lm import _matmul_kernel

# Up to this many rows the kernel was measured faster than XLA's dot with
# weights from memory on one CPU core (GPT-2 small's products: 2.0-3.1x each
# at 8 rows, 1.2x for a whole pass's products at 32; benchmarks/pplm_matmul.py).
# It reads the weights once per 8 rows, so with more rows XLA's cache-blocked
# dots catch up.
MAX_KERNEL_ROWS = 32


def _use_kernel(x, w) -> bool:
  rows = math.prod(x.shape[:-1])
  if (
    x.dtype != jnp.float32
    or w.dtype != jnp.float32
    or rows > MAX_KERNEL_ROWS
    or jax.default_backend() != "cpu"
  ):
    return False
  return _matmul_kernel.use()  # if it cannot be built: a one-time warning, and XLA's dot


def _xla_kn(x, w):
  return jnp.einsum("...k,kn->...n", x, w)


def _xla_nk(x, w):
  return jnp.einsum("...k,nk->...n", x, w)


@jax.custom_vjp
def _kn(x, w):
  """x @ w (w: K x N): the kernel on CPU, XLA elsewhere."""
  return jax.lax.platform_dependent(x, w, cpu=_matmul_kernel.matmul, default=_xla_kn)


@jax.custom_vjp
def _nk(x, w):
  """x @ w^T (w: N x K): the kernel on CPU, XLA elsewhere."""
  return jax.lax.platform_dependent(x, w, cpu=_matmul_kernel.matmul_t, default=_xla_nk)


def _kn_bwd(res, g):
  x, w = res
  return _nk(g, w), jnp.einsum("...k,...n->kn", x, g)


def _nk_bwd(res, g):
  x, w = res
  return _kn(g, w), jnp.einsum("...n,...k->nk", g, x)


_kn.defvjp(lambda x, w: (_kn(x, w), (x, w)), _kn_bwd)
_nk.defvjp(lambda x, w: (_nk(x, w), (x, w)), _nk_bwd)


def dense_matmul(x_BxTxI, kernel_IxO):
  """`x @ kernel` of a dense layer (the kernel for few float32 rows on CPU)."""
  if _use_kernel(x_BxTxI, kernel_IxO):
    return _kn(x_BxTxI, kernel_IxO)
  return x_BxTxI @ kernel_IxO


def tied_logits(hidden_BxTxD, wte_VxD):
  """`hidden @ wte^T`, the output head (the kernel for few float32 rows on CPU)."""
  if _use_kernel(hidden_BxTxD, wte_VxD):
    return _nk(hidden_BxTxD, wte_VxD)
  return jnp.einsum("btd,vd->btv", hidden_BxTxD, wte_VxD)

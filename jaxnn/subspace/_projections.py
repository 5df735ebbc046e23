"""Random projections P: R^d -> R^D of a subspace, as pure `init` / `apply` pairs.

Li et al. (2018) train theta_D = theta_0 + P theta_d with a fixed random D x d
map P whose columns have (approximately) unit length. Three maps:

- dense: i.i.d. N(0, 1) entries, every column normalized. Memory D * d.
- sparse: a very sparse random projection (Li, Hastie, Church 2006) with about
  sqrt(D) nonzero +-1 entries per column, every column normalized. Memory
  O(d sqrt(D)).
- fastfood: the Fastfood transform (Le, Sarlos, Smola 2013)
  `(H G Pi H B x)[:D] / (sqrt(L sum(G^2)) sqrt(D / L))` with L = 2^ceil(log2 D)
  and H the unnormalized Walsh-Hadamard transform; P is never materialized:
  O(D log D) time and O(D) memory. d > L uses ceil(d / L) independent blocks
  whose outputs add up, so theta_d is never truncated. On CPU the transform
  and its transpose run in a C++ kernel (`_fastfood_kernel`, compiled on
  first use); elsewhere, or with `fastfood_projection("xla")`, in XLA ops.

Every projection is a `Projection(init, apply)`:

- `init(key, D, d) -> state` draws the map once; it is pure `jax.random`, so it
  can be jitted and vmapped over keys (D and d are Python ints).
- `apply(state, theta_d) -> offset` with `theta_d` of shape (d,) and `offset`
  of shape (D,); `state` is never resampled.

Nested: column j of every projection depends only on the key and j (dense and
sparse draw each column from `fold_in(key, j)`; Fastfood draws block b from
`fold_in(key, b)` and its normalization does not depend on d). So the map of
dimension k is the first k columns of the map of any dimension d > k: a theta_d
whose coordinates >= k are zero gives exactly the offset of dimension k. A
sweep can allocate the largest d once and mask coordinates >= d_active.

References:
  Li, Farkhoor, Liu, Yosinski. "Measuring the Intrinsic Dimension of Objective
  Landscapes", ICLR 2018.
  Le, Sarlos, Smola. "Fastfood: Approximating Kernel Expansions in Loglinear
  Time", ICML 2013.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import scipy.linalg
from jaxtyping import Array, Float, Int

from jaxnn._errors import JaxnnError
from jaxnn.subspace import _fastfood_kernel

#: Names of the random projections `get_projection` builds.
PROJECTIONS = ("dense", "sparse", "fastfood")


class Projection(NamedTuple):
  """A random map P: R^d -> R^D as pure functions.

  Attributes:
    init: `init(key, D, d) -> state`, pure `jax.random` (jit- and vmap-able
      over keys); D and d are Python ints.
    apply: `apply(state, theta_d) -> offset`, `(d,) -> (D,)`, linear in
      `theta_d`.
    apply_leaves: optional, `apply_leaves(state, theta_d, base_D, shapes) ->
      list of arrays`: `base_D + apply(state, theta_d)` cut into consecutive
      arrays of `shapes` (C order), i.e. a model's parameter leaves, computed
      without the flat (D,) vector where the projection has a fused form
      (Fastfood's CPU kernel); differentiable in `theta_d` and `base_D`.
      None: callers add and cut `apply`'s offset themselves.
  """

  init: Callable[[jax.Array, int, int], Any]
  apply: Callable[[Any, Float[Array, "d"]], Float[Array, "D"]]
  apply_leaves: Callable[..., list] | None = None


def _check_sizes(D: int, d: int) -> None:
  if not (isinstance(D, int) and isinstance(d, int)):
    raise JaxnnError(f"D and d must be Python ints, got D={D!r}, d={d!r}")
  if D < 1:
    raise JaxnnError(f"the model has D={D} parameters; a subspace needs D >= 1")
  if d < 1:
    raise JaxnnError(f"subspace dimension d must be >= 1, got {d}")


def _column_keys(key: jax.Array, n: int) -> jax.Array:
  return jax.vmap(lambda j: jax.random.fold_in(key, j))(jnp.arange(n))


# Dense.


class DenseState(NamedTuple):
  """P stored by columns: `P_dxD[j]` is column j of P."""

  P_dxD: Float[Array, "d D"]


def dense_projection(orthonormal: bool = False) -> Projection:
  """I.i.d. Gaussian P with unit-length columns (memory D * d).

  Args:
    orthonormal: orthonormalize the columns (QR, signs fixed so that R has a
      positive diagonal). Needs d <= D; with d = D, P is orthogonal and
      subspace SGD is exactly direct SGD rotated.
  """

  def init(key, D: int, d: int) -> DenseState:
    _check_sizes(D, d)
    if orthonormal and d > D:
      raise JaxnnError(f"an orthonormal projection needs d <= D, got d={d} > D={D}")
    A_dxD = jax.vmap(lambda k: jax.random.normal(k, (D,), jnp.float32))(_column_keys(key, d))
    if orthonormal:
      Q_Dxd, R_dxd = jnp.linalg.qr(A_dxD.T)
      return DenseState((Q_Dxd * jnp.sign(jnp.diagonal(R_dxd))[None, :]).T)
    return DenseState(A_dxD / jnp.linalg.norm(A_dxD, axis=1, keepdims=True))

  def apply(state: DenseState, theta_d):
    return theta_d @ state.P_dxD

  return Projection(init, apply)


# Sparse.


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SparseState:
  """Column j of P has `values[j, i]` at row `rows[j, i]` (repeated rows add).

  Attributes:
    rows: (d, m) row indices, m = ceil(sqrt(D)) per column.
    values: (d, m) entries, +-1 / ||column||.
    D: the output size (static).
  """

  rows: Int[Array, "d m"]
  values: Float[Array, "d m"]
  D: int = dataclasses.field(metadata=dict(static=True))


def sparse_projection() -> Projection:
  """A very sparse random projection with unit-length columns.

  Every column has m = ceil(sqrt(D)) entries +-1 at rows drawn uniformly (the
  reference's density 1/sqrt(D)), normalized to unit length exactly; a row
  drawn twice in a column adds up (rare: about m^2 / 2D < 1 per column). A
  fixed count per column instead of Binomial(D, 1/sqrt(D)) keeps shapes static,
  so `init` jits and vmaps.
  """

  def init(key, D: int, d: int) -> SparseState:
    _check_sizes(D, d)
    m = math.ceil(math.sqrt(D))

    def column(k):
      k_rows, k_signs = jax.random.split(k)
      rows = jnp.sort(jax.random.randint(k_rows, (m,), 0, D))
      signs = jax.random.rademacher(k_signs, (m,), jnp.float32)
      # Exact norm with repeated rows merged: sum over distinct rows of (sum of signs)^2.
      segment = jnp.cumsum(
        jnp.concatenate([jnp.zeros(1, jnp.int32), (rows[1:] != rows[:-1]).astype(jnp.int32)])
      )
      merged = jax.ops.segment_sum(signs, segment, num_segments=m)
      return rows, signs / jnp.sqrt(jnp.sum(jnp.square(merged)))

    rows, values = jax.vmap(column)(_column_keys(key, d))
    return SparseState(rows, values, D)

  def apply(state: SparseState, theta_d):
    return jnp.zeros(state.D, theta_d.dtype).at[state.rows].add(state.values * theta_d[:, None])

  return Projection(init, apply)


# Fastfood.


# The stages of the transform act on different bits of the index, so they
# commute. The high bits go first, by radix-4 butterflies (each one fused pass
# over the vector); the low log2(64) bits last, as one dense matmul of
# contiguous runs of 64 entries by H_64. Ending on a matmul also keeps XLA
# from fusing the transform into a consuming gather, which would recompute it
# for every gathered entry. benchmarks/subspace_core.py times it against the
# radix-2 butterfly.
_MATMUL_RADIX = 64


def _wht(x: Float[Array, "... L"]) -> Float[Array, "... L"]:
  L = x.shape[-1]
  lead = x.shape[:-1]
  r = min(L, _MATMUL_RADIX)
  h = r
  while h < L:
    if L // h >= 4:
      x_4h = x.reshape(*lead, L // (4 * h), 4, h)
      a, b, c, d = (x_4h[..., i, :] for i in range(4))
      p, q, u, v = a + b, a - b, c + d, c - d
      x = jnp.stack([p + u, q + v, p - u, q - v], axis=-2).reshape(*lead, L)
      h *= 4
    else:
      x_2h = x.reshape(*lead, L // (2 * h), 2, h)
      a, b = x_2h[..., 0, :], x_2h[..., 1, :]
      x = jnp.stack([a + b, a - b], axis=-2).reshape(*lead, L)
      h *= 2
  H_rxr = jnp.asarray(scipy.linalg.hadamard(r), x.dtype)
  return (x.reshape(*lead, L // r, r) @ H_rxr).reshape(*lead, L)


def _native(kernel: str, dtype) -> bool:
  """Whether to use the CPU kernel of `_fastfood_kernel` (built on first use; if it
  cannot be, an error for kernel="native", else a one-time warning and XLA)."""
  if kernel == "xla" or dtype != jnp.float32:
    return False
  return _fastfood_kernel.use(required=kernel == "native")


def _vma(x) -> frozenset:
  """The shard_map mesh axes that x varies over (jax >= 0.7 spells it `vma`)."""
  aval = jax.typeof(x)
  manual = getattr(aval, "manual_axis_type", None)
  return frozenset(manual.varying if manual is not None else getattr(aval, "vma", ()))


def _on_cpu(native_fn, xla_fn, *args):
  """`native_fn(*args)` on CPU, `xla_fn(*args)` on other platforms."""

  def native(*args):
    # Inside shard_map an FFI call's results are not marked as varying over
    # the mesh axes that its inputs vary over (XLA ops' results are): mark them.
    varying = frozenset().union(*map(_vma, jax.tree.leaves(args)))

    def mark(out):
      missing = tuple(sorted(varying - _vma(out)))
      return jax.lax.pcast(out, missing, to="varying") if missing else out

    return jax.tree.map(mark, native_fn(*args))

  return jax.lax.platform_dependent(*args, cpu=native, default=xla_fn)


@jax.custom_vjp
def walsh_hadamard(x: Float[Array, "... L"]) -> Float[Array, "... L"]:
  """The unnormalized Walsh-Hadamard transform H x along the last axis.

  H is the Sylvester-ordered Hadamard matrix (`scipy.linalg.hadamard(L)`), L a
  power of 2; O(L log L) time, O(L) memory. H is symmetric, so the backward
  pass is the same transform of the cotangent. On CPU, float32 runs through
  the cache-blocked kernel of `_fastfood_kernel` (XLA elsewhere).
  """
  L = x.shape[-1]
  if L < 1 or L & (L - 1):
    raise JaxnnError(f"the Walsh-Hadamard transform needs a power-of-2 length, got {L}")
  if _native("auto", x.dtype):
    return _on_cpu(_fastfood_kernel.wht, _wht, x)
  return _wht(x)


walsh_hadamard.defvjp(lambda x: (walsh_hadamard(x), None), lambda _, g: (walsh_hadamard(g),))

_wht_xla = jax.custom_vjp(_wht)
_wht_xla.defvjp(lambda x: (_wht_xla(x), None), lambda _, g: (_wht_xla(g),))


@jax.custom_vjp
def _tile_permute(h_nxK, perm_nxL, inv_perm_nxL):
  """`Pi (tile(h))`: entry i is `h[perm[i] mod K]`, where tile repeats h to length L."""
  K = h_nxK.shape[-1]
  return jnp.take_along_axis(h_nxK, perm_nxL & (K - 1), axis=-1, mode="clip")


def _tile_permute_fwd(h_nxK, perm_nxL, inv_perm_nxL):
  return _tile_permute(h_nxK, perm_nxL, inv_perm_nxL), (h_nxK.shape[-1], inv_perm_nxL)


def _tile_permute_bwd(res, g_nxL):
  # The transpose: Pi^T is the gather by the inverse permutation (not a
  # scatter-add), tile^T sums the L / K copies.
  K, inv_perm_nxL = res
  n, L = g_nxL.shape
  g_nxL = jnp.take_along_axis(g_nxL, inv_perm_nxL, axis=-1, mode="clip")
  return g_nxL.reshape(n, L // K, K).sum(axis=1), None, None


_tile_permute.defvjp(_tile_permute_fwd, _tile_permute_bwd)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FastfoodState:
  """The random draws of `num_blocks` Fastfood blocks of size L.

  Attributes:
    B: (num_blocks, L) random signs.
    G: (num_blocks, L) N(0, 1) scales.
    perm: (num_blocks, L) the permutation Pi; `inv_perm` its inverse.
    scale: (num_blocks,) 1 / (sqrt(L sum(G^2)) sqrt(D / L)).
    D: the output size (static).
  """

  B: Float[Array, "n L"]
  G: Float[Array, "n L"]
  perm: Int[Array, "n L"]
  inv_perm: Int[Array, "n L"]
  scale: Float[Array, "n"]
  D: int = dataclasses.field(metadata=dict(static=True))


def _fastfood_xla(x_nxK, B_nxL, G_nxL, perm_nxL, inv_perm_nxL, scale_n, D: int):
  """`sum_b scale_b (H G_b Pi_b tile(H_K (B_b[:K] x_b)))[:D]` in XLA ops."""
  K = x_nxK.shape[-1]
  h_nxK = _wht_xla(B_nxL[:, :K] * x_nxK)
  v_nxL = _wht_xla(G_nxL * _tile_permute(h_nxK, perm_nxL, inv_perm_nxL))
  return jnp.sum(scale_n[:, None] * v_nxL[:, :D], axis=0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(6,))
def _fastfood_native(x_nxK, B_nxL, G_nxL, perm_nxL, inv_perm_nxL, scale_n, D: int):
  """`_fastfood_xla` by the CPU kernel on CPU (and by XLA elsewhere)."""

  def native(x, B, G, perm, inv_perm, scale):
    return _fastfood_kernel.fastfood_fwd(x, B, G, perm, scale, D)

  return _on_cpu(
    native,
    functools.partial(_fastfood_xla, D=D),
    x_nxK,
    B_nxL,
    G_nxL,
    perm_nxL,
    inv_perm_nxL,
    scale_n,
  )


def _fastfood_native_fwd(x_nxK, B_nxL, G_nxL, perm_nxL, inv_perm_nxL, scale_n, D):
  out = _fastfood_native(x_nxK, B_nxL, G_nxL, perm_nxL, inv_perm_nxL, scale_n, D)
  return out, (x_nxK, B_nxL, G_nxL, perm_nxL, inv_perm_nxL, scale_n)


def _fastfood_native_bwd(D, res, g_D):
  # The transform is linear in x: its transpose is the kernel's P^T g.
  x_nxK, B_nxL, G_nxL, perm_nxL, inv_perm_nxL, scale_n = res
  K = x_nxK.shape[-1]

  def native(g, B, G, perm, inv_perm, scale):
    return _fastfood_kernel.fastfood_bwd(g, B, G, perm, scale, K)

  def xla(g, B, G, perm, inv_perm, scale):
    f = lambda x: _fastfood_xla(x, B, G, perm, inv_perm, scale, D)
    return jax.vjp(f, x_nxK)[1](g)[0]

  dx = _on_cpu(native, xla, g_D, B_nxL, G_nxL, perm_nxL, inv_perm_nxL, scale_n)
  return dx, None, None, None, None, None


_fastfood_native.defvjp(_fastfood_native_fwd, _fastfood_native_bwd)


def _split(flat_D, shapes):
  """Consecutive C-order arrays of `shapes` from the start of flat_D (as ravel_pytree's unravel)."""
  sizes = [math.prod(s) for s in shapes]
  offsets = [0, *itertools.accumulate(sizes)]
  return [flat_D[a:b].reshape(s) for a, b, s in zip(offsets, offsets[1:], shapes)]


@functools.partial(jax.custom_vjp, nondiff_argnums=(7, 8))
def _fastfood_leaves(
  x_nxK, B_nxL, G_nxL, perm_nxL, inv_perm_nxL, scale_n, base_D, D: int, shapes: tuple
):
  """`base_D + _fastfood_xla(...)` cut into the leaves of `shapes`; on CPU one kernel call
  writes every leaf (no flat offset, no slice copies)."""

  def native(x, B, G, perm, inv_perm, scale, base):
    return _fastfood_kernel.fastfood_fwd_leaves(x, B, G, perm, scale, base, shapes)

  def xla(x, B, G, perm, inv_perm, scale, base):
    return _split(base + _fastfood_xla(x, B, G, perm, inv_perm, scale, D), shapes)

  return _on_cpu(native, xla, x_nxK, B_nxL, G_nxL, perm_nxL, inv_perm_nxL, scale_n, base_D)


def _fastfood_leaves_fwd(x_nxK, B_nxL, G_nxL, perm_nxL, inv_perm_nxL, scale_n, base_D, D, shapes):
  out = _fastfood_leaves(x_nxK, B_nxL, G_nxL, perm_nxL, inv_perm_nxL, scale_n, base_D, D, shapes)
  return out, (x_nxK, B_nxL, G_nxL, perm_nxL, inv_perm_nxL, scale_n)


def _fastfood_leaves_bwd(D, shapes, res, g_leaves):
  # d/dx: the kernel's P^T g reading the leaves' cotangents in place; d/dbase:
  # the concatenated cotangents (dead code under jit unless base_D is
  # differentiated).
  x_nxK, B_nxL, G_nxL, perm_nxL, inv_perm_nxL, scale_n = res
  K = x_nxK.shape[-1]
  g_leaves = list(g_leaves)

  def native(g, B, G, perm, inv_perm, scale):
    return _fastfood_kernel.fastfood_bwd_leaves(g, B, G, perm, scale, K)

  def xla(g, B, G, perm, inv_perm, scale):
    f = lambda x: _fastfood_xla(x, B, G, perm, inv_perm, scale, D)
    return jax.vjp(f, x_nxK)[1](jnp.concatenate([a.ravel() for a in g]))[0]

  dx = _on_cpu(native, xla, g_leaves, B_nxL, G_nxL, perm_nxL, inv_perm_nxL, scale_n)
  dbase = jnp.concatenate([a.ravel() for a in g_leaves])
  return dx, None, None, None, None, None, dbase


_fastfood_leaves.defvjp(_fastfood_leaves_fwd, _fastfood_leaves_bwd)


def fastfood_projection(kernel: str = "auto") -> Projection:
  """The Fastfood transform: O(D log D) time, O(D) memory, P never stored.

  L = 2^ceil(log2 D); theta_d is zero-padded to num_blocks * L with
  num_blocks = ceil(d / L), and block b (its own B, Pi, G from
  `fold_in(key, b)`) maps coordinates [b L, (b + 1) L). Each block's columns
  have norm exactly 1 in R^L and about 1 after keeping the first D rows.

  Args:
    kernel: how float32 transforms run on CPU. "auto": the C++ kernel of
      `_fastfood_kernel` (compiled on first use, cached), or XLA with a
      warning if it cannot be built; "native": the kernel, an error if it
      cannot be built; "xla": XLA ops only. Other platforms and dtypes
      always use XLA ops. All give the same P (up to float32 rounding).
  """
  if kernel not in ("auto", "native", "xla"):
    raise JaxnnError(f"unknown Fastfood kernel {kernel!r}; choose auto, native or xla")

  def init(key, D: int, d: int) -> FastfoodState:
    _check_sizes(D, d)
    L = 1 << (D - 1).bit_length()

    def block(k):
      k_b, k_pi, k_g = jax.random.split(k, 3)
      B = jax.random.rademacher(k_b, (L,), jnp.float32)
      perm = jax.random.permutation(k_pi, L).astype(jnp.int32)
      G = jax.random.normal(k_g, (L,), jnp.float32)
      scale = 1.0 / (jnp.sqrt(L * jnp.sum(jnp.square(G))) * math.sqrt(D / L))
      # The inverse by a scatter, O(L) (an argsort would sort L entries again).
      inv_perm = jnp.zeros(L, jnp.int32).at[perm].set(jnp.arange(L, dtype=jnp.int32))
      return B, G, perm, inv_perm, scale

    B, G, perm, inv_perm, scale = jax.vmap(block)(_column_keys(key, -(-d // L)))
    return FastfoodState(B, G, perm, inv_perm, scale, D)

  def inputs(state: FastfoodState, theta_d):
    n, L = state.B.shape
    d = theta_d.shape[0]
    # x is zero beyond coordinate d. With one block and d <= K (a power of 2),
    # H_L = H_{L/K} kron H_K gives H_L B x = tile(H_K B[:K] x[:K], L / K): the
    # first transform costs O(K), and its tiling folds into the permutation.
    K = L if n > 1 else 1 << (d - 1).bit_length()
    x_nxK = jnp.pad(theta_d, (0, n * K - d)).reshape(n, K)
    return (x_nxK, state.B, state.G, state.perm, state.inv_perm, state.scale)

  def apply(state: FastfoodState, theta_d):
    args = inputs(state, theta_d)
    if _native(kernel, theta_d.dtype):
      return _fastfood_native(*args, state.D)
    return _fastfood_xla(*args, state.D)

  def apply_leaves(state: FastfoodState, theta_d, base_D, shapes):
    shapes = tuple(tuple(int(n) for n in s) for s in shapes)
    if sum(math.prod(s) for s in shapes) != state.D:
      raise JaxnnError(f"the shapes {shapes} do not hold the projection's D={state.D} entries")
    if _native(kernel, theta_d.dtype) and base_D.dtype == jnp.float32:
      return _fastfood_leaves(*inputs(state, theta_d), base_D, state.D, shapes)
    return _split(base_D + apply(state, theta_d), shapes)

  return Projection(init, apply, apply_leaves)


_FACTORIES = {
  "dense": dense_projection,
  "sparse": sparse_projection,
  "fastfood": fastfood_projection,
}


def get_projection(name: str) -> Projection:
  """The projection called `name`: "dense", "sparse" or "fastfood"."""
  if name not in _FACTORIES:
    raise JaxnnError(f"unknown projection {name!r}; choose from {', '.join(PROJECTIONS)}")
  return _FACTORIES[name]()

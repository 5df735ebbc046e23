"""Any model as pure functions: `FunctionalModel(apply, params, state, l2)`.

The training engine and every method (a subspace reparameterization, an LCA
accumulator) work on this view, never on a Flax object, so a plain function,
a Flax NNX module (through `nnx.split` / `nnx.merge`), Linen or Equinox model
all plug in the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

PyTree = Any


def kernel_l2(params: PyTree) -> jax.Array:
  """Sum of squares of the weight matrices and conv kernels (leaves with ndim >= 2).

  Biases and normalization scales are not decayed, as in the papers' Keras code.
  """
  leaves = [p for p in jax.tree.leaves(params) if jnp.ndim(p) >= 2]
  return sum((jnp.sum(jnp.square(p)) for p in leaves), jnp.zeros((), jnp.float32))


class FunctionalModel(NamedTuple):
  """A model as pure functions and pytrees.

  Attributes:
    apply: `apply(params, state, x, train, rng) -> (outputs, new_state)`;
      `train` is a Python bool (BatchNorm batch statistics, dropout on), `rng`
      a PRNG key or None.
    params: the trainable pytree.
    state: non-trainable variables (BatchNorm statistics); `{}` if none.
    l2: `l2(params) -> scalar`, the sum of squares that weight decay
      multiplies. A reparameterized model (a random subspace) supplies one on
      the full weights.
  """

  apply: Callable[..., tuple[jax.Array, PyTree]]
  params: PyTree
  state: PyTree
  l2: Callable[[PyTree], jax.Array] = kernel_l2


def from_nnx(module: nnx.Module) -> FunctionalModel:
  """Splits a Flax NNX module into a `FunctionalModel` of pure dicts.

  The module is called as `module(x, train=..., rngs=...)`; the jaxnn models
  follow that convention.
  """
  graphdef, params, rest = nnx.split(module, nnx.Param, ...)

  def apply(params, state, x, train=False, rng=None):
    m = nnx.merge(graphdef, params, state)
    rngs = nnx.Rngs(dropout=rng) if rng is not None else None
    out = m(x, train=train, rngs=rngs)
    return out, nnx.state(m, nnx.Not(nnx.Param)).to_pure_dict()

  return FunctionalModel(apply, params.to_pure_dict(), rest.to_pure_dict())


def from_function(
  fn: Callable[[PyTree, jax.Array], jax.Array],
  params: PyTree,
  l2: Callable[[PyTree], jax.Array] = kernel_l2,
) -> FunctionalModel:
  """Wraps a stateless `fn(params, x) -> outputs`."""

  def apply(params, state, x, train=False, rng=None):
    del train, rng
    return fn(params, x), state

  return FunctionalModel(apply, params, {}, l2)

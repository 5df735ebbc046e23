"""Any model as pure functions: `FunctionalModel(apply, params, state, l2)`.

The training engine and every method (a subspace reparameterization, an LCA
accumulator) work on this view, never on a framework object, so the models a
JAX user has plug in the same way:

- a Flax NNX module: `from_nnx(module)`;
- a Flax Linen module and its variables: `from_linen(module, variables)`;
- an Equinox module: `from_equinox(module)`;
- a pure `apply(params, x)` and its params pytree: `from_function(apply, params)`.

`as_model` turns any of these (or a `FunctionalModel`) into the view. The
`train` and `rngs` / `rng` / `key` keywords are passed to a model only when its
call takes them, so a plain `__call__(self, x)` works as it is.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jaxnn._errors import JaxnnError

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


def _takes(fn: Callable, name: str) -> bool:
  """Whether `fn` accepts a keyword argument `name` (by name or through **kwargs)."""
  try:
    parameters = inspect.signature(fn).parameters.values()
  except (TypeError, ValueError):  # builtins and some C callables have no signature
    return False
  return any(
    p.kind is inspect.Parameter.VAR_KEYWORD
    or (p.name == name and p.kind is not inspect.Parameter.POSITIONAL_ONLY)
    for p in parameters
  )


def from_nnx(module: nnx.Module) -> FunctionalModel:
  """Splits a Flax NNX module into a `FunctionalModel` of pure dicts.

  The module is called as `module(x)`, plus `train=` and `rngs=` when its
  `__call__` takes them (the jaxnn models do). A module whose call takes no
  `train` is put in `.train()` / `.eval()` mode instead, which switches NNX's
  `Dropout` and `BatchNorm`; a `Dropout` then draws from the `Rngs` it was
  built with (its counter is part of `state`).

  Example:
    >>> class MLP(nnx.Module):
    ...   def __init__(self, rngs):
    ...     self.linear = nnx.Linear(4, 3, rngs=rngs)
    ...   def __call__(self, x):
    ...     return self.linear(x)
    >>> model = from_nnx(MLP(nnx.Rngs(0)))
  """
  if not isinstance(module, nnx.Module):
    raise JaxnnError(f"from_nnx takes a flax.nnx.Module, got {type(module).__name__}")
  call = type(module).__call__
  takes_train, takes_rngs = _takes(call, "train"), _takes(call, "rngs")
  graphdef, params, rest = nnx.split(module, nnx.Param, ...)

  def apply(params, state, x, train=False, rng=None):
    m = nnx.merge(graphdef, params, state)
    kwargs = {}
    if takes_train:
      kwargs["train"] = train
    else:
      m.train() if train else m.eval()
    if takes_rngs:
      kwargs["rngs"] = nnx.Rngs(dropout=rng) if rng is not None else None
    out = m(x, **kwargs)
    return out, nnx.state(m, nnx.Not(nnx.Param)).to_pure_dict()

  return FunctionalModel(apply, params.to_pure_dict(), rest.to_pure_dict())


def from_linen(module, variables: PyTree) -> FunctionalModel:
  """Wraps a Flax Linen module and its variables (or its params alone).

  Args:
    module: a `flax.linen.Module`.
    variables: what `module.init` returned (`{"params": ..., "batch_stats":
      ...}`), or the params collection alone.

  The module is applied as `module.apply(variables, x)`, plus `train=` when
  its `__call__` takes it, with `rngs={"dropout": rng}` when training; in
  training the non-param collections (BatchNorm's `batch_stats`) are mutable
  and carried as the model's state.

  Example:
    >>> import flax.linen as nn
    >>> mlp = nn.Dense(3)
    >>> model = from_linen(mlp, mlp.init(jax.random.key(0), jnp.ones((1, 4))))
  """
  import flax.linen as nn

  if not isinstance(module, nn.Module):
    raise JaxnnError(f"from_linen takes a flax.linen.Module, got {type(module).__name__}")
  variables = dict(variables)  # FrozenDict or dict
  if "params" in variables:
    params = variables.pop("params")
    state = variables
  else:
    params, state = variables, {}
  takes_train = _takes(type(module).__call__, "train")

  def apply(params, state, x, train=False, rng=None):
    kwargs = {"train": train} if takes_train else {}
    rngs = {"dropout": rng} if rng is not None and train else None
    if train and state:
      out, updates = module.apply(
        {"params": params, **state}, x, rngs=rngs, mutable=list(state), **kwargs
      )
      return out, {**state, **dict(updates)}
    return module.apply({"params": params, **state}, x, rngs=rngs, **kwargs), state

  return FunctionalModel(apply, params, state)


def from_equinox(module, *, batched: bool = False) -> FunctionalModel:
  """Wraps an Equinox module: its floating-point arrays are the params.

  Args:
    module: an `equinox.Module`, e.g. `equinox.nn.MLP(...)`.
    batched: whether the module takes a batch. Equinox layers take one example
      (the default here, `jax.vmap`ped over the batch); set True for a module
      whose call handles the batch itself.

  Training switches `equinox.nn.inference_mode` off (dropout on) and passes a
  per-example `key=` when the module's call takes one. Stateful layers
  (`equinox.nn.BatchNorm` with `equinox.nn.State`) are not supported: their
  state is not threaded through.

  Example:
    >>> import equinox as eqx
    >>> model = from_equinox(eqx.nn.MLP(4, 3, 16, 1, key=jax.random.key(0)))
  """
  import equinox as eqx

  if not isinstance(module, eqx.Module):
    raise JaxnnError(f"from_equinox takes an equinox.Module, got {type(module).__name__}")
  params, static = eqx.partition(module, eqx.is_inexact_array)
  takes_key = _takes(type(module).__call__, "key")

  def apply(params, state, x, train=False, rng=None):
    m = eqx.nn.inference_mode(eqx.combine(params, static), value=not train)
    if not takes_key or rng is None:
      return (m(x) if batched else jax.vmap(m)(x)), state
    if batched:
      return m(x, key=rng), state
    keys = jax.random.split(rng, x.shape[0])
    return jax.vmap(lambda xi, k: m(xi, key=k))(x, keys), state

  return FunctionalModel(apply, params, {})


def from_function(
  fn: Callable[..., jax.Array],
  params: PyTree,
  l2: Callable[[PyTree], jax.Array] = kernel_l2,
) -> FunctionalModel:
  """Wraps a stateless `fn(params, x) -> outputs` and its params pytree.

  `fn` also gets `train=` (a bool) and `rng=` (a key or None) when it takes
  them, e.g. for dropout.

  Example:
    >>> def apply(params, x):
    ...   return x @ params["w"] + params["b"]
    >>> model = from_function(apply, {"w": jnp.zeros((4, 3)), "b": jnp.zeros(3)})
  """
  if not callable(fn):
    raise JaxnnError(f"from_function takes a function fn(params, x), got {type(fn).__name__}")
  takes_train, takes_rng = _takes(fn, "train"), _takes(fn, "rng")

  def apply(params, state, x, train=False, rng=None):
    kwargs = {}
    if takes_train:
      kwargs["train"] = train
    if takes_rng:
      kwargs["rng"] = rng
    return fn(params, x, **kwargs), state

  return FunctionalModel(apply, params, {}, l2)


def _is_equinox(obj) -> bool:
  import sys

  eqx = sys.modules.get("equinox")  # imported only if the user has it loaded
  return eqx is not None and isinstance(obj, eqx.Module)


def as_model(model: Any, key: jax.Array | None = None) -> FunctionalModel:
  """Any supported model as a `FunctionalModel`.

  Args:
    model: a `FunctionalModel`, a Flax NNX module, an Equinox module, or a
      factory `model(key)` returning one of these. A Linen module or a pure
      function need their parameters: pass `from_linen(module, variables)` or
      `from_function(apply, params)` (or a factory returning them).
    key: the PRNG key a factory is called with.

  Raises:
    JaxnnError: for anything else, saying which wrapper to use.
  """
  if isinstance(model, FunctionalModel):
    return model
  if isinstance(model, nnx.Module):
    return from_nnx(model)
  if _is_equinox(model):
    return from_equinox(model)
  import flax.linen as nn

  if isinstance(model, nn.Module):
    raise JaxnnError(
      "a Linen module needs its variables: pass from_linen(module, module.init(key, x))"
    )
  if callable(model):
    built = model(jax.random.key(0) if key is None else key)
    if isinstance(built, (FunctionalModel, nnx.Module, nn.Module)) or _is_equinox(built):
      return as_model(built)
    raise JaxnnError(
      f"a model factory must return a model, got {type(built).__name__}: an NNX or Equinox "
      "module, from_linen(module, variables) or from_function(apply, params)"
    )
  raise JaxnnError(
    f"cannot use a {type(model).__name__} as a model: pass an NNX or Equinox module, "
    "from_linen(module, variables), from_function(apply, params), or a factory of one"
  )

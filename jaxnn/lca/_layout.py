"""The parameters' layout: layers and neurons, and the flat vector the accumulator works on.

Layers are reported in the order the model defines them, under its own names
(the parameter path without the last key, e.g. "dense0" for dense0/kernel):
the attribute order of a Flax NNX module (`definition_order`), or the
insertion order of a parameter dict. Flat parameter vectors (the accumulator's
per-parameter arrays, the streamed rows) follow `jax.tree.leaves`, each leaf
raveled.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxnn._errors import JaxnnError

PyTree = Any


def _key(key) -> Any:
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return getattr(key, attr)
  return key


def _key_name(key) -> str:
  return str(_key(key))


def layer_names(params: PyTree) -> list[str]:
  """The layer of each leaf: its path without the last key ("dense0" for dense0/kernel)."""
  paths = [
    tuple(_key_name(k) for k in path) for path, _ in jax.tree_util.tree_leaves_with_path(params)
  ]
  return ["/".join(p[:-1]) if len(p) > 1 else (p[0] if p else "params") for p in paths]


def _definition_rank(root: Any, keys: Sequence[Any]) -> tuple[int, ...]:
  """Where the leaf at `keys` comes in `root`, key by key: dict insertion order, list
  position, or the order in which an object's attributes were assigned."""
  obj, rank = root, []
  for key in keys:
    if isinstance(obj, Mapping):
      names = list(obj)
      rank.append(names.index(key) if key in names else len(names))
      obj = obj.get(key)
    elif isinstance(obj, (list, tuple)) and isinstance(key, int) and 0 <= key < len(obj):
      rank.append(key)
      obj = obj[key]
    else:
      names = [n for n in getattr(obj, "__dict__", {}) if not n.startswith("_")]
      rank.append(names.index(str(key)) if str(key) in names else len(names))
      obj = getattr(obj, str(key), None)
  return tuple(rank)


def definition_order(model: Any) -> tuple[str, ...]:
  """The layer names of `model` in the order it defines them.

  Args:
    model: a Flax NNX module (its attributes in assignment order, lists in
      position order) or a parameter pytree of dicts (their insertion order;
      `jax.tree` itself sorts dict keys).

  Returns:
    The distinct names of `layer_names` of its parameters, in that order.
  """
  params = nnx.state(model, nnx.Param).to_pure_dict() if isinstance(model, nnx.Module) else model
  first: dict[str, tuple[int, ...]] = {}
  leaves = jax.tree_util.tree_leaves_with_path(params)
  for (path, _), name in zip(leaves, layer_names(params)):
    rank = _definition_rank(model, [_key(k) for k in path])
    first[name] = min(first.get(name, rank), rank)
  return tuple(sorted(first, key=lambda name: first[name]))


@dataclasses.dataclass(frozen=True)
class Layout:
  """Static grouping of the parameters into layers and neurons.

  A neuron is an output unit of a layer (the last axis of its kernel): its LCA
  is the sum over its incoming weights and its bias, as in the paper's
  neuron x iteration view. Leaves whose last axis differs from the layer's
  first leaf form their own group of neurons. Layers, and neurons, come in the
  model's order; flat parameter vectors follow the leaf order
  (`jax.tree.leaves`), each leaf raveled.
  """

  layers: tuple[str, ...]  # distinct layer names, in the model's order
  leaf_layer: tuple[int, ...]  # layer index of each leaf
  leaf_neuron_offset: tuple[int, ...]  # first neuron of each leaf's units
  neuron_layer: tuple[int, ...]  # layer index of each neuron
  num_params: int
  leaf_shapes: tuple[tuple[int, ...], ...] = ()  # shape of each leaf

  @property
  def num_neurons(self) -> int:
    """The number of neurons (output units) over all layers."""
    return len(self.neuron_layer)


def make_layout(params: PyTree, layer_order: Sequence[str] | None = None) -> Layout:
  """The `Layout` of `params`.

  Args:
    params: the parameter pytree.
    layer_order: the layer names (`layer_names`) in the order to report them,
      e.g. `definition_order(module)` of the NNX module the parameters come
      from; None: `definition_order(params)`.
  """
  names = layer_names(params)
  leaves = jax.tree.leaves(params)
  layers = tuple(definition_order(params) if layer_order is None else layer_order)
  if sorted(layers) != sorted(dict.fromkeys(names)):
    raise JaxnnError(
      f"the LCA layer order {list(layers)} does not name each layer of the parameters "
      f"({list(dict.fromkeys(names))}) once; pass definition_order(model) or no order"
    )
  leaf_layer = tuple(layers.index(n) for n in names)
  groups: dict[tuple[str, int], int] = {}
  offsets = [0] * len(leaves)
  neuron_layer: list[int] = []
  for i in sorted(range(len(leaves)), key=lambda i: (leaf_layer[i], i)):
    group = (names[i], int(leaves[i].shape[-1]) if jnp.ndim(leaves[i]) else 1)
    if group not in groups:
      groups[group] = len(neuron_layer)
      neuron_layer.extend([leaf_layer[i]] * group[1])
    offsets[i] = groups[group]
  return Layout(
    layers,
    leaf_layer,
    tuple(offsets),
    tuple(neuron_layer),
    sum(math.prod(jnp.shape(p)) for p in leaves),
    tuple(tuple(int(d) for d in jnp.shape(p)) for p in leaves),
  )


def _leaf_slices(layout: Layout) -> list[slice]:
  bounds = np.cumsum([0] + [math.prod(s) for s in layout.leaf_shapes]).tolist()
  return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def per_layer(layout: Layout, flat_P: jax.Array) -> jax.Array:
  """Sums of a flat (..., P) array over each layer's parameters: (..., L)."""
  sums: list[list[jax.Array]] = [[] for _ in layout.layers]
  for layer, sl in zip(layout.leaf_layer, _leaf_slices(layout)):
    sums[layer].append(jnp.sum(flat_P[..., sl], -1, dtype=jnp.float32))
  return jnp.stack([sum(s) for s in sums], -1)


def per_neuron(layout: Layout, flat_P: jax.Array) -> jax.Array:
  """Sums of a flat (..., P) array over each neuron's parameters: (..., N)."""
  lead = flat_P.shape[:-1]
  groups: dict[int, jax.Array] = {}
  for offset, shape, sl in zip(layout.leaf_neuron_offset, layout.leaf_shapes, _leaf_slices(layout)):
    units = shape[-1] if shape else 1
    sums = jnp.sum(flat_P[..., sl].reshape(*lead, -1, units), -2, dtype=jnp.float32)
    groups[offset] = groups[offset] + sums if offset in groups else sums
  return jnp.concatenate([groups[o] for o in sorted(groups)], -1)


def flat(tree: PyTree, lead: int = 0) -> jax.Array:
  """The leaves raveled and concatenated after `lead` leading axes they share."""
  return jnp.concatenate([x.reshape(*x.shape[:lead], -1) for x in jax.tree.leaves(tree)], lead)


def unflat(values: jax.Array, like: PyTree, lead: int = 0) -> PyTree:
  """The inverse of `flat`: a tree like `like` (shapes without the `lead` axes)."""
  leaves, treedef = jax.tree.flatten(like)
  shapes = [np.shape(leaf) for leaf in leaves]
  parts = jnp.split(values, np.cumsum([math.prod(s) for s in shapes])[:-1].tolist(), axis=lead)
  return jax.tree.unflatten(
    treedef, [a.reshape(*values.shape[:lead], *s) for a, s in zip(parts, shapes)]
  )

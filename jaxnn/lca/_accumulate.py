"""LCA computed during training: an accumulator wrapped around any train step.

The accumulator sees the parameters before and after each optimizer step (never
the optimizer's internals), so it works for any model given as a
`FunctionalModel` and any optax optimizer. The gradients it integrates are of
the data loss (the objective's per-example loss, no weight decay) over whole
evaluation sets -- the full training set or a fixed subset, and the validation
set -- taken in chunks inside the jitted step, in inference mode: dropout off,
BatchNorm on its running statistics (see `lca_accumulator`).

Nothing of size (iterations x parameters) is kept: `LCAState` holds per-
iteration summaries (per-layer and per-neuron sums, fraction of parameters that
helped, integration error) and per-parameter totals. `LCAStream` writes the full
per-parameter array to disk, one row per iteration, when asked.

References:
  Lan, Liu, Zhou, Yosinski. "LCA: Loss Change Allocation for Neural Network
  Training", NeurIPS 2019. https://arxiv.org/abs/1909.01440
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn._errors import JaxnnError
from jaxnn.data import Split
from jaxnn.lca._integrate import MAX_SPLITS, THRESHOLD, Point
from jaxnn.train import CLASSIFICATION, FunctionalModel, Objective

PyTree = Any
#: Integrators of the path integral: adaptive Simpson (the paper's) and first order.
METHODS = ("simpson", "first_order")


class EvalSet(NamedTuple):
  """One or more evaluation sets cut into chunks of one size, padded with mask 0.

  Every chunk holds examples of a single set, so one pass over the chunks
  gives the gradient of every set (train and validation share the compiled
  computation and its matrix products).

  Attributes:
    x: inputs, shape (chunks, chunk_size, ...).
    y: targets, shape (chunks, chunk_size, ...).
    mask: 1 for real examples, 0 for padding, shape (chunks, chunk_size).
    set_C: the set of each chunk, int32, shape (chunks,).
    count_S: real examples per set, float32, shape (sets,).
  """

  x: np.ndarray
  y: np.ndarray
  mask: np.ndarray
  set_C: np.ndarray
  count_S: np.ndarray

  @property
  def num_sets(self) -> int:
    return self.count_S.shape[0]


def _chunk_size(sizes: Sequence[int], chunk_size: int, num_devices: int) -> int:
  """The chunk size <= `chunk_size` (a multiple of `num_devices`) padding the sets least.

  Each extra chunk is charged as 32 padded examples (a chunk has a fixed cost),
  so 3,600 + 400 examples with chunks of at most 1,000 make 10 chunks of 400.
  """
  candidates = range(num_devices, max(chunk_size, num_devices) + 1, num_devices)
  cost = lambda c: sum(-(-n // c) * (c + 32) for n in sizes)
  return min(candidates, key=lambda c: (cost(c), -c))


def make_eval_sets(
  splits: Sequence[Split], chunk_size: int = 1000, num_devices: int = 1
) -> EvalSet:
  """Cuts `splits` into chunks of one size for full-set gradients of each.

  Args:
    splits: the evaluation sets (whole splits, or fixed subsets the user
      picked), e.g. (train, validation).
    chunk_size: the most examples per chunk (a chunk's activations bound the
      memory); the size is picked to pad the sets least.
    num_devices: devices a chunk is split across.
  """
  if not splits:
    raise JaxnnError("LCA needs at least one evaluation set (e.g. the training set)")
  if chunk_size < 1:
    raise JaxnnError(f"chunk size must be positive, got {chunk_size}")
  sizes = [len(s) for s in splits]
  if min(sizes) == 0:
    raise JaxnnError(
      "an LCA evaluation set is empty; pass a split with examples (or no validation set)"
    )
  chunk = _chunk_size(sizes, chunk_size, num_devices)
  xs, ys, masks, sets = [], [], [], []
  for i, split in enumerate(splits):
    chunks = -(-len(split) // chunk)
    pad = chunks * chunk - len(split)
    pad_rows = lambda a: np.concatenate([a, np.zeros((pad, *a.shape[1:]), a.dtype)]) if pad else a
    shape = lambda a: a.reshape(chunks, chunk, *a.shape[1:])
    xs.append(shape(pad_rows(split.x)))
    ys.append(shape(pad_rows(split.y)))
    masks.append(
      shape(np.concatenate([np.ones(len(split), np.float32), np.zeros(pad, np.float32)]))
    )
    sets.append(np.full(chunks, i, np.int32))
  return EvalSet(
    np.concatenate(xs),
    np.concatenate(ys),
    np.concatenate(masks),
    np.concatenate(sets),
    np.asarray(sizes, np.float32),
  )


def make_eval_set(split: Split, chunk_size: int = 1000, num_devices: int = 1) -> EvalSet:
  """`make_eval_sets` of one split."""
  return make_eval_sets([split], chunk_size, num_devices)


def _points_loss(
  model: FunctionalModel, objective: Objective = CLASSIFICATION, chunk_sharding=None
) -> Callable[[PyTree, PyTree, EvalSet], Point]:
  """`value_and_grad(params_X, model_state_X, eval_set) -> Point` at X points at once.

  `params_X` and `model_state_X` carry a leading axis of X points; the result
  holds the mean data loss of every set at every point, `loss` of shape
  (X, S) and each gradient leaf (X, S, ...). One chunk at a time (`lax.scan`
  over chunks), with the X points vmapped inside a chunk so that they share
  its reads (the matrix products of a dense layer become one wider product).
  Inference mode: `train=False`, no dropout key.
  """

  def chunk_loss(params, model_state, x, y, mask):
    outputs, _ = model.apply(params, model_state, x, False, None)
    return jnp.sum(objective.loss(outputs, y) * mask)

  grad_chunk = jax.vmap(jax.value_and_grad(chunk_loss), in_axes=(0, 0, None, None, None))

  def value_and_grad(params_X, model_state_X, eval_set: EvalSet) -> Point:
    S = eval_set.num_sets

    def body(acc, chunk):
      x, y, mask, s = chunk
      if chunk_sharding is not None:
        x, y, mask = (jax.lax.with_sharding_constraint(a, chunk_sharding) for a in (x, y, mask))
      value = grad_chunk(params_X, model_state_X, x, y, mask)
      return jax.tree.map(lambda a, v: a.at[:, s].add(v), acc, value), None

    X = jax.tree.leaves(params_X)[0].shape[0]
    zero = (
      jnp.zeros((X, S), jnp.float32),
      jax.tree.map(lambda p: jnp.zeros((X, S, *p.shape[1:]), p.dtype), params_X),
    )
    chunks = (eval_set.x, eval_set.y, eval_set.mask, eval_set.set_C)
    (loss, grad), _ = jax.lax.scan(body, zero, chunks)
    count_S = eval_set.count_S
    return Point(
      loss / count_S[None],
      jax.tree.map(lambda g: g / count_S.reshape(1, S, *(1,) * (g.ndim - 2)), grad),
    )

  return value_and_grad


def full_set_loss(
  model: FunctionalModel, objective: Objective = CLASSIFICATION, chunk_sharding=None
) -> Callable[[PyTree, PyTree, EvalSet], Point]:
  """`value_and_grad(params, model_state, eval_set) -> Point` of the mean data loss per set.

  The loss has shape (S,) and each gradient leaf (S, ...) for the S sets of
  `eval_set`, computed one chunk at a time (memory is that of one chunk) in
  inference mode: `train=False`, no dropout key. `chunk_sharding` (e.g.
  `DataParallel.batch`) splits each chunk across devices.
  """
  vg = _points_loss(model, objective, chunk_sharding)

  def value_and_grad(params, model_state, eval_set: EvalSet) -> Point:
    add_axis = lambda tree: jax.tree.map(lambda a: a[None], tree)
    point = vg(add_axis(params), add_axis(model_state), eval_set)
    return jax.tree.map(lambda a: a[0], point)

  return value_and_grad


class LinearStem(NamedTuple):
  """A model's first layer, linear in its parameters on fixed inputs, and the rest of it.

  Declaring it lets the accumulator skip most of the first layer's products,
  exactly. If z = A_x(theta_stem) with A_x linear (e.g. x @ W + b), every
  point of the step theta_t + s dtheta has z = (1 - s) z(theta_t) +
  s z(theta_{t+1}): z is computed at the end point only (its value at
  theta_t is kept from the previous iteration) and interpolated at the
  midpoint and at every refinement point. The stem's gradient at a point is
  A_x^T(dL/dz), so its LCA over the iteration, dtheta_stem * sum_k w_k
  A_x^T(dL/dz_k) with the Simpson weights w_k, is dtheta_stem *
  A_x^T(sum_k w_k dL/dz_k): the accumulator carries dL/dz per evaluation
  example instead of the stem's gradient (the end point's for the next
  iteration too) and transposes once per iteration (for `fc_stem`, one
  x^T (dL/dz) product instead of one per point). Its LCA summed over the
  stem's parameters, which the refinement decision needs at every level, is
  <dz, sum_k w_k dL/dz_k> with dz = z(theta_{t+1}) - z(theta_t)
  (`jax.linear_transpose` is the adjoint). On MNIST-FC this leaves two of
  the first layer's products per iteration instead of four (a forward and a
  weight-gradient product at each of two points; three with the output
  interpolated alone). `check_stem` verifies a declaration (linearity
  and that the two parts rebuild the model); `fc_stem` declares the first
  layer of `jaxnn.models.FC`.

  Attributes:
    keys: the top-level keys of the parameter dict that the stem uses; the
      head gets the other keys only.
    apply: `apply(stem_params, x) -> z`, linear in `stem_params` (a dict of
      `keys`; a bias is linear in itself), in inference mode.
    head: `head(params, model_state, z, train, rng) -> (outputs, new_state)`,
      the model from z on, with `params` lacking `keys`.
    restrict: optional; `restrict(index_F) -> apply_r` with `apply_r(stem_params,
      x_r)` the stem's output from the input features `index_F` alone (x
      reshaped to (examples, features), `x_r = x[:, index_F]`), equal to
      `apply` when the other features are 0. Lets `drop_zero_features` skip
      the features that are 0 in every evaluation example.
  """

  keys: tuple[str, ...]
  apply: Callable[[dict, jax.Array], jax.Array]
  head: Callable[..., tuple[jax.Array, PyTree]]
  restrict: Callable[[np.ndarray], Callable[[dict, jax.Array], jax.Array]] | None = None


def fc_stem(params: dict) -> LinearStem:
  """The first dense layer of a `jaxnn.models.FC` (params "dense0".."denseK") as a stem."""
  names = [f"dense{i}" for i in range(len(params))]
  if not isinstance(params, dict) or sorted(params) != sorted(names) or not names:
    raise JaxnnError(
      f"fc_stem needs the parameters of a jaxnn FC (dense0..denseK), got "
      f"{list(params) if isinstance(params, dict) else type(params).__name__}"
    )

  def apply(p, x):
    return x.reshape(x.shape[0], -1) @ p["dense0"]["kernel"] + p["dense0"]["bias"][None]

  def head(p, model_state, z, train=False, rng=None):
    del train, rng
    h = z
    for name in names[1:]:
      h = jax.nn.relu(h) @ p[name]["kernel"] + p[name]["bias"][None]
    return h, model_state

  def restrict(index_F):
    index_F = np.asarray(index_F)

    def apply_r(p, x_r):
      if x_r.shape[-1] != index_F.size:
        raise JaxnnError(
          f"the LCA stem keeps {index_F.size} input features, got inputs with "
          f"{x_r.shape[-1]}; pass the evaluation set that drop_zero_features "
          "returned with this stem"
        )
      return x_r @ p["dense0"]["kernel"][index_F] + p["dense0"]["bias"][None]

    return apply_r

  return LinearStem(("dense0",), apply, head, restrict)


def drop_zero_features(stem: LinearStem, eval_set: EvalSet) -> tuple[LinearStem, EvalSet]:
  """The stem and evaluation set without the input features that are 0 in every example.

  Exact: such a feature adds nothing to the stem's output, and the gradient
  of every parameter that only multiplies it (e.g. its row of a dense
  kernel) is exactly 0 on these sets, so its LCA is exactly 0 (it may still
  move by weight decay). The stem's two products per iteration (its output
  at the end point and the transpose of the integrated dL/dz) then skip
  those features; the transpose scatters zeros into the dropped parameters
  (`jax.linear_transpose` of the gather). On mnist5k, 132 of the 784 pixels
  are black in every training and validation image. Found once, on the host.

  Returns:
    `(stem, eval_set)` unchanged when the stem declares no `restrict` or no
    feature is 0 everywhere; otherwise the stem applied to the kept features
    and the set whose `x` holds only them, (chunks, chunk_size, kept). Use
    the two together: the accumulator's stem path reads `x` only through
    the stem.
  """
  x_N = eval_set.x.reshape(-1, math.prod(eval_set.x.shape[2:]))
  keep_F = np.any(x_N != 0, 0)
  if stem.restrict is None or keep_F.all():
    return stem, eval_set
  index_F = np.flatnonzero(keep_F)
  x_r = np.ascontiguousarray(eval_set.x.reshape(*eval_set.x.shape[:2], -1)[..., index_F])
  return stem._replace(apply=stem.restrict(index_F), restrict=None), eval_set._replace(x=x_r)


def _split_stem(stem: LinearStem, params: dict) -> tuple[dict, dict]:
  return (
    {k: params[k] for k in stem.keys},
    {k: v for k, v in params.items() if k not in stem.keys},
  )


def check_stem(
  model: FunctionalModel,
  stem: LinearStem,
  x: jax.Array,
  seed: int = 0,
  rtol: float = 1e-4,
  compiler_options: dict | None = None,
) -> None:
  """Raises a `JaxnnError` unless `stem` is a valid declaration for `model` on inputs `x`.

  Checks that the stem's keys are top-level keys of the parameter dict, that
  its `apply` is affine in them (its transpose exists, and the midpoint of
  two random parameter points maps to the mean of their outputs), that
  `head(apply(...))` gives `model.apply`'s outputs, at the model's parameters
  and at a random perturbation of them, and that its `restrict` (if any)
  gives `apply`'s output with every other feature set to 0 and dropped (one
  small compiled function, with `compiler_options`).
  """
  params = model.params
  if not isinstance(params, dict) or not stem.keys or any(k not in params for k in stem.keys):
    raise JaxnnError(
      f"the LCA stem's keys {stem.keys} are not top-level keys of the model's "
      f"parameters ({list(params) if isinstance(params, dict) else 'not a dict'}); "
      "declare the keys of its first layer, or pass no stem"
    )

  # restrict: every other input feature set to 0 and dropped.
  index_F = np.arange(0, math.prod(np.shape(x)[1:]), 2)
  zeroed_F = np.zeros(math.prod(np.shape(x)[1:]), np.float32)
  zeroed_F[index_F] = 1

  def outputs(params, other, x):
    stem0, rest0 = _split_stem(stem, params)
    stem1, rest1 = _split_stem(stem, other)
    z0, z1 = stem.apply(stem0, x), stem.apply(stem1, x)
    zmid = stem.apply(jax.tree.map(lambda a, b: (a + b) / 2, stem0, stem1), x)
    jax.linear_transpose(lambda p: stem.apply(p, x), stem0)(z0)
    restricted = []
    if stem.restrict is not None:
      x_F = x.reshape(x.shape[0], -1)
      restricted = [
        stem.restrict(index_F)(stem1, x_F[:, index_F]),
        stem.apply(stem1, (x_F * zeroed_F[None]).reshape(x.shape)),
      ]
    return (
      zmid,
      (z0 + z1) / 2,
      stem.head(rest0, model.state, z0, False, None)[0],
      model.apply(params, model.state, x, False, None)[0],
      stem.head(rest1, model.state, z1, False, None)[0],
      model.apply(other, model.state, x, False, None)[0],
      *restricted,
    )

  rng = np.random.default_rng(seed)  # numpy: no random-number kernel to compile
  other = jax.tree.map(
    lambda p: np.asarray(p) + 0.1 * rng.standard_normal(np.shape(p)).astype(np.asarray(p).dtype),
    params,
  )
  try:
    zmid, zmean, *outs = jax.jit(outputs, compiler_options=compiler_options)(params, other, x)
  except (NotImplementedError, TypeError, ValueError) as e:
    raise JaxnnError(
      f"the LCA stem is not affine in its parameters {stem.keys} or does not fit "
      f"the model ({type(e).__name__}: {str(e).splitlines()[0]}); pass no "
      "stem"
    ) from e
  close = lambda a, b: np.allclose(a, b, rtol=rtol, atol=rtol * float(np.max(np.abs(b))))
  if not close(zmid, zmean):
    raise JaxnnError(
      f"the LCA stem's output is not affine in its parameters {stem.keys}; pass no stem"
    )
  if not (close(outs[0], outs[1]) and close(outs[2], outs[3])):
    raise JaxnnError(
      "the LCA stem's head(apply(x)) differs from the model's outputs; fix the "
      "declaration or pass no stem"
    )
  if stem.restrict is not None and not close(outs[4], outs[5]):
    raise JaxnnError(
      "the LCA stem's restrict(index)(x[:, index]) differs from its apply(x) with "
      "the other features 0; fix the declaration or declare no restrict"
    )


def _stem_points_loss(
  model: FunctionalModel,
  stem: LinearStem,
  objective: Objective = CLASSIFICATION,
  chunk_sharding=None,
) -> Callable:
  """`_points_loss` with the stem's output interpolated between the step's ends (`LinearStem`).

  `value_and_grad(params_X, model_state_X, eval_set, s_X, z0_C, z1_C) ->
  (Point, dz_XxC)`: `z0_C` and `z1_C` hold the stem's output at the start
  and end of the step for every chunk (`_stem_apply`); point x uses (1 -
  s_X[x]) z0 + s_X[x] z1. The Point's gradient holds the head's parameters
  only; `dz_XxC` is the gradient of each set's mean loss with respect to the
  stem's output, (X, chunks, chunk_size, ...) (zero on padding).
  """

  def head_loss(rest, model_state, z, y, mask):
    outputs, _ = stem.head(rest, model_state, z, False, None)
    return jnp.sum(objective.loss(outputs, y) * mask)

  head_grad = jax.vmap(jax.value_and_grad(head_loss, argnums=(0, 2)), in_axes=(0, 0, 0, None, None))

  def value_and_grad(params_X, model_state_X, eval_set, s_X, z0_C, z1_C):
    S = eval_set.num_sets
    rest_X = _split_stem(stem, params_X)[1]

    def body(acc, chunk):
      y, mask, s, z0, z1 = chunk
      if chunk_sharding is not None:
        y, mask, z0, z1 = (
          jax.lax.with_sharding_constraint(a, chunk_sharding) for a in (y, mask, z0, z1)
        )
      w = s_X.reshape(-1, *(1,) * z0.ndim).astype(z0.dtype)
      z_X = (1 - w) * z0[None] + w * z1[None]
      loss, (grad_rest, dz_X) = head_grad(rest_X, model_state_X, z_X, y, mask)
      acc = jax.tree.map(lambda a, v: a.at[:, s].add(v), acc, (loss, grad_rest))
      return acc, dz_X / eval_set.count_S[s].astype(dz_X.dtype)

    X = s_X.shape[0]
    zero = (
      jnp.zeros((X, S), jnp.float32),
      jax.tree.map(lambda p: jnp.zeros((X, S, *p.shape[1:]), p.dtype), rest_X),
    )
    chunks = (eval_set.y, eval_set.mask, eval_set.set_C, z0_C, z1_C)
    (loss, grad), dz_CxX = jax.lax.scan(body, zero, chunks)
    count_S = eval_set.count_S
    point = Point(
      loss / count_S[None],
      jax.tree.map(lambda g: g / count_S.reshape(1, S, *(1,) * (g.ndim - 2)), grad),
    )
    return point, jnp.moveaxis(dz_CxX, 1, 0)

  return value_and_grad


def _chunks_sharding(chunk_sharding):
  """The sharding of (chunks, chunk_size, ...) arrays whose chunks have `chunk_sharding`."""
  if isinstance(chunk_sharding, jax.sharding.NamedSharding):
    return jax.sharding.NamedSharding(
      chunk_sharding.mesh, jax.sharding.PartitionSpec(None, *chunk_sharding.spec)
    )
  return None


def _stem_apply(
  stem: LinearStem, stem_params: dict, eval_set: EvalSet, chunk_sharding=None
) -> jax.Array:
  """The stem's output on every chunk at once, (chunks, chunk_size, ...).

  The same size as the chunks' stored outputs; one product over all chunks
  (for a dense stem) reads the inputs in place, where a loop over chunks
  would copy each chunk out first.
  """
  sharding = _chunks_sharding(chunk_sharding)
  x_C = eval_set.x
  if sharding is not None:
    x_C = jax.lax.with_sharding_constraint(x_C, sharding)
  z_C = jax.vmap(lambda x: stem.apply(stem_params, x))(x_C).astype(jnp.float32)
  return z_C if sharding is None else jax.lax.with_sharding_constraint(z_C, sharding)


def _stem_sum(eval_set: EvalSet, dz_C: jax.Array, a_C: jax.Array) -> jax.Array:
  """sum over each set's examples of <dz, a> (stem outputs, per chunk): shape (S,)."""
  per_chunk = jnp.sum((dz_C * a_C).reshape(dz_C.shape[0], -1), 1, dtype=jnp.float32)
  return jax.ops.segment_sum(per_chunk, eval_set.set_C, eval_set.num_sets)


def _stem_transpose(
  stem: LinearStem, stem_params: dict, eval_set: EvalSet, a_C: jax.Array, chunk_sharding=None
) -> dict:
  """sum over each set's chunks of A_x^T(a) (the stem's adjoint): leaves (S, ...).

  One batched product over the chunks (for a dense stem), then a sum of the
  chunks of each set: (chunks x stem parameters) in between.
  """
  sharding = _chunks_sharding(chunk_sharding)
  x_C = eval_set.x
  if sharding is not None:
    x_C, a_C = (jax.lax.with_sharding_constraint(v, sharding) for v in (x_C, a_C))

  def transpose(x, a):
    apply = lambda p: stem.apply(p, x)
    return jax.linear_transpose(apply, stem_params)(
      a.astype(jax.eval_shape(apply, stem_params).dtype)
    )[0]

  grad_C = jax.vmap(transpose)(x_C, a_C)
  return jax.tree.map(lambda g: jax.ops.segment_sum(g, eval_set.set_C, eval_set.num_sets), grad_C)


def _key_name(key) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def layer_names(params: PyTree) -> list[str]:
  """The layer of each leaf: its path without the last key ("dense0" for dense0/kernel)."""
  paths = [
    tuple(_key_name(k) for k in path) for path, _ in jax.tree_util.tree_leaves_with_path(params)
  ]
  return ["/".join(p[:-1]) if len(p) > 1 else (p[0] if p else "params") for p in paths]


@dataclasses.dataclass(frozen=True)
class Layout:
  """Static grouping of the parameters into layers and neurons.

  A neuron is an output unit of a layer (the last axis of its kernel): its LCA
  is the sum over its incoming weights and its bias, as in the paper's
  neuron x iteration view. Leaves whose last axis differs from the layer's
  first leaf form their own group of neurons. Flat parameter vectors follow
  the leaf order (`jax.tree.leaves`), each leaf raveled.
  """

  layers: tuple[str, ...]  # distinct layer names, in parameter order
  leaf_layer: tuple[int, ...]  # layer index of each leaf
  leaf_neuron_offset: tuple[int, ...]  # first neuron of each leaf's units
  neuron_layer: tuple[int, ...]  # layer index of each neuron
  num_params: int
  leaf_shapes: tuple[tuple[int, ...], ...] = ()  # shape of each leaf

  @property
  def num_neurons(self) -> int:
    return len(self.neuron_layer)


def make_layout(params: PyTree) -> Layout:
  """The `Layout` (layers, neurons, leaf offsets) of a parameter pytree, in leaf order."""
  names = layer_names(params)
  leaves = jax.tree.leaves(params)
  layers = tuple(dict.fromkeys(names))
  groups: dict[tuple[str, int], int] = {}
  offsets, neuron_layer = [], []
  for name, leaf in zip(names, leaves):
    group = (name, int(leaf.shape[-1]) if jnp.ndim(leaf) else 1)
    if group not in groups:
      groups[group] = len(neuron_layer)
      neuron_layer.extend([layers.index(name)] * group[1])
    offsets.append(groups[group])
  return Layout(
    layers,
    tuple(layers.index(n) for n in names),
    tuple(offsets),
    tuple(neuron_layer),
    sum(math.prod(jnp.shape(p)) for p in leaves),
    tuple(tuple(int(d) for d in jnp.shape(p)) for p in leaves),
  )


def _leaf_slices(layout: Layout) -> list[slice]:
  bounds = np.cumsum([0] + [math.prod(s) for s in layout.leaf_shapes]).tolist()
  return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def _per_layer(layout: Layout, flat_P: jax.Array) -> jax.Array:
  """Sums of a flat (..., P) array over each layer's parameters: (..., L)."""
  sums: list[list[jax.Array]] = [[] for _ in layout.layers]
  for layer, sl in zip(layout.leaf_layer, _leaf_slices(layout)):
    sums[layer].append(jnp.sum(flat_P[..., sl], -1, dtype=jnp.float32))
  return jnp.stack([sum(s) for s in sums], -1)


def _per_neuron(layout: Layout, flat_P: jax.Array) -> jax.Array:
  """Sums of a flat (..., P) array over each neuron's parameters: (..., N)."""
  lead = flat_P.shape[:-1]
  groups: dict[int, jax.Array] = {}
  for offset, shape, sl in zip(layout.leaf_neuron_offset, layout.leaf_shapes, _leaf_slices(layout)):
    units = shape[-1] if shape else 1
    sums = jnp.sum(flat_P[..., sl].reshape(*lead, -1, units), -2, dtype=jnp.float32)
    groups[offset] = groups[offset] + sums if offset in groups else sums
  return jnp.concatenate([groups[o] for o in sorted(groups)], -1)


def _flat(tree: PyTree, lead: int = 0) -> jax.Array:
  """The leaves raveled and concatenated after `lead` leading axes they share."""
  return jnp.concatenate([x.reshape(*x.shape[:lead], -1) for x in jax.tree.leaves(tree)], lead)


def _unflat(flat: jax.Array, like: PyTree, lead: int = 0) -> PyTree:
  """The inverse of `_flat`: a tree like `like` (shapes without the `lead` axes)."""
  leaves, treedef = jax.tree.flatten(like)
  shapes = [np.shape(leaf) for leaf in leaves]
  parts = jnp.split(flat, np.cumsum([math.prod(s) for s in shapes])[:-1].tolist(), axis=lead)
  return treedef.unflatten([a.reshape(*flat.shape[:lead], *s) for a, s in zip(parts, shapes)])


class SetRecord(NamedTuple):
  """What is accumulated for the S evaluation sets (T iterations, P parameters).

  Every field has a leading axis of S sets (`records_to_numpy` splits them);
  per-parameter arrays are flat, in the order of `Layout`.

  Attributes:
    start: loss and flat gradient at the current parameters (the next
      iteration's start point, so each endpoint gradient is computed once);
      with a `LinearStem`, the gradient of the head's parameters only (the
      stem's is carried as `LCAState.stem_dz`).
    loss_T1: L(theta_t), t = 0..T (at theta_t, with the running statistics of
      step t for a stateful model).
    lca_T: sum_i A[t, i], the allocated loss change.
    first_order_T: sum_i of the first-order allocation (for comparison).
    error_T: L(theta_{t+1}) - L(theta_t) - sum_i A[t, i] (same state).
    first_order_error_T: the same error for the first-order allocation.
    splits_T: Simpson intervals used (0 for first order).
    state_change_T: loss change from the model state (BatchNorm statistics)
      alone; 0 for a stateless model. loss change = lca + state change.
    layer_TxL: per-layer sums of A.
    neuron_TxN: per-neuron sums of A.
    helped_T: number of parameters with A[t, i] < 0.
    moved_T: number of parameters with theta_{t+1, i} != theta_{t, i}.
    tracked_TxK: A[t, i] for K tracked parameters.
    total_P: sum_t A[t, i] per parameter.
    helped_count_P: iterations in which each parameter helped (int32).
    moved_count_P: iterations in which each parameter moved (int32).
  """

  start: Point
  loss_T1: jax.Array
  lca_T: jax.Array
  first_order_T: jax.Array
  error_T: jax.Array
  first_order_error_T: jax.Array
  splits_T: jax.Array
  state_change_T: jax.Array
  layer_TxL: jax.Array
  neuron_TxN: jax.Array
  helped_T: jax.Array
  moved_T: jax.Array
  tracked_TxK: jax.Array
  total_P: jax.Array
  helped_count_P: jax.Array
  moved_count_P: jax.Array


class LCAState(NamedTuple):
  """The accumulator's carry: the iteration, tracked parameters and the sets' records.

  Attributes:
    iteration: the next iteration's index t.
    has_start: whether `sets.start` holds the gradient at the current
      parameters (False before the first iteration, which computes it).
    tracked_index_K: flat indices of the parameters whose per-iteration LCA and
      values are kept (for trajectory plots).
    tracked_value_T1xK: their values at theta_0..theta_T.
    sets: the `SetRecord` of all evaluation sets, stacked on a leading axis.
    stem_z: with a `LinearStem`, its output at the current parameters for
      every chunk, (chunks, chunk_size, ...); otherwise a scalar 0.
    stem_dz: with a `LinearStem`, the gradient of each set's mean loss with
      respect to `stem_z` (the start point's, like `sets.start`); otherwise
      a scalar 0.
  """

  iteration: jax.Array
  has_start: jax.Array
  tracked_index_K: jax.Array
  tracked_value_T1xK: jax.Array
  sets: SetRecord
  stem_z: jax.Array
  stem_dz: jax.Array


class LCAAccumulator(NamedTuple):
  """Pure functions of an LCA computation (see `lca_accumulator`).

  Attributes:
    init: `init(params, model_state, eval_set) -> LCAState`.
    update: `update(state, params0, params1, model_state0, model_state1,
      eval_set) -> (state, metrics)`: allocates one iteration.
    layout: the static layer / neuron grouping.
    set_names: names of the evaluation sets, in order.
    num_steps: T, the iterations the per-iteration arrays hold.
  """

  init: Callable[..., LCAState]
  update: Callable[..., tuple[LCAState, dict]]
  layout: Layout
  set_names: tuple[str, ...]
  num_steps: int


# Rounds of the evaluation loop of one iteration; each evaluates the gradient at two points.
_START, _BASE, _REFINE = 0, 1, 2


def lca_accumulator(
  model: FunctionalModel,
  num_steps: int,
  *,
  objective: Objective = CLASSIFICATION,
  set_names: Sequence[str] = ("train", "validation"),
  method: str = "simpson",
  threshold: float = THRESHOLD,
  max_splits: int = MAX_SPLITS,
  num_tracked: int = 64,
  seed: int = 0,
  chunk_sharding=None,
  stream: Callable[[int, jax.Array, jax.Array], None] | None = None,
  stem: LinearStem | None = None,
) -> LCAAccumulator:
  """An LCA accumulator for `model` over a run of `num_steps` iterations.

  Each iteration evaluates full-set gradients in rounds of two points (one
  compiled copy of the gradient, the two points sharing every chunk's
  matrix products, all sets in the same pass): the end point theta_{t+1}
  with the midpoint, then, while some set's |error| exceeds `threshold`, the
  new odd points of the next Simpson level two by two (as in
  `adaptive_simpson`; a set whose error is within the threshold keeps the
  level it reached). The end point's gradient is the next iteration's start,
  so a stateless model needs two points per iteration. The first iteration
  adds a round for the start point (so `init` evaluates nothing).

  Inference mode while evaluating: dropout off. A BatchNorm model is evaluated
  on its running statistics, not per-chunk batch statistics (the original's
  choice), so that the loss is the one the model is evaluated with and does not
  depend on how the set is chunked. The statistics change at every step, so
  iteration t integrates L(., s_{t+1}) (the statistics after the step) from
  theta_t to theta_{t+1}, and the jump L(theta_t, s_{t+1}) - L(theta_t, s_t)
  is recorded apart as `state_change_T` (one extra round per iteration for
  such models; zero and free for stateless ones): the LCA plus the state
  changes add up to the loss change exactly.

  Args:
    model: the model; its `params` define the parameters allocated.
    num_steps: T, the length of the per-iteration records.
    objective: per-example data loss (no weight decay is ever added).
    set_names: names of the evaluation sets of the `EvalSet` passed to
      `init` / `update` (see `make_eval_sets`).
    method: "simpson" (adaptive, the paper's "RK4") or "first_order".
    threshold: |error| per iteration above which Simpson refines (loss units).
    max_splits: Simpson cap, a power of two (2, 4, ..., 32 in the paper).
    num_tracked: parameters whose per-iteration LCA and values are kept.
    seed: picks the tracked parameters.
    chunk_sharding: sharding of a chunk (e.g. `DataParallel.batch`) to split
      the full-set evaluation across devices.
    stream: `stream(set_index, t, lca_P)` called (through `jax.debug.callback`)
      with each iteration's full per-parameter LCA, e.g. an `LCAStream`.
    stem: the model's first layer when it is linear in its parameters (see
      `LinearStem`; verify it with `check_stem`): its output is computed at
      one point per iteration and interpolated at the others, and its
      gradient is integrated as dL/dz, transposed once per iteration. The
      same LCA as without (to float rounding), fewer products. None: every
      point is evaluated through `model.apply`.
  """
  if method not in METHODS:
    raise JaxnnError(f"unknown LCA method {method!r}; choose from {', '.join(METHODS)}")
  if num_steps < 1:
    raise JaxnnError(f"LCA needs at least one iteration, got {num_steps}")
  if not threshold > 0:
    raise JaxnnError(f"the LCA error threshold must be positive, got {threshold}")
  if max_splits < 2 or max_splits & (max_splits - 1):
    raise JaxnnError(f"max splits must be a power of two >= 2 (e.g. 32), got {max_splits}")
  if not set_names:
    raise JaxnnError("LCA needs at least one evaluation set (e.g. the training set)")
  layout = make_layout(model.params)
  set_names = tuple(set_names)
  stateful = bool(jax.tree.leaves(model.state))
  simpson = method == "simpson"
  if stem is None:
    points_loss = _points_loss(model, objective, chunk_sharding)
    P_head = layout.num_params
  elif not isinstance(model.params, dict) or any(k not in model.params for k in stem.keys):
    raise JaxnnError(
      f"the LCA stem's keys {stem.keys} are not top-level keys of the model's "
      "parameters; declare the keys of its first layer, or pass no stem"
    )
  else:
    points_loss = _stem_points_loss(model, stem, objective, chunk_sharding)
    head_like = _split_stem(stem, model.params)[1]
    P_head = sum(math.prod(np.shape(p)) for p in jax.tree.leaves(head_like))
  num_tracked = min(num_tracked, layout.num_params)
  T, S, L, N, K = num_steps, len(set_names), len(layout.layers), layout.num_neurons, num_tracked

  def check_sets(eval_set):
    if not isinstance(eval_set, EvalSet) or eval_set.num_sets != S:
      got = (
        f"{eval_set.num_sets}" if isinstance(eval_set, EvalSet) else f"a {type(eval_set).__name__}"
      )
      raise JaxnnError(
        f"LCA was set up for {S} evaluation sets {set_names}, got {got}; pass "
        "make_eval_sets([...]) of that many splits"
      )

  def init(params, model_state, eval_set) -> LCAState:
    del model_state  # The first update evaluates the start point.
    check_sets(eval_set)
    index_K = jnp.asarray(
      np.sort(np.random.default_rng(seed).choice(layout.num_params, K, replace=False)), jnp.int32
    )
    f = lambda *shape: jnp.zeros((S, *shape), jnp.float32)
    i = lambda *shape: jnp.zeros((S, *shape), jnp.int32)
    P = layout.num_params
    sets = SetRecord(
      Point(f(), f(P_head)),
      f(T + 1),
      f(T),
      f(T),
      f(T),
      f(T),
      i(T),
      f(T),
      f(T, L),
      f(T, N),
      i(T),
      i(T),
      f(T, K),
      f(P),
      i(P),
      i(P),
    )
    values = jnp.zeros((T + 1, K), jnp.float32).at[0].set(_flat(params)[index_K])
    stem_z = stem_dz = jnp.zeros((), jnp.float32)  # unused (Orbax saves no empty arrays)
    if stem is not None:
      z = jax.eval_shape(stem.apply, _split_stem(stem, params)[0], eval_set.x[0])
      stem_z = stem_dz = jnp.zeros((eval_set.x.shape[0], *z.shape), jnp.float32)
    return LCAState(
      jnp.zeros((), jnp.int32), jnp.zeros((), bool), index_K, values, sets, stem_z, stem_dz
    )

  def evaluate(state: LCAState, params0, delta, model_state0, model_state1, eval_set):
    """Start and end points and the allocation, per set, in rounds of two gradient points.

    Everything but the model's evaluation works on flat (S, P) arrays: fewer
    operations to compile than one per parameter leaf. A point's gradient is
    a tuple: the flat gradient (of the head's parameters with a stem), and
    with a stem dL/dz per chunk, (chunks, chunk_size, ...), which is
    integrated the same way; `a_dz` is the integrated dL/dz of each set's
    chunks at the level where the set stopped. Returns the loop's last carry
    and, with a stem, its output at the end point and the change of its
    output over the step (None without).
    """
    delta_P = _flat(delta if stem is None else _split_stem(stem, delta)[1])
    need_start = jnp.asarray(True) if stateful else ~state.has_start
    new_old = jax.tree.map(lambda a, b: jnp.stack([a, b]), model_state1, model_state0)
    new_new = jax.tree.map(lambda a: jnp.stack([a, a]), model_state1)
    zeros = jnp.zeros((S, P_head), jnp.float32)
    grad0 = (state.sets.start.grad,) if stem is None else (state.sets.start.grad, state.stem_dz)
    zero_grad = jax.tree.map(jnp.zeros_like, grad0)
    chunk_set = lambda v_S, a_C: v_S[eval_set.set_C].reshape(-1, *(1,) * (a_C.ndim - 1))
    z0 = z1 = dz = None
    if stem is not None:  # The stem's output at the step's ends (the start's carried over).
      stem_apply = lambda p: _stem_apply(stem, _split_stem(stem, p)[0], eval_set, chunk_sharding)
      z1 = stem_apply(jax.tree.map(jnp.add, params0, delta))
      z0 = jax.lax.cond(state.has_start, lambda: state.stem_z, lambda: stem_apply(params0))
      dz = z1 - z0

    def body(c):
      at_start, at_base, at_refine = (c["round"] == r for r in (_START, _BASE, _REFINE))
      n = 2 * c["splits"]  # the level being refined
      s = jnp.select(
        [at_start, at_base],
        [jnp.zeros(2), jnp.asarray([1.0, 0.5])],
        jnp.stack([4 * c["pair"] + 1, 4 * c["pair"] + 3]) / jnp.maximum(n, 1),
      )
      params_X = jax.tree.map(
        lambda a, d: a[None] + s.reshape(2, *(1,) * a.ndim).astype(a.dtype) * d[None],
        params0,
        delta,
      )
      model_state_X = jax.tree.map(lambda a, b: jnp.where(at_start, a, b), new_old, new_new)
      if stem is None:
        point = points_loss(params_X, model_state_X, eval_set)
        grad_X = (_flat(point.grad, 2).astype(jnp.float32),)
      else:  # The stem's output interpolated between the step's ends.
        point, dz_X = points_loss(params_X, model_state_X, eval_set, s, z0, z1)
        grad_X = (_flat(point.grad, 2).astype(jnp.float32), dz_X.astype(jnp.float32))
      loss_XxS = point.loss
      pick = lambda cond, x, old: jax.tree.map(lambda g, o: jnp.where(cond, g[x], o), grad_X, old)
      start = Point(
        jnp.where(at_start, loss_XxS[0], c["start"].loss), pick(at_start, 0, c["start"].grad)
      )
      # L(theta_t, s_t): the carried start, or from the start round of the first iteration.
      prev_loss = jnp.where(
        at_start & ~state.has_start, loss_XxS[1 if stateful else 0], c["prev_loss"]
      )
      end = Point(jnp.where(at_base, loss_XxS[0], c["end"].loss), pick(at_base, 0, c["end"].grad))
      new_odd = jax.tree.map(
        lambda a, g: a + jnp.where(at_refine, g[0] + g[1], 0.0), c["new_odd"], grad_X
      )
      pair = c["pair"] + at_refine.astype(jnp.int32)
      refined = at_refine & (pair == n // 4)
      level_done = at_base | refined
      even = jax.tree.map(lambda e, o: jnp.where(refined, e + o, e), c["even"], c["odd"])
      odd = jax.tree.map(
        lambda g, o, a: jnp.where(at_base, g[1], jnp.where(refined, a, o)),
        grad_X,
        c["odd"],
        new_odd,
      )
      new_odd = jax.tree.map(lambda a: jnp.where(refined, 0.0, a), new_odd)
      splits = jnp.where(at_base, 2, jnp.where(refined, n, c["splits"]))
      pair = jnp.where(refined, 0, pair)
      if simpson:
        mean = jax.tree.map(
          lambda a, b, o, e: (a + b + 4.0 * o + 2.0 * e) / (3.0 * splits),
          start.grad,
          end.grad,
          odd,
          even,
        )
      else:
        mean = start.grad
      lca = mean[0] * delta_P[None]
      lca_sum = jnp.sum(lca, 1)
      if stem is not None:  # sum of the stem's LCA: <z(theta_{t+1}) - z(theta_t), mean dL/dz>
        lca_sum = lca_sum + _stem_sum(eval_set, dz, mean[1])
      error = end.loss - start.loss - lca_sum
      update_S = level_done & ~c["done_S"]
      done = c["done_S"] | (
        level_done & ((jnp.abs(error) <= threshold) | (splits >= max_splits) | (not simpson))
      )
      a_dz = c["a_dz"]
      if stem is not None:
        a_dz = jnp.where(chunk_set(update_S, a_dz), mean[1], a_dz)
      return dict(
        round=jnp.where(at_start, _BASE, _REFINE).astype(jnp.int32),
        pair=pair,
        splits=splits,
        start=start,
        prev_loss=prev_loss,
        end=end,
        odd=odd,
        even=even,
        new_odd=new_odd,
        lca=jnp.where(update_S[:, None], lca, c["lca"]),
        a_dz=a_dz,
        error_S=jnp.where(update_S, error, c["error_S"]),
        splits_S=jnp.where(update_S, splits if simpson else 0, c["splits_S"]),
        done_S=done,
      )

    start = Point(state.sets.start.loss, grad0)
    init_carry = dict(
      round=jnp.where(need_start, _START, _BASE).astype(jnp.int32),
      pair=jnp.zeros((), jnp.int32),
      splits=jnp.zeros((), jnp.int32),
      start=start,
      prev_loss=start.loss,
      end=start,
      odd=zero_grad,
      even=zero_grad,
      new_odd=zero_grad,
      lca=zeros,
      a_dz=state.stem_dz,
      error_S=jnp.zeros(S, jnp.float32),
      splits_S=jnp.zeros(S, jnp.int32),
      done_S=jnp.zeros(S, bool),
    )
    return jax.lax.while_loop(lambda c: ~jnp.all(c["done_S"]), body, init_carry), z1, dz

  def update(state: LCAState, params0, params1, model_state0, model_state1, eval_set):
    check_sets(eval_set)
    t = state.iteration
    rec = state.sets
    delta = jax.tree.map(jnp.subtract, params1, params0)
    c, z1, dz = evaluate(state, params0, delta, model_state0, model_state1, eval_set)
    start, end = c["start"], c["end"]
    delta_P = _flat(delta)
    if stem is None:
      lca_SxP = c["lca"]
      first_sum = start.grad[0] @ delta_P
    else:  # The stem's LCA: dtheta_stem * A_x^T(integrated dL/dz), one transpose per chunk.
      stem_delta, head_delta = _split_stem(stem, delta)
      stem_grad = _stem_transpose(
        stem, _split_stem(stem, params0)[0], eval_set, c["a_dz"], chunk_sharding
      )
      stem_lca = jax.tree.map(lambda g, d: g * d[None], stem_grad, stem_delta)
      lca_SxP = _flat({**stem_lca, **_unflat(c["lca"], head_like, 1)}, 1).astype(jnp.float32)
      first_sum = start.grad[0] @ _flat(head_delta) + _stem_sum(eval_set, dz, start.grad[1])
    state_change = start.loss - c["prev_loss"] if stateful else jnp.zeros(S, jnp.float32)
    first_error = end.loss - start.loss - first_sum
    moved_P = delta_P != 0
    helped_SxP = lca_SxP < 0
    helped_S = jnp.sum(helped_SxP, 1, dtype=jnp.int32)
    lca_sum = jnp.sum(lca_SxP, 1)
    if stream is not None:
      for i in range(S):
        jax.debug.callback(stream, i, t, lca_SxP[i])  # rows by index: any order, any devices
    put = lambda arr, v: arr.at[:, t].set(v, mode="drop")
    loss_T1 = jnp.where(state.has_start, rec.loss_T1, rec.loss_T1.at[:, 0].set(c["prev_loss"]))
    sets = SetRecord(
      start=Point(end.loss, end.grad[0]),
      loss_T1=loss_T1.at[:, t + 1].set(end.loss, mode="drop"),
      lca_T=put(rec.lca_T, lca_sum),
      first_order_T=put(rec.first_order_T, first_sum),
      error_T=put(rec.error_T, c["error_S"]),
      first_order_error_T=put(rec.first_order_error_T, first_error),
      splits_T=put(rec.splits_T, c["splits_S"]),
      state_change_T=put(rec.state_change_T, state_change),
      layer_TxL=put(rec.layer_TxL, _per_layer(layout, lca_SxP)),
      neuron_TxN=put(rec.neuron_TxN, _per_neuron(layout, lca_SxP)),
      helped_T=put(rec.helped_T, helped_S),
      moved_T=put(rec.moved_T, jnp.broadcast_to(jnp.sum(moved_P, dtype=jnp.int32), (S,))),
      tracked_TxK=put(rec.tracked_TxK, lca_SxP[:, state.tracked_index_K]),
      total_P=rec.total_P + lca_SxP,
      helped_count_P=rec.helped_count_P + helped_SxP,
      moved_count_P=rec.moved_count_P + moved_P[None],
    )
    metrics = {}
    for i, name in enumerate(set_names):
      metrics.update(
        {
          f"lca_{name}_loss": end.loss[i],
          f"lca_{name}_sum": lca_sum[i],
          f"lca_{name}_abs_error": jnp.abs(c["error_S"][i]),
          f"lca_{name}_splits": c["splits_S"][i].astype(jnp.float32),
          f"lca_{name}_helped": helped_S[i] / layout.num_params,
        }
      )
    values = state.tracked_value_T1xK.at[t + 1].set(
      _flat(params1)[state.tracked_index_K], mode="drop"
    )
    stem_dz = state.stem_dz if stem is None else end.grad[1]
    return LCAState(
      t + 1, jnp.ones((), bool), state.tracked_index_K, values, sets, z1, stem_dz
    ), metrics

  return LCAAccumulator(init, update, layout, set_names, num_steps)


def with_lca(train_step: Callable, accumulator: LCAAccumulator) -> Callable:
  """Wraps `train_step(state, x, y)` into `step((state, lca_state), x, y, eval_set)`.

  The result is what `jaxnn.train.run_loop` drives, with the `EvalSet` passed
  as its `extra_args`: the carry `(TrainState, LCAState)` is checkpointed and
  resumed like any other.
  """

  def step(carry, x, y, eval_set):
    state, lca_state = carry
    new_state, metrics = train_step(state, x, y)
    lca_state, lca_metrics = accumulator.update(
      lca_state, state.params, new_state.params, state.model_state, new_state.model_state, eval_set
    )
    return (new_state, lca_state), {**metrics, **lca_metrics}

  return step

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
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn._errors import JaxnnError
from jaxnn.data import Split
from jaxnn.lca._integrate import (MAX_SPLITS, THRESHOLD, Allocation, Point, adaptive_simpson,
                                  first_order, tree_sum)
from jaxnn.train import CLASSIFICATION, FunctionalModel, Objective

PyTree = Any
METHODS = ("simpson", "first_order")


class EvalSet(NamedTuple):
  """A whole evaluation set cut into equal chunks, padded with mask 0.

  Attributes:
    x: inputs, shape (chunks, chunk_size, ...).
    y: targets, shape (chunks, chunk_size, ...).
    mask: 1 for real examples, 0 for padding, shape (chunks, chunk_size).
  """

  x: np.ndarray
  y: np.ndarray
  mask: np.ndarray


def make_eval_set(split: Split, chunk_size: int = 1000, num_devices: int = 1) -> EvalSet:
  """Cuts `split` into chunks for full-set gradients (a chunk's activations bound the memory).

  Args:
    split: the examples (a whole split, or a fixed subset the user picked).
    chunk_size: the most examples per chunk; the chunks are balanced (3,600
      examples in chunks of at most 1,000 make 4 chunks of 900) and rounded up
      to a multiple of `num_devices`.
    num_devices: devices a chunk is split across.
  """
  n = len(split)
  if n == 0:
    raise JaxnnError("an LCA evaluation set is empty; pass a split with examples "
                     "(or no validation set)")
  if chunk_size < 1:
    raise JaxnnError(f"chunk size must be positive, got {chunk_size}")
  chunks = -(-n // min(chunk_size, n))
  chunk = -(-n // (chunks * num_devices)) * num_devices  # balanced: padding < chunks * devices
  pad = chunks * chunk - n
  pad_rows = lambda a: np.concatenate([a, np.zeros((pad, *a.shape[1:]), a.dtype)]) if pad else a
  mask = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
  shape = lambda a: a.reshape(chunks, chunk, *a.shape[1:])
  return EvalSet(shape(pad_rows(split.x)), shape(pad_rows(split.y)), shape(mask))


def full_set_loss(model: FunctionalModel, objective: Objective = CLASSIFICATION,
                  chunk_sharding=None) -> Callable[[PyTree, PyTree, EvalSet], Point]:
  """`value_and_grad(params, model_state, eval_set) -> Point` of the mean data loss.

  One chunk at a time (`lax.scan` over chunks, each with its own backward
  pass), so memory is that of one chunk. Inference mode: `train=False`, no
  dropout key. `chunk_sharding` (e.g. `DataParallel.batch`) splits each chunk
  across devices.
  """

  def chunk_loss(params, model_state, x, y, mask):
    outputs, _ = model.apply(params, model_state, x, False, None)
    return jnp.sum(objective.loss(outputs, y) * mask)

  grad_chunk = jax.value_and_grad(chunk_loss)

  def value_and_grad(params, model_state, eval_set: EvalSet) -> Point:
    def body(acc, chunk):
      x, y, mask = chunk
      if chunk_sharding is not None:
        x, y, mask = (jax.lax.with_sharding_constraint(a, chunk_sharding) for a in (x, y, mask))
      loss, grad = grad_chunk(params, model_state, x, y, mask)
      return jax.tree.map(jnp.add, acc, (loss, grad)), None

    zero = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, params))
    (loss, grad), _ = jax.lax.scan(body, zero, eval_set)
    count = jnp.sum(eval_set.mask)
    return Point(loss / count, jax.tree.map(lambda g: g / count.astype(g.dtype), grad))

  return value_and_grad


def _key_name(key) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def layer_names(params: PyTree) -> list[str]:
  """The layer of each leaf: its path without the last key ("dense0" for dense0/kernel)."""
  paths = [tuple(_key_name(k) for k in path) for path, _ in jax.tree_util.tree_leaves_with_path(params)]
  return ["/".join(p[:-1]) if len(p) > 1 else (p[0] if p else "params") for p in paths]


@dataclasses.dataclass(frozen=True)
class Layout:
  """Static grouping of the parameters into layers and neurons.

  A neuron is an output unit of a layer (the last axis of its kernel): its LCA
  is the sum over its incoming weights and its bias, as in the paper's
  neuron x iteration view. Leaves whose last axis differs from the layer's
  first leaf form their own group of neurons.
  """

  layers: tuple[str, ...]  # distinct layer names, in parameter order
  leaf_layer: tuple[int, ...]  # layer index of each leaf
  leaf_neuron_offset: tuple[int, ...]  # first neuron of each leaf's units
  neuron_layer: tuple[int, ...]  # layer index of each neuron
  num_params: int

  @property
  def num_neurons(self) -> int:
    return len(self.neuron_layer)


def make_layout(params: PyTree) -> Layout:
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
  return Layout(layers, tuple(layers.index(n) for n in names), tuple(offsets), tuple(neuron_layer),
                sum(math.prod(jnp.shape(p)) for p in leaves))


def _per_layer(layout: Layout, tree: PyTree) -> jax.Array:
  out = jnp.zeros(len(layout.layers), jnp.float32)
  for layer, leaf in zip(layout.leaf_layer, jax.tree.leaves(tree)):
    out = out.at[layer].add(jnp.sum(leaf, dtype=jnp.float32))
  return out


def _per_neuron(layout: Layout, tree: PyTree) -> jax.Array:
  out = jnp.zeros(layout.num_neurons, jnp.float32)
  for offset, leaf in zip(layout.leaf_neuron_offset, jax.tree.leaves(tree)):
    units = leaf.reshape(-1, leaf.shape[-1]).sum(0, dtype=jnp.float32) if leaf.ndim else leaf[None]
    out = out.at[offset:offset + units.shape[0]].add(units)
  return out


def _flat(tree: PyTree) -> jax.Array:
  return jnp.concatenate([jnp.ravel(x).astype(jnp.float32) for x in jax.tree.leaves(tree)])


class SetRecord(NamedTuple):
  """What is accumulated for one evaluation set (T iterations, P parameters).

  Attributes:
    start: loss and gradient at the current parameters (the next iteration's
      start point, so each endpoint gradient is computed once).
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
    total: sum_t A[t, i] per parameter (pytree like the parameters).
    helped_count: iterations in which each parameter helped (int32 pytree).
    moved_count: iterations in which each parameter moved (int32 pytree).
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
  total: PyTree
  helped_count: PyTree
  moved_count: PyTree


class LCAState(NamedTuple):
  """The accumulator's carry: the iteration, tracked parameters and one record per set.

  Attributes:
    iteration: the next iteration's index t.
    tracked_index_K: flat indices of the parameters whose per-iteration LCA and
      values are kept (for trajectory plots).
    tracked_value_T1xK: their values at theta_0..theta_T.
    sets: one `SetRecord` per evaluation set.
  """

  iteration: jax.Array
  tracked_index_K: jax.Array
  tracked_value_T1xK: jax.Array
  sets: tuple[SetRecord, ...]


class LCAAccumulator(NamedTuple):
  """Pure functions of an LCA computation (see `lca_accumulator`).

  Attributes:
    init: `init(params, model_state, eval_sets) -> LCAState`.
    update: `update(state, params0, params1, model_state0, model_state1,
      eval_sets) -> (state, metrics)`: allocates one iteration.
    layout: the static layer / neuron grouping.
    set_names: names of the evaluation sets, in order.
    num_steps: T, the iterations the per-iteration arrays hold.
  """

  init: Callable[..., LCAState]
  update: Callable[..., tuple[LCAState, dict]]
  layout: Layout
  set_names: tuple[str, ...]
  num_steps: int


def lca_accumulator(model: FunctionalModel, num_steps: int, *,
                    objective: Objective = CLASSIFICATION,
                    set_names: Sequence[str] = ("train", "validation"), method: str = "simpson",
                    threshold: float = THRESHOLD, max_splits: int = MAX_SPLITS,
                    num_tracked: int = 64, seed: int = 0, chunk_sharding=None,
                    stream: Callable[[int, jax.Array, jax.Array], None] | None = None
                    ) -> LCAAccumulator:
  """An LCA accumulator for `model` over a run of `num_steps` iterations.

  Inference mode while evaluating: dropout off. A BatchNorm model is evaluated
  on its running statistics, not per-chunk batch statistics (the original's
  choice), so that the loss is the one the model is evaluated with and does not
  depend on how the set is chunked. The statistics change at every step, so
  iteration t integrates L(., s_{t+1}) (the statistics after the step) from
  theta_t to theta_{t+1}, and the jump L(theta_t, s_{t+1}) - L(theta_t, s_t)
  is recorded apart as `state_change_T` (one extra gradient per iteration for
  such models; zero and free for stateless ones): the LCA plus the state
  changes add up to the loss change exactly.

  Args:
    model: the model; its `params` define the parameters allocated.
    num_steps: T, the length of the per-iteration records.
    objective: per-example data loss (no weight decay is ever added).
    set_names: names of the evaluation sets passed to `init` / `update`.
    method: "simpson" (adaptive, the paper's "RK4") or "first_order".
    threshold: |error| per iteration above which Simpson refines (loss units).
    max_splits: Simpson cap, a power of two (2, 4, ..., 32 in the paper).
    num_tracked: parameters whose per-iteration LCA and values are kept.
    seed: picks the tracked parameters.
    chunk_sharding: sharding of a chunk (e.g. `DataParallel.batch`) to split
      the full-set evaluation across devices.
    stream: `stream(set_index, t, lca_P)` called (through `jax.debug.callback`)
      with each iteration's full per-parameter LCA, e.g. an `LCAStream`.
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
  value_and_grad = full_set_loss(model, objective, chunk_sharding)
  num_tracked = min(num_tracked, layout.num_params)
  T, L, N, K = num_steps, len(layout.layers), layout.num_neurons, num_tracked

  def check_sets(eval_sets):
    if len(eval_sets) != len(set_names):
      raise JaxnnError(f"LCA was set up for {len(set_names)} evaluation sets {set_names}, "
                       f"got {len(eval_sets)}")

  def init(params, model_state, eval_sets) -> LCAState:
    check_sets(eval_sets)
    index_K = jnp.asarray(np.sort(np.random.default_rng(seed).choice(
        layout.num_params, K, replace=False)), jnp.int32)
    zeros_int = lambda: jax.tree.map(lambda p: jnp.zeros(jnp.shape(p), jnp.int32), params)

    def record(eval_set):
      start = value_and_grad(params, model_state, eval_set)
      f = lambda *shape: jnp.zeros(shape, jnp.float32)
      return SetRecord(start, f(T + 1).at[0].set(start.loss), f(T), f(T), f(T), f(T),
                       jnp.zeros(T, jnp.int32), f(T), f(T, L), f(T, N), jnp.zeros(T, jnp.int32),
                       jnp.zeros(T, jnp.int32), f(T, K), jax.tree.map(jnp.zeros_like, params),
                       zeros_int(), zeros_int())

    values = jnp.zeros((T + 1, K), jnp.float32).at[0].set(_flat(params)[index_K])
    return LCAState(jnp.zeros((), jnp.int32), index_K, values,
                    tuple(record(s) for s in eval_sets))

  def allocate(rec: SetRecord, params0, params1, model_state1, eval_set):
    vg = lambda p: value_and_grad(p, model_state1, eval_set)
    end = vg(params1)
    start = vg(params0) if stateful else rec.start
    state_change = start.loss - rec.start.loss if stateful else jnp.zeros((), jnp.float32)
    if method == "simpson":
      alloc = adaptive_simpson(vg, params0, params1, start, end, threshold, max_splits)
    else:
      alloc = first_order(params0, params1, start, end.loss)
    first = alloc if method == "first_order" else first_order(params0, params1, start, end.loss)
    return end, state_change, alloc, first

  def update(state: LCAState, params0, params1, model_state0, model_state1, eval_sets):
    del model_state0  # The state change is measured from the carried start point.
    check_sets(eval_sets)
    t = state.iteration
    moved = jax.tree.map(lambda a, b: (a != b), params0, params1)
    num_moved = tree_sum(jax.tree.map(lambda m: m.astype(jnp.int32), moved)).astype(jnp.int32)
    records, metrics = [], {}
    for i, (rec, eval_set) in enumerate(zip(state.sets, eval_sets)):
      end, state_change, alloc, first = allocate(rec, params0, params1, model_state1, eval_set)
      helped = jax.tree.map(lambda a: a < 0, alloc.lca)
      num_helped = tree_sum(jax.tree.map(lambda h: h.astype(jnp.int32), helped)).astype(jnp.int32)
      lca_P = _flat(alloc.lca)
      if stream is not None:
        jax.debug.callback(stream, i, t, lca_P, ordered=True)
      put = lambda arr, v: arr.at[t].set(v, mode="drop")
      lca_sum = tree_sum(alloc.lca)
      records.append(SetRecord(
          start=end, loss_T1=rec.loss_T1.at[t + 1].set(end.loss, mode="drop"),
          lca_T=put(rec.lca_T, lca_sum), first_order_T=put(rec.first_order_T, tree_sum(first.lca)),
          error_T=put(rec.error_T, alloc.error),
          first_order_error_T=put(rec.first_order_error_T, first.error),
          splits_T=put(rec.splits_T, alloc.splits), state_change_T=put(rec.state_change_T, state_change),
          layer_TxL=put(rec.layer_TxL, _per_layer(layout, alloc.lca)),
          neuron_TxN=put(rec.neuron_TxN, _per_neuron(layout, alloc.lca)),
          helped_T=put(rec.helped_T, num_helped), moved_T=put(rec.moved_T, num_moved),
          tracked_TxK=put(rec.tracked_TxK, lca_P[state.tracked_index_K]),
          total=jax.tree.map(jnp.add, rec.total, alloc.lca),
          helped_count=jax.tree.map(lambda c, h: c + h.astype(jnp.int32), rec.helped_count, helped),
          moved_count=jax.tree.map(lambda c, m: c + m.astype(jnp.int32), rec.moved_count, moved)))
      name = set_names[i]
      metrics.update({f"lca_{name}_loss": end.loss, f"lca_{name}_sum": lca_sum,
                      f"lca_{name}_abs_error": jnp.abs(alloc.error),
                      f"lca_{name}_splits": alloc.splits.astype(jnp.float32),
                      f"lca_{name}_helped": num_helped / layout.num_params})
    values = state.tracked_value_T1xK.at[t + 1].set(_flat(params1)[state.tracked_index_K],
                                                    mode="drop")
    return LCAState(t + 1, state.tracked_index_K, values, tuple(records)), metrics

  return LCAAccumulator(init, update, layout, set_names, num_steps)


def with_lca(train_step: Callable, accumulator: LCAAccumulator) -> Callable:
  """Wraps `train_step(state, x, y)` into `step((state, lca_state), x, y, *eval_sets)`.

  The result is what `jaxnn.train.run_loop` drives, with the evaluation sets
  passed as its `extra_args`: the carry `(TrainState, LCAState)` is
  checkpointed and resumed like any other.
  """

  def step(carry, x, y, *eval_sets):
    state, lca_state = carry
    new_state, metrics = train_step(state, x, y)
    lca_state, lca_metrics = accumulator.update(lca_state, state.params, new_state.params,
                                                state.model_state, new_state.model_state,
                                                eval_sets)
    return (new_state, lca_state), {**metrics, **lca_metrics}

  return step

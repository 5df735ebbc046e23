"""LCA computed during training: an accumulator wrapped around any train step.

The accumulator sees the parameters before and after each optimizer step (never
the optimizer's internals), so it works for any model given as a
`FunctionalModel` and any optax optimizer. The gradients it integrates are of
the data loss (the objective's per-example loss, no weight decay) over whole
evaluation sets (`make_eval_sets`: the full training set or a fixed subset, and
the validation set), evaluated in chunks inside the jitted step
(`full_set_loss`), in inference mode: dropout off, BatchNorm on its running
statistics (see `lca_accumulator`). Each iteration is one `refine_simpson`
loop, the package's adaptive Simpson rule, over all sets at once.

Nothing of size (iterations x parameters) is kept: `LCAState` holds per-
iteration summaries (per-layer and per-neuron sums, fraction of parameters that
helped, integration error) and per-parameter totals. `LCAStream` writes the full
per-parameter array to disk, one row per iteration, when asked.

References:
  Lan, Liu, Zhou, Yosinski. "LCA: Loss Change Allocation for Neural Network
  Training", NeurIPS 2019. https://arxiv.org/abs/1909.01440
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn._errors import JaxnnError
from jaxnn.lca._eval_sets import EvalSet
from jaxnn.lca._full_set import points_loss
from jaxnn.lca._integrate import MAX_SPLITS, THRESHOLD, Point, refine_simpson
from jaxnn.lca._layout import Layout, flat, make_layout, per_layer, per_neuron, unflat
from jaxnn.lca._stem import (
  LinearStem,
  split_stem,
  stem_apply,
  stem_points_loss,
  stem_sum,
  stem_transpose,
)
from jaxnn.train import CLASSIFICATION, FunctionalModel, Objective

PyTree = Any
#: Integrators of the path integral: adaptive Simpson (the paper's) and first order.
METHODS = ("simpson", "first_order")


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
  layer_order: Sequence[str] | None = None,
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
  layout = make_layout(model.params, layer_order)
  set_names = tuple(set_names)
  stateful = bool(jax.tree.leaves(model.state))
  simpson = method == "simpson"
  if stem is None:
    plain_points = points_loss(model, objective, chunk_sharding)
    P_head = layout.num_params
  elif not isinstance(model.params, dict) or any(k not in model.params for k in stem.keys):
    raise JaxnnError(
      f"the LCA stem's keys {stem.keys} are not top-level keys of the model's "
      "parameters; declare the keys of its first layer, or pass no stem"
    )
  else:
    head_points = stem_points_loss(model, stem, objective, chunk_sharding)
    head_like = split_stem(stem, model.params)[1]
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
    values = jnp.zeros((T + 1, K), jnp.float32).at[0].set(flat(params)[index_K])
    stem_z = stem_dz = jnp.zeros((), jnp.float32)  # unused (Orbax saves no empty arrays)
    if stem is not None:
      z = jax.eval_shape(stem.apply, split_stem(stem, params)[0], eval_set.x[0])
      stem_z = stem_dz = jnp.zeros((eval_set.x.shape[0], *z.shape), jnp.float32)
    return LCAState(
      jnp.zeros((), jnp.int32), jnp.zeros((), bool), index_K, values, sets, stem_z, stem_dz
    )

  def integrate(state: LCAState, params0, delta, model_state0, model_state1, eval_set):
    """The step's `refine_simpson` loop over all sets, in rounds of two gradient points.

    Everything but the model's evaluation works on flat (S, P) arrays: fewer
    operations to compile than one per parameter leaf. A point's gradient is
    a tuple: the flat gradient (of the head's parameters with a stem), and
    with a stem dL/dz per chunk, (chunks, chunk_size, ...), integrated the
    same way (its mean, where a set stopped, is what the stem's transpose
    turns into the stem's LCA). Returns the loop's last carry and, with a
    stem, its output at the end point and the change of its output over the
    step (None without).
    """
    delta_P = flat(delta if stem is None else split_stem(stem, delta)[1])
    new_old = jax.tree.map(lambda a, b: jnp.stack([a, b]), model_state1, model_state0)
    new_new = jax.tree.map(lambda a: jnp.stack([a, a]), model_state1)
    z0 = z1 = dz = None
    if stem is not None:  # The stem's output at the step's ends (the start's carried over).
      apply = lambda p: stem_apply(stem, split_stem(stem, p)[0], eval_set, chunk_sharding)
      z1 = apply(jax.tree.map(jnp.add, params0, delta))
      z0 = jax.lax.cond(state.has_start, lambda: state.stem_z, lambda: apply(params0))
      dz = z1 - z0

    def points(s_X, at_start):
      """The loss and gradient of every set at theta_t + s_X dtheta (the start round: the
      start point with the state after the step, then before it)."""
      params_X = jax.tree.map(
        lambda a, d: a[None] + s_X.reshape(2, *(1,) * a.ndim).astype(a.dtype) * d[None],
        params0,
        delta,
      )
      model_state_X = jax.tree.map(lambda a, b: jnp.where(at_start, a, b), new_old, new_new)
      if stem is None:
        point = plain_points(params_X, model_state_X, eval_set)
        return Point(point.loss, (flat(point.grad, 2).astype(jnp.float32),))
      point, dz_X = head_points(params_X, model_state_X, eval_set, s_X, z0, z1)
      return Point(point.loss, (flat(point.grad, 2).astype(jnp.float32), dz_X.astype(jnp.float32)))

    def allocated(mean):
      total = jnp.sum(mean[0] * delta_P[None], 1)
      if stem is not None:  # the stem's LCA summed: <z(theta_{t+1}) - z(theta_t), mean dL/dz>
        total = total + stem_sum(eval_set, dz, mean[1])
      return total

    def select(update_S, new, old):
      kept = (jnp.where(update_S[:, None], new[0], old[0]),)
      if stem is not None:  # dL/dz per chunk: the set of each chunk
        chunk_S = update_S[eval_set.set_C].reshape(-1, *(1,) * (new[1].ndim - 1))
        kept += (jnp.where(chunk_S, new[1], old[1]),)
      return kept

    start_grad = (
      (state.sets.start.grad,) if stem is None else (state.sets.start.grad, state.stem_dz)
    )
    loop = refine_simpson(
      points,
      Point(state.sets.start.loss, start_grad),
      allocated,
      need_start=jnp.asarray(True) if stateful else ~state.has_start,
      threshold=threshold,
      max_splits=max_splits if simpson else 2,  # first order: the end point, no refinement
      select=select,
    )
    return loop, z1, dz

  def update(state: LCAState, params0, params1, model_state0, model_state1, eval_set):
    check_sets(eval_set)
    t = state.iteration
    rec = state.sets
    delta = jax.tree.map(jnp.subtract, params1, params0)
    loop, z1, dz = integrate(state, params0, delta, model_state0, model_state1, eval_set)
    start, end = loop.start, loop.end
    # L(theta_t, s_t): the carried start, or the start round's with the state before the step.
    prev_loss = jnp.where(state.has_start, rec.start.loss, loop.start_losses[1 if stateful else 0])
    delta_P = flat(delta)
    if stem is None:
      first_sum = start.grad[0] @ delta_P
    else:
      stem_delta, head_delta = split_stem(stem, delta)
      first_sum = start.grad[0] @ flat(head_delta) + stem_sum(eval_set, dz, start.grad[1])
    first_error = end.loss - start.loss - first_sum
    mean, error_S, splits_S = loop.mean, loop.error, loop.splits_done
    if not simpson:
      mean, error_S, splits_S = start.grad, first_error, jnp.zeros(S, jnp.int32)
    if stem is None:
      lca_SxP = mean[0] * delta_P[None]
    else:  # The stem's LCA: dtheta_stem * A_x^T(integrated dL/dz), one transpose per chunk.
      stem_grad = stem_transpose(
        stem, split_stem(stem, params0)[0], eval_set, mean[1], chunk_sharding
      )
      stem_lca = jax.tree.map(lambda g, d: g * d[None], stem_grad, stem_delta)
      head_lca = mean[0] * flat(head_delta)[None]
      lca_SxP = flat({**stem_lca, **unflat(head_lca, head_like, 1)}, 1).astype(jnp.float32)
    state_change = start.loss - prev_loss if stateful else jnp.zeros(S, jnp.float32)
    moved_P = delta_P != 0
    helped_SxP = lca_SxP < 0
    helped_S = jnp.sum(helped_SxP, 1, dtype=jnp.int32)
    lca_sum = jnp.sum(lca_SxP, 1)
    if stream is not None:
      for i in range(S):
        jax.debug.callback(stream, i, t, lca_SxP[i])  # rows by index: any order, any devices
    put = lambda arr, v: arr.at[:, t].set(v, mode="drop")
    loss_T1 = jnp.where(state.has_start, rec.loss_T1, rec.loss_T1.at[:, 0].set(prev_loss))
    sets = SetRecord(
      start=Point(end.loss, end.grad[0]),
      loss_T1=loss_T1.at[:, t + 1].set(end.loss, mode="drop"),
      lca_T=put(rec.lca_T, lca_sum),
      first_order_T=put(rec.first_order_T, first_sum),
      error_T=put(rec.error_T, error_S),
      first_order_error_T=put(rec.first_order_error_T, first_error),
      splits_T=put(rec.splits_T, splits_S),
      state_change_T=put(rec.state_change_T, state_change),
      layer_TxL=put(rec.layer_TxL, per_layer(layout, lca_SxP)),
      neuron_TxN=put(rec.neuron_TxN, per_neuron(layout, lca_SxP)),
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
          f"lca_{name}_abs_error": jnp.abs(error_S[i]),
          f"lca_{name}_splits": splits_S[i].astype(jnp.float32),
          f"lca_{name}_helped": helped_S[i] / layout.num_params,
        }
      )
    values = state.tracked_value_T1xK.at[t + 1].set(
      flat(params1)[state.tracked_index_K], mode="drop"
    )
    stem_z, stem_dz = (state.stem_z, state.stem_dz) if stem is None else (z1, end.grad[1])
    return LCAState(
      t + 1, jnp.ones((), bool), state.tracked_index_K, values, sets, stem_z, stem_dz
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

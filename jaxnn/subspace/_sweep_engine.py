"""Many training configs as one compiled program, spread across devices.

A sweep's configs differ only in their seed (theta_0, the projection, the batch
order) and their subspace dimension d. They are stacked along a leading config
axis C and trained by the foundation's pure train step, mapped config by config
inside the program (`jax.lax.map`, the default on a CPU) or vmapped over C (on
accelerators; see `vmap_chunk`), from training inputs kept on the device. Different
d share one program: every config's theta_d is allocated at the largest d of
the stack and coordinates >= its own d are masked to zero, which with the
nested projections of `jaxnn.subspace` is exactly the dimension-d subspace
(masked coordinates get zero gradient, so Adam never moves them); the
reparameterization is `make_subspace`'s `bind(state, d_active)`. The config
axis is split across the devices of a mesh (each device trains its own
configs); `run_loop` drives the step, so progress bars and the NaN guard are
the foundation's.

References:
  Li, Farkhoor, Liu, Yosinski. "Measuring the Intrinsic Dimension of Objective
  Landscapes", ICLR 2018.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import PartitionSpec as P

from jaxnn._errors import JaxnnError
from jaxnn.data import EpochBatcher, Split, eval_batches
from jaxnn.subspace._wrapper import make_subspace
from jaxnn.train import (
  CLASSIFICATION,
  DataParallel,
  FunctionalModel,
  Objective,
  TrainState,
  make_eval_step,
  make_train_step,
  run_loop,
)

PyTree = Any
# member(frozen) -> the FunctionalModel of one config (its `params` unused).
MemberFn = Callable[[PyTree], FunctionalModel]


class ConfigStack(NamedTuple):
  """The carry of a stack of configs; every leaf has a leading config axis C.

  Attributes:
    train: the stacked `TrainState` (params are theta_d for subspace configs).
    frozen: what each config keeps fixed: for subspace configs its
      `SubspaceState` (theta_0, projection) and `d_active`; `{}` for direct ones.
  """

  train: TrainState
  frozen: PyTree


def _stack(trees: Sequence[PyTree]) -> PyTree:
  return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


def _keys(seeds: Sequence[int]) -> jax.Array:
  return jnp.stack([jax.random.PRNGKey(s) for s in seeds])


def _train_state(params_C, model_state_C, seeds: Sequence[int], optimizer) -> TrainState:
  return TrainState(
    jnp.zeros(len(seeds), jnp.int32),
    params_C,
    model_state_C,
    jax.vmap(optimizer.init)(params_C),
    _keys(seeds),
  )


def subspace_stack(
  model_init: Callable[[jax.Array], FunctionalModel],
  projection,
  dims: Sequence[int],
  seeds: Sequence[int],
  optimizer: optax.GradientTransformation,
) -> tuple[MemberFn, ConfigStack]:
  """Stacks subspace configs (dims[i], seeds[i]) with theta_d allocated at max(dims).

  Config i is `make_subspace(model_init, max(dims), projection)` initialized
  from `PRNGKey(seeds[i])` (theta_0 and P) and bound with `d_active = dims[i]`:
  exactly the dimension-dims[i] subspace, since the projections are nested.

  Args:
    model_init: `model_init(key) -> FunctionalModel` (see `make_subspace`).
    projection: a `Projection` or its name.
    dims, seeds: one entry per config.
    optimizer: the optax optimizer of theta_d.

  Returns:
    `member(frozen) -> FunctionalModel` and the initial `ConfigStack`.
  """
  if len(dims) != len(seeds) or not dims:
    raise JaxnnError(f"need one seed per dim, got {len(dims)} dims and {len(seeds)} seeds")
  if min(dims) < 1:
    raise JaxnnError(f"subspace dimensions must be positive, got {min(dims)}")
  subspace = make_subspace(model_init, int(max(dims)), projection)
  states = jax.jit(jax.vmap(subspace.init))(_keys(seeds))
  frozen = {"subspace": states, "d_active": jnp.asarray(dims, jnp.int32)}
  member = lambda frozen: subspace.bind(frozen["subspace"], frozen["d_active"])
  params_C = jnp.zeros((len(dims), subspace.dim), jnp.float32)
  return member, ConfigStack(_train_state(params_C, states.model_state, seeds, optimizer), frozen)


def direct_stack(
  model_init: Callable[[jax.Array], FunctionalModel],
  seeds: Sequence[int],
  optimizer: optax.GradientTransformation,
) -> tuple[MemberFn, ConfigStack]:
  """Stacks normal (full-parameter) training, the model initialized from `PRNGKey(seed)`."""
  base = model_init(jax.random.PRNGKey(0))
  models = [model_init(k) for k in _keys(seeds)]
  params_C = jax.tree.map(jnp.asarray, _stack([m.params for m in models]))
  state = _train_state(params_C, _stack([m.state for m in models]), seeds, optimizer)
  return lambda frozen: base, ConfigStack(state, {})


def vmap_chunk(num_configs: int, platform: str | None = None) -> int:
  """How many configs of a device to vmap at once: 1 on a CPU, all of them elsewhere.

  On a CPU a plain `jax.lax.map` of the unbatched step (one config after
  another inside the program, which still saves the per-config dispatches) was
  the fastest in every locked run of benchmarks/subspace_vmap.py, on the
  dispatch-bound digits FC 32 (3.2-3.3x one after another vs 2.6-2.7x vmapped)
  and on MNIST FC (1.33x vs 0.20x: the vmapped vectors fall out of the caches,
  and batched gathers and scatters are slow). On accelerators a vmapped step
  fills the device; that is not measured here.
  """
  platform = platform or jax.default_backend()
  return 1 if platform == "cpu" else num_configs


def _map_configs(fn, xs, chunk: int | None):
  """`fn` over the leading config axis of `xs`, `chunk` configs vmapped at once (None: all).

  A chunk of 1 is a plain `lax.map` of the unbatched `fn` (not a vmap of size 1,
  whose batched gathers and scatters are far slower on a CPU). A single config
  is `fn` itself, with no loop around it: XLA's CPU backend runs a LeNet train
  step 5x slower inside a `lax.map` loop, even one of a single iteration (239
  vs 46 ms at 1 thread, mnist5k, batch 128), so convolutional models train
  one config per program on a CPU (`configs_per_program` in the sweep).
  """
  if chunk == 1 and jax.tree.leaves(xs)[0].shape[0] == 1:
    return jax.tree.map(lambda a: a[None], fn(jax.tree.map(lambda a: a[0], xs)))
  if chunk == 1:
    return jax.lax.map(fn, xs)
  return jax.lax.map(fn, xs, batch_size=chunk or jax.tree.leaves(xs)[0].shape[0])


def _per_device(fn, dp: DataParallel | None, in_specs):
  """Runs `fn` on each device's own configs (the leading axis split along "data").

  The devices never communicate (no collectives), so the varying-axes check is
  off: it would reject `jax.lax.platform_dependent` kernels inside the step.
  """
  if dp is None:
    return fn
  return jax.shard_map(fn, mesh=dp.mesh, in_specs=in_specs, out_specs=P("data"), check_vma=False)


def make_stack_step(
  member: MemberFn,
  optimizer: optax.GradientTransformation,
  objective: Objective = CLASSIFICATION,
  weight_decay: float = 0.0,
  *,
  dp: DataParallel | None = None,
  chunk: int | None = None,
  indexed: bool = False,
):
  """`step(stack, x_CxB..., y_CxB) -> (stack, metrics of shape (C,))`: every config's train step.

  Args:
    member, optimizer, objective, weight_decay: as for `make_train_step`.
    dp: the mesh whose "data" axis splits the configs (None: no split).
    chunk: configs vmapped at once on a device (`jax.lax.map` over chunks);
      None: all of them; 1: a plain `lax.map` (see `vmap_chunk`).
    indexed: the batch is example indices instead: `step(stack, i_CxB, y_CxB,
      x_train)` gathers `x_train[i_CxB]` on the device (see `StackedBatcher`).
  """

  def one(args):
    train, frozen, x, y = args
    return make_train_step(member(frozen), optimizer, objective, weight_decay)(train, x, y)

  def local(train, frozen, x, y, *x_train):
    if indexed:
      x = jnp.take(x_train[0], x, axis=0)
    return _map_configs(one, (train, frozen, x, y), chunk)

  run = _per_device(local, dp, (P("data"),) * 4 + (P(),) * indexed)

  def step(stack: ConfigStack, x, y, *x_train):
    train, metrics = run(stack.train, stack.frozen, x, y, *x_train)
    if dp is not None and jax.process_count() > 1:
      # Every process reads every config's loss (the NaN guard, the logs): gather the few
      # scalars, which a process could not read from another process's devices.
      metrics = jax.lax.with_sharding_constraint(metrics, dp.replicated)
    return ConfigStack(train, stack.frozen), metrics

  return step


class StackedBatcher:
  """The batch of every config at a step, stacked: config i shuffles with seeds[i].

  Duck-types `EpochBatcher` for `run_loop` (`steps_per_epoch`, `at_step`).
  With `indices=True` it gives the examples' indices into `split.x` instead of
  the examples (the same examples, in the same order): a step that keeps the
  training inputs on the device (`make_stack_step(indexed=True)`) then moves
  C x B integers per step instead of C x B inputs, and the host does not
  gather and stack C batches.
  """

  def __init__(self, split: Split, batch_size: int, seeds: Sequence[int], indices: bool = False):
    if indices:
      split = Split(np.arange(len(split), dtype=np.int32), split.y)
    self.batchers = {s: EpochBatcher(split, batch_size, s) for s in dict.fromkeys(seeds)}
    self.seeds = list(seeds)
    self.steps_per_epoch = next(iter(self.batchers.values())).steps_per_epoch

  def at_step(self, step: int) -> tuple[np.ndarray, np.ndarray]:
    batches = {s: b.at_step(step) for s, b in self.batchers.items()}
    return (
      np.stack([batches[s][0] for s in self.seeds]),
      np.stack([batches[s][1] for s in self.seeds]),
    )


def make_stack_evaluator(
  member: MemberFn,
  dp: DataParallel,
  objective: Objective = CLASSIFICATION,
  batch_size: int = 1000,
  chunk: int | None = None,
):
  """`evaluate(stack, split) -> {name: (C,) mean over the split}` for every config at once.

  The stack may be split over the devices of several processes; every process
  gets all C values.
  """

  def sums(train, frozen, x, y, mask):
    def one(args):
      t, f = args
      return make_eval_step(member(f), objective)(t.params, t.model_state, x, y, mask)

    return _map_configs(one, (train, frozen), chunk)

  run = _per_device(sums, dp, (P("data"), P("data"), P(), P(), P()))
  step = jax.jit(
    lambda stack, x, y, mask: run(stack.train, stack.frozen, x, y, mask),
    in_shardings=(dp.batch,) + (dp.replicated,) * 3,
    out_shardings=dp.replicated,  # every process gets every config's metrics
  )

  def evaluate(stack: ConfigStack, split: Split) -> dict[str, np.ndarray]:
    totals = None
    for x, y, mask in eval_batches(split, min(batch_size, len(split))):
      s = step(stack, x, y, mask)
      totals = s if totals is None else jax.tree.map(jnp.add, totals, s)
    totals = jax.device_get(totals)
    count = totals.pop("count")
    return {k: v / count for k, v in totals.items()}

  return evaluate


def pad_configs(items: Sequence, multiple: int) -> list:
  """Repeats the last item so that the stack splits evenly across devices."""
  items = list(items)
  return items + [items[-1]] * (-len(items) % multiple)


# Training inputs up to this size stay on the device (a copy per device); larger ones
# are batched on the host.
RESIDENT_BYTES = 2**30


def train_stack(
  member: MemberFn,
  stack: ConfigStack,
  seeds: Sequence[int],
  train: Split,
  num_steps: int,
  *,
  dp: DataParallel,
  optimizer: optax.GradientTransformation,
  batch_size: int = 128,
  weight_decay: float = 0.0,
  objective: Objective = CLASSIFICATION,
  chunk: int | None = None,
  progress: bool = True,
  description: str = "configs",
) -> ConfigStack:
  """Trains a stack of configs for `num_steps` steps with `run_loop`, configs split over `dp`.

  The stack's size must be a multiple of `dp.num_devices` (see `pad_configs`).
  Training inputs of up to `RESIDENT_BYTES` are put on the devices once and
  every step gathers its batches there from example indices.
  """
  if len(seeds) % dp.num_devices:
    raise JaxnnError(
      f"{len(seeds)} configs do not split over {dp.num_devices} devices; pad them with pad_configs"
    )
  resident = train.x.nbytes <= RESIDENT_BYTES
  step = make_stack_step(
    member, optimizer, objective, weight_decay, dp=dp, chunk=chunk, indexed=resident
  )
  return run_loop(
    step,
    stack,
    StackedBatcher(train, batch_size, seeds, indices=resident),
    num_steps,
    dp=dp,
    log_every=max(1, min(100, num_steps)),
    progress=progress,
    description=description,
    carry_sharding=dp.batch,
    batch_sharding=dp.batch,
    extra_args=(train.x,) if resident else (),
  )

"""Many training configs as one compiled program, spread across devices.

A sweep's configs differ only in their seed (theta_0, the projection, the batch
order) and their subspace dimension d. They are stacked along a leading config
axis C and trained by `jax.vmap` of the foundation's pure train step. Different
d share one program: every config's theta_d is allocated at the largest d of
the stack and coordinates >= its own d are masked to zero, which with the
nested projections of `jaxnn.subspace` is exactly the dimension-d subspace
(masked coordinates get zero gradient, so Adam never moves them). The config
axis is split across the devices of a mesh (each device trains its own
configs); `run_loop` drives the step, so progress bars and the NaN guard are
the foundation's.

References:
  Li, Farkhoor, Liu, Yosinski. "Measuring the Intrinsic Dimension of Objective
  Landscapes", ICLR 2018.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from jaxnn._errors import JaxnnError
from jaxnn.data import EpochBatcher, Split, eval_batches
from jaxnn.train import (CLASSIFICATION, DataParallel, FunctionalModel, Objective, TrainState,
                         make_eval_step, make_train_step, run_loop)

PyTree = Any
# member(frozen) -> the FunctionalModel of one config (its `params` unused).
MemberFn = Callable[[PyTree], FunctionalModel]


class ConfigStack(NamedTuple):
  """The carry of a stack of configs; every leaf has a leading config axis C.

  Attributes:
    train: the stacked `TrainState` (params are theta_d for subspace configs).
    frozen: what each config keeps fixed (theta_0, projection state, mask).
  """

  train: TrainState
  frozen: PyTree


def _stack(trees: Sequence[PyTree]) -> PyTree:
  return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


def _train_state(params_C, model_state_C, seeds: Sequence[int], optimizer) -> TrainState:
  return TrainState(jnp.zeros(len(seeds), jnp.int32), params_C, model_state_C,
                    jax.vmap(optimizer.init)(params_C),
                    jnp.stack([jax.random.PRNGKey(s) for s in seeds]))


def subspace_stack(model_for_seed: Callable[[int], FunctionalModel], projection, dims: Sequence[int],
                   seeds: Sequence[int], optimizer: optax.GradientTransformation
                   ) -> tuple[MemberFn, ConfigStack]:
  """Stacks subspace configs (dims[i], seeds[i]) with theta_d allocated at max(dims).

  Config i trains theta_D = theta_0(seeds[i]) + P(seeds[i]) @ (theta_d * mask_i)
  with mask_i = [j < dims[i]]; theta_d starts at zero. The projection state is
  made by `projection.init(PRNGKey(seed), D, d_alloc)`.

  Args:
    model_for_seed: the model with its initialization for a seed (theta_0);
      every seed must give the same architecture.
    projection: a `jaxnn.subspace` projection (`init`, `apply`), nested in d.
    dims, seeds: one entry per config.
    optimizer: the optax optimizer of theta_d.

  Returns:
    `member(frozen) -> FunctionalModel` and the initial `ConfigStack`.
  """
  if len(dims) != len(seeds) or not dims:
    raise JaxnnError(f"need one seed per dim, got {len(dims)} dims and {len(seeds)} seeds")
  if min(dims) < 1:
    raise JaxnnError(f"subspace dimensions must be positive, got {min(dims)}")
  base = model_for_seed(seeds[0])
  flat0, unravel = ravel_pytree(base.params)
  size = flat0.size
  d_alloc = int(max(dims))
  theta0_C, proj_C, state_C = [], [], []
  for seed in seeds:
    model = model_for_seed(seed)
    theta0_C.append(ravel_pytree(model.params)[0])
    state_C.append(model.state)
    proj_C.append(projection.init(jax.random.PRNGKey(seed), size, d_alloc))
  frozen = {"theta0": _stack(theta0_C), "projection": _stack(proj_C),
            "mask": np.arange(d_alloc)[None, :] < np.asarray(dims)[:, None]}

  def member(frozen) -> FunctionalModel:
    def full_params(theta_d):
      offset = projection.apply(frozen["projection"], jnp.where(frozen["mask"], theta_d, 0.0))
      return unravel(frozen["theta0"] + offset)

    def apply(theta_d, state, x, train=False, rng=None):
      return base.apply(full_params(theta_d), state, x, train, rng)

    return FunctionalModel(apply, None, None, lambda theta_d: base.l2(full_params(theta_d)))

  params_C = jnp.zeros((len(dims), d_alloc), flat0.dtype)
  return member, ConfigStack(_train_state(params_C, _stack(state_C), seeds, optimizer), frozen)


def direct_stack(model_for_seed: Callable[[int], FunctionalModel], seeds: Sequence[int],
                 optimizer: optax.GradientTransformation) -> tuple[MemberFn, ConfigStack]:
  """Stacks normal (full-parameter) training of the model, one config per seed."""
  base = model_for_seed(seeds[0])
  models = [model_for_seed(s) for s in seeds]
  member = lambda frozen: base
  params_C = jax.tree.map(jnp.asarray, _stack([m.params for m in models]))
  state = _train_state(params_C, _stack([m.state for m in models]), seeds, optimizer)
  return member, ConfigStack(state, {})


def make_stack_step(member: MemberFn, optimizer: optax.GradientTransformation,
                    objective: Objective = CLASSIFICATION, weight_decay: float = 0.0):
  """`step(stack, x_CxB..., y_CxB) -> (stack, metrics of shape (C,))`: vmapped train steps."""

  def one(train, frozen, x, y):
    return make_train_step(member(frozen), optimizer, objective, weight_decay)(train, x, y)

  def step(stack: ConfigStack, x, y):
    train, metrics = jax.vmap(one)(stack.train, stack.frozen, x, y)
    return ConfigStack(train, stack.frozen), metrics

  return step


class StackedBatcher:
  """The batch of every config at a step, stacked: config i shuffles with seeds[i].

  Duck-types `EpochBatcher` for `run_loop` (`steps_per_epoch`, `at_step`).
  """

  def __init__(self, split: Split, batch_size: int, seeds: Sequence[int]):
    self.batchers = {s: EpochBatcher(split, batch_size, s) for s in dict.fromkeys(seeds)}
    self.seeds = list(seeds)
    self.steps_per_epoch = next(iter(self.batchers.values())).steps_per_epoch

  def at_step(self, step: int) -> tuple[np.ndarray, np.ndarray]:
    batches = {s: b.at_step(step) for s, b in self.batchers.items()}
    return (np.stack([batches[s][0] for s in self.seeds]),
            np.stack([batches[s][1] for s in self.seeds]))


def config_mesh(dp: DataParallel) -> jax.sharding.NamedSharding:
  """Splits the leading config axis across the mesh's devices."""
  return dp.batch


def make_stack_evaluator(member: MemberFn, dp: DataParallel, objective: Objective = CLASSIFICATION,
                         batch_size: int = 1000):
  """`evaluate(stack, split) -> {name: (C,) mean over the split}` for every config at once."""

  def sums(stack: ConfigStack, x, y, mask):
    def one(train, frozen):
      return make_eval_step(member(frozen), objective)(train.params, train.model_state, x, y, mask)
    return jax.vmap(one)(stack.train, stack.frozen)

  step = jax.jit(sums, in_shardings=(config_mesh(dp),) + (dp.replicated,) * 3,
                 out_shardings=config_mesh(dp))

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


def train_stack(member: MemberFn, stack: ConfigStack, seeds: Sequence[int], train: Split,
                num_steps: int, *, dp: DataParallel, optimizer: optax.GradientTransformation,
                batch_size: int = 128, weight_decay: float = 0.0,
                objective: Objective = CLASSIFICATION, progress: bool = True,
                description: str = "configs") -> ConfigStack:
  """Trains a stack of configs for `num_steps` steps with `run_loop`, configs split over `dp`.

  The stack's size must be a multiple of `dp.num_devices` (see `pad_configs`).
  """
  if len(seeds) % dp.num_devices:
    raise JaxnnError(f"{len(seeds)} configs do not split over {dp.num_devices} devices; "
                     "pad them with pad_configs")
  return run_loop(make_stack_step(member, optimizer, objective, weight_decay), stack,
                  StackedBatcher(train, batch_size, seeds), num_steps, dp=dp,
                  log_every=max(1, min(100, num_steps)), progress=progress,
                  description=description, carry_sharding=config_mesh(dp),
                  batch_sharding=config_mesh(dp))

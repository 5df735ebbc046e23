"""Training any model in a random subspace: theta_D = theta_0 + P theta_d.

Li et al. (2018) freeze the model's initialization theta_0, draw a fixed random
projection P (D x d) and train only theta_d, which starts at zero. This module
turns any `FunctionalModel` (a plain function, a Flax NNX module through
`from_nnx`, ...) into a `FunctionalModel` of theta_d, so the foundation's train
steps, `run_loop` and evaluators train it unchanged.

The contract:
- `make_subspace(model_init, d, projection, said=False) -> Subspace`, with
  `model_init(key) -> FunctionalModel` (the model and its initialization for a
  key; same architecture for every key).
- `Subspace.init(key) -> SubspaceState(theta0, projection, model_state)`: pure
  `jax.random`, so `jax.vmap(subspace.init)(keys)` builds the theta_0 and P of
  many seeds at once. `key` is split into (model key, projection key).
- `Subspace.bind(state, d_active=None) -> FunctionalModel`: params are
  theta_d of shape (d,) starting at zeros; `apply` computes
  `theta_0 + P (mask * theta_d)` with `mask = arange(d) < d_active` (the
  projections are nested, so this is exactly the subspace of dimension
  `d_active`; masked coordinates get zero gradient); `l2` is the wrapped
  model's `l2` (the foundation's `kernel_l2` by default) on the full theta_D.
  `bind` is pure in `state` and `d_active`, which may be traced: call it
  inside a jitted or vmapped step so that configs of different seed and d
  (same allocated d) share one program.
- `subspace_model(model, d, projection, seed)` is the one-model shortcut:
  theta_0 is `model.params`, P is drawn from `seed`.

Where theta_0 lives: in `SubspaceState`, which `bind` closes over. Inside a
jitted step, pass the state as an argument (e.g. `run_loop(...,
extra_args=(state,))` with `make_subspace_train_step`): closing a jitted
function over concrete arrays embeds them in the program as constants, which
for a dense P of D * d floats means gigabytes and minutes of compilation. The
state is rebuilt from the seed, so checkpoints hold only theta_d and the
optimizer state.

SAID (Aghajanyan et al. 2021): theta_D,i = theta_0,i + lambda_t(i) (P theta)_i
with one learned scale per parameter tensor t. The m scales count toward d:
`theta_d[:m]` are the scales, as `lambda = 1 + theta_d[:m]` (so theta_d still
starts at zero and the scales at 1), and `theta_d[m:]` goes through a P of
dimension d - m.

References:
  Li, Farkhoor, Liu, Yosinski. "Measuring the Intrinsic Dimension of Objective
  Landscapes", ICLR 2018.
  Aghajanyan, Zettlemoyer, Gupta. "Intrinsic Dimensionality Explains the
  Effectiveness of Language Model Fine-Tuning", ACL 2021.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float

from jaxnn._errors import JaxnnError
from jaxnn.subspace._projections import Projection, get_projection
from jaxnn.train import CLASSIFICATION, FunctionalModel, Objective, TrainState, make_train_step

PyTree = Any


class SubspaceState(NamedTuple):
  """What a subspace keeps fixed; every leaf can carry a leading config axis.

  Attributes:
    theta0: (D,) the flattened initialization theta_0, frozen.
    projection: the projection's state (its random draws).
    model_state: the wrapped model's initial non-trainable state (BatchNorm).
  """

  theta0: Float[Array, "D"]
  projection: PyTree
  model_state: PyTree


class Subspace(NamedTuple):
  """A model reparameterized by theta_d, as pure functions (see the module doc).

  Attributes:
    init: `init(key) -> SubspaceState`, pure.
    bind: `bind(state, d_active=None) -> FunctionalModel` of theta_d.
    full_params: `full_params(state, theta_d, d_active=None) -> params`, the
      wrapped model's params pytree theta_D.
    num_params: D, the wrapped model's parameter count.
    dim: d, the allocated subspace dimension (scales included with SAID).
    num_scales: m, SAID's per-tensor scales among the d (0 without SAID).
  """

  init: Callable[[jax.Array], SubspaceState]
  bind: Callable[..., FunctionalModel]
  full_params: Callable[..., PyTree]
  num_params: int
  dim: int
  num_scales: int


def _split(key: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(model key, projection key) of a subspace's key."""
  k_model, k_proj = jax.random.split(key)
  return k_model, k_proj


def _as_projection(projection: Projection | str) -> Projection:
  return get_projection(projection) if isinstance(projection, str) else projection


def make_subspace(
  model_init: Callable[[jax.Array], FunctionalModel],
  d: int,
  projection: Projection | str,
  *,
  said: bool = False,
) -> Subspace:
  """Reparameterizes the model `model_init(key)` by a d-dimensional theta_d.

  Args:
    model_init: `model_init(key) -> FunctionalModel`, e.g.
      `lambda key: from_nnx(create_model("fc", (28, 28, 1), 10, seed=key))`;
      it is called once here with a concrete key (for the architecture) and
      again inside `init` with a possibly traced key.
    d: the subspace dimension (allocated; `bind`'s `d_active` can use fewer).
    projection: a `Projection` or its name ("dense", "sparse", "fastfood").
    said: add SAID's per-tensor scales, counted toward d.

  Returns:
    The `Subspace`.
  """
  projection = _as_projection(projection)
  if not isinstance(d, (int, np.integer)) or d < 1:
    raise JaxnnError(f"subspace dimension d must be a positive int, got {d!r}")
  d = int(d)
  base = model_init(jax.random.PRNGKey(0))
  flat0, unravel = ravel_pytree(base.params)
  D = int(flat0.size)
  leaf_sizes = [int(np.size(p)) for p in jax.tree.leaves(base.params)]
  m = len(leaf_sizes) if said else 0
  if said and d <= m:
    raise JaxnnError(
      f"SAID uses {m} of the d coordinates for per-tensor scales; choose d > {m} (got d={d})"
    )
  tensor_of_coordinate = np.repeat(np.arange(len(leaf_sizes)), leaf_sizes)
  leaves0, treedef = jax.tree.flatten(base.params)
  leaf_shapes = tuple(np.shape(p) for p in leaves0)
  # theta_0 + P theta_d straight into the model's leaves where the projection
  # can (Fastfood's CPU kernel: no flat theta_D copied into the leaves, no
  # concatenated gradient); SAID scales the offset first, so it keeps the flat path.
  leaves_fused = (
    projection.apply_leaves is not None
    and not said
    and all(jnp.result_type(p) == jnp.float32 for p in leaves0)
  )

  def init(key) -> SubspaceState:
    k_model, k_proj = _split(key)
    model = model_init(k_model)
    return SubspaceState(
      ravel_pytree(model.params)[0], projection.init(k_proj, D, d - m), model.state
    )

  def active(theta_d, d_active):
    if d_active is None:
      return theta_d
    return jnp.where(jnp.arange(d) < d_active, theta_d, 0.0)

  def flat_params(state: SubspaceState, theta_d, d_active=None):
    theta_d = active(theta_d, d_active)
    offset = projection.apply(state.projection, theta_d[m:])
    if said:
      offset = offset * (1.0 + theta_d[:m])[tensor_of_coordinate]
    return state.theta0 + offset

  def full_params(state: SubspaceState, theta_d, d_active=None):
    if leaves_fused:
      leaves = projection.apply_leaves(
        state.projection, active(theta_d, d_active), state.theta0, leaf_shapes
      )
      return jax.tree.unflatten(treedef, leaves)
    return unravel(flat_params(state, theta_d, d_active))

  def bind(state: SubspaceState, d_active=None) -> FunctionalModel:
    # `make_loss_fn` calls apply and then l2 on the same params object. l2
    # reuses the theta_D that apply computed from that very object, so the
    # step differentiates one projection: one P^T g, not one per term (with
    # a dense P, a second gemv over D * d floats).
    last = []

    def apply(theta_d, model_state, x, train=False, rng=None):
      params = full_params(state, theta_d, d_active)
      last[:] = [theta_d, params]
      return base.apply(params, model_state, x, train, rng)

    def l2(theta_d):
      reuse = len(last) == 2 and last[0] is theta_d
      params = last[1] if reuse else full_params(state, theta_d, d_active)
      last.clear()
      return base.l2(params)

    return FunctionalModel(apply, jnp.zeros(d, flat0.dtype), state.model_state, l2)

  return Subspace(init, bind, full_params, D, d, m)


class SubspaceModel(NamedTuple):
  """One model in one subspace (`subspace_model`).

  Attributes:
    model: the `FunctionalModel` of theta_d, bound to `state` (it closes over
      it: use it eagerly or for small models; in jitted loops pass `state` as
      an argument, see `make_subspace_train_step`).
    subspace: the `Subspace` (pure functions).
    state: the `SubspaceState` of this seed.
    d_active: the active dimension (None: all of d).
  """

  model: FunctionalModel
  subspace: Subspace
  state: SubspaceState
  d_active: Any


def subspace_model(
  model: FunctionalModel,
  d: int,
  projection: Projection | str,
  seed: int = 0,
  *,
  d_active=None,
  said: bool = False,
) -> SubspaceModel:
  """Trains `model` in a random d-dimensional subspace around `model.params`.

  Args:
    model: the model; its `params` are theta_0.
    d: the subspace dimension.
    projection: a `Projection` or its name ("dense", "sparse", "fastfood").
    seed: draws P (through `Subspace.init(PRNGKey(seed))`).
    d_active: use only the first `d_active` coordinates (None: all).
    said: add SAID's per-tensor scales, counted toward d.

  Example:
    >>> from jaxnn.models import create_model
    >>> from jaxnn.subspace import subspace_model
    >>> from jaxnn.train import from_nnx, init_train_state, make_optimizer
    >>> model = from_nnx(create_model("fc", (28, 28, 1), 10))
    >>> sub = subspace_model(model, 750, "fastfood", seed=0)
    >>> state = init_train_state(sub.model, make_optimizer("adam", 1e-3))
    >>> state.params.shape  # the trained parameters: theta_d only
    (750,)
  """
  projection = _as_projection(projection)
  subspace = make_subspace(lambda key: model, d, projection, said=said)
  # `subspace.init` with theta_0 = model.params, but only the projection jitted:
  # a jitted init would compile theta_0 in as a constant.
  k_proj = _split(jax.random.PRNGKey(seed))[1]
  projection_state = jax.jit(projection.init, static_argnums=(1, 2))(
    k_proj, subspace.num_params, d - subspace.num_scales
  )
  state = SubspaceState(ravel_pytree(model.params)[0], projection_state, model.state)
  return SubspaceModel(subspace.bind(state, d_active), subspace, state, d_active)


def make_subspace_train_step(
  subspace: Subspace,
  optimizer: optax.GradientTransformation,
  objective: Objective = CLASSIFICATION,
  weight_decay: float = 0.0,
):
  """`step(train_state, x, y, subspace_state, d_active) -> (train_state, metrics)`.

  The foundation's train step of `subspace.bind(subspace_state, d_active)`,
  with the frozen state an argument (not a compiled-in constant): give
  `run_loop(step, ..., extra_args=(subspace_state, d_active))`. vmap it over
  the leading axes of `train_state`, `subspace_state` and `d_active` to train
  many configs at once.
  """

  def step(train_state: TrainState, x, y, subspace_state: SubspaceState, d_active):
    model = subspace.bind(subspace_state, d_active)
    return make_train_step(model, optimizer, objective, weight_decay)(train_state, x, y)

  return step

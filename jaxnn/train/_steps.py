"""Pure training and evaluation steps on a `FunctionalModel`.

Nothing here is jitted or placed on devices: the loop (or a method wrapping
these steps) decides that. A batch is `(x, y)`; evaluation batches also carry
a 0/1 `mask` for padding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxnn.train._functional import FunctionalModel

PyTree = Any


class Objective(NamedTuple):
  """What is minimized and what is reported, per example.

  Attributes:
    loss: `loss(outputs, targets) -> (B,)` per-example data loss.
    metrics: `metrics(outputs, targets) -> {name: (B,)}` per-example metrics.
  """

  loss: Callable[[jax.Array, jax.Array], jax.Array]
  metrics: Callable[[jax.Array, jax.Array], dict[str, jax.Array]]


def _xent(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)


def _accuracy(logits, labels):
  return {"accuracy": (jnp.argmax(logits, -1) == labels).astype(jnp.float32)}


def _mse(outputs, targets):
  return jnp.mean(jnp.square(outputs - targets).reshape(outputs.shape[0], -1), axis=-1)


#: Softmax cross-entropy on integer labels, with per-example `accuracy`.
CLASSIFICATION = Objective(_xent, _accuracy)
#: Mean squared error over each example's outputs; no metrics besides the loss.
REGRESSION = Objective(_mse, lambda outputs, targets: {})


class TrainState(NamedTuple):
  """Everything a training run carries from step to step (and checkpoints)."""

  step: jax.Array
  params: PyTree
  model_state: PyTree
  opt_state: PyTree
  rng: jax.Array


def init_train_state(
  model: FunctionalModel, optimizer: optax.GradientTransformation, seed: int = 0
) -> TrainState:
  """The state at step 0: the model's parameters and state, a fresh optimizer state.

  Args:
    model: the model as pure functions (`from_nnx`, `from_function`).
    optimizer: the optax transformation the steps will apply.
    seed: seed of the PRNG key carried for dropout and other randomness.
  """
  return TrainState(
    jnp.zeros((), jnp.int32),
    model.params,
    model.state,
    optimizer.init(model.params),
    jax.random.PRNGKey(seed),
  )


def make_loss_fn(
  model: FunctionalModel, objective: Objective = CLASSIFICATION, weight_decay: float = 0.0
):
  """`loss_fn(params, model_state, x, y, rng) -> (loss, (metrics, new_model_state))`.

  The loss is the mean data loss plus `weight_decay * model.l2(params)` (the
  Keras L2 convention of the papers' code). Training mode (dropout, batch
  statistics) is on.
  """

  def loss_fn(params, model_state, x, y, rng):
    outputs, new_state = model.apply(params, model_state, x, True, rng)
    data_loss = jnp.mean(objective.loss(outputs, y))
    loss = data_loss + weight_decay * model.l2(params) if weight_decay else data_loss
    metrics = {k: jnp.mean(v) for k, v in objective.metrics(outputs, y).items()}
    return loss, (dict(loss=loss, data_loss=data_loss, **metrics), new_state)

  return loss_fn


def make_train_step(
  model: FunctionalModel,
  optimizer: optax.GradientTransformation,
  objective: Objective = CLASSIFICATION,
  weight_decay: float = 0.0,
):
  """`train_step(state, x, y) -> (state, metrics)`: one optimizer step, pure.

  Under `jax.jit` with the batch sharded over devices, the mean over the global
  batch makes XLA all-reduce (average) the gradients: data parallelism.
  """
  loss_fn = make_loss_fn(model, objective, weight_decay)
  grad_fn = jax.grad(loss_fn, has_aux=True)

  def train_step(state: TrainState, x, y):
    rng = jax.random.fold_in(state.rng, state.step)
    grads, (metrics, model_state) = grad_fn(state.params, state.model_state, x, y, rng)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return TrainState(state.step + 1, params, model_state, opt_state, state.rng), metrics

  return train_step


def make_eval_step(model: FunctionalModel, objective: Objective = CLASSIFICATION):
  """`eval_step(params, model_state, x, y, mask) -> {name: sum over the batch}`.

  Inference mode (no dropout, running BatchNorm statistics). Returns sums and
  the example count so that batches add up exactly.
  """

  def eval_step(params, model_state, x, y, mask):
    outputs, _ = model.apply(params, model_state, x, False, None)
    sums = {"loss": jnp.sum(objective.loss(outputs, y) * mask), "count": jnp.sum(mask)}
    for k, v in objective.metrics(outputs, y).items():
      sums[k] = jnp.sum(v * mask)
    return sums

  return eval_step

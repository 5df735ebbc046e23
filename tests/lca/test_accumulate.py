"""The accumulator against an independent, unchunked recomputation of every iteration."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxnn import JaxnnError
from jaxnn.data import Split, load_dataset
from jaxnn.lca import (
  LCAStream,
  LinearStem,
  Point,
  check_stem,
  drop_zero_features,
  fc_stem,
  full_set_loss,
  lca_accumulator,
  make_eval_set,
  make_eval_sets,
  make_layout,
  records_to_numpy,
  simpson,
  with_lca,
)
from jaxnn.models import FC
from jaxnn.train import CLASSIFICATION, FunctionalModel, from_nnx, init_train_state, make_train_step


@pytest.fixture(scope="module")
def digits():
  d = load_dataset("digits")
  return Split(d.train.x[:300], d.train.y[:300]), Split(d.validation.x[:70], d.validation.y[:70])


def _mean_loss(model, split):
  """The data loss on the whole split at once (no chunks), for reference."""

  def loss(params, model_state):
    out, _ = model.apply(params, model_state, jnp.asarray(split.x), False, None)
    return jnp.mean(CLASSIFICATION.loss(out, jnp.asarray(split.y)))

  return loss


@pytest.mark.slow
def test_chunked_full_set_gradient_matches_unchunked(digits):
  train, _ = digits
  model = from_nnx(FC(64, (16,), 10, rngs=nnx.Rngs(0)))
  first, second = Split(train.x[:170], train.y[:170]), Split(train.x[170:], train.y[170:])
  point = jax.jit(full_set_loss(model))(
    model.params, model.state, make_eval_sets([train, first, second], 64)
  )
  for i, split in enumerate((train, first, second)):
    loss, grad = jax.value_and_grad(_mean_loss(model, split))(model.params, model.state)
    np.testing.assert_allclose(point.loss[i], loss, rtol=1e-5)
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a[i], b, rtol=1e-4, atol=1e-6), point.grad, grad
    )


def test_eval_sets_share_a_chunk_size_that_pads_least():
  split = lambda n: Split(np.zeros((n, 2), np.float32), np.zeros(n, np.int32))
  sets = make_eval_sets([split(3600), split(400)], 1000)
  assert sets.x.shape == (10, 400, 2)
  np.testing.assert_array_equal(sets.set_C, [0] * 9 + [1])
  np.testing.assert_array_equal(sets.count_S, [3600, 400])
  one = make_eval_set(split(300), 128)
  assert one.x.shape == (3, 100, 2) and one.mask.sum() == 300


def test_layout_groups_layers_and_neurons():
  model = from_nnx(FC(64, (16, 8), 10, rngs=nnx.Rngs(0)))
  layout = make_layout(model.params)
  assert layout.layers == ("dense0", "dense1", "dense2")
  assert layout.num_neurons == 16 + 8 + 10
  assert layout.num_params == 64 * 16 + 16 + 16 * 8 + 8 + 8 * 10 + 10


@pytest.mark.parametrize(
  "optimizer,stem",
  [(optax.sgd(0.1, momentum=0.9), False), (optax.adam(0.02), False), (optax.adam(0.02), True)],
  ids=["momentum", "adam", "adam-stem"],
)
def test_run_matches_independent_recomputation(digits, optimizer, stem, tmp_path):
  train, validation = digits
  model = from_nnx(FC(64, (16,), 10, rngs=nnx.Rngs(0)))
  steps = 6
  stream = LCAStream(tmp_path, steps, make_layout(model.params).num_params, ("train", "validation"))
  acc = lca_accumulator(
    model,
    steps,
    threshold=1e-4,
    num_tracked=20,
    stream=stream,
    stem=fc_stem(model.params) if stem else None,
  )
  sets = make_eval_sets([train, validation], 128)
  step = jax.jit(with_lca(make_train_step(model, optimizer, weight_decay=1e-3), acc))
  carry = (init_train_state(model, optimizer), jax.jit(acc.init)(model.params, model.state, sets))
  thetas = [carry[0].params]
  for t in range(steps):
    i = np.arange(t * 50, t * 50 + 50) % len(train)
    carry, metrics = step(carry, train.x[i], train.y[i], sets)
    thetas.append(carry[0].params)
  jax.effects_barrier()
  stream.flush()
  records = records_to_numpy(acc, carry[1])
  layout = acc.layout
  for name, split in (("train", train), ("validation", validation)):
    vg = jax.jit(jax.value_and_grad(lambda p: _mean_loss(model, split)(p, model.state)))
    losses = np.array([float(vg(th)[0]) for th in thetas])
    np.testing.assert_allclose(records[f"{name}/loss_T1"], losses, rtol=1e-5)
    # Sum over the run equals L_T - L_0 up to the per-iteration errors, each within threshold
    # unless the cap of 32 splits was reached (ReLU kinks under Adam's large steps).
    errors = records[f"{name}/error_T"]
    assert np.all((np.abs(errors) <= 1e-4) | (records[f"{name}/splits_T"] == 32))
    assert np.any(records[f"{name}/splits_T"] > 2)
    np.testing.assert_allclose(
      np.sum(records[f"{name}/lca_T"]) + np.sum(errors),
      losses[-1] - losses[0],
      rtol=1e-5,
      atol=1e-6,
    )
    assert np.mean(np.abs(errors)) < np.mean(np.abs(records[f"{name}/first_order_error_T"]))
    streamed = np.load(tmp_path / f"lca_{name}.npy")
    for t in range(steps):
      splits = int(records[f"{name}/splits_T"][t])
      ref = simpson(
        vg, thetas[t], thetas[t + 1], Point(*vg(thetas[t])), Point(*vg(thetas[t + 1])), splits
      )
      ref_P = np.concatenate([np.ravel(x) for x in jax.tree.leaves(ref.lca)])
      np.testing.assert_allclose(streamed[t], ref_P, rtol=2e-3, atol=1e-7)
      np.testing.assert_allclose(records[f"{name}/lca_T"][t], ref_P.sum(), rtol=1e-3, atol=1e-6)
      layer_ref = [
        sum(np.sum(l) for l, k in zip(jax.tree.leaves(ref.lca), layout.leaf_layer) if k == j)
        for j in range(len(layout.layers))
      ]
      np.testing.assert_allclose(records[f"{name}/layer_TxL"][t], layer_ref, rtol=1e-3, atol=1e-6)
      delta = np.concatenate(
        [
          np.ravel(b - a)
          for a, b in zip(jax.tree.leaves(thetas[t]), jax.tree.leaves(thetas[t + 1]))
        ]
      )
      assert records[f"{name}/helped_T"][t] == np.sum(ref_P < 0)
      assert records[f"{name}/moved_T"][t] == np.sum(delta != 0)
    np.testing.assert_allclose(records[f"{name}/total_P"], streamed.sum(0), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(
      records[f"{name}/neuron_TxN"].sum(1), records[f"{name}/lca_T"], rtol=1e-4, atol=1e-6
    )
    np.testing.assert_allclose(
      records[f"{name}/tracked_TxK"], streamed[:, records["tracked_index_K"]], rtol=1e-6
    )
  values = np.stack([np.concatenate([np.ravel(x) for x in jax.tree.leaves(th)]) for th in thetas])
  np.testing.assert_allclose(records["tracked_value_T1xK"], values[:, records["tracked_index_K"]])


def test_stateful_model_accounts_for_the_state_change(digits):
  """A running-mean normalizer (like BatchNorm statistics): LCA + state change = loss change."""
  train, _ = digits

  def apply(params, state, x, train_mode=False, rng=None):
    del rng
    x = x.reshape(x.shape[0], -1)
    mean = state["mean"]
    new_state = {"mean": 0.5 * mean + 0.5 * jnp.mean(x, 0)} if train_mode else state
    return (x - mean[None]) @ params["w"] + params["b"][None], new_state

  w = jnp.asarray(np.random.default_rng(0).normal(size=(64, 10)) * 0.05, jnp.float32)
  model = FunctionalModel(apply, {"w": w, "b": jnp.zeros(10)}, {"mean": jnp.zeros(64)})
  optimizer = optax.sgd(0.05)
  steps = 4
  acc = lca_accumulator(model, steps, set_names=("train",))
  sets = make_eval_set(train, 100)
  step = jax.jit(with_lca(make_train_step(model, optimizer), acc))
  carry = (init_train_state(model, optimizer), jax.jit(acc.init)(model.params, model.state, sets))
  for t in range(steps):
    carry, _ = step(carry, train.x[t * 30 : (t + 1) * 30], train.y[t * 30 : (t + 1) * 30], sets)
  rec = records_to_numpy(acc, carry[1])
  assert np.all(rec["train/state_change_T"] != 0)
  final = _mean_loss(model, train)(carry[0].params, carry[0].model_state)
  np.testing.assert_allclose(rec["train/loss_T1"][-1], final, rtol=1e-5)
  np.testing.assert_allclose(
    np.sum(rec["train/lca_T"] + rec["train/error_T"] + rec["train/state_change_T"]),
    rec["train/loss_T1"][-1] - rec["train/loss_T1"][0],
    rtol=1e-4,
    atol=1e-6,
  )


def test_bad_inputs_raise_clear_errors(digits):
  model = from_nnx(FC(64, (4,), 10, rngs=nnx.Rngs(0)))
  with pytest.raises(JaxnnError, match="unknown LCA method"):
    lca_accumulator(model, 3, method="rk4")
  with pytest.raises(JaxnnError, match="power of two"):
    lca_accumulator(model, 3, max_splits=24)
  with pytest.raises(JaxnnError, match="empty"):
    make_eval_set(Split(np.zeros((0, 8, 8, 1), np.float32), np.zeros(0, np.int32)))
  acc = lca_accumulator(model, 3)
  with pytest.raises(JaxnnError, match="2 evaluation sets"):
    acc.init(model.params, model.state, make_eval_set(digits[0]))


def _near_zero(lca_TxP):
  """Entries whose sign float rounding may flip between two exact computations (per iteration)."""
  return np.sum(np.abs(lca_TxP) <= 1e-6 * np.max(np.abs(lca_TxP)), 1)


@pytest.mark.parametrize(
  "method,zeros",
  [("simpson", True), ("first_order", True), ("simpson", False)],
  ids=["simpson-zero-features", "first_order-zero-features", "simpson-no-zero-feature"],
)
def test_stem_gives_the_plain_allocation(digits, method, zeros, tmp_path):
  """The stem (output interpolated, dL/dz integrated and transposed once) = the plain path.

  Per parameter and iteration, per layer, per neuron, fraction helped and
  errors, with refinement up to 8 splits triggered (tiny threshold, large
  steps) and each iteration's start point carried over from the previous one.
  The stem skips the input features that are 0 in every evaluation example
  (`drop_zero_features`; 7 of the 64 pixels of this digits subset, none once
  a constant is added to every pixel), with weight decay moving their weights.
  """
  train, validation = digits
  if not zeros:
    train, validation = (Split(s.x + 0.05, s.y) for s in (train, validation))
  model = from_nnx(FC(64, (16, 8), 10, rngs=nnx.Rngs(1)))
  sets = make_eval_sets([train, validation], 128)
  stem = fc_stem(model.params)
  check_stem(model, stem, sets.x[0])
  stem_r, sets_r = drop_zero_features(stem, sets)
  dropped_F = ~np.any(np.concatenate([train.x, validation.x]).reshape(-1, 64) != 0, 0)
  assert np.sum(dropped_F) == (7 if zeros else 0)
  if zeros:
    assert sets_r.x.shape == (*sets.x.shape[:2], 57) and stem_r.restrict is None
  else:
    assert stem_r is stem and sets_r is sets
  optimizer = optax.sgd(0.3, momentum=0.9)
  steps = 4 if method == "simpson" else 2
  P = make_layout(model.params).num_params
  records, streamed = [], []
  for i, (s, run_sets) in enumerate(((None, sets), (stem_r, sets_r))):
    stream = LCAStream(tmp_path / str(i), steps, P, ("train", "validation"))
    acc = lca_accumulator(
      model, steps, threshold=1e-6, max_splits=8, stem=s, method=method, stream=stream
    )
    step = jax.jit(with_lca(make_train_step(model, optimizer, weight_decay=1e-2), acc))
    carry = (
      init_train_state(model, optimizer),
      jax.jit(acc.init)(model.params, model.state, run_sets),
    )
    for t in range(steps):
      carry, _ = step(carry, train.x[t * 60 : t * 60 + 60], train.y[t * 60 : t * 60 + 60], run_sets)
    jax.effects_barrier()
    stream.flush()
    records.append(records_to_numpy(acc, carry[1]))
    streamed.append(
      {n: np.load(tmp_path / str(i) / f"lca_{n}.npy") for n in ("train", "validation")}
    )
  plain, ours = records
  for name in ("train", "validation"):
    np.testing.assert_array_equal(ours[f"{name}/splits_T"], plain[f"{name}/splits_T"])
    if method == "simpson":  # refinement in the first and in later iterations (carried start)
      assert plain[f"{name}/splits_T"][0] > 2 and np.any(plain[f"{name}/splits_T"][1:] > 2)
    a, b = streamed[1][name], streamed[0][name]  # per parameter and iteration
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * np.max(np.abs(b)))
    np.testing.assert_array_equal(a == 0, b == 0)  # the parameters that never moved
    # dense0's kernel (after its bias in the flat order), row by input feature: the dropped
    # features' rows moved (weight decay) at every iteration, with an LCA of exactly 0.
    kernel0 = lambda a_P: a_P[..., 16 : 16 + 64 * 16].reshape(*a_P.shape[:-1], 64, 16)
    assert np.all(kernel0(a)[:, dropped_F] == 0)
    assert np.all(kernel0(ours[f"{name}/moved_count_P"])[dropped_F] == steps)
    assert np.all(np.abs(ours[f"{name}/helped_T"] - plain[f"{name}/helped_T"]) <= _near_zero(b))
    np.testing.assert_array_equal(ours[f"{name}/helped_T"], np.sum(a < 0, 1))
    np.testing.assert_array_equal(ours[f"{name}/moved_T"], plain[f"{name}/moved_T"])
    np.testing.assert_array_equal(ours[f"{name}/moved_count_P"], plain[f"{name}/moved_count_P"])
    assert np.sum(ours[f"{name}/helped_count_P"] != plain[f"{name}/helped_count_P"]) <= np.sum(
      _near_zero(b)
    )
    for key in (
      "lca_T",
      "error_T",
      "first_order_T",
      "first_order_error_T",
      "loss_T1",
      "layer_TxL",
      "neuron_TxN",
      "total_P",
      "tracked_TxK",
    ):
      # Loss differences (errors) are at float32 rounding of the loss (~2.3) at best.
      atol = max(1e-5 * np.max(np.abs(plain[f"{name}/{key}"])), 1e-6)
      np.testing.assert_allclose(
        ours[f"{name}/{key}"], plain[f"{name}/{key}"], rtol=1e-4, atol=atol
      )
    np.testing.assert_allclose(ours[f"{name}/total_P"], a.sum(0), rtol=1e-5, atol=1e-8)


def test_wrong_stem_declarations_are_refused(digits):
  model = from_nnx(FC(64, (16, 8), 10, rngs=nnx.Rngs(1)))
  sets = make_eval_set(digits[0], 128)
  stem = fc_stem(model.params)
  nonlinear = stem._replace(apply=lambda p, x: jax.nn.relu(stem.apply(p, x)))
  with pytest.raises(JaxnnError, match="not affine"):
    check_stem(model, nonlinear, sets.x[0])
  squared = stem._replace(apply=lambda p, x: stem.apply(jax.tree.map(jnp.square, p), x))
  with pytest.raises(JaxnnError, match="not affine"):
    check_stem(model, squared, sets.x[0])
  wrong_head = stem._replace(head=lambda p, st, z, train, rng: stem.head(p, st, 2 * z, train, rng))
  with pytest.raises(JaxnnError, match="differs"):
    check_stem(model, wrong_head, sets.x[0])
  with pytest.raises(JaxnnError, match="top-level keys"):
    check_stem(model, LinearStem(("conv0",), stem.apply, stem.head), sets.x[0])
  with pytest.raises(JaxnnError, match="top-level keys"):
    lca_accumulator(model, 4, stem=LinearStem(("conv0",), stem.apply, stem.head))
  with pytest.raises(JaxnnError, match="jaxnn FC"):
    fc_stem({"conv0": {}})
  wrong_restrict = stem._replace(
    restrict=lambda index: lambda p, x_r: 2 * stem.restrict(index)(p, x_r)
  )
  with pytest.raises(JaxnnError, match="restrict"):
    check_stem(model, wrong_restrict, sets.x[0])
  stem_r, sets_r = drop_zero_features(stem, make_eval_set(digits[0], 128))
  acc = lca_accumulator(model, 4, set_names=("train",), stem=stem_r)
  with pytest.raises(JaxnnError, match="drop_zero_features"):
    acc.init(model.params, model.state, sets)  # the set with every feature

"""The subspace wrapper: exact equivalences with direct training, masking, SAID."""

import json
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.flatten_util import ravel_pytree

from jaxnn import JaxnnError
from jaxnn.data import EpochBatcher, load_dataset
from jaxnn.models import FC, create_model
from jaxnn.subspace import (
  Projection,
  dense_projection,
  fastfood_projection,
  get_projection,
  make_subspace,
  make_subspace_train_step,
  subspace_model,
)
from jaxnn.train import (
  data_parallel,
  from_function,
  from_nnx,
  init_train_state,
  kernel_l2,
  make_loss_fn,
  make_train_step,
  run_loop,
)


def small_fc(key=0):
  return from_nnx(FC(16, (12,), 5, rngs=nnx.Rngs(params=key)))  # D = 16*12+12+12*5+5 = 269


def batch(seed=0, n=32):
  rng = np.random.default_rng(seed)
  return (
    rng.normal(size=(n, 4, 4, 1)).astype(np.float32),
    rng.integers(0, 5, size=n).astype(np.int32),
  )


def test_orthonormal_subspace_sgd_equals_direct_sgd():
  model = small_fc()
  D = ravel_pytree(model.params)[0].size
  sub = subspace_model(model, D, dense_projection(orthonormal=True), seed=0)
  optimizer = optax.sgd(0.1)
  direct_step = jax.jit(make_train_step(model, optimizer, weight_decay=1e-3))
  sub_step = jax.jit(make_train_step(sub.model, optimizer, weight_decay=1e-3))
  direct, subspace = init_train_state(model, optimizer), init_train_state(sub.model, optimizer)
  full_params = jax.jit(sub.subspace.full_params)
  for i in range(5):
    x, y = batch(i)
    direct, m_direct = direct_step(direct, x, y)
    subspace, m_sub = sub_step(subspace, x, y)
    np.testing.assert_allclose(m_sub["loss"], m_direct["loss"], rtol=1e-5)
    chex.assert_trees_all_close(full_params(sub.state, subspace.params), direct.params, atol=2e-5)


@pytest.mark.parametrize("name", ["dense", "fastfood"])
def test_gradient_is_P_transpose_of_full_gradient_with_full_l2(name):
  model = small_fc()
  sub = subspace_model(model, 30, name, seed=1)
  x, y = batch()
  theta_d = jnp.asarray(np.random.default_rng(0).normal(size=30) * 0.1, jnp.float32)
  theta_D = jax.jit(sub.subspace.full_params)(sub.state, theta_d)
  full_loss = make_loss_fn(model, weight_decay=1e-2)
  g_full = ravel_pytree(jax.jit(jax.grad(lambda p: full_loss(p, {}, x, y, None)[0]))(theta_D))[0]
  sub_loss = lambda s, t: make_loss_fn(sub.subspace.bind(s), weight_decay=1e-2)(t, {}, x, y, None)[
    0
  ]
  g_sub = jax.jit(jax.grad(sub_loss, argnums=1))(sub.state, theta_d)
  projection = get_projection(name)
  P = jax.jit(jax.vmap(projection.apply, in_axes=(None, 0)))(sub.state.projection, jnp.eye(30)).T
  np.testing.assert_allclose(g_sub, P.T @ g_full, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(
    jax.jit(lambda s, t: sub.subspace.bind(s).l2(t))(sub.state, theta_d),
    kernel_l2(theta_D),
    rtol=1e-6,
  )


def test_starts_at_theta0_with_zero_params():
  model = small_fc()
  sub = subspace_model(model, 20, "fastfood")
  np.testing.assert_array_equal(sub.model.params, np.zeros(20, np.float32))
  x, _ = batch()
  np.testing.assert_allclose(
    sub.model.apply(sub.model.params, {}, x)[0], model.apply(model.params, {}, x)[0], atol=1e-6
  )


@pytest.mark.parametrize("name", ["dense", "fastfood"])
def test_d_active_mask_is_the_smaller_subspace(name):
  subspace_large = make_subspace(lambda k: small_fc(k), 300, name)
  subspace_small = make_subspace(lambda k: small_fc(k), 40, name)
  key = jax.random.PRNGKey(4)
  theta = jnp.asarray(np.random.default_rng(0).normal(size=300) * 0.1, jnp.float32)
  x, y = batch()

  @jax.jit
  def grads(theta):
    loss_large = make_loss_fn(subspace_large.bind(subspace_large.init(key), 40), weight_decay=1e-3)
    loss_small = make_loss_fn(subspace_small.bind(subspace_small.init(key)), weight_decay=1e-3)
    return (
      jax.grad(lambda t: loss_large(t, {}, x, y, None)[0])(theta),
      jax.grad(lambda t: loss_small(t, {}, x, y, None)[0])(theta[:40]),
    )

  g_large, g_small = grads(theta)
  np.testing.assert_allclose(g_large[:40], g_small, rtol=1e-4, atol=1e-6)
  np.testing.assert_array_equal(g_large[40:], 0.0)


def test_vmapped_configs_of_different_seed_and_d_match_single_runs():
  subspace = make_subspace(lambda k: small_fc(k), 64, fastfood_projection())
  optimizer = optax.adam(1e-2)
  step = make_subspace_train_step(subspace, optimizer, weight_decay=1e-4)
  keys = jax.random.split(jax.random.PRNGKey(0), 3)
  d_active = jnp.array([8, 64, 20])
  states = jax.jit(jax.vmap(subspace.init))(keys)
  train = jax.vmap(lambda s: init_train_state(subspace.bind(s), optimizer))(states)
  x, y = batch()
  vstep = jax.jit(jax.vmap(step, in_axes=(0, None, None, 0, 0)))
  for _ in range(3):
    train, _ = vstep(train, x, y, states, d_active)
  single_step, init = jax.jit(step), jax.jit(subspace.init)
  for i in range(3):
    single = init(keys[i])
    chex.assert_trees_all_close(jax.tree.map(lambda a: a[i], states), single)
    one = init_train_state(subspace.bind(single), optimizer)
    for _ in range(3):
      one, _ = single_step(one, x, y, single, d_active[i])
    np.testing.assert_allclose(train.params[i], one.params, atol=1e-6)
    assert np.all(np.asarray(one.params)[int(d_active[i]) :] == 0)


def test_said_scales_count_toward_d():
  model = small_fc()
  sub = subspace_model(model, 20, "dense", seed=2, said=True)
  assert sub.subspace.num_scales == 4  # two kernels, two biases
  theta_d = jnp.asarray(np.random.default_rng(0).normal(size=20), jnp.float32)
  P = np.asarray(sub.state.projection.P_dxD).T
  sizes = [p.size for p in jax.tree.leaves(model.params)]
  scales = np.repeat(1.0 + np.asarray(theta_d[:4]), sizes)
  np.testing.assert_allclose(
    ravel_pytree(jax.jit(sub.subspace.full_params)(sub.state, theta_d))[0],
    sub.state.theta0 + scales * (P @ np.asarray(theta_d[4:])),
    rtol=1e-5,
    atol=1e-5,
  )
  # The scales start at 1 and get a gradient once theta_d moves.
  x, y = batch()
  sub_loss = lambda s, t: make_loss_fn(sub.subspace.bind(s))(t, {}, x, y, None)[0]
  g = jax.jit(jax.grad(sub_loss, argnums=1))(sub.state, theta_d)
  assert np.all(np.asarray(g[:4]) != 0)
  with pytest.raises(JaxnnError, match="choose d > 4"):
    subspace_model(model, 4, "dense", said=True)


def test_deterministic_by_seed():
  model = small_fc()
  projection = fastfood_projection()
  a, b = (
    subspace_model(model, 10, projection, seed=3),
    subspace_model(model, 10, projection, seed=3),
  )
  chex.assert_trees_all_equal(a.state, b.state)
  c = subspace_model(model, 10, projection, seed=4)
  assert not np.array_equal(a.state.projection.perm, c.state.projection.perm)


def test_clear_errors():
  model = small_fc()
  with pytest.raises(JaxnnError, match="positive int"):
    subspace_model(model, 0, "dense")
  with pytest.raises(JaxnnError, match="unknown projection"):
    subspace_model(model, 10, "gaussian")


def test_trains_with_run_loop_on_two_devices(tmp_path):
  data = load_dataset("digits", max_train=512)
  model = from_nnx(FC(64, (32,), 10, rngs=nnx.Rngs(params=0)))
  sub = subspace_model(model, 200, "fastfood", seed=0)
  optimizer = optax.adam(3e-2)
  step = make_subspace_train_step(sub.subspace, optimizer, weight_decay=1e-4)
  dp = data_parallel(64, num_devices=2)
  train = run_loop(
    step,
    init_train_state(sub.model, optimizer),
    EpochBatcher(data.train, 64, 0),
    30,
    dp=dp,
    workdir=tmp_path,
    progress=False,
    log_every=5,
    extra_args=(sub.state, jnp.int32(200)),
  )
  assert int(train.step) == 30
  log = [l for l in (tmp_path / "metrics.jsonl").read_text().splitlines() if '"loss"' in l]
  losses = [json.loads(l)["loss"] for l in log]
  assert losses[-1] < 0.75 * losses[0], losses


def test_weight_decay_differentiates_the_projection_once():
  """apply and l2 share theta_D: the compiled step has one P^T g (one dot with P)."""
  model = small_fc()
  sub = subspace_model(model, 7, "dense")
  optimizer = optax.adam(1e-3)
  x, y = batch()
  for wd in (0.0, 1e-3):
    step = make_subspace_train_step(sub.subspace, optimizer, weight_decay=wd)
    hlo = (
      jax.jit(step)
      .lower(init_train_state(sub.model, optimizer), x, y, sub.state, jnp.int32(7))
      .compile()
      .as_text()
    )
    dots_with_P = [l for l in hlo.splitlines() if " dot(" in l and "P_dxD" in l]
    assert len(dots_with_P) == 2, dots_with_P  # P theta_d forward, P^T g backward


def flat_path(projection):
  """The projection without its fused `apply_leaves`: theta_0 + P theta_d as one (D,) vector."""
  return Projection(projection.init, projection.apply)


def mnist_fc(key):
  return from_nnx(create_model("fc", (28, 28, 1), 10, seed=key))


def conv_net(key):
  """Leaves of rank 0 to 4: conv kernel (3, 3, 1, 4), biases, dense (64, 5), a scalar."""
  k1, k2 = jax.random.split(key)
  params = {
    "conv": jax.random.normal(k1, (3, 3, 1, 4)) * 0.3,
    "conv_bias": jnp.zeros(4),
    "dense": jax.random.normal(k2, (64, 5)) * 0.1,
    "bias": jnp.zeros(5),
    "temperature": jnp.ones(()),
  }

  def fn(p, x):
    h = jax.lax.conv_general_dilated(
      x, p["conv"], (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    h = jax.nn.relu(h + p["conv_bias"][None, None, None]).reshape(x.shape[0], -1)
    return (h @ p["dense"] + p["bias"][None]) * p["temperature"]

  return from_function(fn, params)


@pytest.mark.parametrize(
  "model_init,d,configs,shape", [(mnist_fc, 750, 1, (28, 28, 1)), (conv_net, 300, 2, (8, 8, 1))]
)
def test_fused_leaves_equal_the_flat_path(model_init, d, configs, shape):
  """Fastfood's kernel writes theta_0 + P theta_d into the model's leaves: params, loss and the
  gradients (theta_d and theta_0) equal the flat path's, with and without L2 and d_active, and
  vmapped over configs of different seed and d."""
  fused, flat = (
    make_subspace(model_init, d, p)
    for p in (fastfood_projection("native"), flat_path(fastfood_projection("native")))
  )
  states = jax.jit(jax.vmap(fused.init))(jax.random.split(jax.random.PRNGKey(1), configs))
  rng = np.random.default_rng(0)
  theta = jnp.asarray(rng.normal(size=(configs, d)) * 0.05, jnp.float32)
  x = rng.random((16, *shape)).astype(np.float32)
  y = rng.integers(0, 5, 16).astype(np.int32)
  d_active = jnp.array([d // 3, d][:configs])

  def run(subspace, wd):
    def one(state, theta, d_active):
      def loss(theta, theta0):
        model = subspace.bind(state._replace(theta0=theta0), d_active)
        return make_loss_fn(model, weight_decay=wd)(theta, model.state, x, y, None)[0]

      params = subspace.full_params(state, theta, d_active)
      return params, loss(theta, state.theta0), jax.grad(loss, (0, 1))(theta, state.theta0)

    if configs == 1:
      return jax.tree.map(
        lambda a: a[None], jax.jit(one)(*jax.tree.map(lambda a: a[0], (states, theta, d_active)))
      )
    return jax.jit(jax.vmap(one))(states, theta, d_active)

  for wd in (0.0, 1e-4):
    (params, loss, (g, g0)), (params_flat, loss_flat, (g_flat, g0_flat)) = (
      run(fused, wd),
      run(flat, wd),
    )
    chex.assert_trees_all_equal_shapes_and_dtypes(params, params_flat)
    chex.assert_trees_all_close(params, params_flat, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(loss, loss_flat, rtol=1e-6)
    np.testing.assert_allclose(g, g_flat, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(g0, g0_flat, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(g[0, d // 3 :], 0.0)
    assert np.all(np.asarray(g[0, : d // 3]) != 0)


def test_fused_step_has_no_copy_of_theta_D():
  """The compiled MNIST FC step: the kernel writes the model's leaves and reads their
  gradients in place (no (D,) array besides theta_0; the theta_0 cotangent is dead code)."""
  model = mnist_fc(0)
  D = 199210
  sub = subspace_model(model, 750, fastfood_projection("native"))
  optimizer = optax.adam(1e-3)
  x, y = np.zeros((128, 28, 28, 1), np.float32), np.zeros(128, np.int32)
  for wd in (0.0, 1e-4):
    step = make_subspace_train_step(sub.subspace, optimizer, weight_decay=wd)
    hlo = (
      jax.jit(step)
      .lower(init_train_state(sub.model, optimizer), x, y, sub.state, jnp.int32(750))
      .compile()
      .as_text()
    )
    entry = hlo[hlo.index("\nENTRY") + 1 :].splitlines()[1:]
    # (result type, opcode) of every instruction of the step.
    ops = [m.groups() for m in map(re.compile(r" = (\([^)]*\)|\S+) ([\w-]+)\(").search, entry) if m]
    assert len(ops) > 20
    flat = [(t, op) for t, op in ops if f"f32[{D}]" in t and op != "parameter"]
    assert not flat, flat
    calls = [l for l in entry if "jaxnn_fastfood" in l and "custom-call(" in l]
    assert len(calls) == 2 and "fwd_leaves" in calls[0] and "bwd_leaves" in calls[1], calls

"""The few-row matmul CPU kernel and GPT-2's products built on it, against numpy and XLA."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn.lm import (
  GPT2Config,
  _matmul_kernel,
  _products,
  gpt2_forward,
  gpt2_forward_layers,
  init_cache,
  init_params,
)

pytestmark = pytest.mark.skipif(
  not _matmul_kernel.available(), reason=f"no C++ compiler: {_matmul_kernel.error()}"
)

# K, N: multiples of the 16-wide vectors and of the 8-row blocks, and not; K = 2100 also
# splits x into several L1-sized column chunks in matmul_t (768 columns at 8 rows).
SHAPES = [(37, 53), (16, 32), (33, 17), (1, 5), (200, 71), (2100, 19)]


def _rand(rng, *shape):
  return rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("rows", [1, 3, 8, 9])
def test_both_forms_equal_numpy(rows):
  rng = np.random.default_rng(rows)
  for k, n in SHAPES:
    x, w = _rand(rng, rows, k), _rand(rng, k, n)
    expected = x.astype(np.float64) @ w.astype(np.float64)
    scale = np.abs(x).astype(np.float64) @ np.abs(w).astype(np.float64)  # float32 rounding bound
    got = np.asarray(_matmul_kernel.matmul(jnp.asarray(x), jnp.asarray(w)))
    got_t = np.asarray(
      _matmul_kernel.matmul_t(jnp.asarray(x), jnp.asarray(np.ascontiguousarray(w.T)))
    )
    for y in (got, got_t):
      assert y.shape == (rows, n) and y.dtype == np.float32
      assert np.all(np.abs(y - expected) <= 1e-5 * scale + 1e-6), (rows, k, n)


def test_leading_axes_and_vmap():
  rng = np.random.default_rng(0)
  x, w, ws = _rand(rng, 2, 3, 37), _rand(rng, 37, 21), _rand(rng, 4, 37, 21)
  tol = dict(rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(_matmul_kernel.matmul(x, w), x @ w, **tol)
  np.testing.assert_allclose(_matmul_kernel.matmul_t(x, w.T.copy()), x @ w, **tol)
  # x batched, W not (the W passed with a leading axis of size 1); W batched, x not; both.
  np.testing.assert_allclose(jax.vmap(_matmul_kernel.matmul, (0, None))(x, w), x @ w, **tol)
  np.testing.assert_allclose(
    jax.vmap(_matmul_kernel.matmul, (None, 0))(x[0], ws), np.einsum("tk,bkn->btn", x[0], ws), **tol
  )
  both = jax.vmap(jax.vmap(_matmul_kernel.matmul_t, (None, 0)), (0, None))
  np.testing.assert_allclose(
    both(x, np.swapaxes(ws, 1, 2).copy()), np.einsum("atk,bkn->abtn", x, ws), **tol
  )


@pytest.mark.parametrize("shape", [(1, 1, 37), (3, 1, 37), (2, 4, 37)])
def test_gradients_equal_xla(shape):
  rng = np.random.default_rng(1)
  x, w, wte = _rand(rng, *shape), _rand(rng, 37, 53), _rand(rng, 101, 37)
  pairs = [
    (lambda x, w: _products.dense_matmul(x, w), lambda x, w: x @ w, w),
    (lambda x, w: _products.tied_logits(x, w), lambda x, w: jnp.einsum("btd,vd->btv", x, w), wte),
  ]
  for ours, xla, weight in pairs:

    def loss(f):
      def value(x, w):
        y = f(x, w)
        return jnp.sum(jnp.sin(y) * jnp.cos(jnp.arange(y.size, dtype=y.dtype).reshape(y.shape)))

      return value

    got = jax.grad(loss(ours), (0, 1))(x, weight)
    expected = jax.grad(loss(xla), (0, 1))(x, weight)
    for g, e in zip(got, expected):
      np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4)


def _compiled_hlo(f, *args):
  return jax.jit(f).lower(*args).compile().as_text()


def test_kernel_only_where_it_applies_and_weight_gradients_removed():
  rng = np.random.default_rng(2)
  x, w = jnp.asarray(_rand(rng, 2, 1, 64)), jnp.asarray(_rand(rng, 64, 96))
  # The gradient w.r.t. x alone: two kernel calls, no dot (dW is dead code) and no
  # platform conditional left in the program.
  hlo = _compiled_hlo(jax.grad(lambda x: jnp.sum(_products.dense_matmul(x, w) ** 2)), x)
  assert hlo.count('custom_call_target="jaxnn_lm_matmul') == 2
  assert " dot(" not in hlo and "conditional(" not in hlo
  # float64, or more rows than MAX_KERNEL_ROWS: XLA's dot.
  with jax.enable_x64():
    hlo64 = _compiled_hlo(_products.dense_matmul, x.astype(jnp.float64), w.astype(jnp.float64))
  many = jnp.zeros((1, _products.MAX_KERNEL_ROWS + 1, 64), jnp.float32)
  for text in (hlo64, _compiled_hlo(_products.dense_matmul, many, w)):
    assert "jaxnn_lm_matmul" not in text and " dot(" in text


def test_gpt2_float32_one_token_pass_uses_the_kernel(tiny_gpt2):
  params, config = tiny_gpt2
  cache = init_cache(config, 2, 8)
  tokens = jnp.zeros((2, 1), jnp.int32)
  hlo = _compiled_hlo(lambda p, c, t: gpt2_forward(p, config, c, t)[0], params, cache, tokens)
  # 4 dense layers per block and the head.
  assert hlo.count('custom_call_target="jaxnn_lm_matmul') == 4 * config.n_layer + 1


def test_steering_gradient_has_no_weight_gradient():
  config = GPT2Config(vocab_size=300, n_positions=64, n_embd=64, n_layer=2, n_head=4)
  params = init_params(config, jax.random.key(0))
  cache = init_cache(config, 8, 16)
  k_layers, v_layers = [cache.k[i] for i in range(2)], [cache.v[i] for i in range(2)]

  def loss(dk, dv):
    logits_Bx1xV, _, _, _ = gpt2_forward_layers(
      params,
      config,
      [a + b for a, b in zip(k_layers, dk)],
      [a + b for a, b in zip(v_layers, dv)],
      jnp.int32(3),
      jnp.zeros((8, 1), jnp.int32),
    )
    return jax.nn.log_softmax(logits_Bx1xV[:, 0])[:, 5].sum()

  hlo = _compiled_hlo(jax.grad(loss, (0, 1)), k_layers, v_layers)
  # Forward: 4 dense layers x 2 blocks + the head; backward: the head, all 4 of the last
  # block and 3 of the first (its c_attn input does not reach any cache).
  assert hlo.count('custom_call_target="jaxnn_lm_matmul') == 17
  dots = [line for line in hlo.splitlines() if " dot(" in line]
  assert dots and all("f32[8,4,1,16]" in line for line in dots)  # attention only

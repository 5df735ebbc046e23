"""GPT-2 forward, cache, NNX module and generation against transformers' PyTorch GPT-2."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from jaxnn import JaxnnError
from jaxnn.lm import _generate as _model_generate
from jaxnn.pplm import (
  GPT2,
  GPT2Config,
  generate,
  gpt2_forward,
  init_cache,
  init_params,
  load_gpt2,
  next_token,
)

# One compiled forward shared by the tests (eager op-by-op dispatch is slow on a busy CPU).
forward = jax.jit(gpt2_forward, static_argnums=1)
TEXTS = [
  "The lake is deep and the water is cold in the winter months.",
  "Return the value of the named attribute of object, if it exists!",
]


def _torch_model(folder, dtype=torch.float32):
  model = transformers.GPT2LMHeadModel.from_pretrained(folder, attn_implementation="eager")
  return model.to(dtype).eval()


def _tokens(tokenizer, n=12):
  return np.array([tokenizer.encode(t)[:n] for t in TEXTS], np.int32)


def test_logits_match_transformers_float32(tiny_gpt2_dir, tiny_gpt2, tiny_tokenizer):
  params, config = tiny_gpt2
  tokens = _tokens(tiny_tokenizer)
  with torch.no_grad():
    out = _torch_model(tiny_gpt2_dir)(
      torch.tensor(tokens, dtype=torch.long), output_hidden_states=True
    )
  logits, hidden, cache = forward(params, config, init_cache(config, 2, 16), tokens)
  np.testing.assert_allclose(logits, out.logits.numpy(), atol=2e-5, rtol=1e-5)
  np.testing.assert_allclose(hidden, out.hidden_states[-1].numpy(), atol=2e-5, rtol=1e-5)
  assert int(cache.length) == tokens.shape[1]


def test_logits_match_transformers_float64(tiny_gpt2_dir, tiny_tokenizer):
  tokens = _tokens(tiny_tokenizer)
  with torch.no_grad():
    ref = _torch_model(tiny_gpt2_dir, torch.float64)(torch.tensor(tokens, dtype=torch.long)).logits
  with jax.enable_x64(True):
    params, config = load_gpt2(tiny_gpt2_dir, dtype=jnp.float64)
    logits, _, _ = gpt2_forward(params, config, init_cache(config, 2, 12, jnp.float64), tokens)
    assert logits.dtype == jnp.float64
    np.testing.assert_allclose(logits, ref.numpy(), atol=1e-11, rtol=1e-11)


def test_cache_length_is_int32_under_x64(tiny_gpt2, tiny_tokenizer):
  params, config = tiny_gpt2
  tokens = _tokens(tiny_tokenizer, n=6)
  expected, _, _ = forward(params, config, init_cache(config, 2, 8), tokens)
  with jax.enable_x64(True):
    cache = init_cache(config, 2, 8)._replace(length=jnp.asarray(0))
    assert cache.length.dtype == jnp.int64

    def step(cache, tokens_B):  # a loop carrying the cache needs one integer type throughout
      logits_Bx1xV, _, cache = gpt2_forward(params, config, cache, tokens_B[:, None])
      return cache, logits_Bx1xV[:, 0]

    _, first = gpt2_forward(params, config, cache, tokens[:, :1])[::2]
    assert first.length.dtype == jnp.int32
    cache, logits_TxBxV = jax.jit(lambda c: jax.lax.scan(step, c, tokens[:, 1:].T))(first)
  assert cache.length.dtype == jnp.int32 and int(cache.length) == tokens.shape[1]
  np.testing.assert_allclose(logits_TxBxV.transpose(1, 0, 2), expected[:, 1:], atol=1e-5)


def test_cache_token_by_token_equals_full_forward(tiny_gpt2, tiny_tokenizer):
  params, config = tiny_gpt2
  tokens = _tokens(tiny_tokenizer)
  full_logits, full_hidden, _ = forward(params, config, init_cache(config, 2, 12), tokens)
  traces = []

  @jax.jit
  def step(cache, token_Bx1):
    traces.append(1)
    return gpt2_forward(params, config, cache, token_Bx1)

  cache = init_cache(config, 2, 16)
  _, _, cache = forward(params, config, cache, tokens[:, :4])
  for t in range(4, tokens.shape[1]):
    logits, hidden, cache = step(cache, tokens[:, t : t + 1])
    np.testing.assert_allclose(logits[:, 0], full_logits[:, t], atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(hidden[:, 0], full_hidden[:, t], atol=2e-5, rtol=1e-5)
  assert int(cache.length) == tokens.shape[1]
  assert len(traces) == 1, "the one-token step must compile once, not once per position"


def test_embeds_path_equals_token_path(tiny_gpt2, tiny_tokenizer):
  params, config = tiny_gpt2
  tokens = _tokens(tiny_tokenizer)
  cache = init_cache(config, 2, 12)
  by_tokens = forward(params, config, cache, tokens)
  by_embeds = forward(params, config, cache, embeds_BxTxD=params["wte"][tokens])
  chex.assert_trees_all_close(by_tokens, by_embeds, atol=1e-6)
  with pytest.raises(JaxnnError, match="exactly one"):
    gpt2_forward(params, config, cache)


def test_causal_and_masked_cache_by_gradients(tiny_gpt2, tiny_tokenizer):
  """The next-token logits depend on the filled cache positions only, through k and v."""
  params, config = tiny_gpt2
  tokens = _tokens(tiny_tokenizer)
  _, _, cache = forward(params, config, init_cache(config, 2, 12), tokens[:, :6])

  @jax.jit
  def last_logit_sum(k, v):
    logits, _, _ = gpt2_forward(params, config, cache._replace(k=k, v=v), tokens[:, 6:7])
    return logits.sum()

  dk, dv = jax.jit(jax.grad(last_logit_sum, argnums=(0, 1)))(cache.k, cache.v)
  for d in (dk, dv):
    per_position = np.abs(np.asarray(d)).sum(axis=(0, 1, 2, 4))
    assert np.all(per_position[:6] > 0)
    assert np.all(per_position[6:] == 0)
  # Perturbing the cache the PPLM way changes the output; perturbing masked positions does not.
  base = last_logit_sum(cache.k, cache.v)
  assert abs(float(last_logit_sum(cache.k + 0.1 * dk, cache.v)) - float(base)) > 1e-4
  pad = jnp.zeros_like(cache.k).at[:, :, :, 7:].set(5.0)
  np.testing.assert_allclose(last_logit_sum(cache.k + pad, cache.v), base, rtol=1e-6)


def test_grad_wrt_params_and_vmap(tiny_gpt2, tiny_tokenizer):
  params, config = tiny_gpt2
  tokens = _tokens(tiny_tokenizer)

  def loss(p, tokens_BxT):
    logits, _, _ = gpt2_forward(p, config, init_cache(config, tokens_BxT.shape[0], 12), tokens_BxT)
    return jax.nn.log_softmax(logits).mean()

  grads = jax.jit(jax.grad(loss))(params, tokens)
  assert all(np.all(np.isfinite(g)) and np.any(g != 0) for g in jax.tree.leaves(grads))
  per_example = jax.jit(
    jax.vmap(lambda t: gpt2_forward(params, config, init_cache(config, 1, 12), t[None])[0][0])
  )(tokens)
  batched, _, _ = forward(params, config, init_cache(config, 2, 12), tokens)
  np.testing.assert_allclose(per_example, batched, atol=1e-5)


def test_nnx_module_wraps_the_same_params(tiny_gpt2, tiny_tokenizer):
  params, config = tiny_gpt2
  tokens = _tokens(tiny_tokenizer)
  model = GPT2(config, params=params)
  _, state = nnx.split(model)
  cache = init_cache(config, 2, 12)
  # Two separately compiled float32 programs: equal up to rounding (the params exactly).
  chex.assert_trees_all_close(
    nnx.jit(lambda m: m(cache, tokens))(model),
    forward(state, config, cache, tokens),
    atol=1e-5,
    rtol=1e-5,
  )
  chex.assert_trees_all_equal(model.params(), params)
  fresh = GPT2(config, rngs=nnx.Rngs(0))
  chex.assert_trees_all_equal_shapes(fresh.params(), params)
  with pytest.raises(JaxnnError, match="params"):
    GPT2(config)


def test_init_params_follow_gpt2_shapes():
  config = GPT2Config(vocab_size=50, n_positions=16, n_embd=8, n_layer=3, n_head=2)
  params = init_params(config, jax.random.key(0), initializer_range=0.2)
  assert len(params["h"]) == 3
  assert params["h"][2]["attn"]["c_attn"]["kernel"].shape == (8, 24)
  assert params["h"][2]["mlp"]["c_proj"]["kernel"].shape == (32, 8)
  np.testing.assert_allclose(np.std(params["wte"]), 0.2, rtol=0.15)
  with pytest.raises(JaxnnError, match="multiple of n_head"):
    GPT2Config(n_embd=10, n_head=3)
  with pytest.raises(JaxnnError, match="max_len"):
    init_cache(config, 1, 17)


def test_greedy_generation_matches_transformers(tiny_gpt2_dir, tiny_gpt2, tiny_tokenizer):
  params, config = tiny_gpt2
  prompt = _tokens(tiny_tokenizer, n=5)
  with torch.no_grad():
    ref = _torch_model(tiny_gpt2_dir).generate(
      torch.tensor(prompt, dtype=torch.long),
      attention_mask=torch.ones(prompt.shape, dtype=torch.long),
      max_new_tokens=20,
      do_sample=False,
      pad_token_id=0,
      eos_token_id=None,
    )
  ours = generate(params, config, prompt, 20)
  np.testing.assert_array_equal(ours, ref[:, 5:].numpy())


def test_generation_compiles_once_not_per_token(tiny_gpt2, tiny_tokenizer, monkeypatch):
  params, config = tiny_gpt2
  calls = []
  real_forward = _model_generate.lm_forward

  def counting_forward(*args, **kwargs):
    calls.append(1)
    return real_forward(*args, **kwargs)

  monkeypatch.setattr(_model_generate, "lm_forward", counting_forward)
  prompt = _tokens(tiny_tokenizer, n=3)[:1]
  a = generate(params, config, prompt, 37, greedy=False, top_k=5, key=jax.random.key(0))
  traced = len(calls)
  b = generate(params, config, prompt, 37, greedy=False, top_k=5, key=jax.random.key(1))
  assert traced == 2, "one trace for the prompt and one for the scanned step, whatever the length"
  assert len(calls) == traced, "a second call with the same shapes must not retrace"
  assert a.shape == b.shape == (1, 37) and not np.array_equal(a, b)


def test_sampling_follows_top_k_softmax():
  logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
  keys = jax.random.split(jax.random.key(0), 4000)
  draws = jax.vmap(lambda k: next_token(logits, k, greedy=False, temperature=1.0, top_k=2))(keys)
  freq = np.bincount(np.asarray(draws[:, 0]), minlength=4) / 4000
  np.testing.assert_allclose(freq, [0.5 / 0.8, 0.3 / 0.8, 0, 0], atol=0.03)
  np.testing.assert_array_equal(
    next_token(logits, None, greedy=True, temperature=1.0, top_k=0), [0]
  )


def test_generation_rejects_bad_input(tiny_gpt2):
  params, config = tiny_gpt2
  with pytest.raises(JaxnnError, match="positions"):
    generate(params, config, np.zeros((1, 10), np.int32), 60)
  with pytest.raises(JaxnnError, match="key"):
    generate(params, config, np.zeros((1, 2), np.int32), 5, greedy=False)
  with pytest.raises(JaxnnError, match="batch, T"):
    generate(params, config, np.zeros((3,), np.int32), 5)


def test_vmap_over_caches_of_different_lengths(tiny_gpt2, tiny_tokenizer):
  """Each vmapped cache writes and attends at its own length."""
  params, config = tiny_gpt2
  tokens = _tokens(tiny_tokenizer)[:1]
  full_logits, _, _ = forward(params, config, init_cache(config, 1, 12), tokens)
  caches = [forward(params, config, init_cache(config, 1, 12), tokens[:, :n])[2] for n in (3, 7)]
  stacked = jax.tree.map(lambda *a: jnp.stack(a), *caches)
  next_2x1x1 = jnp.stack([tokens[:, 3:4], tokens[:, 7:8]])
  logits, _, new = jax.jit(jax.vmap(lambda c, t: gpt2_forward(params, config, c, t)))(
    stacked, next_2x1x1
  )
  np.testing.assert_allclose(logits[:, 0, 0], full_logits[0, [3, 7]], atol=2e-5, rtol=1e-5)
  np.testing.assert_array_equal(new.length, [4, 8])


@pytest.mark.parametrize("k", [1, 3, 10, 40])
def test_kth_largest_equals_top_k_with_ties(k):
  rng = np.random.default_rng(k)
  x = rng.integers(0, 50, (4, 1000)).astype(np.float32)  # many ties
  x[1, :] = 7.0
  x[2, -1] = 1e6
  expected = jax.lax.top_k(jnp.asarray(x), k)[0][:, -1:]
  np.testing.assert_array_equal(_model_generate.kth_largest(jnp.asarray(x), k), expected)

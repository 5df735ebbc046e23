"""Every supported family against transformers: logits of a prompt and of cached decoding.

The tiny models (tests/lm/families.py) are random, saved by transformers'
`save_pretrained` and read back by `jaxnn.lm.load_lm`; transformers runs the
same model in PyTorch (eager attention) as the independent reference.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from families import FAMILIES, make_model

from jaxnn.lm import init_cache, lm_config, lm_forward, load_lm

forward = jax.jit(lm_forward, static_argnums=1)
TOKENS = np.random.default_rng(0).integers(3, 96, (2, 12)).astype(np.int32)
TOL = dict(atol=5e-5, rtol=5e-5)


def _reference_logits(name, tokens=TOKENS):
  with torch.no_grad():
    return make_model(name)(torch.tensor(tokens, dtype=torch.long)).logits.numpy()


def _incremental(params, config, tokens, prefix):
  """Logits of tokens[prefix:] fed one at a time after the prefix filled the cache."""
  cache = init_cache(config, tokens.shape[0], tokens.shape[1])
  _, _, cache = forward(params, config, cache, tokens[:, :prefix])
  steps = []
  for t in range(prefix, tokens.shape[1]):
    logits, _, cache = forward(params, config, cache, tokens[:, t : t + 1])
    steps.append(np.asarray(logits[:, 0]))
  assert int(cache.length) == tokens.shape[1]
  return np.stack(steps, axis=1)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_logits_match_transformers(name, family_dir):
  params, config = load_lm(family_dir(name))
  types = {"llama3": "llama", "pythia": "gpt_neox", "neox_sequential": "gpt_neox"}
  assert config.model_type == types.get(name, name)
  ref = _reference_logits(name)
  full, _, _ = forward(params, config, init_cache(config, 2, 16), TOKENS)
  np.testing.assert_allclose(full, ref, **TOL)
  # Prefix of 3, then 9 single tokens: past the sliding windows (5 and 4) where there are any.
  np.testing.assert_allclose(_incremental(params, config, TOKENS, 3), ref[:, 3:], **TOL)


@pytest.mark.parametrize("name", ["mistral", "gemma2"])
def test_sliding_window_matters(name, family_dir):
  """Without its window the model's logits differ: the parity above checks the window."""
  params, config = load_lm(family_dir(name))
  assert FAMILIES[name][3] == config.sliding_window > 0
  if name == "gemma2":
    assert config.sliding_layers == (True, False, True)
  unwindowed = dataclasses.replace(config, sliding_window=0, sliding_layers=())
  ref = _reference_logits(name)
  full, _, _ = forward(params, unwindowed, init_cache(config, 2, 16), TOKENS)
  window = config.sliding_window
  np.testing.assert_allclose(full[:, :window], ref[:, :window], **TOL)
  assert np.abs(np.asarray(full[:, window + 1 :]) - ref[:, window + 1 :]).max() > 1e-3


def test_gqa_cache_holds_the_shared_heads(family_dir):
  params, config = load_lm(family_dir("llama3"))
  assert (config.num_heads, config.num_kv_heads) == (4, 2)
  cache = init_cache(config, 2, 16)
  assert cache.k.shape == (2, 2, 2, 16, 8)
  gemma = lm_config(load_lm(family_dir("gemma"))[1])
  assert gemma.num_kv_heads == 1 and gemma.head_dim == 16


def test_float64_matches_transformers_float64(family_dir):
  """In float64 the agreement is to rounding (the RoPE angles included)."""
  name = "llama3"
  with torch.no_grad():
    ref = make_model(name).double()(torch.tensor(TOKENS, dtype=torch.long)).logits.numpy()
  with jax.enable_x64(True):
    params, config = load_lm(family_dir(name), dtype=jnp.float64)
    logits, _, _ = lm_forward(params, config, init_cache(config, 2, 12, jnp.float64), TOKENS)
    assert logits.dtype == jnp.float64
  # transformers computes RoPE's cos/sin in float32 even for a float64 model.
  np.testing.assert_allclose(logits, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_half_precision_weights(dtype, family_dir, tmp_path):
  """Weights stored in bfloat16/float16 load and compute in that dtype, close to float32."""
  model = make_model("qwen2")
  torch_dtype = {jnp.bfloat16: torch.bfloat16, jnp.float16: torch.float16}[dtype]
  model.to(torch_dtype).save_pretrained(tmp_path)
  stored, config = load_lm(tmp_path, dtype=dtype)
  assert all(a.dtype == dtype for a in jax.tree.leaves(stored))
  as_f32, _ = load_lm(tmp_path)
  import transformers

  rounded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32)
  with torch.no_grad():
    ref = rounded.eval()(torch.tensor(TOKENS, dtype=torch.long)).logits.numpy()
  logits32, _, _ = forward(as_f32, config, init_cache(config, 2, 12), TOKENS)
  np.testing.assert_allclose(logits32, ref, **TOL)  # the rounded weights, exactly in float32
  logits, _, _ = forward(stored, config, init_cache(config, 2, 12, dtype), TOKENS)
  assert logits.dtype == dtype
  np.testing.assert_allclose(np.asarray(logits, np.float32), ref, atol=0.15, rtol=0.05)

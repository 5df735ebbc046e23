"""RoPE scaling variants ("yarn", "dynamic", "longrope", "proportional") against transformers.

Each variant runs in a tiny random model saved by transformers'
`save_pretrained` (tests/lm/families.py with the variant's rope_scaling) and
read by `load_lm`; transformers' PyTorch model is the reference, over a
prompt longer than the original context and through the key/value cache,
one token at a time, past it. The frequency tables are also checked against
transformers' `ROPE_INIT_FUNCTIONS` directly, at real models' sizes.
"""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from families import make_model
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from jaxnn._errors import JaxnnError
from jaxnn.lm import LMConfig, generate, init_cache, inverse_frequencies, lm_forward, load_lm

forward = jax.jit(lm_forward, static_argnums=1)
TOKENS = np.random.default_rng(1).integers(3, 96, (2, 32)).astype(np.int32)
TOL = dict(atol=5e-5, rtol=5e-5)
ORIGINAL = 16  # original_max_position_embeddings (max_position_embeddings for "dynamic")

# name: (family in families.py, overrides of its config)
MODELS = {
  "llama_yarn": (  # 16-dim heads, small theta: YaRN's ramp spans several frequencies
    "llama3",
    dict(
      head_dim=16,
      rope_theta=50.0,
      max_position_embeddings=64,
      rope_scaling=dict(
        rope_type="yarn",
        factor=4.0,
        original_max_position_embeddings=ORIGINAL,
        beta_fast=2.0,
        beta_slow=0.5,
        truncate=False,
      ),
    ),
  ),
  "qwen2_yarn": (  # Qwen2.5's long-context recipe: factor 4 and the default betas
    "qwen2",
    dict(
      max_position_embeddings=64,
      rope_scaling=dict(rope_type="yarn", factor=4.0, original_max_position_embeddings=ORIGINAL),
    ),
  ),
  "llama_dynamic": (
    "llama3",
    dict(max_position_embeddings=ORIGINAL, rope_scaling=dict(rope_type="dynamic", factor=2.0)),
  ),
  "phi3_longrope": (  # Phi-3 128k style: original context apart from max_position_embeddings
    "phi3",
    dict(
      max_position_embeddings=64,
      original_max_position_embeddings=ORIGINAL,
      rope_scaling=dict(rope_type="longrope", short_factor=[1.0, 1.5], long_factor=[3.0, 9.0]),
    ),
  ),
  "llama_longrope": (
    "llama3",
    dict(
      max_position_embeddings=64,
      rope_scaling=dict(
        rope_type="longrope",
        short_factor=[1.0, 1.2, 1.5, 2.0],
        long_factor=[1.5, 3.0, 6.0, 12.0],
        original_max_position_embeddings=ORIGINAL,
        attention_factor=1.3,
      ),
    ),
  ),
  "llama_proportional": (  # Gemma 4's: half the frequencies rotate, the rest stay
    "llama3",
    dict(
      head_dim=16,
      max_position_embeddings=64,
      rope_scaling=dict(rope_type="proportional", partial_rotary_factor=0.5, factor=2.0),
    ),
  ),
}


def _model(name):
  family, overrides = MODELS[name]
  return make_model(family, **overrides)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  """saved(name) -> (params, config) that load_lm read from the model's save_pretrained files."""
  made = {}

  def load(name):
    if name not in made:
      folder = tmp_path_factory.mktemp(name)
      _model(name).save_pretrained(folder)
      made[name] = load_lm(folder)
    return made[name]

  return load


def _reference_steps(model, tokens, prefix):
  """transformers' logits: the prefix in one call, then one token per call through its cache."""
  cache = transformers.DynamicCache(config=model.config)
  ids = torch.tensor(tokens, dtype=torch.long)
  steps = []
  with torch.no_grad():
    out = model(ids[:, :prefix], cache=cache, use_cache=True)
    steps.append(out.logits.numpy())
    for t in range(prefix, tokens.shape[1]):
      out = model(ids[:, t : t + 1], cache=cache, use_cache=True)
      steps.append(out.logits.numpy())
  return np.concatenate(steps, axis=1)


def _reference_generate(name, prompt, new):
  """transformers' greedy generate of `new` tokens (its cache; no end-of-text stop)."""
  model = _model(name)
  model.generation_config.eos_token_id = None
  with torch.no_grad():
    out = model.generate(
      torch.tensor(prompt, dtype=torch.long), max_new_tokens=new, do_sample=False, pad_token_id=0
    )
  return out[:, prompt.shape[1] :].numpy()


def _jaxnn_steps(params, config, tokens, prefix):
  """jaxnn's logits, fed as `_reference_steps` feeds transformers."""
  cache = init_cache(config, tokens.shape[0], tokens.shape[1])
  logits, _, cache = forward(params, config, cache, tokens[:, :prefix])
  steps = [np.asarray(logits)]
  for t in range(prefix, tokens.shape[1]):
    logits, _, cache = forward(params, config, cache, tokens[:, t : t + 1])
    steps.append(np.asarray(logits))
  return np.concatenate(steps, axis=1)


@pytest.mark.parametrize("name", list(MODELS))
def test_config_json_is_read(name, saved):
  _, config = saved(name)
  scaling = dict(config.rope_scaling)
  assert scaling["rope_type"] == MODELS[name][1]["rope_scaling"]["rope_type"]
  hash(config)  # a static jit argument
  if scaling["rope_type"] == "proportional":
    assert config.rotary == config.head_dim == 16  # all of the head rotates, half at frequency 0
    assert (inverse_frequencies(config) == 0).sum() == 4
    return
  assert scaling["original_max_position_embeddings"] == ORIGINAL
  if scaling["rope_type"] == "dynamic":  # made to run factor times past max_position_embeddings
    assert config.max_positions == 2 * ORIGINAL


# Only dynamic's and longrope's tables depend on the length: one prefix past the original
# context suffices for the others.
CASES = [(n, p) for n in MODELS for p in ((6, 20) if "dynamic" in n or "longrope" in n else (20,))]


@pytest.mark.parametrize("name, prefix", CASES)
def test_cached_decoding_matches_transformers(name, prefix, saved):
  """A prompt below (6) or past (20) the original context (16), then one token at a time to 32.

  For "dynamic" and "longrope" each call's frequencies follow its last
  position, so keys cached before the threshold keep their rotation: the
  same as transformers' forward with a cache (a fresh model each time, since
  transformers' dynamic RoPE keeps the largest table it has grown).
  """
  params, config = saved(name)
  ref = _reference_steps(_model(name), TOKENS, prefix)
  np.testing.assert_allclose(_jaxnn_steps(params, config, TOKENS, prefix), ref, **TOL)


@pytest.mark.parametrize("name", ["llama_dynamic", "phi3_longrope"])
def test_frequencies_change_past_the_original_context(name, saved):
  """The table used past the threshold differs from the one below it, so the parity above
  checks the switch (a model that ignored the length would fail it)."""
  params, config = saved(name)
  below, past = inverse_frequencies(config, ORIGINAL), inverse_frequencies(config, 2 * ORIGINAL)
  assert np.abs(past / below - 1).max() > 0.05
  ref = _reference_steps(_model(name), TOKENS, 6)
  fixed = dict(config.rope_scaling)
  if name == "llama_dynamic":
    fixed = {"rope_type": "default"}  # dynamic at or below max_positions is plain RoPE
  else:
    fixed["long_factor"] = fixed["short_factor"]
  unswitched = dataclasses.replace(config, rope_scaling=tuple(sorted(fixed.items())))
  steps = _jaxnn_steps(params, unswitched, TOKENS, 6)
  np.testing.assert_allclose(steps[:, :ORIGINAL], ref[:, :ORIGINAL], **TOL)
  assert np.abs(steps[:, ORIGINAL:] - ref[:, ORIGINAL:]).max() > 1e-2


def test_dynamic_generate_matches_transformers(saved):
  """jaxnn's compiled generate (the length traced under jit) against transformers' generate."""
  params, config = saved("llama_dynamic")
  prompt = TOKENS[:, :10]
  ours = np.asarray(generate(params, config, jnp.asarray(prompt), 20))
  np.testing.assert_array_equal(ours, _reference_generate("llama_dynamic", prompt, 20))


def _greedy(params, config, prompt, new, reencode_at=None):
  """Greedy decoding through the cache; the whole sequence again once it reaches reencode_at."""
  sequence = list(prompt[0])
  size = len(sequence) + new
  logits, _, cache = forward(params, config, init_cache(config, 1, size), prompt)
  last = []
  for _ in range(new):
    last.append(np.asarray(logits[0, -1]))
    sequence.append(int(np.argmax(logits[0, -1])))
    if len(sequence) == reencode_at:
      logits, _, cache = forward(
        params, config, init_cache(config, 1, size), np.asarray([sequence], np.int32)
      )
    else:
      logits, _, cache = forward(params, config, cache, np.asarray([sequence[-1:]], np.int32))
  return np.asarray(sequence[len(prompt[0]) :]), np.stack(last)


def test_longrope_generate_reencodes_at_the_switch(saved):
  """transformers' Phi-3 generate drops its cache once, when the sequence first passes the
  original context, and re-encodes it all with the long factors. jaxnn's cached forward does
  not (documented); re-encoding at that step, as below, gives transformers' tokens."""
  params, config = saved("phi3_longrope")
  prompt, new = TOKENS[:1, :10], 14
  theirs = _reference_generate("phi3_longrope", prompt, new)[0]
  tokens, logits = _greedy(params, config, prompt, new, reencode_at=ORIGINAL + 1)
  np.testing.assert_array_equal(tokens, theirs)
  # Without the re-encoding the logits after the switch differ (the same tokens fed).
  fed = np.concatenate([prompt[0], tokens])[None].astype(np.int32)
  plain = _jaxnn_steps(params, config, fed, 10)[0, 9:-1]
  np.testing.assert_allclose(plain[: ORIGINAL - 9], logits[: ORIGINAL - 9], **TOL)
  assert np.abs(plain[ORIGINAL - 9 :] - logits[ORIGINAL - 9 :]).max() > 1e-2


# Real models' sizes: (transformers config class, its arguments).
REAL = {
  "qwen2.5_yarn": (  # Qwen2.5-7B-Instruct's long-context setting
    "Qwen2Config",
    dict(
      hidden_size=3584,
      num_attention_heads=28,
      num_key_value_heads=4,
      rope_theta=1e6,
      max_position_embeddings=131072,
      rope_scaling=dict(rope_type="yarn", factor=4.0, original_max_position_embeddings=32768),
    ),
  ),
  "yarn_mscale_untruncated": (
    "LlamaConfig",
    dict(
      hidden_size=2048,
      num_attention_heads=16,
      rope_theta=1e4,
      max_position_embeddings=16384,
      rope_scaling=dict(
        rope_type="yarn",
        factor=8.0,
        original_max_position_embeddings=2048,
        beta_fast=16,
        beta_slow=2,
        mscale=0.707,
        mscale_all_dim=1.0,
        truncate=False,
      ),
    ),
  ),
  "llama_dynamic": (
    "LlamaConfig",
    dict(
      hidden_size=4096,
      num_attention_heads=32,
      max_position_embeddings=4096,
      rope_scaling=dict(rope_type="dynamic", factor=2.0),
    ),
  ),
  "phi3_128k_longrope": (  # Phi-3-mini-128k's shape; smooth made-up factors
    "Phi3Config",
    dict(
      hidden_size=3072,
      num_attention_heads=32,
      max_position_embeddings=131072,
      original_max_position_embeddings=4096,
      rope_scaling=dict(
        rope_type="longrope",
        short_factor=np.linspace(1.0, 2.0, 48).tolist(),
        long_factor=np.geomspace(1.0, 60.0, 48).tolist(),
      ),
    ),
  ),
  "proportional": (
    "LlamaConfig",
    dict(
      hidden_size=2048,
      num_attention_heads=8,
      rope_theta=1e6,
      rope_scaling=dict(rope_type="proportional", partial_rotary_factor=0.25, factor=8.0),
    ),
  ),
}


@pytest.mark.parametrize("name", list(REAL))
def test_inverse_frequencies_match_rope_init_functions(name):
  """inverse_frequencies and the attention factor equal transformers' (computed in float32)."""
  config_cls, kwargs = REAL[name]
  hf = getattr(transformers, config_cls)(**kwargs)
  config = LMConfig.from_hf_dict(json.loads(hf.to_json_string()))
  rope_type = hf.rope_parameters["rope_type"]
  traced = jax.jit(inverse_frequencies, static_argnums=0)
  for seq_len in (None, 100, 4096, 4097, 40000, 200000):
    inv, attention = ROPE_INIT_FUNCTIONS[rope_type](hf, "cpu", seq_len=seq_len)
    ours = inverse_frequencies(config, seq_len)
    assert ours.dtype == np.float64
    np.testing.assert_allclose(ours, inv.numpy(), rtol=1e-6)
    assert config.rope_attention_factor == pytest.approx(attention, rel=1e-12)
    if seq_len is not None:  # the same table from a JAX length, under jit
      np.testing.assert_allclose(traced(config, jnp.int32(seq_len)), ours, rtol=1e-6)


def test_yarn_attention_factor_scales_cos_and_sin(saved):
  """YaRN's attention factor is not 1 here, so the parity checks its scaling of cos and sin."""
  _, config = saved("qwen2_yarn")
  assert config.rope_attention_factor == pytest.approx(0.1 * np.log(4.0) + 1)
  _, config = saved("llama_longrope")
  assert config.rope_attention_factor == 1.3
  _, config = saved("phi3_longrope")
  assert config.rope_attention_factor == pytest.approx(np.sqrt(1 + np.log(4.0) / np.log(16)))


def _llama(**rope):
  return dict(
    model_type="llama",
    vocab_size=96,
    hidden_size=32,
    num_attention_heads=4,
    num_hidden_layers=1,
    intermediate_size=48,
    max_position_embeddings=64,
    rope_scaling=rope,
  )


@pytest.mark.parametrize(
  "config, message",
  [
    (_llama(rope_type="proportional_x", factor=2.0), "supported: default, linear, dynamic, yarn"),
    (_llama(rope_type="dynamic"), "lacks 'factor'"),
    (_llama(rope_type="dynamic", factor="2"), "'factor' must be float"),
    (_llama(rope_type="yarn", factor=4.0, beta_fast="x"), "'beta_fast' must be float"),
    (_llama(rope_type="yarn", factor=4.0, truncate=1), "'truncate' must be bool"),
    (_llama(rope_type="yarn", factor=-4.0), "'factor' must be a positive finite number"),
    (_llama(rope_type="longrope", short_factor=[1, 1, 1, 1]), "'long_factor' must be a list"),
    (
      _llama(rope_type="longrope", short_factor=[1, 1, 1], long_factor=[1, 2, 3, 4]),
      "'short_factor' has 3 entries; the model has 4 rotary frequencies",
    ),
    (
      {
        **_llama(rope_type="longrope", short_factor=[1] * 4, long_factor=[1] * 4),
        "model_type": "phi3",
      },
      None,
    ),
    ({**_llama(rope_type="dynamic", factor=2.0), "model_type": "phi3"}, "takes only 'default' or"),
  ],
)
def test_bad_rope_scaling_is_refused_in_one_line(config, message):
  if message is None:  # the valid neighbour of the cases around it
    LMConfig.from_hf_dict(config)
    return
  with pytest.raises(JaxnnError, match=message) as info:
    LMConfig.from_hf_dict(config)
  assert "\n" not in str(info.value)


def test_hand_built_scaling_is_checked():
  shape = dict(
    vocab_size=8,
    hidden_size=8,
    num_layers=1,
    num_heads=1,
    num_kv_heads=1,
    head_dim=8,
    intermediate_size=8,
    max_positions=16,
  )
  with pytest.raises(JaxnnError, match="lists as tuples"):
    LMConfig(**shape, rope_scaling=(("rope_type", "longrope"), ("short_factor", [1.0] * 4)))
  with pytest.raises(JaxnnError, match="needs long_factor, original_max_position_embeddings"):
    LMConfig(**shape, rope_scaling=(("rope_type", "longrope"), ("short_factor", (1.0,) * 4)))
  with pytest.raises(JaxnnError, match="needs factor, original_max_position_embeddings"):
    LMConfig(**shape, rope_scaling=(("rope_type", "yarn"),))
  # Defaults as transformers': YaRN's betas 32 and 1, truncation, 0.1 ln(factor) + 1.
  yarn = LMConfig(
    **shape,
    rope_theta=50.0,
    rope_scaling=(("factor", 4.0), ("original_max_position_embeddings", 8), ("rope_type", "yarn")),
  )
  explicit = LMConfig(
    **shape,
    rope_theta=50.0,
    rope_scaling=(
      ("beta_fast", 32.0),
      ("beta_slow", 1.0),
      ("factor", 4.0),
      ("original_max_position_embeddings", 8),
      ("rope_type", "yarn"),
      ("truncate", True),
    ),
  )
  np.testing.assert_array_equal(inverse_frequencies(yarn), inverse_frequencies(explicit))
  assert yarn.rope_attention_factor == explicit.rope_attention_factor == 0.1 * np.log(4.0) + 1

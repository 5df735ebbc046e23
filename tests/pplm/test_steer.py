"""PPLM steering: exact checks against the unsteered model and an independent
PyTorch implementation of the reference algorithm (tests/pplm/reference_torch.py).

Cases with prompts of different lengths steer them as one left-padded batch;
the reference steers each prompt alone (batch 1, no padding).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference_torch import generate as reference_generate

from jaxnn import JaxnnError
from jaxnn.pplm import _steer, gpt2_forward, init_cache, load_gpt2
from jaxnn.pplm import generate as unsteered_generate
from jaxnn.pplm._steer import (
  Attributes,
  BagsOfWords,
  Discriminator,
  PPLMConfig,
  bag_probabilities,
  steered_generate,
)

BAG = [11, 40, 77, 150, 201, 290]


def single_bag(vocab_size, ids=BAG):
  single = np.zeros((1, vocab_size), np.float32)
  single[0, ids] = 1.0
  empty = jnp.zeros((0,), jnp.int32)
  return BagsOfWords(jnp.asarray(single), jnp.zeros((0, 2), jnp.int32), empty, empty)


@pytest.fixture(scope="module")
def torch_model64(tiny_gpt2_dir):
  import transformers

  return transformers.GPT2LMHeadModel.from_pretrained(tiny_gpt2_dir).double().eval()


@pytest.fixture(scope="module")
def head64():
  import torch

  torch.manual_seed(3)
  return torch.nn.Linear(32, 3).double()


def test_stepsize_zero_reproduces_unsteered_greedy(tiny_gpt2):
  params, config = tiny_gpt2
  prompt = jnp.asarray([[0, 17, 93, 5], [0, 250, 3, 64]])
  bags = Attributes(bags=single_bag(config.vocab_size))
  steered = steered_generate(params, config, prompt, bags, PPLMConfig(length=12, stepsize=0.0))
  baseline = steered_generate(params, config, prompt, bags, PPLMConfig(length=12), perturb=False)
  plain = unsteered_generate(params, config, prompt, 12, greedy=True, top_k=10)
  np.testing.assert_array_equal(steered, plain)
  np.testing.assert_array_equal(baseline, plain)


CASES = {
  # name: (PPLMConfig overrides, bag?, discriminator?, prompts)
  "bow_window_decay_gradlength": (
    dict(window_length=3, decay=True, grad_length=5, stepsize=0.05),
    True,
    False,
    [[0, 17, 93, 5, 120], [0, 250, 3], [0]],  # padded: windows start at each first token
  ),
  "bow_single_token_prompt_sampling_knobs": (
    dict(stepsize=0.1, top_k=0, temperature=0.8, gm_scale=0.7),
    True,
    False,
    [[0]],
  ),
  "discriminator_horizon2_first_window": (
    dict(horizon_length=2, window_length=2, gamma=1.0, num_iterations=4, stepsize=0.04),
    False,
    True,
    [[0, 33, 8, 140]],
  ),
  "discriminator_horizon1": (dict(stepsize=0.04), False, True, [[0, 33, 8, 140]]),
  "both_recent_window_decay": (
    dict(window_length=3, window_position="recent", decay=True, stepsize=0.05, kl_scale=0.05),
    True,
    True,
    [[0, 99, 7, 61, 2, 18], [0, 5, 77]],  # padded: the discriminator's mean skips the padding
  ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_parity_with_torch_reference_float64(name, tiny_gpt2_dir, torch_model64, head64):
  overrides, use_bag, use_disc, prompts = CASES[name]
  config = PPLMConfig(length=7, **overrides)
  with jax.enable_x64(True):
    params, gpt2 = load_gpt2(tiny_gpt2_dir, dtype=jnp.float64)
    disc = Discriminator(
      jnp.asarray(head64.weight.detach().numpy().T),
      jnp.asarray(head64.bias.detach().numpy()),
      jnp.asarray(2),
    )
    attributes = Attributes(
      bags=single_bag(gpt2.vocab_size) if use_bag else None,
      discriminators=(disc,) if use_disc else (),
    )
    tokens, probs = steered_generate(params, gpt2, prompts, attributes, config, return_probs=True)
    _, still = steered_generate(
      params,
      gpt2,
      prompts,
      attributes,
      dataclasses.replace(config, stepsize=0.0),
      return_probs=True,
    )
  assert probs.dtype == jnp.float64
  for b, prompt in enumerate(prompts):
    ref_tokens, ref_probs = reference_generate(
      torch_model64,
      prompt,
      length=config.length,
      bow_ids=[BAG] if use_bag else [],
      classifier=head64 if use_disc else None,
      class_label=2,
      stepsize=config.stepsize,
      temperature=config.temperature,
      top_k=config.top_k,
      num_iterations=config.num_iterations,
      grad_length=config.grad_length,
      window_length=config.window_length,
      horizon_length=config.horizon_length,
      decay=config.decay,
      gamma=config.gamma,
      gm_scale=config.gm_scale,
      kl_scale=config.kl_scale,
      recent_window=config.window_position == "recent",
    )
    assert np.asarray(tokens[b]).tolist() == ref_tokens
    ref = np.concatenate([p.detach().numpy() for p in ref_probs])
    np.testing.assert_allclose(np.asarray(probs[b]), ref, rtol=0, atol=1e-10)
  # The perturbation matters on this model: it moved the distributions.
  assert np.abs(np.asarray(probs) - np.asarray(still)).max() > 1e-3


def test_bag_word_rate_rises_with_stepsize(tiny_gpt2):
  params, config = tiny_gpt2
  bag = single_bag(config.vocab_size)
  prompt = jnp.tile(jnp.asarray([[0, 17, 93, 5]]), (16, 1))
  rates, compiled = [], []
  for stepsize in (0.0, 0.05, 0.3):
    tokens = steered_generate(
      params,
      config,
      prompt,
      Attributes(bags=bag),
      PPLMConfig(length=10, stepsize=stepsize, sample=True, gm_scale=0.95),
      key=jax.random.key(1),
    )
    rates.append(float(np.isin(np.asarray(tokens), BAG).mean()))
    compiled.append(_steer._generate._cache_size())
  assert compiled[0] == compiled[1] == compiled[2], "a new step size must not recompile"
  assert rates[0] < rates[1] < rates[2], rates
  assert rates[2] > 2 * rates[0] + 0.05, rates


@pytest.mark.slow
def test_multi_token_word_probability_is_chain_rule(tiny_gpt2):
  params, config = tiny_gpt2
  prompt = jnp.asarray([[0, 17, 93, 5], [0, 250, 3, 64]])
  words = np.asarray([[40, 7, 0], [120, 33, 81]], np.int32)
  bags = BagsOfWords(
    jnp.asarray(np.zeros((2, config.vocab_size), np.float32)),
    jnp.asarray(words),
    jnp.asarray([2, 3], jnp.int32),
    jnp.asarray([0, 1], jnp.int32),
  )
  logits, _, cache = gpt2_forward(params, config, init_cache(config, 2, 12), prompt)
  probs = jax.nn.softmax(logits[:, -1], axis=-1)
  p_BxN = np.asarray(bag_probabilities(params, config, probs, cache, bags))
  for b in range(2):
    for n, (word, size) in enumerate(zip(words, (2, 3))):
      full = jnp.concatenate([prompt[b], jnp.asarray(word[:size])])[None]
      logits_full, _, _ = gpt2_forward(params, config, init_cache(config, 1, 12), full)
      logp = jax.nn.log_softmax(logits_full[0], axis=-1)
      expected = np.exp(sum(float(logp[3 + j, word[j]]) for j in range(size)))
      np.testing.assert_allclose(p_BxN[b, n], expected, rtol=2e-5)


def test_generate_rejects_bad_input(tiny_gpt2):
  params, config = tiny_gpt2
  with pytest.raises(JaxnnError, match="nothing to steer"):
    steered_generate(params, config, jnp.asarray([[0, 1]]), Attributes(), PPLMConfig(length=2))
  with pytest.raises(JaxnnError, match="positions"):
    steered_generate(
      params,
      config,
      jnp.asarray([[0, 1]]),
      Attributes(bags=single_bag(config.vocab_size)),
      PPLMConfig(length=200),
    )
  with pytest.raises(JaxnnError, match="window_length"):
    PPLMConfig(decay=True)
  with pytest.raises(JaxnnError, match="window_position"):
    PPLMConfig(window_position="last")

"""PPLM's per-step diagnostics against an independent recomputation, and the padded-prompt API.

The recomputation differentiates a loss written here with `lm_forward` on the
stacked cache (the steering loop uses the per-layer `lm_forward_layers`),
takes per-layer norms with `jnp.linalg.norm` and applies PPLM's normalized
step by hand, in float64.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import JaxnnError
from jaxnn.lm import init_cache, left_pad, lm_forward, load_lm
from jaxnn.pplm import Attributes, PPLMConfig, bag_of_words, steered_generate

BAG = [11, 40, 77, 150, 201, 290]
PROMPTS = [[0, 17, 93, 5], [0, 250]]
CONFIG = PPLMConfig(length=2, num_iterations=2, stepsize=0.05, kl_scale=0.05, gamma=1.5)


@functools.partial(jax.jit, static_argnums=1)
def _reference_first_step(params, lm, prompt_1xP, bag_V):
  """(attribute losses, KLs, per-layer gradient norms) of the 2 iterations at the first token."""
  cache = init_cache(lm, 1, prompt_1xP.shape[1], jnp.float64)
  unpert, _, _ = lm_forward(params, lm, cache, prompt_1xP)
  q_V = jax.nn.softmax(unpert[0, -1])
  _, _, past = lm_forward(params, lm, cache, prompt_1xP[:, :-1])

  def total(delta):
    dk, dv = delta
    shifted = past._replace(k=past.k + dk, v=past.v + dv)
    logits, _, _ = lm_forward(params, lm, shifted, prompt_1xP[:, -1:])
    p_V = jax.nn.softmax(logits[0, -1])
    attribute, kl = -jnp.log(p_V @ bag_V), jnp.sum(p_V * jnp.log(p_V / q_V))
    return attribute + CONFIG.kl_scale * kl, (attribute, kl)

  delta = (jnp.zeros_like(past.k), jnp.zeros_like(past.v))
  seen = []
  for _ in range(CONFIG.num_iterations):
    (gk, gv), (attribute, kl) = jax.grad(total, has_aux=True)(delta)
    norms_L = jnp.stack(
      [
        jnp.linalg.norm(jnp.concatenate([gk[i].ravel(), gv[i].ravel()]))
        for i in range(lm.num_layers)
      ]
    )
    seen.append((attribute, kl, norms_L))
    scale_L = CONFIG.stepsize / (norms_L + 1e-15) ** CONFIG.gamma
    delta = tuple(d - scale_L[:, None, None, None, None] * g for d, g in zip(delta, (gk, gv)))
  return [jnp.stack([s[j] for s in seen]) for j in range(3)]


@pytest.mark.slow
def test_diagnostics_match_recomputation(tiny_gpt2_dir):
  with jax.enable_x64(True):
    params, lm = load_lm(tiny_gpt2_dir, dtype=jnp.float64)
    attributes = Attributes(bags=bag_of_words([BAG], None, lm.vocab_size))
    tokens, probs, diag = steered_generate(
      params, lm, PROMPTS, attributes, CONFIG, return_probs=True, diagnostics=True
    )
    # Off (the default), through a padded array and its mask: the same tokens and probabilities.
    padded, mask = left_pad(PROMPTS)
    plain, plain_probs = steered_generate(
      params, lm, padded, attributes, CONFIG, prompt_mask_BxP=mask, return_probs=True
    )
    np.testing.assert_array_equal(tokens, plain)
    np.testing.assert_array_equal(probs, plain_probs)
    bag_V = jnp.zeros(lm.vocab_size, jnp.float64).at[jnp.asarray(BAG)].set(1.0)
    b, n, i = len(PROMPTS), CONFIG.length, CONFIG.num_iterations
    assert diag.unpert_probs_BxNxV.shape == (b, n, lm.vocab_size)
    assert diag.attribute_loss_BxNxI.shape == diag.kl_BxNxI.shape == (b, n, i)
    assert diag.grad_norms_BxNxIxL.shape == (b, n, i, lm.num_layers)
    for row, prompt in enumerate(PROMPTS):
      # The unperturbed distribution after the prompt and after each generated token.
      full = jnp.asarray([prompt + np.asarray(tokens[row, :-1]).tolist()])
      logits, _, _ = lm_forward(params, lm, init_cache(lm, 1, full.shape[1], jnp.float64), full)
      expected = jax.nn.softmax(logits[0, len(prompt) - 1 :], axis=-1)
      np.testing.assert_allclose(diag.unpert_probs_BxNxV[row], expected, rtol=0, atol=1e-12)
    # The first token's iterations of the padded row, recomputed for its prompt alone.
    attribute, kl, norms = _reference_first_step(params, lm, jnp.asarray(PROMPTS[1:]), bag_V)
    np.testing.assert_allclose(diag.attribute_loss_BxNxI[1, 0], attribute, rtol=1e-9)
    np.testing.assert_allclose(diag.kl_BxNxI[1, 0], kl, rtol=1e-7, atol=1e-14)
    np.testing.assert_allclose(diag.grad_norms_BxNxIxL[1, 0], norms, rtol=1e-9)
  # The first token's iteration 0 is the unperturbed model (KL 0); its step moved the
  # distribution, and the next token starts from the past perturbed so far.
  kl = np.asarray(diag.kl_BxNxI)
  assert np.all(np.abs(kl[:, 0, 0]) < 1e-12) and np.all(kl[:, 0, 1] > 1e-8)
  assert np.all(kl[:, 1, 0] > 1e-8)
  # The loss fell along the gradient step.
  assert np.all(np.asarray(diag.attribute_loss_BxNxI[:, 0, 1] < diag.attribute_loss_BxNxI[:, 0, 0]))


def test_bad_prompt_masks_are_refused(tiny_gpt2):
  params, lm = tiny_gpt2
  bags = Attributes(bags=bag_of_words([[11, 40]], None, lm.vocab_size))
  padded, mask = left_pad(PROMPTS)
  with pytest.raises(JaxnnError, match="left padding"):
    steered_generate(params, lm, padded, bags, CONFIG, prompt_mask_BxP=mask[:, ::-1])
  with pytest.raises(JaxnnError, match="outside the model's vocabulary"):
    steered_generate(params, lm, [[0, 17, 93], [lm.vocab_size]], bags, CONFIG)

"""Prompts of different lengths in one left-padded batch: each row as its prompt alone.

Float64 (`jax.enable_x64`), so that "the same" means float rounding: the
padded batch's logits at every real position and its greedy continuations
equal those of each prompt run alone, for learned positions (GPT-2) and
RoPE with grouped-query attention (Llama 3).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import JaxnnError
from jaxnn.lm import generate, init_cache, left_pad, lm_forward, load_lm

PROMPTS = [[5, 17, 93, 41, 8, 60, 33], [7, 12, 40]]
N = 6
forward = jax.jit(lm_forward, static_argnums=1)


@pytest.mark.parametrize("family", ["gpt2", "llama3"])
def test_padded_batch_equals_each_prompt_alone(family, family_dir):
  with jax.enable_x64(True):
    params, config = load_lm(family_dir(family), dtype=jnp.float64)
    batch = np.asarray(generate(params, config, PROMPTS, N))
    # The padded batch's logits: the prompts and their continuations, left-padded.
    tokens, mask = left_pad([p + batch[b, :-1].tolist() for b, p in enumerate(PROMPTS)])
    pad = (~mask).sum(1)
    cache = init_cache(config, len(PROMPTS), tokens.shape[1], jnp.float64, pad_B=pad)
    padded, _, _ = forward(params, config, cache, tokens)
    for b, prompt in enumerate(PROMPTS):
      # Alone: the prompt and its greedy continuation in one pass of its own length.
      alone = np.asarray([prompt + batch[b, :-1].tolist()], np.int32)
      empty = init_cache(config, 1, alone.shape[1], jnp.float64)
      ref, _, _ = forward(params, config, empty, alone)
      np.testing.assert_allclose(padded[b, pad[b] :], ref[0], rtol=0, atol=1e-12)
      # Greedy decoding alone picks the argmax after each token: the batch's tokens.
      np.testing.assert_array_equal(np.argmax(ref[0, len(prompt) - 1 :], -1), batch[b])
  assert (batch[0] != batch[1]).any()  # rows that differ, so that equal rows test something


def test_padded_prompts_are_checked(tiny_gpt2):
  params, config = tiny_gpt2
  tokens, mask = left_pad([[5, 6, 7], [8]])
  assert tokens.tolist() == [[5, 6, 7], [0, 0, 8]] and mask[1].tolist() == [False, False, True]
  # The mask form gives the same as the ragged lists; the padding's ids do not matter.
  ragged = generate(params, config, [[5, 6, 7], [8]], 3)
  tokens[1, :2] = 95
  np.testing.assert_array_equal(generate(params, config, tokens, 3, prompt_mask_BxT=mask), ragged)
  for bad_mask, message in (
    ([[1, 1, 1], [1, 0, 1]], "left padding"),
    ([[1, 1, 1], [1, 1, 0]], "left padding"),
    ([[1, 1, 1], [0, 0, 2]], "0/1"),
    ([[1, 1, 1]], "one per token"),
  ):
    with pytest.raises(JaxnnError, match=message):
      generate(params, config, tokens, 2, prompt_mask_BxT=np.asarray(bad_mask))
  with pytest.raises(JaxnnError, match="outside the model's vocabulary"):
    generate(params, config, [[5, 6, 7], [config.vocab_size]], 2)
  with pytest.raises(JaxnnError, match="at least one token"):
    generate(params, config, [[5, 6, 7], []], 2)
  with pytest.raises(JaxnnError, match="not both"):
    generate(params, config, [[5, 6, 7], [8]], 2, prompt_mask_BxT=mask)
  with pytest.raises(JaxnnError, match="one entry per row"):
    init_cache(config, 2, 8, pad_B=[1, 2, 3])

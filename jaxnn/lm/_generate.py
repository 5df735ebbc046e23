"""Plain (unsteered) generation over a fixed-size cache, compiled once.

Any supported language model (also the baseline "B" of PPLM, Dathathri et al.
2020): the prompt fills the cache
in one call, then a `lax.scan` feeds one token per step, so a (batch, prompt
length, generation length) compiles once, never per token. Prompts of
different lengths run as one left-padded batch (`left_pad`); each row
generates what its prompt would alone.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from jaxnn._errors import JaxnnError
from jaxnn.lm._config import lm_config
from jaxnn.lm._model import AnyConfig, Params, as_params, init_cache, lm_forward


def check_token_ids(tokens, vocab_size: int, what: str = "token ids") -> None:
  """Raises a JaxnnError when a (concrete) token id is outside 0..vocab_size - 1.

  Out-of-range ids would otherwise be clamped silently by the embedding gather.
  """
  if isinstance(tokens, jax.core.Tracer):
    return
  ids = np.asarray(tokens)
  if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
    bad = int(ids.max()) if ids.max() >= vocab_size else int(ids.min())
    raise JaxnnError(
      f"{what} contain the token id {bad}, outside the model's vocabulary 0..{vocab_size - 1}; "
      f"encode with the model's own tokenizer"
    )


def left_pad(prompts, pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Prompts of different lengths as one left-padded batch and its attention mask.

  Args:
    prompts: B sequences of token ids, each at least one token.
    pad_id: the id written in the padding (masked, so any id of the vocabulary).

  Returns:
    tokens_BxT (int32, T the longest prompt) and mask_BxT (bool, True on the
    prompts' own tokens), what `generate` and `jaxnn.pplm.steered_generate`
    take as `prompt_mask_BxT`.

  Examples:
    >>> from jaxnn.lm import left_pad
    >>> tokens, mask = left_pad([[5, 6, 7], [8]])
    >>> tokens.tolist(), mask.astype(int).tolist()
    ([[5, 6, 7], [0, 0, 8]], [[1, 1, 1], [0, 0, 1]])
  """
  rows = [np.asarray(p).reshape(-1) for p in prompts]
  if not rows or min(len(r) for r in rows) < 1:
    raise JaxnnError("every prompt needs at least one token (e.g. the end-of-text token)")
  width = max(len(r) for r in rows)
  tokens = np.full((len(rows), width), pad_id, np.int32)
  mask = np.zeros((len(rows), width), bool)
  for b, row in enumerate(rows):
    tokens[b, width - len(row) :], mask[b, width - len(row) :] = row, True
  return tokens, mask


def _is_ragged(prompts) -> bool:
  if not isinstance(prompts, (list, tuple)) or not prompts:
    return False
  if not all(isinstance(p, (list, tuple, np.ndarray, jax.Array)) for p in prompts):
    return False
  return len({np.shape(p) for p in prompts}) > 1


def prepare_prompts(prompts, mask_BxT, vocab_size: int, what: str = "prompt"):
  """Checked prompts: (tokens_BxT int32 with 0 in the padding, pad_B or None).

  `prompts` is a B x T array (with an optional left-padding mask) or a list
  of token sequences of different lengths (padded here). pad_B is None when
  no row is padded, so that an unpadded batch runs the code it always ran.
  """
  if _is_ragged(prompts):
    if mask_BxT is not None:
      raise JaxnnError(
        f"give the {what}s either as token lists of different lengths or as one padded "
        "array with its mask, not both"
      )
    prompts, mask_BxT = left_pad(prompts)
  tokens = np.asarray(prompts)
  if tokens.ndim != 2 or tokens.shape[1] < 1:
    raise JaxnnError(f"{what} tokens must be (batch, T >= 1), got shape {tokens.shape}")
  if not np.issubdtype(tokens.dtype, np.integer):
    raise JaxnnError(f"{what} tokens must be integer token ids, got {tokens.dtype}")
  if mask_BxT is None:
    check_token_ids(tokens, vocab_size, f"the {what} tokens")
    return jnp.asarray(tokens, jnp.int32), None
  mask = np.asarray(mask_BxT)
  if mask.shape != tokens.shape:
    raise JaxnnError(
      f"the {what} mask has shape {mask.shape} but the tokens {tokens.shape}; give one per token"
    )
  if not np.isin(mask, (0, 1)).all():
    raise JaxnnError(f"the {what} mask must hold 0/1 (or False/True), one per token")
  mask = mask.astype(bool)
  if not mask[:, -1].all() or (np.diff(mask.astype(np.int8), axis=1) < 0).any():
    raise JaxnnError(
      f"the {what} mask must be left padding: each row 0s then 1s, ending with a token "
      "(jaxnn.lm.left_pad builds it)"
    )
  check_token_ids(np.where(mask, tokens, 0), vocab_size, f"the {what} tokens")
  pad_B = (~mask).sum(1).astype(np.int32)
  tokens = np.where(mask, tokens, 0).astype(np.int32)
  return jnp.asarray(tokens), (jnp.asarray(pad_B) if pad_B.any() else None)


def top_k_logits(logits_BxV: Float[Array, "B V"], top_k: int) -> Float[Array, "B V"]:
  """Logits with everything below the k-th largest set to -inf (k = 0 keeps all).

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxnn.pplm import top_k_logits
    >>> top_k_logits(jnp.array([[1.0, 3.0, 2.0]]), 2).tolist()
    [[-inf, 3.0, 2.0]]
  """
  if top_k <= 0 or top_k >= logits_BxV.shape[-1]:
    return logits_BxV
  kth_Bx1 = kth_largest(logits_BxV, top_k)
  return jnp.where(logits_BxV < kth_Bx1, -jnp.inf, logits_BxV)


def kth_largest(x_BxV: Float[Array, "B V"], k: int) -> Float[Array, "B 1"]:
  """The k-th largest entry of each row, ties counted: `lax.top_k(x, k)[0][:, -1:]`.

  XLA on CPU computes `top_k` by sorting the whole row (on 8 x 50257 that
  took as long as a forward pass of GPT-2 small). The k largest entries of a
  row are among the k largest of each of its blocks, so a `top_k` per block
  of the row and one over the blocks' candidates give the same value at a
  fraction of the cost (25-35x less at 8 x 50257, k = 10; benchmarks/pplm_layers.py).
  """
  b, v = x_BxV.shape
  blocks = min(64, v // (4 * k))
  if blocks < 2:
    return jax.lax.top_k(x_BxV, k)[0][:, -1:]
  width = -(-v // blocks)
  padded_BxN = jnp.pad(x_BxV, ((0, 0), (0, blocks * width - v)), constant_values=-jnp.inf)
  candidates_BxC = jax.lax.top_k(padded_BxN.reshape(b, blocks, width), k)[0].reshape(b, blocks * k)
  return jax.lax.top_k(candidates_BxC, k)[0][:, -1:]


def next_token(logits_BxV, key, *, greedy: bool, temperature, top_k: int) -> Int[Array, "B"]:
  """Argmax, or a sample from softmax(top_k(logits) / temperature)."""
  if greedy:
    return jnp.argmax(logits_BxV, axis=-1).astype(jnp.int32)
  logits_BxV = top_k_logits(logits_BxV / temperature, top_k)
  return jax.random.categorical(key, logits_BxV, axis=-1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("config", "length", "greedy", "top_k"))
def _generate(params, config, prompt_tokens_BxT, pad_B, length, greedy, temperature, top_k, key):
  b, t = prompt_tokens_BxT.shape
  cache = init_cache(config, b, t + length - 1, params["wte"].dtype, pad_B=pad_B)
  logits_BxTxV, _, cache = lm_forward(params, config, cache, prompt_tokens_BxT)
  keys = jax.random.split(key, length)
  pick = functools.partial(next_token, greedy=greedy, temperature=temperature, top_k=top_k)

  def step(carry, key):
    logits_BxV, cache = carry
    token_B = pick(logits_BxV, key)
    logits_Bx1xV, _, cache = lm_forward(params, config, cache, token_B[:, None])
    return (logits_Bx1xV[:, 0], cache), token_B

  (logits_BxV, _), tokens_LxB = jax.lax.scan(step, (logits_BxTxV[:, -1], cache), keys[:-1])
  last_B = pick(logits_BxV, keys[-1])
  return jnp.concatenate([tokens_LxB.T, last_B[:, None]], axis=1)


def generate(
  params: Params,
  config: AnyConfig,
  prompt_tokens_BxT: Int[Array, "B T"],
  length: int,
  *,
  prompt_mask_BxT=None,
  greedy: bool = True,
  temperature: float = 1.0,
  top_k: int = 0,
  key=None,
) -> Int[Array, "B N"]:
  """Continues each prompt by `length` tokens (greedy, or sampled with temperature and top-k).

  Prompts of different lengths run as one batch, left-padded: each row's
  positions start at 0 at its first token and its padding is masked, so it
  generates what its prompt would alone (the probabilities to float rounding).

  Args:
    params, config: the model (`load_lm`).
    prompt_tokens_BxT: B prompts of T >= 1 tokens each, or a list of B token
      lists of different lengths (left-padded here, `left_pad`).
    length: number of new tokens N; T + N - 1 must not exceed the model's positions.
    prompt_mask_BxT: with a padded array, True (1) on each prompt's own
      tokens and False (0) on its left padding (`left_pad`'s mask).
    greedy: argmax decoding; otherwise sampling with `key`.
    temperature: divides the logits before sampling.
    top_k: sample among the k most likely tokens only (0: all).
    key: a `jax.random.key`; required when sampling.

  Returns:
    The N generated tokens of each prompt (without the prompt), int32.
  """
  c = lm_config(config)
  prompt_tokens_BxT, pad_B = prepare_prompts(prompt_tokens_BxT, prompt_mask_BxT, c.vocab_size)
  if length < 1:
    raise JaxnnError(f"length must be at least 1, got {length}")
  if prompt_tokens_BxT.shape[1] + length - 1 > c.max_positions:
    raise JaxnnError(
      f"prompt ({prompt_tokens_BxT.shape[1]} tokens) + length ({length}) exceeds "
      f"the model's {c.max_positions} positions; generate fewer tokens"
    )
  if not greedy and key is None:
    raise JaxnnError("sampling needs a key, e.g. key=jax.random.key(0), or use greedy=True")
  if not greedy and not temperature > 0:
    raise JaxnnError(f"temperature must be positive, got {temperature}")
  key = jax.random.key(0) if key is None else key
  return _generate(
    as_params(params), config, prompt_tokens_BxT, pad_B, length, greedy, temperature, top_k, key
  )

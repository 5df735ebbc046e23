"""Plain (unsteered) generation over a fixed-size cache, compiled once.

Any supported language model (also the baseline "B" of PPLM, Dathathri et al.
2020): the prompt fills the cache
in one call, then a `lax.scan` feeds one token per step, so a (batch, prompt
length, generation length) compiles once, never per token.
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
def _generate(params, config, prompt_tokens_BxT, length, greedy, temperature, top_k, key):
  b, t = prompt_tokens_BxT.shape
  cache = init_cache(config, b, t + length - 1, params["wte"].dtype)
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
  greedy: bool = True,
  temperature: float = 1.0,
  top_k: int = 0,
  key=None,
) -> Int[Array, "B N"]:
  """Continues each prompt by `length` tokens (greedy, or sampled with temperature and top-k).

  Args:
    params, config: the model (`load_lm`).
    prompt_tokens_BxT: B prompts of T >= 1 tokens each.
    length: number of new tokens N; T + N - 1 must not exceed the model's positions.
    greedy: argmax decoding; otherwise sampling with `key`.
    temperature: divides the logits before sampling.
    top_k: sample among the k most likely tokens only (0: all).
    key: a `jax.random.key`; required when sampling.

  Returns:
    The N generated tokens of each prompt (without the prompt), int32.
  """
  prompt_tokens_BxT = jnp.asarray(prompt_tokens_BxT, jnp.int32)
  if prompt_tokens_BxT.ndim != 2 or prompt_tokens_BxT.shape[1] < 1:
    raise JaxnnError(f"prompt tokens must be (batch, T >= 1), got shape {prompt_tokens_BxT.shape}")
  if length < 1:
    raise JaxnnError(f"length must be at least 1, got {length}")
  c = lm_config(config)
  if prompt_tokens_BxT.shape[1] + length - 1 > c.max_positions:
    raise JaxnnError(
      f"prompt ({prompt_tokens_BxT.shape[1]} tokens) + length ({length}) exceeds "
      f"the model's {c.max_positions} positions; generate fewer tokens"
    )
  check_token_ids(prompt_tokens_BxT, c.vocab_size, "prompt")
  if not greedy and key is None:
    raise JaxnnError("sampling needs a key, e.g. key=jax.random.key(0), or use greedy=True")
  if not greedy and not temperature > 0:
    raise JaxnnError(f"temperature must be positive, got {temperature}")
  key = jax.random.key(0) if key is None else key
  return _generate(
    as_params(params), config, prompt_tokens_BxT, length, greedy, temperature, top_k, key
  )

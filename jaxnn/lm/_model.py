"""One decoder-only transformer, as a pure function over a fixed-size key/value cache.

GPT-2 (Radford et al. 2019), Llama (Touvron et al. 2023), Mistral, Qwen2/3,
Gemma 1/2, Phi-3 and GPT-NeoX/Pythia are the same network with different
switches (`LMConfig`): learned positions or RoPE (Su et al. 2021, with
linear, Llama-3, YaRN, dynamic-NTK or LongRoPE scaling, partial rotary dims), LayerNorm or
RMSNorm, plain or gated MLPs (SwiGLU, GeGLU), grouped-query attention
(Ainslie et al. 2023), sliding-window layers, Gemma 2's soft-capping and
sandwich norms, GPT-NeoX's parallel residual, tied or untied heads.

The parameters are a plain pytree of dicts named after Hugging Face's GPT-2
(the layout every family is converted to when loaded), with one dict per
block in the list "h"; keys that a family lacks are absent:

  {"wte": V x D, "wpe": P x D (learned positions only),
   "h": [{"ln_1": {"scale": D, "bias": D (LayerNorm)},
          "attn": {"c_attn": {"kernel": D x (H + 2G)K, "bias"}, (q, k, v side by side)
                   "c_proj": {"kernel": HK x D, "bias"},
                   "q_norm": {"scale": K}, "k_norm": {"scale": K}},
          "ln_2": {...}, (before the MLP)
          "mlp": {"c_fc": {"kernel": D x F or D x 2F (gate, up), "bias"},
                  "c_proj": {"kernel": F x D, "bias"}},
          "post_attn_norm": {...}, "post_mlp_norm": {...}}, ... one per layer],
   "ln_f": {...}, "lm_head": V x D (untied heads only)}

Kernels are stored (in, out), so `x @ kernel`. With few float32 rows on CPU
(a one-token pass) the products run through a C++ kernel that streams the
weights from memory (`_products`); XLA's dot otherwise. The blocks are
unrolled in Python rather than scanned over stacked weights: on CPU a scan
copies every layer's weights out of the stack per pass (benchmarks/pplm_layers.py).

The cache has a fixed size `max_len`; `lm_forward` writes the T new
positions at `cache.length` with `dynamic_update_slice` and masks the rest,
so a loop that feeds one token at a time compiles once per (batch, max_len, T).
It holds the G shared key/value heads (grouped-query attention), after RoPE.

Prompts of different lengths share one cache by left padding: `cache.pad`
says how many slots of each row precede its first token. A row's positions
(learned or RoPE) count from 0 at its first token and its padding slots are
masked as keys, so each row computes what it would alone (to float rounding).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float, Int

from jaxnn._errors import JaxnnError
from jaxnn.lm._config import GPT2Config, LMConfig, lm_config
from jaxnn.lm._products import dense_matmul, tied_logits

#: A language model's parameters: a nested dict of arrays.
Params = dict[str, Any]
AnyConfig = LMConfig | GPT2Config


class KVCache(NamedTuple):
  """Keys and values of every layer for `max_len` positions, `length` of them filled.

  Shaped L x B x G x S x K (G key/value heads). Perturb it (PPLM) with
  `cache._replace(k=cache.k + dk, v=...)`: positions at or beyond `length`
  are masked, so what is added there is ignored. `length` is an int32
  scalar; `lm_forward` returns it as int32 whatever integer type it was given
  (e.g. int64 under `jax_enable_x64`), so a loop carrying the cache keeps one type.
  `pad` (None: no padding) holds, per row, the number of left-padding slots
  before the row's first token: those slots are masked as keys, and the
  row's positions count from 0 at slot `pad[b]` (`init_cache(..., pad_B=...)`).
  """

  k: Float[Array, "L B G S K"]
  v: Float[Array, "L B G S K"]
  length: Int[Array, ""]
  pad: Int[Array, "B"] | None = None

  @property
  def max_len(self) -> int:
    """The number of positions the cache holds."""
    return self.k.shape[3]


def init_cache(
  config: AnyConfig, batch: int, max_len: int, dtype=jnp.float32, *, pad_B=None
) -> KVCache:
  """An empty cache for `batch` sequences of at most `max_len` tokens.

  `pad_B` (optional): the left-padding slots of each row (see `KVCache.pad`
  and `jaxnn.lm.left_pad`); the padded prompt is then fed as usual.
  """
  c = lm_config(config)
  if batch < 1:
    raise JaxnnError(f"batch must be positive, got {batch}")
  if not 1 <= max_len <= c.max_positions:
    raise JaxnnError(
      f"max_len must be in 1..{c.max_positions} (the model's positions), "
      f"got {max_len}; generate fewer tokens or use a shorter prompt"
    )
  shape = (c.num_layers, batch, c.num_kv_heads, max_len, c.head_dim)
  if pad_B is not None:
    pad_B = jnp.asarray(pad_B, jnp.int32)
    if pad_B.shape != (batch,):
      raise JaxnnError(f"pad_B must have one entry per row ({batch}), got shape {pad_B.shape}")
  zeros = jnp.zeros(shape, dtype)
  return KVCache(zeros, zeros, jnp.zeros((), jnp.int32), pad_B)


def _wide(dtype):
  """The dtype norms, softmax and RoPE angles are computed in: float32, or float64 for float64."""
  return jnp.promote_types(dtype, jnp.float32)


def _lead(a_N, ndim):
  """A vector shaped to broadcast against the last axis of an ndim-rank array."""
  return a_N.reshape((1,) * (ndim - 1) + a_N.shape)


def _norm(c: LMConfig, x_BxTxD, p):
  """LayerNorm or RMSNorm over the last axis, computed in float32 (or wider), cast back."""
  x = x_BxTxD.astype(_wide(x_BxTxD.dtype))
  scale = _lead(p["scale"], x.ndim)
  if c.norm == "layer":
    mean = x.mean(-1, keepdims=True)
    var = jnp.square(x - mean).mean(-1, keepdims=True)
    normed = (x - mean) * jax.lax.rsqrt(var + c.norm_eps)
    out = normed * scale.astype(x.dtype) + _lead(p["bias"], x.ndim).astype(x.dtype)
    return out.astype(x_BxTxD.dtype)
  normed = x * jax.lax.rsqrt(jnp.square(x).mean(-1, keepdims=True) + c.norm_eps)
  if c.norm_offset:  # Gemma: (1 + w) in float32, as it was trained
    return (normed * (c.norm_offset + scale.astype(x.dtype))).astype(x_BxTxD.dtype)
  # Llama's order: back to the input dtype, then the weight.
  return scale * normed.astype(x_BxTxD.dtype)


def _dense(x_BxTxI, p):
  y = dense_matmul(x_BxTxI, p["kernel"])
  return y + _lead(p["bias"], y.ndim) if "bias" in p else y


def _act(name, x):
  if name == "silu":
    return jax.nn.silu(x)
  if name == "gelu":
    return jax.nn.gelu(x, approximate=False)
  if name == "gelu_tanh":
    return jax.nn.gelu(x, approximate=True)
  return jax.nn.relu(x)


def inverse_frequencies(config: AnyConfig, seq_len=None):
  """RoPE's inverse frequencies (rotary / 2 of them), with the config's scaling.

  As Hugging Face's `ROPE_INIT_FUNCTIONS`, evaluated in float64:

  - "default": theta^(-2i / rotary); "linear": those divided by `factor`;
  - "llama3": Llama 3.1's smooth interpolation between scaled low and
    unscaled high frequencies;
  - "yarn": YaRN's ramp, over the dims between the `beta_fast` and
    `beta_slow` rotation counts in `original_max_position_embeddings`
    positions, from unscaled (fast) to divided by `factor` (slow); the ends
    floored/ceiled unless `truncate` is false;
  - "dynamic" (NTK-aware): the base grows to theta (factor s / n - factor +
    1)^(rotary / (rotary - 2)) once the sequence length s passes n, the
    config.json's max_position_embeddings (`original_max_position_embeddings`
    of the scaling; `max_positions` when absent);
  - "longrope": each frequency divided by its `short_factor`, or by its
    `long_factor` once the sequence length passes
    `original_max_position_embeddings`;
  - "proportional" (Gemma 4's): the default table over the first
    `partial_rotary_factor` share of the frequencies, 0 (no rotation) for the
    rest, all divided by `factor` (1 if absent).

  YaRN's and LongRoPE's attention factor scales cos and sin instead
  (`LMConfig.rope_attention_factor`).

  Args:
    config: the model's `LMConfig` (or `GPT2Config`).
    seq_len: the length the positions of this pass reach (its largest
      position + 1), by which "dynamic" and "longrope" choose their
      frequencies, as transformers' rotary embedding does on each forward
      call; None gives the table transformers builds when loading (dynamic:
      unscaled; longrope: the short factors). Other types ignore it.

  Returns:
    A float64 NumPy array, or a JAX array (of the default float dtype) when
    "dynamic" or "longrope" are given a JAX `seq_len` (traced under jit).
  """
  c = lm_config(config)
  dim = c.rotary
  inv = 1.0 / (c.rope_theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
  scaling = dict(c.rope_scaling)
  kind = scaling.get("rope_type", "default")
  concrete = seq_len is None or isinstance(seq_len, (int, np.integer))
  if kind == "linear":
    inv = inv / scaling["factor"]
  elif kind == "llama3":
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old = scaling["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv
    scaled = np.where(wavelen > old / low, inv / factor, inv)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < old / high) & ~(wavelen > old / low)
    inv = np.where(medium, smoothed, scaled)
  elif kind == "yarn":
    old = scaling["original_max_position_embeddings"]

    def dim_of(rotations):  # the (fractional) dim that turns `rotations` times in `old` positions
      return dim * math.log(old / (rotations * 2 * math.pi)) / (2 * math.log(c.rope_theta))

    low, high = dim_of(scaling.get("beta_fast", 32.0)), dim_of(scaling.get("beta_slow", 1.0))
    if scaling.get("truncate", True):
      low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
      high += 0.001  # as transformers
    ramp = np.clip((np.arange(dim // 2, dtype=np.float64) - low) / (high - low), 0.0, 1.0)
    inv = inv / scaling["factor"] * ramp + inv * (1.0 - ramp)
  elif kind == "proportional":
    rotating = int(scaling.get("partial_rotary_factor", 1.0) * dim // 2)
    inv = np.where(np.arange(dim // 2) < rotating, inv, 0.0) / scaling.get("factor", 1.0)
  elif kind == "longrope":
    short = inv / np.asarray(scaling["short_factor"], np.float64)
    long = inv / np.asarray(scaling["long_factor"], np.float64)
    old = scaling["original_max_position_embeddings"]
    if seq_len is None:
      return short
    if concrete:
      return long if seq_len > old else short
    return jnp.where(jnp.asarray(seq_len) > old, long, short)
  elif kind == "dynamic" and seq_len is not None:
    xp = np if concrete else jnp
    old = scaling.get("original_max_position_embeddings", c.max_positions)
    grown = xp.maximum(xp.asarray(seq_len, dtype=float), float(old))
    factor = scaling["factor"]
    base = c.rope_theta * (factor * grown / old - (factor - 1)) ** (dim / (dim - 2))
    return 1.0 / base ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
  return inv


def _rope_tables(c: LMConfig, positions_T, dtype):
  """cos and sin (T x rotary, or B x T x rotary for per-row positions B x T) at the
  positions: angles in float32 (float64 for float64)."""
  wide = _wide(dtype)
  # Sequence-length-dependent scalings (dynamic, LongRoPE) see the longest row's length.
  inv_R = jnp.asarray(inverse_frequencies(c, jnp.max(positions_T) + 1), wide)
  angles_TxR = positions_T.astype(wide)[..., None] * _lead(inv_R, positions_T.ndim + 1)
  angles_TxR = jnp.concatenate([angles_TxR, angles_TxR], axis=-1)
  f = c.rope_attention_factor  # YaRN's / LongRoPE's attention factor (1 for the others)
  return (jnp.cos(angles_TxR) * f).astype(dtype), (jnp.sin(angles_TxR) * f).astype(dtype)


def _rotate(x_BxTxNxK, cos_TxR, sin_TxR):
  """RoPE on the leading rotary dims of each head (rotate-half convention).

  The tables are T x R, or B x T x R (per-row positions of a left-padded batch).
  """
  r = cos_TxR.shape[-1]
  rot, rest = x_BxTxNxK[..., :r], x_BxTxNxK[..., r:]
  half = r // 2
  rotated = jnp.concatenate([-rot[..., half:], rot[..., :half]], axis=-1)
  if cos_TxR.ndim == 2:
    cos_TxR, sin_TxR = cos_TxR[None], sin_TxR[None]
  out = rot * cos_TxR[:, :, None] + rotated * sin_TxR[:, :, None]
  return jnp.concatenate([out, rest], axis=-1) if rest.shape[-1] else out


def _attention(
  c: LMConfig, layer_index, h_BxTxD, p, k_BxGxSxK, v_BxGxSxK, length, rope, pad_B=None
):
  """Self-attention of T new positions against the cache (written at `length`).

  Keys in the first `pad_B[b]` slots of row b (its left padding) are masked.

  Returns the attention output (B x T x D), the layer's keys and values with
  the T positions written, and the T new keys and values alone.
  """
  b, t, _ = h_BxTxD.shape
  nh, g, kd = c.num_heads, c.num_kv_heads, c.head_dim
  s = k_BxGxSxK.shape[2]
  qkv_BxTxW = _dense(h_BxTxD, p["c_attn"])
  q_BxTxHxK = qkv_BxTxW[..., : nh * kd].reshape(b, t, nh, kd)
  k_BxTxGxK = qkv_BxTxW[..., nh * kd : (nh + g) * kd].reshape(b, t, g, kd)
  v_BxTxGxK = qkv_BxTxW[..., (nh + g) * kd :].reshape(b, t, g, kd)
  if c.qk_norm:
    q_BxTxHxK = _norm(c, q_BxTxHxK, p["q_norm"])
    k_BxTxGxK = _norm(c, k_BxTxGxK, p["k_norm"])
  if rope is not None:
    q_BxTxHxK = _rotate(q_BxTxHxK, *rope)
    k_BxTxGxK = _rotate(k_BxTxGxK, *rope)
  new_k_BxGxTxK = k_BxTxGxK.transpose(0, 2, 1, 3).astype(k_BxGxSxK.dtype)
  new_v_BxGxTxK = v_BxTxGxK.transpose(0, 2, 1, 3).astype(v_BxGxSxK.dtype)
  zero = jnp.zeros((), jnp.int32)
  start = (zero, zero, length, zero)
  k_BxGxSxK = jax.lax.dynamic_update_slice(k_BxGxSxK, new_k_BxGxTxK, start)
  v_BxGxSxK = jax.lax.dynamic_update_slice(v_BxGxSxK, new_v_BxGxTxK, start)
  # Query head h reads key/value head h // (H / G), as transformers' repeat_kv.
  q_BxGxRxTxK = q_BxTxHxK.reshape(b, t, g, nh // g, kd).transpose(0, 2, 3, 1, 4)
  scores = jnp.einsum("bgrtk,bgsk->bgrts", q_BxGxRxTxK, k_BxGxSxK) * c.scale
  if c.attn_softcap:
    scores = jnp.tanh(scores / c.attn_softcap) * c.attn_softcap
  query_pos_Tx1 = length + jnp.arange(t)[:, None]
  key_pos_1xS = jnp.arange(s)[None, :]
  visible_TxS = key_pos_1xS <= query_pos_Tx1
  window = c.window(layer_index)
  if window:
    visible_TxS = visible_TxS & (key_pos_1xS > query_pos_Tx1 - window)
  if pad_B is None:
    scores = jnp.where(visible_TxS, scores, jnp.finfo(scores.dtype).min)
  else:
    visible_BxTxS = visible_TxS[None] & (key_pos_1xS[None] >= pad_B[:, None, None])
    scores = jnp.where(visible_BxTxS[:, None, None], scores, jnp.finfo(scores.dtype).min)
  weights = jax.nn.softmax(scores.astype(_wide(scores.dtype)), axis=-1).astype(v_BxGxSxK.dtype)
  out_BxGxRxTxK = jnp.einsum("bgrts,bgsk->bgrtk", weights, v_BxGxSxK)
  out_BxTxHK = out_BxGxRxTxK.transpose(0, 3, 1, 2, 4).reshape(b, t, nh * kd)
  attn_BxTxD = _dense(out_BxTxHK.astype(h_BxTxD.dtype), p["c_proj"])
  return attn_BxTxD, k_BxGxSxK, v_BxGxSxK, new_k_BxGxTxK, new_v_BxGxTxK


def _mlp(c: LMConfig, h_BxTxD, p):
  up_BxTxW = _dense(h_BxTxD, p["c_fc"])
  if c.gated_mlp:
    f = c.intermediate_size
    up_BxTxW = _act(c.activation, up_BxTxW[..., :f]) * up_BxTxW[..., f:]
  else:
    up_BxTxW = _act(c.activation, up_BxTxW)
  return _dense(up_BxTxW, p["c_proj"])


def _block(c: LMConfig, i, x_BxTxD, layer, k_BxGxSxK, v_BxGxSxK, length, rope, pad_B=None):
  """One transformer block: the new residual stream, the layer's cache, the new keys/values."""
  h_BxTxD = _norm(c, x_BxTxD, layer["ln_1"])
  attn, k_BxGxSxK, v_BxGxSxK, new_k, new_v = _attention(
    c, i, h_BxTxD, layer["attn"], k_BxGxSxK, v_BxGxSxK, length, rope, pad_B
  )
  if c.sandwich_norms:
    attn = _norm(c, attn, layer["post_attn_norm"])
  if c.parallel_residual:
    x_BxTxD = x_BxTxD + attn + _mlp(c, _norm(c, x_BxTxD, layer["ln_2"]), layer["mlp"])
  else:
    x_BxTxD = x_BxTxD + attn
    m = _mlp(c, _norm(c, x_BxTxD, layer["ln_2"]), layer["mlp"])
    if c.sandwich_norms:
      m = _norm(c, m, layer["post_mlp_norm"])
    x_BxTxD = x_BxTxD + m
  return x_BxTxD, k_BxGxSxK, v_BxGxSxK, new_k, new_v


def as_params(params) -> Params:
  """The plain dict pytree from either that pytree or an NNX `State` of a `LanguageModel`."""
  if not isinstance(params, dict):
    params = nnx.to_pure_dict(params)
  layers = params["h"]
  if isinstance(layers, dict):  # nnx.to_pure_dict writes the list of blocks as {0: .., 1: ..}
    params = {**params, "h": [layers[i] for i in range(len(layers))]}
  return params


def token_embeddings(params: Params, config: AnyConfig, tokens_BxT):
  """The input embeddings of tokens (scaled by sqrt(D) for Gemma), before positions."""
  return soft_embeddings(params, config, None, tokens_BxT=tokens_BxT)


def soft_embeddings(params: Params, config: AnyConfig, probs_BxV, *, tokens_BxT=None):
  """Expected input embeddings `probs @ wte` (scaled as the family scales tokens).

  What PPLM's discriminator horizon feeds the model instead of tokens; pass the
  result as `lm_forward(..., embeds_BxTxD=...)`.
  """
  c = lm_config(config)
  params = as_params(params)
  wte_VxD = params["wte"]
  if tokens_BxT is not None:
    x = wte_VxD[tokens_BxT]
  else:
    x = (probs_BxV @ wte_VxD.astype(probs_BxV.dtype))[:, None]
  if c.embed_scale:
    # As transformers: sqrt(D) rounded to the weights' dtype.
    x = x * jnp.asarray(c.hidden_size**0.5, wte_VxD.dtype).astype(x.dtype)
  return x


def _embed(params, c: LMConfig, max_len, length, tokens_BxT, embeds_BxTxD, pad_B=None):
  """Checks the inputs; returns the embeddings (+ positions), `length` as int32, RoPE tables.

  With `pad_B`, row b's slot s sits at position s - pad_B[b] (0 on its padding).
  """
  if (tokens_BxT is None) == (embeds_BxTxD is None):
    raise JaxnnError("lm_forward takes exactly one of tokens_BxT and embeds_BxTxD")
  if len(params["h"]) != c.num_layers:
    raise JaxnnError(
      f"params have {len(params['h'])} blocks but the config says {c.num_layers} layers; "
      f"load both with load_lm"
    )
  dtype = params["wte"].dtype
  if embeds_BxTxD is None:
    x_BxTxD = token_embeddings(params, c, tokens_BxT)
  else:
    x_BxTxD = embeds_BxTxD.astype(dtype)
  t = x_BxTxD.shape[1]
  if t > max_len:
    raise JaxnnError(f"{t} new positions do not fit a cache of max_len {max_len}")
  length = jnp.asarray(length, jnp.int32)
  rope = None
  if pad_B is not None:
    pos_BxT = jnp.maximum(length + jnp.arange(t)[None] - pad_B[:, None], 0)
    if c.positions == "learned":
      x_BxTxD = x_BxTxD + params["wpe"][pos_BxT]
    else:
      rope = _rope_tables(c, pos_BxT, dtype)
  elif c.positions == "learned":
    pos_TxD = jax.lax.dynamic_slice_in_dim(params["wpe"], length, t, axis=0)
    x_BxTxD = x_BxTxD + pos_TxD[None]
  else:
    rope = _rope_tables(c, length + jnp.arange(t), dtype)
  return x_BxTxD, length, rope


def _head(params, c: LMConfig, x_BxTxD):
  """The final norm and the output head: (logits_BxTxV, hidden_BxTxD)."""
  hidden_BxTxD = _norm(c, x_BxTxD, params["ln_f"])
  head_VxD = params["wte"] if c.tie_embeddings else params["lm_head"]
  logits_BxTxV = tied_logits(hidden_BxTxD, head_VxD)
  if c.final_softcap:
    logits_BxTxV = jnp.tanh(logits_BxTxV / c.final_softcap) * c.final_softcap
  return logits_BxTxV, hidden_BxTxD


def lm_forward(
  params: Params,
  config: AnyConfig,
  cache: KVCache,
  tokens_BxT: Int[Array, "B T"] | None = None,
  *,
  embeds_BxTxD: Float[Array, "B T D"] | None = None,
) -> tuple[Float[Array, "B T V"], Float[Array, "B T D"], KVCache]:
  """Runs T new positions of the model against a cache.

  The new positions are written at `cache.length`, attend causally (within
  the sliding window on sliding layers) to every cache position before them,
  and sit at positions `length .. length + T - 1` (less `cache.pad` in a
  left-padded batch, whose padding slots are masked). The caller keeps
  `length + T <= cache.max_len` (under jit this cannot be checked:
  `dynamic_update_slice` would clamp).

  Args:
    params: the parameter pytree (see the module docstring), or the NNX state
      of a `LanguageModel`.
    config: the model's `LMConfig` (or `GPT2Config`).
    cache: keys/values so far; `init_cache` for an empty one.
    tokens_BxT: token ids, or None when `embeds_BxTxD` is given.
    embeds_BxTxD: input embeddings used instead of the tokens' (PPLM's soft
      horizon inputs, `soft_embeddings`); positions are still added/rotated.

  Returns:
    logits_BxTxV, hidden_BxTxD (the final hidden states after the last norm,
    what PPLM's discriminator pools) and the cache with the T positions
    written and `length + T`.
  """
  c = lm_config(config)
  params = as_params(params)
  pad_B = cache.pad
  x_BxTxD, length, rope = _embed(
    params, c, cache.max_len, cache.length, tokens_BxT, embeds_BxTxD, pad_B
  )
  t = x_BxTxD.shape[1]
  new_k, new_v = [], []
  for i, layer in enumerate(params["h"]):
    x_BxTxD, _, _, k_BxGxTxK, v_BxGxTxK = _block(
      c, i, x_BxTxD, layer, cache.k[i], cache.v[i], length, rope, pad_B
    )
    new_k.append(k_BxGxTxK)
    new_v.append(v_BxGxTxK)
  zero = jnp.zeros((), jnp.int32)
  start = (zero, zero, zero, length, zero)
  k = jax.lax.dynamic_update_slice(cache.k, jnp.stack(new_k).astype(cache.k.dtype), start)
  v = jax.lax.dynamic_update_slice(cache.v, jnp.stack(new_v).astype(cache.v.dtype), start)
  logits_BxTxV, hidden_BxTxD = _head(params, c, x_BxTxD)
  return logits_BxTxV, hidden_BxTxD, KVCache(k, v, length + t, pad_B)


def lm_forward_layers(
  params: Params,
  config: AnyConfig,
  k_layers: Sequence[Float[Array, "B G S K"]],
  v_layers: Sequence[Float[Array, "B G S K"]],
  length: Int[Array, ""],
  tokens_BxT: Int[Array, "B T"] | None = None,
  *,
  embeds_BxTxD: Float[Array, "B T D"] | None = None,
  pad_B: Int[Array, "B"] | None = None,
) -> tuple[Float[Array, "B T V"], Float[Array, "B T D"], list, list]:
  """`lm_forward` against a cache held as one keys array and one values array per layer.

  What PPLM differentiates with respect to the cache: the gradient for a
  per-layer array stays that layer's array, whereas slicing layer i out of
  the stacked L x B x G x S x K cache makes the backward pass pad every
  layer's gradient to the whole stack and add the L of them (for GPT-2 small
  at batch 8 on one CPU core, removing that pad-and-add made a forward +
  gradient pass 1.3-1.8x faster; see benchmarks/pplm_layers.py).

  Args:
    params, config, tokens_BxT, embeds_BxTxD: as for `lm_forward`.
    k_layers, v_layers: L arrays B x G x S x K each (e.g. `cache.k[i]`).
    length: the number of filled positions; the T new ones are written there.
    pad_B: the left padding of each row (`KVCache.pad`), or None.

  Returns:
    logits_BxTxV, hidden_BxTxD, and the per-layer keys and values with the T
    positions written (their length is `length + T`).
  """
  c = lm_config(config)
  params = as_params(params)
  if len(k_layers) != c.num_layers or len(v_layers) != c.num_layers:
    raise JaxnnError(
      f"lm_forward_layers needs {c.num_layers} key and value arrays (one per "
      f"layer), got {len(k_layers)} and {len(v_layers)}"
    )
  x_BxTxD, length, rope = _embed(
    params, c, k_layers[0].shape[2], length, tokens_BxT, embeds_BxTxD, pad_B
  )
  k_out, v_out = [], []
  for i, (layer, k_BxGxSxK, v_BxGxSxK) in enumerate(zip(params["h"], k_layers, v_layers)):
    x_BxTxD, k_BxGxSxK, v_BxGxSxK, _, _ = _block(
      c, i, x_BxTxD, layer, k_BxGxSxK, v_BxGxSxK, length, rope, pad_B
    )
    k_out.append(k_BxGxSxK)
    v_out.append(v_BxGxSxK)
  logits_BxTxV, hidden_BxTxD = _head(params, c, x_BxTxD)
  return logits_BxTxV, hidden_BxTxD, k_out, v_out


# GPT-2's names for the same functions (the code of jaxnn.pplm before other families).
gpt2_forward = lm_forward
gpt2_forward_layers = lm_forward_layers


def _norm_params(c: LMConfig, lead, dtype):
  scale = jnp.full((*lead, c.hidden_size), 1.0 - c.norm_offset, dtype)
  if c.norm == "layer":
    return {"scale": scale, "bias": jnp.zeros((*lead, c.hidden_size), dtype)}
  return {"scale": scale}


@functools.partial(jax.jit, static_argnames=("config", "initializer_range", "dtype"))
def init_params(
  config: AnyConfig, key, *, initializer_range: float = 0.02, dtype=jnp.float32
) -> Params:
  """Random parameters: normal(0, initializer_range) weights, zero biases, unit norms.

  As in GPT-2, the residual output projections are scaled by 1 / sqrt(2 L).
  """
  c = lm_config(config)
  d, l, kd = c.hidden_size, c.num_layers, c.head_dim
  keys = iter(jax.random.split(key, 8))

  def normal(shape, std=initializer_range):
    return (std * jax.random.normal(next(keys), shape)).astype(dtype)

  def zeros(*shape):
    return jnp.zeros(shape, dtype)

  def dense(i, o, bias, std=initializer_range):
    p = {"kernel": normal((l, i, o), std)}
    if bias:
      p["bias"] = zeros(l, o)
    return p

  resid_std = initializer_range / math.sqrt(2 * l)
  attn = {
    "c_attn": dense(d, c.qkv_width, c.qkv_bias),
    "c_proj": dense(c.num_heads * kd, d, c.out_bias, resid_std),
  }
  if c.qk_norm:
    attn["q_norm"] = {"scale": jnp.ones((l, kd), dtype)}
    attn["k_norm"] = {"scale": jnp.ones((l, kd), dtype)}
  stacked = {  # drawn for all layers at once, then split into one dict per block
    "ln_1": _norm_params(c, (l,), dtype),
    "attn": attn,
    "ln_2": _norm_params(c, (l,), dtype),
    "mlp": {
      "c_fc": dense(d, c.mlp_in_width, c.mlp_bias),
      "c_proj": dense(c.intermediate_size, d, c.mlp_bias, resid_std),
    },
  }
  if c.sandwich_norms:
    stacked["post_attn_norm"] = _norm_params(c, (l,), dtype)
    stacked["post_mlp_norm"] = _norm_params(c, (l,), dtype)
  params = {"wte": normal((c.vocab_size, d))}
  if c.positions == "learned":
    params["wpe"] = normal((c.max_positions, d))
  params["h"] = [jax.tree.map(lambda a, i=i: a[i], stacked) for i in range(l)]
  params["ln_f"] = _norm_params(c, (), dtype)
  if not c.tie_embeddings:
    params["lm_head"] = normal((c.vocab_size, d))
  return params


def param_specs(config: AnyConfig) -> Params:
  """The expected `jax.ShapeDtypeStruct` of every parameter, in the params' structure."""
  return jax.eval_shape(lambda: init_params(config, jax.random.key(0)))


def _as_nnx(tree):
  if isinstance(tree, dict):
    return nnx.Dict({k: _as_nnx(v) for k, v in tree.items()})
  if isinstance(tree, (list, tuple)):
    return nnx.List([_as_nnx(v) for v in tree])
  return nnx.Param(tree)


class LanguageModel(nnx.Module):
  """A decoder-only language model as a Flax NNX module: a thin wrapper over `lm_forward`.

  Its attributes are the parameter pytree with `nnx.Param` leaves, so
  `graphdef, state = nnx.split(model)` gives a state that `lm_forward`
  accepts directly (and `model.params()` the plain dict pytree). `GPT2` is
  the same class.

  Example:
    params, config = load_lm("Qwen/Qwen2.5-0.5B")
    model = LanguageModel(config, params=params)
    logits_BxTxV, hidden_BxTxD, cache = model(init_cache(config, 1, 32), tokens_1xT)
  """

  def __init__(
    self,
    config: AnyConfig,
    *,
    params: Params | None = None,
    rngs: nnx.Rngs | None = None,
    initializer_range: float = 0.02,
  ):
    if params is None:
      if rngs is None:
        raise JaxnnError(
          "LanguageModel needs either params (e.g. from load_lm) or rngs to initialize them"
        )
      params = init_params(config, rngs.params(), initializer_range=initializer_range)
    self.config = config
    for name, value in params.items():
      setattr(self, name, _as_nnx(value))

  def params(self) -> Params:
    """The plain dict pytree of the parameters."""
    return as_params(nnx.state(self, nnx.Param))

  def __call__(self, cache: KVCache, tokens_BxT=None, *, embeds_BxTxD=None):
    return lm_forward(self.params(), self.config, cache, tokens_BxT, embeds_BxTxD=embeds_BxTxD)


GPT2 = LanguageModel

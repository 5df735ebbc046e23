"""GPT-2 as a pure function over a fixed-size key/value cache.

GPT-2 (Radford et al. 2019, "Language Models are Unsupervised Multitask
Learners") is the frozen language model that PPLM (Dathathri et al. 2020,
"Plug and Play Language Models", ICLR) steers through its key/value cache.

The parameters are a plain pytree of dicts named after Hugging Face's GPT-2,
with one dict per transformer block in the list "h":

  {"wte": V x D, "wpe": P x D,
   "h": [{"ln_1": {"scale": D, "bias": D}, "attn": {"c_attn": {"kernel": D x 3D,
          "bias": 3D}, "c_proj": {...}}, "ln_2": {...}, "mlp": {"c_fc": {...},
          "c_proj": {...}}}, ... one per layer],
   "ln_f": {"scale": D, "bias": D}}

The blocks are unrolled in Python rather than run under a `lax.scan` over
stacked weights: inside a scan every layer dynamic-slices its weights out of
the stack, which XLA on CPU materializes as a copy of all the weights per pass
(and again in the backward pass of PPLM's steering gradient): 1.3x the time
of a one-token forward pass and 2.1x that of forward + gradient with respect
to the cache for GPT-2 small on one core. The price is compile time that
grows with depth (see benchmarks/pplm_layers.py).

Kernels are stored (in, out) like Hugging Face's Conv1D, so `x @ kernel`;
the output head is tied to `wte`. With few float32 rows on CPU (a one-token
pass), these products run through a C++ kernel that streams the weights
from memory (`_products`); XLA's dot otherwise.

The cache has a fixed size `max_len`; `gpt2_forward` writes the T new
positions at `cache.length` with `dynamic_update_slice` and masks the rest, so
a loop that feeds one token at a time compiles once per (batch, max_len, T).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float, Int

from jaxnn._errors import JaxnnError
from jaxnn.pplm._products import dense_matmul, tied_logits

#: GPT-2's parameters: a nested dict of arrays (`"wte"`, `"h"`: a list of layers, ...).
Params = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class GPT2Config:
  """The shape of a GPT-2 (the fields of Hugging Face's config.json)."""

  vocab_size: int = 50257  # number of tokens
  n_positions: int = 1024  # longest sequence (learned position embeddings)
  n_embd: int = 768  # model width D
  n_layer: int = 12  # transformer blocks L
  n_head: int = 12  # attention heads H
  layer_norm_epsilon: float = 1e-5  # epsilon of every layer norm
  n_inner: int | None = None  # MLP width; None means 4 * n_embd

  def __post_init__(self):
    for field in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
      if getattr(self, field) < 1:
        raise JaxnnError(f"GPT2Config.{field} must be positive, got {getattr(self, field)}")
    if self.n_embd % self.n_head:
      raise JaxnnError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
    if self.n_inner is not None and self.n_inner < 1:
      raise JaxnnError(f"GPT2Config.n_inner must be positive or None, got {self.n_inner}")

  @property
  def head_dim(self) -> int:
    return self.n_embd // self.n_head

  @property
  def inner_dim(self) -> int:
    return self.n_inner if self.n_inner is not None else 4 * self.n_embd

  @classmethod
  def from_hf_dict(cls, d: dict[str, Any]) -> GPT2Config:
    """From a Hugging Face GPT-2 config.json, refusing variants this code does not compute."""
    model_type = d.get("model_type", "gpt2")
    if model_type != "gpt2":
      raise JaxnnError(
        f"config.json has model_type {model_type!r}; only GPT-2 ('gpt2') is supported"
      )
    unsupported = {
      "activation_function": ("gelu_new", "gelu_pytorch_tanh"),
      "scale_attn_weights": (True,),
      "scale_attn_by_inverse_layer_idx": (False,),
      "reorder_and_upcast_attn": (False,),
      "add_cross_attention": (False,),
      "tie_word_embeddings": (True,),
    }
    for key, allowed in unsupported.items():
      if key in d and d[key] not in allowed:
        raise JaxnnError(
          f"config.json sets {key}={d[key]!r}; jaxnn's GPT-2 supports only "
          f"{' or '.join(map(repr, allowed))}"
        )
    try:
      return cls(
        vocab_size=int(d["vocab_size"]),
        n_positions=int(d["n_positions"]),
        n_embd=int(d["n_embd"]),
        n_layer=int(d["n_layer"]),
        n_head=int(d["n_head"]),
        layer_norm_epsilon=float(d.get("layer_norm_epsilon", 1e-5)),
        n_inner=None if d.get("n_inner") is None else int(d["n_inner"]),
      )
    except KeyError as e:
      raise JaxnnError(f"config.json lacks {e.args[0]!r}; is it a GPT-2 config?") from None

  def to_hf_dict(self) -> dict[str, Any]:
    """The Hugging Face config.json that `from_hf_dict` (and transformers) reads back."""
    return {
      "architectures": ["GPT2LMHeadModel"],
      "model_type": "gpt2",
      "vocab_size": self.vocab_size,
      "n_positions": self.n_positions,
      "n_ctx": self.n_positions,
      "n_embd": self.n_embd,
      "n_layer": self.n_layer,
      "n_head": self.n_head,
      "n_inner": self.n_inner,
      "layer_norm_epsilon": self.layer_norm_epsilon,
      "activation_function": "gelu_new",
      "resid_pdrop": 0.0,
      "embd_pdrop": 0.0,
      "attn_pdrop": 0.0,
      "tie_word_embeddings": True,
    }


class KVCache(NamedTuple):
  """Keys and values of every layer for `max_len` positions, `length` of them filled.

  Perturb it (PPLM) with `cache._replace(k=cache.k + dk_LxBxHxSxK, v=...)`:
  positions at or beyond `length` are masked, so what is added there is ignored.
  `length` is an int32 scalar; `gpt2_forward` returns it as int32 whatever
  integer type it was given (e.g. int64 under `jax_enable_x64`), so a loop
  carrying the cache keeps one type.
  """

  k: Float[Array, "L B H S K"]
  v: Float[Array, "L B H S K"]
  length: Int[Array, ""]

  @property
  def max_len(self) -> int:
    return self.k.shape[3]


def init_cache(config: GPT2Config, batch: int, max_len: int, dtype=jnp.float32) -> KVCache:
  """An empty cache for `batch` sequences of at most `max_len` tokens."""
  if batch < 1:
    raise JaxnnError(f"batch must be positive, got {batch}")
  if not 1 <= max_len <= config.n_positions:
    raise JaxnnError(
      f"max_len must be in 1..{config.n_positions} (the model's n_positions), "
      f"got {max_len}; generate fewer tokens or use a shorter prompt"
    )
  shape = (config.n_layer, batch, config.n_head, max_len, config.head_dim)
  return KVCache(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype), jnp.zeros((), jnp.int32))


def _layer_norm(x_BxTxD, p, eps):
  mean_BxTx1 = x_BxTxD.mean(-1, keepdims=True)
  var_BxTx1 = jnp.square(x_BxTxD - mean_BxTx1).mean(-1, keepdims=True)
  normed_BxTxD = (x_BxTxD - mean_BxTx1) * jax.lax.rsqrt(var_BxTx1 + eps)
  return normed_BxTxD * p["scale"][None, None] + p["bias"][None, None]


def _dense(x_BxTxI, p):
  return dense_matmul(x_BxTxI, p["kernel"]) + p["bias"][None, None]


def _block(config: GPT2Config, x_BxTxD, layer, k_BxHxSxK, v_BxHxSxK, length):
  """One transformer block.

  Returns the new residual stream, this layer's keys and values with the T new
  positions written at `length`, and the T new keys and values alone.
  """
  b, t, d = x_BxTxD.shape
  h, hd = config.n_head, config.head_dim
  s = k_BxHxSxK.shape[2]
  qkv_BxTx3D = _dense(
    _layer_norm(x_BxTxD, layer["ln_1"], config.layer_norm_epsilon), layer["attn"]["c_attn"]
  )
  q_BxHxTxK, new_k_BxHxTxK, new_v_BxHxTxK = (
    a.reshape(b, t, h, hd).transpose(0, 2, 1, 3) for a in jnp.split(qkv_BxTx3D, 3, axis=-1)
  )
  new_k_BxHxTxK = new_k_BxHxTxK.astype(k_BxHxSxK.dtype)
  new_v_BxHxTxK = new_v_BxHxTxK.astype(v_BxHxSxK.dtype)
  zero = jnp.zeros((), jnp.int32)
  start = (zero, zero, length, zero)
  k_BxHxSxK = jax.lax.dynamic_update_slice(k_BxHxSxK, new_k_BxHxTxK, start)
  v_BxHxSxK = jax.lax.dynamic_update_slice(v_BxHxSxK, new_v_BxHxTxK, start)
  scores_BxHxTxS = jnp.einsum("bhtk,bhsk->bhts", q_BxHxTxK, k_BxHxSxK) / math.sqrt(hd)
  visible_TxS = jnp.arange(s)[None, :] <= length + jnp.arange(t)[:, None]
  scores_BxHxTxS = jnp.where(
    visible_TxS[None, None], scores_BxHxTxS, jnp.finfo(scores_BxHxTxS.dtype).min
  )
  weights_BxHxTxS = jax.nn.softmax(scores_BxHxTxS, axis=-1)
  attn_BxHxTxK = jnp.einsum("bhts,bhsk->bhtk", weights_BxHxTxS, v_BxHxSxK)
  attn_BxTxD = attn_BxHxTxK.transpose(0, 2, 1, 3).reshape(b, t, d)
  x_BxTxD = x_BxTxD + _dense(attn_BxTxD, layer["attn"]["c_proj"])
  m_BxTxF = jax.nn.gelu(
    _dense(_layer_norm(x_BxTxD, layer["ln_2"], config.layer_norm_epsilon), layer["mlp"]["c_fc"]),
    approximate=True,
  )
  x_BxTxD = x_BxTxD + _dense(m_BxTxF, layer["mlp"]["c_proj"])
  return x_BxTxD, k_BxHxSxK, v_BxHxSxK, new_k_BxHxTxK, new_v_BxHxTxK


def as_params(params) -> Params:
  """The plain dict pytree from either that pytree or an NNX `State` of a `GPT2` module."""
  if not isinstance(params, dict):
    params = nnx.to_pure_dict(params)
  layers = params["h"]
  if isinstance(layers, dict):  # nnx.to_pure_dict writes the list of blocks as {0: .., 1: ..}
    params = {**params, "h": [layers[i] for i in range(len(layers))]}
  return params


def gpt2_forward(
  params: Params,
  config: GPT2Config,
  cache: KVCache,
  tokens_BxT: Int[Array, "B T"] | None = None,
  *,
  embeds_BxTxD: Float[Array, "B T D"] | None = None,
) -> tuple[Float[Array, "B T V"], Float[Array, "B T D"], KVCache]:
  """Runs T new positions of GPT-2 against a cache.

  The new positions are written at `cache.length`, attend causally to every
  cache position before them, and get position embeddings
  `length .. length + T - 1`. The caller keeps `length + T <= cache.max_len`
  (under jit this cannot be checked: `dynamic_update_slice` would clamp).

  Args:
    params: the parameter pytree (see the module docstring), or the NNX state
      of a `GPT2` module.
    config: the model's shape.
    cache: keys/values so far; `init_cache` for an empty one.
    tokens_BxT: token ids, or None when `embeds_BxTxD` is given.
    embeds_BxTxD: input embeddings used instead of `wte[tokens]` (PPLM's soft
      horizon inputs `p @ wte`).

  Returns:
    logits_BxTxV (tied head `hidden @ wte.T`), hidden_BxTxD (the final
    hidden states after ln_f, what PPLM's discriminator pools) and the cache
    with the T positions written and `length + T`.
  """
  params = as_params(params)
  x_BxTxD, length = _embed(params, config, cache.max_len, cache.length, tokens_BxT, embeds_BxTxD)
  t = x_BxTxD.shape[1]
  new_k, new_v = [], []
  for i, layer in enumerate(params["h"]):
    x_BxTxD, _, _, k_BxHxTxK, v_BxHxTxK = _block(
      config, x_BxTxD, layer, cache.k[i], cache.v[i], length
    )
    new_k.append(k_BxHxTxK)
    new_v.append(v_BxHxTxK)
  zero = jnp.zeros((), jnp.int32)
  start = (zero, zero, zero, length, zero)
  k = jax.lax.dynamic_update_slice(cache.k, jnp.stack(new_k), start)
  v = jax.lax.dynamic_update_slice(cache.v, jnp.stack(new_v), start)
  logits_BxTxV, hidden_BxTxD = _head(params, config, x_BxTxD)
  return logits_BxTxV, hidden_BxTxD, KVCache(k, v, length + t)


def gpt2_forward_layers(
  params: Params,
  config: GPT2Config,
  k_layers: Sequence[Float[Array, "B H S K"]],
  v_layers: Sequence[Float[Array, "B H S K"]],
  length: Int[Array, ""],
  tokens_BxT: Int[Array, "B T"] | None = None,
  *,
  embeds_BxTxD: Float[Array, "B T D"] | None = None,
) -> tuple[Float[Array, "B T V"], Float[Array, "B T D"], list, list]:
  """`gpt2_forward` against a cache held as one keys array and one values array per layer.

  What PPLM differentiates with respect to the cache: the gradient for a
  per-layer array stays that layer's array, whereas slicing layer i out of
  the stacked L x B x H x S x K cache makes the backward pass pad every
  layer's gradient to the whole stack and add the L of them (for GPT-2 small
  at batch 8 on one CPU core, removing that pad-and-add made a forward +
  gradient pass 1.3-1.8x faster; see benchmarks/pplm_layers.py).

  Args:
    params, config, tokens_BxT, embeds_BxTxD: as for `gpt2_forward`.
    k_layers, v_layers: L arrays B x H x S x K each (e.g. `cache.k[i]`).
    length: the number of filled positions; the T new ones are written there.

  Returns:
    logits_BxTxV, hidden_BxTxD, and the per-layer keys and values with the T
    positions written (their length is `length + T`).
  """
  params = as_params(params)
  if len(k_layers) != config.n_layer or len(v_layers) != config.n_layer:
    raise JaxnnError(
      f"gpt2_forward_layers needs {config.n_layer} key and value arrays (one per "
      f"layer), got {len(k_layers)} and {len(v_layers)}"
    )
  x_BxTxD, length = _embed(params, config, k_layers[0].shape[2], length, tokens_BxT, embeds_BxTxD)
  k_out, v_out = [], []
  for layer, k_BxHxSxK, v_BxHxSxK in zip(params["h"], k_layers, v_layers):
    x_BxTxD, k_BxHxSxK, v_BxHxSxK, _, _ = _block(
      config, x_BxTxD, layer, k_BxHxSxK, v_BxHxSxK, length
    )
    k_out.append(k_BxHxSxK)
    v_out.append(v_BxHxSxK)
  logits_BxTxV, hidden_BxTxD = _head(params, config, x_BxTxD)
  return logits_BxTxV, hidden_BxTxD, k_out, v_out


def _embed(params, config, max_len, length, tokens_BxT, embeds_BxTxD):
  """Checks the inputs; returns the input embeddings plus positions, and `length` as int32."""
  if (tokens_BxT is None) == (embeds_BxTxD is None):
    raise JaxnnError("gpt2_forward takes exactly one of tokens_BxT and embeds_BxTxD")
  wte_VxD = params["wte"]
  x_BxTxD = wte_VxD[tokens_BxT] if embeds_BxTxD is None else embeds_BxTxD.astype(wte_VxD.dtype)
  t = x_BxTxD.shape[1]
  if t > max_len:
    raise JaxnnError(f"{t} new positions do not fit a cache of max_len {max_len}")
  if len(params["h"]) != config.n_layer:
    raise JaxnnError(
      f"params have {len(params['h'])} blocks but the config says n_layer="
      f"{config.n_layer}; load both with load_gpt2"
    )
  length = jnp.asarray(length, jnp.int32)
  pos_TxD = jax.lax.dynamic_slice_in_dim(params["wpe"], length, t, axis=0)
  return x_BxTxD + pos_TxD[None], length


def _head(params, config, x_BxTxD):
  """The final layer norm and the tied output head: (logits_BxTxV, hidden_BxTxD)."""
  hidden_BxTxD = _layer_norm(x_BxTxD, params["ln_f"], config.layer_norm_epsilon)
  return tied_logits(hidden_BxTxD, params["wte"]), hidden_BxTxD


@functools.partial(jax.jit, static_argnames=("config", "initializer_range", "dtype"))
def init_params(
  config: GPT2Config, key, *, initializer_range: float = 0.02, dtype=jnp.float32
) -> Params:
  """Random parameters as GPT-2 initializes them (normal(0, initializer_range) weights).

  As in GPT-2, the residual output projections are scaled by 1 / sqrt(2 L).
  """
  d, f, l = config.n_embd, config.inner_dim, config.n_layer
  keys = iter(jax.random.split(key, 6))
  normal = lambda shape, std=initializer_range: (std * jax.random.normal(next(keys), shape)).astype(
    dtype
  )
  zeros = lambda *shape: jnp.zeros(shape, dtype)
  ln = lambda *lead: {"scale": jnp.ones((*lead, d), dtype), "bias": zeros(*lead, d)}
  resid_std = initializer_range / math.sqrt(2 * l)
  wte_VxD, wpe_PxD = normal((config.vocab_size, d)), normal((config.n_positions, d))
  stacked = {  # drawn for all layers at once, then split into one dict per block
    "ln_1": ln(l),
    "attn": {
      "c_attn": {"kernel": normal((l, d, 3 * d)), "bias": zeros(l, 3 * d)},
      "c_proj": {"kernel": normal((l, d, d), resid_std), "bias": zeros(l, d)},
    },
    "ln_2": ln(l),
    "mlp": {
      "c_fc": {"kernel": normal((l, d, f)), "bias": zeros(l, f)},
      "c_proj": {"kernel": normal((l, f, d), resid_std), "bias": zeros(l, d)},
    },
  }
  return {
    "wte": wte_VxD,
    "wpe": wpe_PxD,
    "h": [jax.tree.map(lambda a, i=i: a[i], stacked) for i in range(l)],
    "ln_f": ln(),
  }


def param_specs(config: GPT2Config) -> Params:
  """The expected `jax.ShapeDtypeStruct` of every parameter, in the params' structure."""
  return jax.eval_shape(lambda: init_params(config, jax.random.key(0)))


def _as_nnx(tree):
  if isinstance(tree, dict):
    return nnx.Dict({k: _as_nnx(v) for k, v in tree.items()})
  if isinstance(tree, (list, tuple)):
    return nnx.List([_as_nnx(v) for v in tree])
  return nnx.Param(tree)


class GPT2(nnx.Module):
  """GPT-2 as a Flax NNX module: a thin wrapper over `gpt2_forward`.

  Its attributes are the parameter pytree with `nnx.Param` leaves, so
  `graphdef, state = nnx.split(model)` gives a state that `gpt2_forward`
  accepts directly (and `model.params()` the plain dict pytree).

  Example:
    params, config = load_gpt2("gpt2")
    model = GPT2(config, params=params)
    logits_BxTxV, hidden_BxTxD, cache = model(init_cache(config, 1, 32), tokens_1xT)
  """

  def __init__(
    self,
    config: GPT2Config,
    *,
    params: Params | None = None,
    rngs: nnx.Rngs | None = None,
    initializer_range: float = 0.02,
  ):
    if params is None:
      if rngs is None:
        raise JaxnnError(
          "GPT2 needs either params (e.g. from load_gpt2) or rngs to initialize them"
        )
      params = init_params(config, rngs.params(), initializer_range=initializer_range)
    self.config = config
    for name, value in params.items():
      setattr(self, name, _as_nnx(value))

  def params(self) -> Params:
    return as_params(nnx.state(self, nnx.Param))

  def __call__(self, cache: KVCache, tokens_BxT=None, *, embeds_BxTxD=None):
    return gpt2_forward(self.params(), self.config, cache, tokens_BxT, embeds_BxTxD=embeds_BxTxD)

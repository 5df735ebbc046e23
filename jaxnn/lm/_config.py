"""The shape of a decoder-only language model, read from a Hugging Face config.json.

One frozen `LMConfig` describes every supported family (GPT-2, Llama 1/2/3.x,
Mistral, Qwen2/2.5, Qwen3, Gemma 1/2, Phi-3, GPT-NeoX/Pythia): the model
function (`jaxnn.lm.lm_forward`) reads its switches (RoPE or learned
positions, RMSNorm or LayerNorm, gated MLP, grouped-query heads, sliding
windows, soft-capping, ...) rather than having one copy per family.
`GPT2Config` keeps GPT-2's own field names (n_embd, n_layer, ...) for code
written against them; `lm_config(config)` turns either into an `LMConfig`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

from jaxnn._errors import JaxnnError

#: model_type of config.json -> the family's name in messages and docs.
SUPPORTED_MODEL_TYPES = {
  "gpt2": "GPT-2",
  "llama": "Llama 1/2/3.x",
  "mistral": "Mistral",
  "qwen2": "Qwen2/2.5",
  "qwen3": "Qwen3",
  "gemma": "Gemma",
  "gemma2": "Gemma 2",
  "phi3": "Phi-3",
  "gpt_neox": "GPT-NeoX/Pythia",
}
ACTIVATIONS = ("silu", "gelu", "gelu_tanh", "relu")
# Hugging Face's activation names -> jaxnn's.
_HF_ACTIVATIONS = {
  "silu": "silu",
  "swish": "silu",
  "gelu": "gelu",
  "gelu_new": "gelu_tanh",
  "gelu_pytorch_tanh": "gelu_tanh",
  "gelu_fast": "gelu_tanh",
  "relu": "relu",
}
#: RoPE variants (Hugging Face's rope_type); "default" is plain RoPE.
ROPE_TYPES = ("default", "linear", "dynamic", "yarn", "longrope", "llama3", "proportional")
# rope_type -> the keys of its scaling that LMConfig.rope_scaling must hold.
_ROPE_REQUIRED = {
  "default": (),
  "linear": ("factor",),
  "dynamic": ("factor",),
  "yarn": ("factor", "original_max_position_embeddings"),
  "longrope": ("short_factor", "long_factor", "original_max_position_embeddings"),
  "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
  "proportional": (),
}


@dataclasses.dataclass(frozen=True)
class LMConfig:
  """The shape and switches of a decoder-only transformer (hashable: a static jit argument).

  Build it from a Hugging Face config.json with `LMConfig.from_hf_dict`
  (what `jaxnn.lm.load_lm` does), or by hand for a random model.
  """

  vocab_size: int  # number of tokens V
  hidden_size: int  # model width D
  num_layers: int  # transformer blocks L
  num_heads: int  # query heads H
  num_kv_heads: int  # key/value heads G (H: multi-head, 1: multi-query, else grouped)
  head_dim: int  # width K of each head
  intermediate_size: int  # MLP width F
  max_positions: int  # longest sequence the model accepts
  model_type: str = "llama"  # Hugging Face's model_type (the family)
  norm: str = "rms"  # "rms" (RMSNorm) or "layer" (LayerNorm with bias)
  norm_eps: float = 1e-6  # epsilon of every norm
  norm_offset: float = 0.0  # norms scale by (offset + weight): Gemma stores weight - 1
  activation: str = "silu"  # silu, gelu (erf), gelu_tanh or relu
  gated_mlp: bool = True  # act(x W_gate) * (x W_up) (SwiGLU/GeGLU); False: act(x W_in)
  positions: str = "rope"  # "rope" (rotary) or "learned" (GPT-2's position table)
  rope_theta: float = 10000.0  # RoPE base
  rotary_dim: int = 0  # leading dims of each head that rotate (0: all of head_dim)
  rope_scaling: tuple = ()  # sorted (key, value) pairs: rope_type and its parameters
  tie_embeddings: bool = True  # the output head is the token embedding
  qkv_bias: bool = False  # biases on the query/key/value projections
  out_bias: bool = False  # bias on the attention output projection
  mlp_bias: bool = False  # biases in the MLP
  qk_norm: bool = False  # RMSNorm of each query and key head (Qwen3)
  embed_scale: bool = False  # multiply the input embeddings by sqrt(hidden_size) (Gemma)
  parallel_residual: bool = False  # x + attn(norm1 x) + mlp(norm2 x) (GPT-NeoX)
  sandwich_norms: bool = False  # norms after attention and MLP too (Gemma 2)
  sliding_window: int = 0  # keys within this many positions (self included) on sliding layers
  sliding_layers: tuple = ()  # per layer: True where attention slides (empty: none)
  attn_softcap: float = 0.0  # scores -> cap * tanh(scores / cap) (Gemma 2; 0: none)
  final_softcap: float = 0.0  # logits -> cap * tanh(logits / cap) (Gemma 2; 0: none)
  attn_scale: float = 0.0  # score scale (0: 1 / sqrt(head_dim))

  def __post_init__(self):
    for field in (
      "vocab_size",
      "hidden_size",
      "num_layers",
      "num_heads",
      "num_kv_heads",
      "head_dim",
      "intermediate_size",
      "max_positions",
    ):
      value = getattr(self, field)
      if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise JaxnnError(f"LMConfig.{field} must be a positive integer, got {value!r}")
    if self.num_heads % self.num_kv_heads:
      raise JaxnnError(
        f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({self.num_kv_heads})"
      )
    if self.norm not in ("rms", "layer"):
      raise JaxnnError(f"LMConfig.norm must be 'rms' or 'layer', got {self.norm!r}")
    if self.activation not in ACTIVATIONS:
      raise JaxnnError(f"LMConfig.activation must be one of {ACTIVATIONS}, got {self.activation!r}")
    if self.positions not in ("rope", "learned"):
      raise JaxnnError(f"LMConfig.positions must be 'rope' or 'learned', got {self.positions!r}")
    if self.positions == "rope":
      if self.rotary_dim < 0 or self.rotary_dim > self.head_dim or self.rotary_dim % 2:
        raise JaxnnError(
          f"rotary_dim must be an even number in 0..head_dim ({self.head_dim}), "
          f"got {self.rotary_dim}"
        )
      if not (math.isfinite(self.rope_theta) and self.rope_theta > 1):
        raise JaxnnError(f"rope_theta must be a finite number > 1, got {self.rope_theta}")
      self._check_rope_scaling()
    for field in ("norm_eps", "sliding_window", "attn_softcap", "final_softcap", "attn_scale"):
      value = getattr(self, field)
      if not (math.isfinite(value) and value >= 0):
        raise JaxnnError(f"LMConfig.{field} must be a finite number >= 0, got {value!r}")
    if self.sliding_layers and len(self.sliding_layers) != self.num_layers:
      raise JaxnnError(
        f"sliding_layers has {len(self.sliding_layers)} entries for {self.num_layers} layers"
      )

  def _check_rope_scaling(self):
    """One-line errors for a rope_scaling that inverse_frequencies could not evaluate."""
    try:
      scaling = dict(self.rope_scaling)
      hash(self.rope_scaling)
    except (TypeError, ValueError):
      raise JaxnnError(
        "LMConfig.rope_scaling must be (key, value) pairs of hashable values (lists as tuples)"
      ) from None
    rope_type = scaling.get("rope_type", "default")
    if rope_type not in ROPE_TYPES:
      raise JaxnnError(
        f"RoPE scaling {rope_type!r} is not supported; jaxnn supports {', '.join(ROPE_TYPES)}"
      )
    missing = [key for key in _ROPE_REQUIRED[rope_type] if key not in scaling]
    if missing:
      raise JaxnnError(f"RoPE scaling {rope_type!r} needs {', '.join(missing)} in rope_scaling")
    for key, value in scaling.items():
      if key == "rope_type" or key == "truncate":
        continue
      if key == "partial_rotary_factor":
        if not (isinstance(value, (int, float)) and 0 <= value <= 1):
          raise JaxnnError(f"rope_scaling 'partial_rotary_factor' must be in [0, 1], got {value!r}")
        continue
      listed = key in ("short_factor", "long_factor")
      values = value if listed else (value,)
      if not isinstance(values, tuple) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
        for v in values
      ):
        what = "a tuple of positive finite numbers" if listed else "a positive finite number"
        raise JaxnnError(f"rope_scaling {key!r} must be {what}, got {value!r}")
    for key in ("short_factor", "long_factor"):
      if key in scaling and len(scaling[key]) != self.rotary // 2:
        raise JaxnnError(
          f"rope_scaling {key!r} has {len(scaling[key])} entries; the model has "
          f"{self.rotary // 2} rotary frequencies (rotary dims / 2)"
        )
    if rope_type == "dynamic" and self.rotary < 4:
      raise JaxnnError(f"dynamic RoPE needs at least 4 rotary dims, got {self.rotary}")

  @property
  def rope_attention_factor(self) -> float:
    """The factor on RoPE's cos and sin: YaRN's and LongRoPE's attention factor, else 1.

    As transformers: the config's `attention_factor` when given; otherwise
    YaRN's 0.1 ln(factor) + 1 (or its ratio for `mscale` and
    `mscale_all_dim`), LongRoPE's sqrt(1 + ln(factor) / ln(original
    positions)) with factor = max_positions / original positions unless set.
    """
    scaling = dict(self.rope_scaling)
    rope_type = scaling.get("rope_type", "default")
    if rope_type not in ("yarn", "longrope"):
      return 1.0
    if "attention_factor" in scaling:
      return float(scaling["attention_factor"])
    original = scaling["original_max_position_embeddings"]
    factor = scaling.get("factor", self.max_positions / original)
    if rope_type == "yarn":
      mscale, mscale_all_dim = scaling.get("mscale"), scaling.get("mscale_all_dim")
      if mscale and mscale_all_dim:
        return _yarn_mscale(factor, mscale) / _yarn_mscale(factor, mscale_all_dim)
      return _yarn_mscale(factor)
    if factor <= 1.0:
      return 1.0
    return math.sqrt(1 + math.log(factor) / math.log(original))

  @property
  def rotary(self) -> int:
    """How many leading dims of each head rotate."""
    return self.rotary_dim or self.head_dim

  @property
  def scale(self) -> float:
    """The attention score scale."""
    return self.attn_scale or self.head_dim**-0.5

  @property
  def mlp_in_width(self) -> int:
    """Output width of the MLP's first product (gate and up side by side when gated)."""
    return 2 * self.intermediate_size if self.gated_mlp else self.intermediate_size

  @property
  def qkv_width(self) -> int:
    """Output width of the fused query/key/value product: (H + 2 G) K."""
    return (self.num_heads + 2 * self.num_kv_heads) * self.head_dim

  def window(self, layer: int) -> int:
    """The sliding window of `layer` (0: full causal attention)."""
    if not self.sliding_window:
      return 0
    if self.sliding_layers and not self.sliding_layers[layer]:
      return 0
    return self.sliding_window

  @classmethod
  def from_hf_dict(cls, d: dict[str, Any]) -> LMConfig:
    """From a Hugging Face config.json of a supported family.

    Raises:
      JaxnnError: an unknown model_type (with the supported ones), a field
        missing or of the wrong type, or a variant jaxnn does not compute.
    """
    if not isinstance(d, dict):
      raise JaxnnError(f"config.json must hold a JSON object, got {type(d).__name__}")
    model_type = d.get("model_type")
    if model_type == "gpt2" or (model_type is None and "n_embd" in d):
      return GPT2Config.from_hf_dict(d).lm
    if model_type not in SUPPORTED_MODEL_TYPES:
      raise JaxnnError(
        f"config.json has model_type {model_type!r}, which jaxnn does not support; "
        f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
      )
    return _from_hf(d, model_type)


def _field(d, key, kind, default=dataclasses.MISSING, *, where="config.json"):
  """d[key] checked to be of `kind` (int, float, bool, str); a one-line error otherwise."""
  if key not in d or d[key] is None:
    if default is dataclasses.MISSING:
      raise JaxnnError(f"{where} lacks {key!r}; is it a config of a supported model?")
    return default
  value = d[key]
  ok = {
    int: isinstance(value, int) and not isinstance(value, bool),
    float: isinstance(value, (int, float)) and not isinstance(value, bool),
    bool: isinstance(value, bool),
    str: isinstance(value, str),
  }[kind]
  if not ok:
    raise JaxnnError(
      f"{where}: {key!r} must be {kind.__name__}, got {value!r}; the file is corrupt or foreign"
    )
  if kind is float and not math.isfinite(value):
    raise JaxnnError(f"{where}: {key!r} must be a finite number, got {value!r}")
  return kind(value)


def _yarn_mscale(factor, mscale=1.0):
  """YaRN's attention scale 0.1 mscale ln(factor) + 1 (1 for factor <= 1)."""
  return 1.0 if factor <= 1 else 0.1 * mscale * math.log(factor) + 1.0


def _factor_list(scaling, key, where):
  """A list of positive numbers from the rope scaling, as a tuple of floats."""
  value = scaling.get(key)
  if not isinstance(value, list) or not all(
    isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
  ):
    raise JaxnnError(f"{where}: {key!r} must be a list of numbers, got {value!r}")
  return tuple(float(v) for v in value)


def _rope(d, model_type):
  """(theta, partial rotary factor, scaling pairs) from rope_theta or rope_parameters."""
  params = d.get("rope_parameters")
  if params is not None and not isinstance(params, dict):
    raise JaxnnError(f"config.json: 'rope_parameters' must be an object, got {params!r}")
  if isinstance(params, dict) and "full_attention" in params:
    raise JaxnnError("config.json has per-layer RoPE parameters, which jaxnn does not support")
  scaling = d.get("rope_scaling")
  if scaling is not None and not isinstance(scaling, dict):
    raise JaxnnError(f"config.json: 'rope_scaling' must be an object or null, got {scaling!r}")
  merged = {**(scaling or {}), **(params or {})}
  theta_default = 10000.0
  if model_type == "gpt_neox":
    theta_default = _field(d, "rotary_emb_base", float, 10000.0)
  theta = _field(merged, "rope_theta", float, _field(d, "rope_theta", float, theta_default))
  partial_default = 1.0
  if model_type == "gpt_neox":
    partial_default = _field(d, "rotary_pct", float, 0.25)
  partial = _field(
    merged,
    "partial_rotary_factor",
    float,
    _field(d, "partial_rotary_factor", float, partial_default),
  )
  rope_type = merged.get("rope_type", merged.get("type", "default"))
  if model_type == "phi3" and rope_type in ("su", "yarn"):
    rope_type = "longrope"  # as transformers: Phi-3's early configs named LongRoPE so
  if rope_type not in ROPE_TYPES:
    raise JaxnnError(
      f"config.json asks for RoPE scaling {rope_type!r}, which jaxnn does not support; "
      f"supported: {', '.join(ROPE_TYPES)}"
    )
  if model_type == "phi3" and rope_type not in ("default", "longrope"):
    raise JaxnnError(
      f"config.json asks for RoPE scaling {rope_type!r} on Phi-3, which takes only "
      f"'default' or 'longrope' (as transformers)"
    )
  where = "config.json rope scaling"
  pairs: list[tuple[str, Any]] = [("rope_type", rope_type)]
  if rope_type == "dynamic":  # its base grows past max_position_embeddings
    pairs.append(("original_max_position_embeddings", _field(d, "max_position_embeddings", int)))
  if rope_type in ("llama3", "yarn", "longrope"):
    # As transformers: a top-level original_max_position_embeddings wins (Phi-3 keeps it
    # there, 4096 when absent), then the scaling's, then max_position_embeddings.
    original = _field(
      merged, "original_max_position_embeddings", int, _field(d, "max_position_embeddings", int)
    )
    if model_type == "phi3":
      original = 4096
    original = _field(d, "original_max_position_embeddings", int, original)
    if original < 1:
      raise JaxnnError(f"{where}: 'original_max_position_embeddings' must be > 0, got {original}")
    pairs.append(("original_max_position_embeddings", original))
  if rope_type in ("linear", "dynamic", "llama3"):
    pairs.append(("factor", _field(merged, "factor", float, where=where)))
  if rope_type == "llama3":
    for key in ("low_freq_factor", "high_freq_factor"):
      pairs.append((key, _field(merged, key, float, where=where)))
  if rope_type in ("yarn", "longrope"):
    factor = _field(merged, "factor", float, None, where=where)
    if factor is None:  # as transformers: the ratio of the context lengths
      factor = _field(d, "max_position_embeddings", int) / original
    pairs.append(("factor", factor))
    attention_factor = _field(merged, "attention_factor", float, None, where=where)
    if attention_factor is not None:
      pairs.append(("attention_factor", attention_factor))
  if rope_type == "yarn":
    for key, default in (("beta_fast", 32.0), ("beta_slow", 1.0)):
      # transformers: `get(key) or default`, so 0 means the default too.
      pairs.append((key, _field(merged, key, float, None, where=where) or default))
    for key in ("mscale", "mscale_all_dim"):
      value = _field(merged, key, float, None, where=where)
      if value:
        pairs.append((key, value))
    pairs.append(("truncate", _field(merged, "truncate", bool, True, where=where)))
  if rope_type == "longrope":
    for key in ("short_factor", "long_factor"):
      pairs.append((key, _factor_list(merged, key, where)))
  if rope_type == "proportional":
    # Every dim of the head rotates, the partial factor's share with frequencies and the rest
    # with frequency 0 (Gemma 4's RoPE); divided by factor (1 by default).
    pairs.append(("factor", _field(merged, "factor", float, 1.0, where=where)))
    pairs.append(("partial_rotary_factor", partial))
    partial = 1.0
  return theta, partial, tuple(sorted(pairs))


def _max_positions(d, scaling):
  """The longest sequence: max_position_embeddings, or factor times it for dynamic RoPE.

  Dynamic NTK scaling is made to run past max_position_embeddings (where it
  starts to grow the base); transformers sets no bound, jaxnn accepts the
  factor times longer context that the scaling is meant for.
  """
  positions = _field(d, "max_position_embeddings", int)
  scaling = dict(scaling)
  if scaling["rope_type"] == "dynamic" and scaling["factor"] > 1:
    return int(positions * scaling["factor"])
  return positions


def _layer_types(d, num_layers, sliding_window):
  """Per layer whether attention slides, from layer_types or the family's older fields."""
  types = d.get("layer_types")
  if types is not None:
    if (
      not isinstance(types, list)
      or len(types) != num_layers
      or any(t not in ("sliding_attention", "full_attention") for t in types)
    ):
      raise JaxnnError(
        f"config.json: 'layer_types' must list 'sliding_attention' or 'full_attention' "
        f"for each of the {num_layers} layers"
      )
    return tuple(t == "sliding_attention" for t in types)
  if not sliding_window:
    return ()
  return tuple(True for _ in range(num_layers))


def _from_hf(d, model_type) -> LMConfig:
  hidden = _field(d, "hidden_size", int)
  heads = _field(d, "num_attention_heads", int)
  layers = _field(d, "num_hidden_layers", int)
  if heads < 1 or layers < 1 or hidden < 1:
    raise JaxnnError("config.json: hidden_size, num_attention_heads, num_hidden_layers must be > 0")
  kv_heads = _field(d, "num_key_value_heads", int, heads)
  head_dim = _field(d, "head_dim", int, 0) or hidden // heads
  theta, partial, scaling = _rope(d, model_type)
  if model_type in ("gemma", "gemma2"):
    # Gemma's "gelu" means the tanh GELU its weights were trained with (as in transformers).
    act_name = _field(d, "hidden_activation", str, None) or _field(
      d, "hidden_act", str, "gelu_pytorch_tanh"
    )
    if act_name == "gelu":
      act_name = "gelu_pytorch_tanh"
  else:
    act_name = _field(d, "hidden_act", str, "gelu" if model_type == "gpt_neox" else "silu")
  if act_name not in _HF_ACTIVATIONS:
    raise JaxnnError(
      f"config.json: activation {act_name!r} is not supported; supported: "
      f"{', '.join(_HF_ACTIVATIONS)}"
    )
  common = dict(
    model_type=model_type,
    vocab_size=_field(d, "vocab_size", int),
    hidden_size=hidden,
    num_layers=layers,
    num_heads=heads,
    num_kv_heads=kv_heads,
    head_dim=head_dim,
    intermediate_size=_field(d, "intermediate_size", int),
    max_positions=_max_positions(d, scaling),
    activation=_HF_ACTIVATIONS[act_name],
    rope_theta=theta,
    rotary_dim=int(head_dim * partial) if partial != 1.0 else 0,
    rope_scaling=scaling,
    tie_embeddings=_field(d, "tie_word_embeddings", bool, model_type in ("gemma", "gemma2")),
  )
  sliding = 0
  if model_type in ("mistral", "phi3", "gemma2", "qwen2", "qwen3"):
    sliding = _field(d, "sliding_window", int, 0)
    if model_type in ("qwen2", "qwen3") and not _field(d, "use_sliding_window", bool, False):
      sliding = 0
  layer_types = _layer_types(d, layers, sliding) if sliding else ()
  if sliding and not any(layer_types):
    sliding, layer_types = 0, ()
  if model_type in ("qwen2", "qwen3") and sliding and "layer_types" not in d:
    # Older Qwen configs: layers from max_window_layers on use the window.
    first = _field(d, "max_window_layers", int, layers)
    layer_types = tuple(i >= first for i in range(layers))
  common.update(sliding_window=sliding, sliding_layers=layer_types)
  if model_type == "gpt_neox":
    common.update(
      norm="layer",
      norm_eps=_field(d, "layer_norm_eps", float, 1e-5),
      gated_mlp=False,
      qkv_bias=_field(d, "attention_bias", bool, True),
      out_bias=_field(d, "attention_bias", bool, True),
      mlp_bias=True,
      parallel_residual=_field(d, "use_parallel_residual", bool, True),
      tie_embeddings=_field(d, "tie_word_embeddings", bool, False),
    )
    return LMConfig(**common)
  eps = _field(d, "rms_norm_eps", float, 1e-6)
  common.update(norm="rms", norm_eps=eps)
  if model_type in ("llama", "mistral"):
    bias = _field(d, "attention_bias", bool, False)
    common.update(qkv_bias=bias, out_bias=bias, mlp_bias=_field(d, "mlp_bias", bool, False))
  elif model_type == "qwen2":
    common.update(qkv_bias=True)
  elif model_type == "qwen3":
    bias = _field(d, "attention_bias", bool, False)
    common.update(qkv_bias=bias, out_bias=bias, qk_norm=True)
  elif model_type in ("gemma", "gemma2"):
    bias = _field(d, "attention_bias", bool, False)
    common.update(qkv_bias=bias, out_bias=bias, norm_offset=1.0, embed_scale=True)
    if model_type == "gemma2":
      common.update(
        sandwich_norms=True,
        attn_softcap=_field(d, "attn_logit_softcapping", float, 0.0),
        final_softcap=_field(d, "final_logit_softcapping", float, 0.0),
        attn_scale=_field(d, "query_pre_attn_scalar", float, float(head_dim)) ** -0.5,
      )
  elif model_type == "phi3":
    pass
  return LMConfig(**common)


@dataclasses.dataclass(frozen=True)
class GPT2Config:
  """The shape of a GPT-2 (the fields of Hugging Face's config.json).

  `config.lm` is the same model as an `LMConfig`; every function of
  `jaxnn.lm` takes either.
  """

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
    """Width of each attention head."""
    return self.n_embd // self.n_head

  @property
  def inner_dim(self) -> int:
    """Width of the MLP."""
    return self.n_inner if self.n_inner is not None else 4 * self.n_embd

  @functools.cached_property
  def lm(self) -> LMConfig:
    """This GPT-2 as an `LMConfig`."""
    return LMConfig(
      model_type="gpt2",
      vocab_size=self.vocab_size,
      hidden_size=self.n_embd,
      num_layers=self.n_layer,
      num_heads=self.n_head,
      num_kv_heads=self.n_head,
      head_dim=self.head_dim,
      intermediate_size=self.inner_dim,
      max_positions=self.n_positions,
      norm="layer",
      norm_eps=self.layer_norm_epsilon,
      activation="gelu_tanh",
      gated_mlp=False,
      positions="learned",
      tie_embeddings=True,
      qkv_bias=True,
      out_bias=True,
      mlp_bias=True,
    )

  @classmethod
  def from_hf_dict(cls, d: dict[str, Any]) -> GPT2Config:
    """From a Hugging Face GPT-2 config.json, refusing variants this code does not compute."""
    if not isinstance(d, dict):
      raise JaxnnError(f"config.json must hold a JSON object, got {type(d).__name__}")
    model_type = d.get("model_type", "gpt2")
    if model_type != "gpt2":
      raise JaxnnError(
        f"config.json has model_type {model_type!r}; only GPT-2 ('gpt2') is supported "
        f"here (jaxnn.lm.load_lm reads {', '.join(SUPPORTED_MODEL_TYPES)})"
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
    inner = _field(d, "n_inner", int, None)
    return cls(
      vocab_size=_field(d, "vocab_size", int),
      n_positions=_field(d, "n_positions", int),
      n_embd=_field(d, "n_embd", int),
      n_layer=_field(d, "n_layer", int),
      n_head=_field(d, "n_head", int),
      layer_norm_epsilon=_field(d, "layer_norm_epsilon", float, 1e-5),
      n_inner=inner,
    )

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


def lm_config(config: LMConfig | GPT2Config) -> LMConfig:
  """The `LMConfig` of either config type."""
  if isinstance(config, LMConfig):
    return config
  if isinstance(config, GPT2Config):
    return config.lm
  raise JaxnnError(f"expected an LMConfig or GPT2Config, got {type(config).__name__}")

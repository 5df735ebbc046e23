"""Tiny random models of every supported family, saved by transformers' `save_pretrained`.

`save_family(name, folder)` writes config.json and model.safetensors of a
2-3 layer, 32-wide model of the family with large random weights
(initializer_range 0.2 and random norm weights and biases, so that every
parameter's wiring shows in the logits). Nothing is downloaded.
"""

from __future__ import annotations

COMMON = dict(
  vocab_size=96,
  hidden_size=32,
  intermediate_size=48,
  num_hidden_layers=2,
  num_attention_heads=4,
  max_position_embeddings=64,
  initializer_range=0.2,
  bos_token_id=1,
  eos_token_id=2,
  pad_token_id=0,
)

# name: (transformers config class, model class, config overrides, sliding window or 0)
FAMILIES = {
  "gpt2": (
    "GPT2Config",
    "GPT2LMHeadModel",
    dict(
      vocab_size=96,
      n_positions=64,
      n_embd=32,
      n_layer=2,
      n_head=4,
      initializer_range=0.2,
      bos_token_id=1,
      eos_token_id=2,
    ),
    0,
  ),
  "llama3": (  # GQA, untied head, biases, Llama 3.1 RoPE scaling (all three frequency bands)
    "LlamaConfig",
    "LlamaForCausalLM",
    dict(
      num_key_value_heads=2,
      attention_bias=True,
      mlp_bias=True,
      tie_word_embeddings=False,
      rope_scaling=dict(
        rope_type="llama3",
        factor=8.0,
        low_freq_factor=1.0,
        high_freq_factor=4.0,
        original_max_position_embeddings=64,
      ),
      max_position_embeddings=128,
    ),
    0,
  ),
  "mistral": (  # sliding window on every layer
    "MistralConfig",
    "MistralForCausalLM",
    dict(num_key_value_heads=2, sliding_window=5, tie_word_embeddings=False),
    5,
  ),
  "qwen2": (  # q/k/v biases, tied head, linear RoPE scaling
    "Qwen2Config",
    "Qwen2ForCausalLM",
    dict(
      num_key_value_heads=2,
      tie_word_embeddings=True,
      rope_scaling=dict(rope_type="linear", factor=2.0),
    ),
    0,
  ),
  "qwen3": (  # q/k RMSNorm, head_dim wider than hidden / heads
    "Qwen3Config",
    "Qwen3ForCausalLM",
    dict(num_key_value_heads=2, head_dim=16, tie_word_embeddings=False),
    0,
  ),
  "gemma": (  # multi-query, (1 + w) norms, sqrt(D) embedding scale, GeGLU
    "GemmaConfig",
    "GemmaForCausalLM",
    dict(num_key_value_heads=1, head_dim=16),
    0,
  ),
  "gemma2": (  # alternating sliding window, soft-capping, sandwich norms, query_pre_attn_scalar
    "Gemma2Config",
    "Gemma2ForCausalLM",
    dict(
      num_hidden_layers=3,
      num_key_value_heads=2,
      head_dim=16,
      sliding_window=4,
      attn_logit_softcapping=5.0,
      final_logit_softcapping=3.0,
      query_pre_attn_scalar=24,
    ),
    4,
  ),
  "phi3": (  # fused qkv and gate_up, partial rotary
    "Phi3Config",
    "Phi3ForCausalLM",
    dict(num_key_value_heads=2, partial_rotary_factor=0.5, tie_word_embeddings=False),
    0,
  ),
  "pythia": (  # GPT-NeoX: parallel residual, 25% rotary, interleaved fused qkv, LayerNorm
    "GPTNeoXConfig",
    "GPTNeoXForCausalLM",
    dict(rotary_pct=0.25, use_parallel_residual=True, tie_word_embeddings=False, hidden_act="gelu"),
    0,
  ),
  "neox_sequential": (  # GPT-NeoX without the parallel residual
    "GPTNeoXConfig",
    "GPTNeoXForCausalLM",
    dict(rotary_pct=0.5, use_parallel_residual=False, tie_word_embeddings=False),
    0,
  ),
}


def make_model(name: str, seed: int = 0, **overrides):
  """The transformers model of a family (eager attention), with randomized norms and biases."""
  import torch
  import transformers

  config_cls, model_cls, extra, _ = FAMILIES[name]
  kwargs = dict(extra) if name == "gpt2" else {**COMMON, **extra}
  kwargs.update(overrides)
  config = getattr(transformers, config_cls)(**kwargs)
  config._attn_implementation = "eager"
  torch.manual_seed(seed)
  model = getattr(transformers, model_cls)(config)
  with torch.no_grad():
    for _, p in model.named_parameters():
      if p.ndim == 1:
        p.add_(0.2 * torch.randn_like(p))
  return model.eval()


def save_family(name: str, folder, seed: int = 0, **overrides):
  """Saves the tiny model of a family to `folder` (config.json + model.safetensors)."""
  model = make_model(name, seed, **overrides)
  model.save_pretrained(folder)
  return folder

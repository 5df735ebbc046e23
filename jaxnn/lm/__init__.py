"""Decoder-only language models: one transformer function for the Hugging Face families.

GPT-2, Llama 1/2/3.x, Mistral, Qwen2/2.5, Qwen3, Gemma 1/2, Phi-3 and
GPT-NeoX/Pythia, read from their config.json (`LMConfig`) and safetensors
(`load_lm`, `load_tokenizer`), run as a pure function over a fixed-size
key/value cache (`lm_forward`, `KVCache`, `init_cache`), a thin NNX module
(`LanguageModel`), plain generation compiled once (`generate`, prompts of
different lengths left-padded into one batch by `left_pad`), and a small
GPT-2 trained offline for machines without the hub (`ensure_offline_lm`).
Shared by the methods (PPLM steers these models through their cache); it
imports none of them.

References:
  Radford et al. "Language Models are Unsupervised Multitask Learners". 2019.
  Touvron et al. "Llama 2: Open Foundation and Fine-Tuned Chat Models". 2023.
  Su et al. "RoFormer: Enhanced Transformer with Rotary Position Embedding". 2021.
  Ainslie et al. "GQA: Training Generalized Multi-Query Transformer Models". 2023.
"""

from jaxnn.lm._config import SUPPORTED_MODEL_TYPES, GPT2Config, LMConfig, lm_config
from jaxnn.lm._generate import check_token_ids, generate, left_pad, next_token, top_k_logits
from jaxnn.lm._loading import (
  KNOWN_MODELS,
  load_config,
  load_gpt2,
  load_lm,
  load_lm_config,
  resolve_folder,
  save_gpt2,
)
from jaxnn.lm._model import (
  GPT2,
  KVCache,
  LanguageModel,
  Params,
  as_params,
  gpt2_forward,
  gpt2_forward_layers,
  init_cache,
  init_params,
  inverse_frequencies,
  lm_forward,
  lm_forward_layers,
  param_specs,
  soft_embeddings,
  token_embeddings,
)
from jaxnn.lm._offline_lm import ensure_offline_lm
from jaxnn.lm._tokenizer import END_OF_TEXT, GPT2Tokenizer, Tokenizer, load_tokenizer

__all__ = [
  "END_OF_TEXT",
  "GPT2",
  "GPT2Config",
  "GPT2Tokenizer",
  "KNOWN_MODELS",
  "KVCache",
  "LMConfig",
  "LanguageModel",
  "Params",
  "SUPPORTED_MODEL_TYPES",
  "Tokenizer",
  "as_params",
  "check_token_ids",
  "ensure_offline_lm",
  "generate",
  "gpt2_forward",
  "gpt2_forward_layers",
  "init_cache",
  "init_params",
  "inverse_frequencies",
  "left_pad",
  "lm_config",
  "lm_forward",
  "lm_forward_layers",
  "load_config",
  "load_gpt2",
  "load_lm",
  "load_lm_config",
  "load_tokenizer",
  "next_token",
  "param_specs",
  "resolve_folder",
  "save_gpt2",
  "soft_embeddings",
  "token_embeddings",
  "top_k_logits",
]

"""PPLM: Plug and Play Language Models (Dathathri et al., ICLR 2020).

Steers a frozen language model (any family of `jaxnn.lm`: GPT-2, Llama,
Mistral, Qwen, Gemma, Phi-3, Pythia) toward an attribute by gradient steps on
its key/value cache: bags of words and linear discriminators (`Attributes`),
the steering loop (`steered_generate`, `PPLMConfig`) and the paper's
evaluation (`run_pplm`). The language model itself lives in `jaxnn.lm`; the
GPT-2 names it had here (`load_gpt2`, `gpt2_forward`, `GPT2`, ...) are
re-exported from there so that code written against them keeps working.

References:
  Dathathri et al. "Plug and Play Language Models: a Simple Approach to
  Controlled Text Generation". ICLR 2020. https://arxiv.org/abs/1912.02164
"""

from jaxnn.lm import (
  END_OF_TEXT,
  GPT2,
  KNOWN_MODELS,
  GPT2Config,
  GPT2Tokenizer,
  KVCache,
  Params,
  as_params,
  ensure_offline_lm,
  generate,
  gpt2_forward,
  gpt2_forward_layers,
  init_cache,
  init_params,
  left_pad,
  load_config,
  load_gpt2,
  load_tokenizer,
  next_token,
  param_specs,
  resolve_folder,
  save_gpt2,
  top_k_logits,
)
from jaxnn.pplm._attributes import (
  DiscriminatorHead,
  bag_of_words,
  cached_features,
  encode_mean_hidden,
  load_discriminator,
  read_labeled_texts,
  read_words,
  save_discriminator,
  train_discriminator,
  wordlist_names,
)
from jaxnn.pplm._evaluate import (
  bag_word_rate,
  class_probabilities,
  discriminator_accuracy,
  dist_n,
  perplexity,
  rank_samples,
  run_pplm,
)
from jaxnn.pplm._steer import (
  Attributes,
  BagsOfWords,
  Discriminator,
  PPLMConfig,
  PPLMDiagnostics,
  bag_probabilities,
  fused_probs,
  perturb_past,
  steered_generate,
)

__all__ = [
  "END_OF_TEXT",
  "GPT2",
  "GPT2Config",
  "GPT2Tokenizer",
  "KNOWN_MODELS",
  "KVCache",
  "Params",
  "as_params",
  "ensure_offline_lm",
  "generate",
  "gpt2_forward",
  "gpt2_forward_layers",
  "init_cache",
  "init_params",
  "left_pad",
  "load_config",
  "load_gpt2",
  "load_tokenizer",
  "next_token",
  "param_specs",
  "resolve_folder",
  "save_gpt2",
  "top_k_logits",
  # Steering, attribute models and evaluation.
  "Attributes",
  "BagsOfWords",
  "Discriminator",
  "DiscriminatorHead",
  "PPLMConfig",
  "PPLMDiagnostics",
  "bag_of_words",
  "bag_probabilities",
  "bag_word_rate",
  "cached_features",
  "class_probabilities",
  "discriminator_accuracy",
  "dist_n",
  "encode_mean_hidden",
  "fused_probs",
  "load_discriminator",
  "perplexity",
  "perturb_past",
  "rank_samples",
  "read_labeled_texts",
  "read_words",
  "run_pplm",
  "save_discriminator",
  "steered_generate",
  "train_discriminator",
  "wordlist_names",
]

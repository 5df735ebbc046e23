"""PPLM: Plug and Play Language Models (Dathathri et al., ICLR 2020).

Steers a frozen GPT-2 toward an attribute by gradient steps on its key/value
cache. The model half: GPT-2 as a pure function over a fixed-size cache
(`gpt2_forward`, `KVCache`, `init_cache`), a thin NNX module (`GPT2`),
Hugging Face checkpoints and tokenizers from safetensors (`load_gpt2`,
`load_tokenizer`), plain generation compiled once (`generate`) and a small
GPT-2 trained offline on Debian's fortunes for machines without the hub
(`ensure_offline_lm`).

References:
  Dathathri et al. "Plug and Play Language Models: a Simple Approach to
  Controlled Text Generation". ICLR 2020. https://arxiv.org/abs/1912.02164
"""

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
from jaxnn.pplm._gpt2 import (
  GPT2,
  GPT2Config,
  KVCache,
  Params,
  as_params,
  gpt2_forward,
  gpt2_forward_layers,
  init_cache,
  init_params,
  param_specs,
)
from jaxnn.pplm._loading import KNOWN_MODELS, load_config, load_gpt2, resolve_folder, save_gpt2
from jaxnn.pplm._model_generate import generate, next_token, top_k_logits
from jaxnn.pplm._offline_lm import ensure_offline_lm
from jaxnn.pplm._steer import (
  Attributes,
  BagsOfWords,
  Discriminator,
  PPLMConfig,
  bag_probabilities,
  fused_probs,
  perturb_past,
  steered_generate,
)
from jaxnn.pplm._tokenizer import END_OF_TEXT, GPT2Tokenizer, load_tokenizer

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

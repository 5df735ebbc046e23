"""Evaluation of generated text as in PPLM (Dathathri et al., ICLR 2020, section 4).

Fluency: perplexity under a chosen language model. Diversity: Dist-1/2/3
(distinct n-grams over all n-grams, Li et al. 2016). Attribute relevance: the
rate of bag words among the generated words, or a discriminator's probability
of the target class (its accuracy on labeled text). Ranking (the paper's BR /
BCR): keep, of N samples, the one with the best attribute score among those
whose Dist-n is acceptable.
"""

from __future__ import annotations

import re
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn._errors import JaxnnError
from jaxnn.pplm._gpt2 import GPT2Config, as_params, gpt2_forward, init_cache

_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")


def words_of(text: str) -> list[str]:
  """Lower-cased words of a text (letters, inner apostrophes)."""
  return [w.lower() for w in _WORD.findall(text)]


def dist_n(texts: Sequence[str] | str, n: int) -> float:
  """Distinct n-grams / all n-grams of whitespace tokens, pooled over `texts`."""
  texts = [texts] if isinstance(texts, str) else texts
  grams = [tuple(t[i:i + n]) for t in (text.split() for text in texts)
           for i in range(len(t) - n + 1)]
  return len(set(grams)) / len(grams) if grams else 0.0


def bag_word_rate(text: str, words: Sequence[str]) -> float:
  """Fraction of the words of `text` that belong to the bag (case-insensitive)."""
  bag = {w.lower() for w in words}
  found = words_of(text)
  return sum(w in bag for w in found) / len(found) if found else 0.0


def token_log_likelihoods(params, gpt2: GPT2Config, sequences: Sequence[Sequence[int]],
                          score_from: Sequence[int], *, batch_size: int = 8) -> list[np.ndarray]:
  """log p(token | earlier tokens) of every token from `score_from[i]` on, per sequence."""
  params = as_params(params)
  width = max(len(s) for s in sequences)
  if width > gpt2.n_positions:
    raise JaxnnError(f"a text of {width} tokens exceeds the model's {gpt2.n_positions} positions")

  @jax.jit
  def logp(tokens_BxT):
    cache = init_cache(gpt2, tokens_BxT.shape[0], width, params["wte"].dtype)
    logits_BxTxV, _, _ = gpt2_forward(params, gpt2, cache, tokens_BxT)
    logp_BxTxV = jax.nn.log_softmax(logits_BxTxV[:, :-1], axis=-1)
    return jnp.take_along_axis(logp_BxTxV, tokens_BxT[:, 1:, None], axis=-1)[..., 0]

  out = []
  for start in range(0, len(sequences), batch_size):
    chunk = sequences[start:start + batch_size]
    tokens = np.zeros((batch_size, width), np.int32)
    for i, s in enumerate(chunk):
      tokens[i, :len(s)] = s
    lp = np.asarray(logp(tokens))
    for i, s in enumerate(chunk):
      first = max(score_from[start + i], 1)
      out.append(lp[i, first - 1:len(s) - 1])
  return out


def perplexity(params, gpt2: GPT2Config, tokenizer, texts: Sequence[str],
               prompts: Sequence[str] | None = None) -> list[float]:
  """Perplexity of each text under a language model (the paper's fluency score).

  Each text is tokenized by that model's tokenizer after an end-of-text
  token; with `prompts`, text i must start with prompt i and only the
  continuation is scored, conditioned on the prompt.
  """
  sequences, starts = [], []
  for i, text in enumerate(texts):
    prefix = [tokenizer.eos_token_id]
    if prompts is not None:
      if not text.startswith(prompts[i]):
        raise JaxnnError(f"text {i} does not start with its prompt {prompts[i]!r}")
      prefix += tokenizer.encode(prompts[i])
      body = tokenizer.encode(text[len(prompts[i]):])
    else:
      body = tokenizer.encode(text)
    sequences.append((prefix + body)[:gpt2.n_positions])
    starts.append(min(len(prefix), len(sequences[-1]) - 1))
  scores = token_log_likelihoods(params, gpt2, sequences, starts)
  return [float(np.exp(-s.mean())) if s.size else float("nan") for s in scores]


def class_probabilities(features_NxD, head) -> np.ndarray:
  """softmax(Linear(mean hidden)) of a `DiscriminatorHead`, N x C."""
  logits = np.asarray(features_NxD, np.float64) @ np.asarray(head.kernel_DxC, np.float64)
  logits = logits + np.asarray(head.bias_C, np.float64)
  logits -= logits.max(-1, keepdims=True)
  p = np.exp(logits)
  return p / p.sum(-1, keepdims=True)


def discriminator_accuracy(features_NxD, labels: Sequence[str], head) -> float:
  """Accuracy of a discriminator on labeled mean representations."""
  unknown = set(labels) - set(head.classes)
  if unknown:
    raise JaxnnError(f"labels {sorted(unknown)} are not classes of the discriminator "
                     f"{list(head.classes)}")
  predicted = class_probabilities(features_NxD, head).argmax(-1)
  return float(np.mean([head.classes[p] == y for p, y in zip(predicted, labels)]))


def rank_samples(attribute_scores: Sequence[float], texts: Sequence[str], *,
                 min_dist: float = 0.5) -> int:
  """Index of the sample to keep (BR / BCR): the best attribute score among
  samples whose mean Dist-1/2/3 is at least `min_dist` (all samples if none is)."""
  if not texts:
    raise JaxnnError("nothing to rank")
  diversity = [np.mean([dist_n(t, n) for n in (1, 2, 3)]) for t in texts]
  candidates = [i for i, d in enumerate(diversity) if d >= min_dist] or list(range(len(texts)))
  return max(candidates, key=lambda i: attribute_scores[i])

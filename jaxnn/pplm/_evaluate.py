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
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn._errors import JaxnnError
from jaxnn.lm import LMConfig, as_params, init_cache, lm_config, lm_forward
from jaxnn.pplm._attributes import start_token

_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")


def words_of(text: str) -> list[str]:
  """Lower-cased words of a text (letters, inner apostrophes)."""
  return [w.lower() for w in _WORD.findall(text)]


def dist_n(texts: Sequence[str] | str, n: int) -> float:
  """Distinct n-grams / all n-grams of whitespace tokens, pooled over `texts`.

  Examples:
    >>> from jaxnn.pplm import dist_n
    >>> dist_n("the cat saw the cat", 1)  # 3 distinct words of 5
    0.6
    >>> dist_n(["a b", "a b"], 2)
    0.5
  """
  texts = [texts] if isinstance(texts, str) else texts
  grams = [
    tuple(t[i : i + n]) for t in (text.split() for text in texts) for i in range(len(t) - n + 1)
  ]
  return len(set(grams)) / len(grams) if grams else 0.0


def bag_word_rate(text: str, words: Sequence[str]) -> float:
  """Fraction of the words of `text` that belong to the bag (case-insensitive).

  Examples:
    >>> from jaxnn.pplm import bag_word_rate
    >>> bag_word_rate("The army and the navy", ["army", "navy"])
    0.4
  """
  bag = {w.lower() for w in words}
  found = words_of(text)
  return sum(w in bag for w in found) / len(found) if found else 0.0


def token_log_likelihoods(
  params,
  lm: LMConfig,
  sequences: Sequence[Sequence[int]],
  score_from: Sequence[int],
  *,
  batch_size: int = 8,
) -> list[np.ndarray]:
  """log p(token | earlier tokens) of every token from `score_from[i]` on, per sequence."""
  params = as_params(params)
  width = max(len(s) for s in sequences)
  if width > lm_config(lm).max_positions:
    raise JaxnnError(
      f"a text of {width} tokens exceeds the model's {lm_config(lm).max_positions} positions"
    )

  @jax.jit
  def logp(tokens_BxT):
    cache = init_cache(lm, tokens_BxT.shape[0], width, params["wte"].dtype)
    logits_BxTxV, _, _ = lm_forward(params, lm, cache, tokens_BxT)
    logits_BxTxV = logits_BxTxV.astype(jnp.promote_types(logits_BxTxV.dtype, jnp.float32))
    logp_BxTxV = jax.nn.log_softmax(logits_BxTxV[:, :-1], axis=-1)
    return jnp.take_along_axis(logp_BxTxV, tokens_BxT[:, 1:, None], axis=-1)[..., 0]

  out = []
  for start in range(0, len(sequences), batch_size):
    chunk = sequences[start : start + batch_size]
    tokens = np.zeros((batch_size, width), np.int32)
    for i, s in enumerate(chunk):
      tokens[i, : len(s)] = s
    lp = np.asarray(logp(tokens))
    for i, s in enumerate(chunk):
      first = max(score_from[start + i], 1)
      out.append(lp[i, first - 1 : len(s) - 1])
  return out


def perplexity(
  params, lm: LMConfig, tokenizer, texts: Sequence[str], prompts: Sequence[str] | None = None
) -> list[float]:
  """Perplexity of each text under a language model (the paper's fluency score).

  Each text is tokenized by that model's tokenizer after an end-of-text
  token; with `prompts`, text i must start with prompt i and only the
  continuation is scored, conditioned on the prompt.
  """
  sequences, starts = [], []
  for i, text in enumerate(texts):
    prefix = [start_token(tokenizer)]
    if prompts is not None:
      if not text.startswith(prompts[i]):
        raise JaxnnError(f"text {i} does not start with its prompt {prompts[i]!r}")
      prefix += tokenizer.encode(prompts[i])
      body = tokenizer.encode(text[len(prompts[i]) :])
    else:
      body = tokenizer.encode(text)
    sequences.append((prefix + body)[: lm_config(lm).max_positions])
    starts.append(min(len(prefix), len(sequences[-1]) - 1))
  scores = token_log_likelihoods(params, lm, sequences, starts)
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
    raise JaxnnError(
      f"labels {sorted(unknown)} are not classes of the discriminator {list(head.classes)}"
    )
  predicted = class_probabilities(features_NxD, head).argmax(-1)
  return float(np.mean([head.classes[p] == y for p, y in zip(predicted, labels)]))


def rank_samples(
  attribute_scores: Sequence[float], texts: Sequence[str], *, min_dist: float = 0.5
) -> int:
  """Index of the sample to keep (BR / BCR): the best attribute score among
  samples whose mean Dist-1/2/3 is at least `min_dist` (all samples if none is)."""
  if not texts:
    raise JaxnnError("nothing to rank")
  diversity = [np.mean([dist_n(t, n) for n in (1, 2, 3)]) for t in texts]
  candidates = [i for i, d in enumerate(diversity) if d >= min_dist] or list(range(len(texts)))
  return max(candidates, key=lambda i: attribute_scores[i])


def _entries(texts, continuations, bag_words, class_p, ppl, prompts):
  entries = []
  for i, (text, cont) in enumerate(zip(texts, continuations)):
    entry = {
      "prompt": prompts[i],
      "text": text,
      "continuation": cont,
      "perplexity": ppl[i],
      "dist_1": dist_n(cont, 1),
      "dist_2": dist_n(cont, 2),
      "dist_3": dist_n(cont, 3),
    }
    if bag_words:
      entry["bag_word_rate"] = bag_word_rate(cont, bag_words)
    if class_p is not None:
      entry["class_probability"] = float(class_p[i])
    entries.append(entry)
  return entries


def _mean(entries):
  keys = [k for k, v in entries[0].items() if isinstance(v, float)]
  return {k: float(np.nanmean([e[k] for e in entries])) for k in keys}


def run_pplm(
  params,
  lm: LMConfig,
  tokenizer,
  prompt: str | Sequence[str],
  config,
  *,
  bags=(),
  discriminator=None,
  class_label=None,
  num_samples: int = 1,
  seed: int = 0,
  multi_token: bool = True,
  rank: bool = False,
  min_dist: float = 0.5,
  scorer=None,
  model_name: str = "",
  out_dir=None,
) -> dict:
  """Steered samples and the unsteered baseline (same prompt and seeds), evaluated.

  The prompt is prefixed with the end-of-text token, as in the original.
  Both runs generate `num_samples` sequences per prompt as one batch (prompts
  of different token lengths left-padded, each steered as it would be alone).

  Args:
    params, lm, tokenizer: the model (`jaxnn.lm.load_lm`, `load_tokenizer`).
    prompt: the conditioning text, or several (each steered `num_samples` times).
    config: a `PPLMConfig`.
    bags: shipped bag names, word-list files or word lists.
    discriminator: a `DiscriminatorHead` or the path of a saved one.
    class_label: its target class (index or name).
    multi_token: count multi-token bag words (False: drop them, as the original).
    rank: also report the best sample (BR / BCR) by attribute score among
      those with mean Dist-n >= min_dist (with several prompts, one per prompt).
    scorer: (params, config, tokenizer, name) of the LM that scores perplexity
      (default: the generating model).
    out_dir: when given, writes samples.txt, baseline.txt and summary.json.

  Returns:
    The summary: lists `samples` and `baseline` of dicts (prompt, text,
    continuation, perplexity, dist_1/2/3, bag_word_rate and/or
    class_probability; prompt-major: prompt i's samples are
    i * num_samples .. (i + 1) * num_samples - 1), their
    `mean`, `model`, `tokens_per_second` and the configuration.
  """
  import dataclasses
  import pathlib

  from jaxnn.pplm._attributes import (
    DiscriminatorHead,
    bag_of_words,
    encode_mean_hidden,
    load_discriminator,
    read_words,
  )
  from jaxnn.pplm._steer import Attributes, steered_generate
  from jaxnn.train import write_json_atomic

  params = as_params(params)
  if not bags and discriminator is None:
    raise JaxnnError("give bags of words and/or a discriminator to steer toward")
  bag_words = sorted(
    {w for b in bags for w in (read_words(b) if isinstance(b, (str, pathlib.Path)) else b)}
  )
  head = None
  if discriminator is not None:
    if class_label is None:
      raise JaxnnError("a discriminator needs a class_label (index or class name)")
    head = (
      discriminator
      if isinstance(discriminator, DiscriminatorHead)
      else load_discriminator(discriminator, lm_config(lm).hidden_size)[0]
    )
  attributes = Attributes(
    bags=bag_of_words(list(bags), tokenizer, lm_config(lm).vocab_size, multi_token=multi_token)
    if bags
    else None,
    discriminators=(head.toward(class_label),) if head is not None else (),
  )
  prompts = [prompt] if isinstance(prompt, str) else list(prompt)
  if not prompts:
    raise JaxnnError("give at least one prompt")
  prompt_ids = [[start_token(tokenizer)] + tokenizer.encode(p) for p in prompts]
  prompt_BxP = [ids for ids in prompt_ids for _ in range(num_samples)]
  key = jax.random.key(seed)
  steered_timing: dict[str, float] = {}
  baseline_timing: dict[str, float] = {}
  steered = np.asarray(
    steered_generate(params, lm, prompt_BxP, attributes, config, key=key, timings=steered_timing)
  )
  baseline = np.asarray(
    steered_generate(
      params, lm, prompt_BxP, attributes, config, key=key, perturb=False, timings=baseline_timing
    )
  )
  prompt_texts = [tokenizer.decode(ids[1:]) for ids in prompt_ids for _ in range(num_samples)]
  s_params, s_config, s_tokenizer, s_name = scorer or (params, lm, tokenizer, model_name)
  summary: dict[str, Any] = {
    "model": model_name,
    "perplexity_model": s_name,
    "prompt": prompt if isinstance(prompt, str) else prompts,
    "config": dataclasses.asdict(config),
    "bags": [str(b) for b in bags],
    "num_samples": num_samples,
    "seed": seed,
    "multi_token_words": multi_token,
  }
  if head is not None:
    summary["class_label"] = head.classes[int(head.toward(class_label).class_label)]
  for name, tokens in (("samples", steered), ("baseline", baseline)):
    continuations = [tokenizer.decode(t.tolist()) for t in tokens]
    texts = [p + c for p, c in zip(prompt_texts, continuations)]
    ppl = perplexity(s_params, s_config, s_tokenizer, texts, prompt_texts)
    class_p = None
    if head is not None:
      features = encode_mean_hidden(
        params, lm, tokenizer, texts, max_tokens=min(lm_config(lm).max_positions - 1, 1000)
      )
      class_p = class_probabilities(features, head)[:, int(head.toward(class_label).class_label)]
    row_prompts = [p for p in prompts for _ in range(num_samples)]
    summary[name] = _entries(texts, continuations, bag_words, class_p, ppl, row_prompts)
  summary["mean"] = {name: _mean(summary[name]) for name in ("samples", "baseline")}
  summary["tokens_per_second"] = steered_timing["tokens_per_second"]
  summary["baseline_tokens_per_second"] = baseline_timing["tokens_per_second"]
  summary["compile_seconds"] = steered_timing["compile_seconds"]
  if rank:
    scores = [
      e.get("bag_word_rate", 0.0) + e.get("class_probability", 0.0) for e in summary["samples"]
    ]
    continuations = [e["continuation"] for e in summary["samples"]]
    best = [
      start
      + rank_samples(
        scores[start : start + num_samples],
        continuations[start : start + num_samples],
        min_dist=min_dist,
      )
      for start in range(0, len(scores), num_samples)
    ]
    summary["ranked_best"] = best[0] if isinstance(prompt, str) else best
  if out_dir is not None:
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("samples", "baseline"):
      (out / f"{name}.txt").write_text(
        "\n\n".join(f"== {name} {i} ==\n{e['text']}" for i, e in enumerate(summary[name])) + "\n",
        encoding="utf-8",
      )
    write_json_atomic(out / "summary.json", summary)
  return summary

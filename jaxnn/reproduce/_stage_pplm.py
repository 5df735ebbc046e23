"""Stage 4: a frozen language model steered by PPLM (Dathathri et al. 2020).

Bag-of-words steering at the paper's BoW settings and at a much larger step
size, and steering with a discriminator head, each against the unsteered
model with the same seeds (`jaxnn.pplm.run_pplm`). By default the model is
jaxnn's shipped offline LM (a 4-layer, 128-wide GPT-2 trained on Debian's
fortunes), far weaker than the paper's GPT-2 medium.
"""

from __future__ import annotations

import pathlib
from typing import Any

from jaxnn.reproduce._config import Preset
from jaxnn.reproduce._plotting import figure, save
from jaxnn.reproduce._verdict import check, verdict

PAPER = {
  "bow_topic_relevance_human": {"baseline": 0.111, "pplm": 0.469},
  "sentiment_relevance_human": {"baseline": 0.193, "pplm": 0.396},
  "settings": "GPT-2 medium; BoW stepsize 0.03, window 5, gm_scale 0.99, kl 0.01, 3 iterations",
}
# The other bag of the synthetic discriminator task.
CONTRAST_BAG = "kitchen"


def _settings(p: Preset):
  from jaxnn.pplm import PPLMConfig

  common: dict[str, Any] = dict(
    length=p.pplm_length, sample=True, num_iterations=3, gamma=1.5, kl_scale=0.01
  )
  return {
    "paper_bow": PPLMConfig(stepsize=0.03, window_length=5, gm_scale=0.99, **common),
    "strong_bow": PPLMConfig(stepsize=p.pplm_strong_stepsize, gm_scale=0.95, **common),
  }


def _load(p: Preset):
  from jaxnn.pplm import ensure_offline_lm, load_gpt2, load_tokenizer

  source = ensure_offline_lm() if p.pplm_model == "offline" else p.pplm_model
  params, gpt2 = load_gpt2(source)
  name = "jaxnn offline LM (shipped)" if p.pplm_model == "offline" else p.pplm_model
  return params, gpt2, load_tokenizer(source), name


def _synthetic_texts(p: Preset):
  """Labeled texts for the discriminator: random word sequences from two shipped bags."""
  import numpy as np

  from jaxnn.pplm import read_words

  rng = np.random.default_rng(0)
  texts, labels = [], []
  for label in (p.pplm_bag, CONTRAST_BAG):
    words = read_words(label)
    for _ in range(p.pplm_discriminator_texts):
      texts.append(" ".join(rng.choice(words, size=12)).capitalize() + ".")
      labels.append(label)
  return texts, labels


def _entry(summary: dict, key: str) -> dict:
  mean = summary["mean"]
  return {
    "steered": {k: mean["samples"].get(k) for k in key_list(key)},
    "baseline": {k: mean["baseline"].get(k) for k in key_list(key)},
    "sample_steered": summary["samples"][0]["text"],
    "sample_baseline": summary["baseline"][0]["text"],
  }


def key_list(attribute: str) -> list[str]:
  """The per-run means reported for a run steered by `attribute` (a bag or a class)."""
  return [attribute, "perplexity", "dist_1", "dist_2", "dist_3"]


def run(p: Preset, out: pathlib.Path, progress: bool, report) -> dict:
  """Runs the steering comparisons; writes each run's texts to `out/<run>/`."""
  from jaxnn.pplm import PPLMConfig, encode_mean_hidden, run_pplm, train_discriminator

  report(f"pplm: loading {p.pplm_model}")
  params, gpt2, tokenizer, name = _load(p)
  runs = {}
  for run_name, config in _settings(p).items():
    report(f"pplm: {run_name} (stepsize {config.stepsize})")
    summary = run_pplm(
      params,
      gpt2,
      tokenizer,
      p.pplm_prompt,
      config,
      bags=[p.pplm_bag],
      num_samples=p.pplm_samples,
      seed=0,
      multi_token=p.pplm_multi_token,
      model_name=name,
      out_dir=out / run_name,
    )
    runs[run_name] = {
      "stepsize": config.stepsize,
      "window_length": config.window_length,
      "gm_scale": config.gm_scale,
      **_entry(summary, "bag_word_rate"),
    }
  discriminator = None
  if p.pplm_discriminator:
    report("pplm: discriminator (train the head, then steer)")
    texts, labels = _synthetic_texts(p)
    features = encode_mean_hidden(params, gpt2, tokenizer, texts, max_tokens=32)
    head, history = train_discriminator(features, labels, epochs=10, learning_rate=1e-3, seed=0)
    config = PPLMConfig(  # the paper's discriminator example
      length=p.pplm_length,
      sample=True,
      stepsize=0.04,
      num_iterations=10,
      gamma=1.0,
      kl_scale=0.01,
      gm_scale=0.95,
    )
    summary = run_pplm(
      params,
      gpt2,
      tokenizer,
      p.pplm_prompt,
      config,
      discriminator=head,
      class_label=p.pplm_bag,
      num_samples=p.pplm_samples,
      seed=0,
      model_name=name,
      out_dir=out / "discriminator",
    )
    discriminator = {
      "classes": list(head.classes),
      "target": p.pplm_bag,
      "held_out_accuracy": history[-1].get("validation_accuracy"),
      "stepsize": 0.04,
      **_entry(summary, "class_probability"),
    }
  result = {
    "model": name,
    "prompt": p.pplm_prompt,
    "bag": p.pplm_bag,
    "length": p.pplm_length,
    "samples": p.pplm_samples,
    "multi_token_words": p.pplm_multi_token,
    "runs": runs,
    "discriminator": discriminator,
  }
  result.update(_findings(result))
  result["plots"] = [_plot(result, out)]
  return result


def _findings(r: dict) -> dict:
  paper, strong = r["runs"]["paper_bow"], r["runs"]["strong_bow"]
  rate = "bag_word_rate"
  checks = [
    check(
      "at the paper's BoW settings, steering raises the bag-word rate",
      "steered rate > unsteered rate",
      [paper["steered"][rate], paper["baseline"][rate]],
      paper["steered"][rate] > paper["baseline"][rate],
    ),
    check(
      "steering raises the bag-word rate substantially (with a larger step if needed)",
      "steered rate >= unsteered + 5 points at the larger step",
      [strong["steered"][rate], strong["baseline"][rate]],
      strong["steered"][rate] >= strong["baseline"][rate] + 0.05,
    ),
    check(
      "fluency is kept where steering shows",
      "perplexity (same LM) at the larger step <= 2x unsteered",
      [strong["steered"]["perplexity"], strong["baseline"]["perplexity"]],
      strong["steered"]["perplexity"] <= 2 * strong["baseline"]["perplexity"],
    ),
  ]
  d = r["discriminator"]
  if d is not None:
    checks.append(
      check(
        "steering with a discriminator raises its class probability",
        "steered mean class probability > unsteered + 5 points",
        [d["steered"]["class_probability"], d["baseline"]["class_probability"]],
        d["steered"]["class_probability"] > d["baseline"]["class_probability"] + 0.05,
      )
    )
  return {
    "checks": checks,
    "verdict": verdict(checks),
    "paper": PAPER,
    "headline": {
      "paper": "GPT-2 medium, human-rated topic relevance 11.1% -> 46.9% (BoW)",
      "this_run": f"{r['model']}: {r['bag']} words {100 * paper['baseline'][rate]:.1f}% -> "
      f"{100 * paper['steered'][rate]:.1f}% at the paper's step, "
      f"{100 * strong['steered'][rate]:.1f}% at step {strong['stepsize']} (perplexity "
      f"{strong['baseline']['perplexity']:.0f} -> {strong['steered']['perplexity']:.0f})",
    },
  }


def _plot(r: dict, out: pathlib.Path) -> str:
  import numpy as np

  fig, ax = figure()
  names = list(r["runs"])
  x = np.arange(len(names))
  ax.bar(
    x - 0.2,
    [100 * r["runs"][n]["baseline"]["bag_word_rate"] for n in names],
    0.4,
    label="unsteered",
    color="tab:gray",
  )
  ax.bar(
    x + 0.2,
    [100 * r["runs"][n]["steered"]["bag_word_rate"] for n in names],
    0.4,
    label="PPLM",
    color="tab:blue",
  )
  ax.set_xticks(x, [f"{n}\n(step {r['runs'][n]['stepsize']})" for n in names], fontsize=8)
  highest = max(
    100 * r["runs"][n][k]["bag_word_rate"] for n in names for k in ("steered", "baseline")
  )
  ax.set_ylim(0, max(5.0, 1.2 * highest))
  ax.set_ylabel(f"'{r['bag']}' words among generated words (%)")
  ax.set_title(f"Bag-of-words steering, {r['model']}", fontsize=9)
  ax.legend(fontsize=8, frameon=False)
  return save(fig, out / "pplm_bag_rate.png")


def render(r: dict) -> str:
  """The stage's Markdown section body, sample texts included."""
  rows = [
    "| run | step | window | gm_scale | attribute steered / unsteered | perplexity "
    "steered / unsteered | Dist-1/2/3 steered | Dist-1/2/3 unsteered |",
    "|---|---|---|---|---|---|---|---|",
  ]
  entries = [(n, e, "bag_word_rate") for n, e in r["runs"].items()]
  if r["discriminator"] is not None:
    entries.append(
      (
        "discriminator",
        {**r["discriminator"], "window_length": 0, "gm_scale": 0.95},
        "class_probability",
      )
    )
  for name, e, key in entries:
    s, b = e["steered"], e["baseline"]
    rows.append(
      f"| {name} ({key.replace('_', ' ')}) | {e['stepsize']} | {e['window_length'] or 'all'} | "
      f"{e['gm_scale']} | {s[key]:.3f} / {b[key]:.3f} | {s['perplexity']:.1f} / "
      f"{b['perplexity']:.1f} | {s['dist_1']:.2f} / {s['dist_2']:.2f} / {s['dist_3']:.2f} | "
      f"{b['dist_1']:.2f} / {b['dist_2']:.2f} / {b['dist_3']:.2f} |"
    )
  texts = []
  for name, e, _ in entries:
    texts += [
      f"**{name}**, steered:",
      "",
      "> " + e["sample_steered"].replace("\n", " "),
      "",
      "unsteered (same seed):",
      "",
      "> " + e["sample_baseline"].replace("\n", " "),
      "",
    ]
  disc = ""
  if r["discriminator"] is not None:
    d = r["discriminator"]
    acc = d["held_out_accuracy"]
    disc = (
      f"The discriminator is a linear head on the LM's mean hidden state, trained (Adam lr "
      f"1e-3, 10 epochs) to tell synthetic texts of random words from the '{d['classes'][0]}' "
      f"and '{d['classes'][1]}' bags apart (held-out accuracy "
      f"{'n/a' if acc is None else f'{100 * acc:.0f}%'}); no labeled corpus ships offline. "
      "Its class probability is scored by the same head, not by an external classifier as in "
      "the paper.\n\n"
    )
  return (
    f"Model: {r['model']}; prompt \"{r['prompt']}\"; bag '{r['bag']}' "
    f"({'multi-token words included' if r['multi_token_words'] else 'one-token words only'}); "
    f"{r['length']} tokens, {r['samples']} samples, sampling, seed 0. The unsteered baseline "
    "is the same model with the same seeds. Perplexity is scored by the same LM.\n\n"
    + disc
    + "\n".join(rows)
    + "\n\nFirst sample of each run:\n\n"
    + "\n".join(texts)
  )

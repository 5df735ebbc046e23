"""`jaxnn pplm generate` and `jaxnn pplm train-discriminator`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from jaxnn import _cli_utils as cu


def register(subparsers) -> None:
  p = subparsers.add_parser("pplm", help="PPLM: steer GPT-2 with bags of words or discriminators")
  sub = p.add_subparsers(dest="pplm_command", metavar="SUBCOMMAND", required=True)

  g = sub.add_parser(
    "generate",
    formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    help="steered and unsteered samples with their evaluation",
    description="Generates NUM_SAMPLES steered samples (one jit-compiled batch) and the "
    "unsteered baseline with the same prompt and seeds; writes OUT/samples.txt, "
    "OUT/baseline.txt and OUT/summary.json (bag-word rate or class probability, "
    "perplexity, Dist-1/2/3, tokens per second). Hyperparameter defaults are "
    "the original run_pplm.py's.",
  )
  g.add_argument(
    "--model",
    default=None,
    help="a local model folder, a hub id (GPT-2, Llama, Mistral, Qwen, Gemma, Phi-3, Pythia) "
    "or gpt2, gpt2-medium, ... (default: gpt2-medium "
    "when it can be had, else jaxnn's offline LM)",
  )
  g.add_argument("--prompt", default="The lake", help="conditioning text (cond_text)")
  g.add_argument(
    "--bow",
    default=None,
    help="bags of words: shipped names (see --list-bags) or word-list files, "
    "separated by ',' or ';'",
  )
  g.add_argument("--list-bags", action="store_true", help="print the shipped bags and exit")
  g.add_argument(
    "--discriminator",
    default=None,
    help="a head from `jaxnn pplm train-discriminator` (.safetensors)",
  )
  g.add_argument(
    "--class-label", default=None, help="target class of the discriminator (index or name)"
  )
  g.add_argument("--length", type=cu.positive_int, default=100)
  g.add_argument(
    "--num-samples", type=cu.positive_int, default=1, help="samples steered together as one batch"
  )
  g.add_argument("--stepsize", type=float, default=0.02)
  g.add_argument("--temperature", type=cu.positive_float, default=1.0)
  g.add_argument("--top-k", type=int, default=10)
  g.add_argument("--sample", action="store_true", help="sample (default: greedy, as the original)")
  g.add_argument("--num-iterations", type=int, default=3)
  g.add_argument("--grad-length", type=int, default=10000)
  g.add_argument("--window-length", type=int, default=0)
  g.add_argument(
    "--window-position",
    choices=("first", "recent"),
    default="first",
    help="'first': the original's mask over the OLDEST window_length positions; "
    "'recent': the most recent ones",
  )
  g.add_argument("--horizon-length", type=int, default=1)
  g.add_argument("--decay", action="store_true")
  g.add_argument("--gamma", type=float, default=1.5)
  g.add_argument("--gm-scale", type=cu.fraction, default=0.9)
  g.add_argument("--kl-scale", type=float, default=0.01)
  g.add_argument("--seed", type=int, default=0)
  g.add_argument(
    "--single-token-words",
    action="store_true",
    help="drop multi-token words from the bags, as the original does",
  )
  g.add_argument(
    "--rank",
    action="store_true",
    help="also pick the best sample by attribute score among those with mean "
    "Dist-n >= --min-dist (the paper's BR / BCR)",
  )
  g.add_argument("--min-dist", type=cu.fraction, default=0.5)
  g.add_argument(
    "--ppl-model",
    default=None,
    help="language model that scores perplexity (default: the generating model)",
  )
  g.add_argument("--out", required=False, help="output directory")
  g.set_defaults(func=_generate)

  t = sub.add_parser(
    "train-discriminator",
    formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    help="train a linear head on mean hidden states of a 'label<TAB>text' file",
    description="Trains PPLM's discriminator (Linear on the mean of the final hidden states) "
    "on cached mean representations; writes the head as safetensors and "
    "OUT.json with the per-epoch loss and held-out accuracy.",
  )
  t.add_argument("--model", default=None, help="as for generate")
  t.add_argument("--dataset", required=True, help="a file with one 'label<TAB>text' a line")
  t.add_argument("--out", required=True, help="where to write the head (.safetensors)")
  t.add_argument("--epochs", type=cu.positive_int, default=10)
  t.add_argument("--batch-size", type=cu.positive_int, default=64)
  t.add_argument("--lr", type=cu.positive_float, default=1e-4)
  t.add_argument("--max-tokens", type=cu.positive_int, default=100)
  t.add_argument(
    "--cache-dir",
    default=None,
    help="where mean representations are cached (default: next to --out)",
  )
  t.add_argument("--seed", type=int, default=0)
  t.set_defaults(func=_train_discriminator)


def _load_model(name):
  """(params, config, tokenizer, description): the named model, gpt2-medium or the offline LM."""
  from jaxnn import JaxnnError
  from jaxnn.lm import load_lm, load_tokenizer

  if name is not None:
    params, config = load_lm(name)
    return params, config, load_tokenizer(name), str(name)
  try:
    params, config = load_lm("gpt2-medium")
    return params, config, load_tokenizer("gpt2-medium"), "gpt2-medium"
  except JaxnnError as e:
    from jaxnn.lm import ensure_offline_lm

    folder = ensure_offline_lm()
    print(
      f"gpt2-medium is not available ({e}); using jaxnn's offline LM at {folder}", file=sys.stderr
    )
    params, config = load_lm(folder)
    return params, config, load_tokenizer(folder), f"offline LM ({folder})"


def _split_names(text):
  return [name.strip() for name in text.replace(";", ",").split(",") if name.strip()]


def _generate(args) -> int:
  from jaxnn import JaxnnError

  if args.list_bags:
    from jaxnn.pplm._attributes import read_words, wordlist_names

    for name in wordlist_names():
      print(f"{name:16s} {len(read_words(name))} words")
    return 0
  if not args.out:
    raise JaxnnError("--out DIR is required (where the samples and summary.json go)")
  if not args.bow and not args.discriminator:
    raise JaxnnError(
      "give --bow NAME (see --list-bags) and/or --discriminator HEAD to steer toward"
    )
  if args.discriminator and args.class_label is None:
    raise JaxnnError("--discriminator needs --class-label (index or class name)")
  from jaxnn.pplm import PPLMConfig, run_pplm

  config = PPLMConfig(
    length=args.length,
    stepsize=args.stepsize,
    temperature=args.temperature,
    top_k=args.top_k,
    sample=args.sample,
    num_iterations=args.num_iterations,
    grad_length=args.grad_length,
    window_length=args.window_length,
    window_position=args.window_position,
    horizon_length=args.horizon_length,
    decay=args.decay,
    gamma=args.gamma,
    gm_scale=args.gm_scale,
    kl_scale=args.kl_scale,
  )
  params, gpt2, tokenizer, description = _load_model(args.model)
  print(f"model: {description}", file=sys.stderr)
  scorer = None
  if args.ppl_model is not None:
    from jaxnn.lm import load_lm, load_tokenizer

    scorer = (*load_lm(args.ppl_model), load_tokenizer(args.ppl_model), args.ppl_model)
  summary = run_pplm(
    params,
    gpt2,
    tokenizer,
    args.prompt,
    config,
    bags=_split_names(args.bow or ""),
    discriminator=args.discriminator,
    class_label=args.class_label,
    num_samples=args.num_samples,
    seed=args.seed,
    multi_token=not args.single_token_words,
    rank=args.rank,
    min_dist=args.min_dist,
    scorer=scorer,
    model_name=description,
    out_dir=args.out,
  )
  for name in ("samples", "baseline"):
    keys = [
      k
      for k in ("bag_word_rate", "class_probability", "perplexity", "dist_1", "dist_2", "dist_3")
      if k in summary["mean"][name]
    ]
    print(f"{name:9s} " + "  ".join(f"{k}={summary['mean'][name][k]:.3f}" for k in keys))
  print(f"tokens/s (steered, batch {args.num_samples}): {summary['tokens_per_second']:.1f}")
  print(f"wrote {Path(args.out) / 'summary.json'}, samples.txt and baseline.txt")
  return 0


def _train_discriminator(args) -> int:
  from jaxnn.pplm._attributes import cached_features, save_discriminator, train_discriminator
  from jaxnn.train import write_json_atomic

  params, gpt2, tokenizer, description = _load_model(args.model)
  out = Path(args.out)
  cache_dir = Path(args.cache_dir) if args.cache_dir else out.parent / ".pplm_features"
  features, labels = cached_features(
    params,
    gpt2,
    tokenizer,
    args.dataset,
    cache_dir=cache_dir,
    max_tokens=args.max_tokens,
    progress=True,
  )
  head, history = train_discriminator(
    features,
    labels,
    epochs=args.epochs,
    batch_size=args.batch_size,
    learning_rate=args.lr,
    seed=args.seed,
    progress=True,
  )
  save_discriminator(
    head, out, model=description, dataset=str(args.dataset), max_tokens=args.max_tokens
  )
  report = {
    "model": description,
    "dataset": str(args.dataset),
    "classes": list(head.classes),
    "examples": len(labels),
    "history": history,
  }
  write_json_atomic(out.with_suffix(".json"), report)
  print(json.dumps(history[-1]))
  print(f"classes {list(head.classes)}; wrote {out} and {out.with_suffix('.json')}")
  return 0

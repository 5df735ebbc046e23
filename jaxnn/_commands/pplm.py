"""`jaxnn pplm generate` and `jaxnn pplm train-discriminator`."""

from __future__ import annotations

import json
import pathlib
import sys

from jaxnn import _cli_utils as cu
from jaxnn.configs import DiscriminatorConfig, GenerateConfig


def register(subparsers) -> None:
  p = subparsers.add_parser("pplm", help="PPLM: steer GPT-2 with bags of words or discriminators")
  sub = p.add_subparsers(dest="pplm_command", metavar="SUBCOMMAND", required=True)

  g = sub.add_parser(
    "generate",
    help="steered and unsteered samples with their evaluation",
    description="Generates NUM_SAMPLES steered samples of the prompt (or of each line of "
    "--prompts-file; one jit-compiled batch, prompts of different lengths left-padded) and the "
    "unsteered baseline with the same prompts and seeds; writes OUT/config.json, "
    "OUT/samples.txt, OUT/baseline.txt and OUT/summary.json (bag-word rate or class "
    "probability, perplexity, Dist-1/2/3, tokens per second). Hyperparameter defaults are "
    "the original run_pplm.py's.",
  )
  g.add_argument("--list-bags", action="store_true", help="print the shipped bags and exit")
  cu.add_config_arguments(g, GenerateConfig, out_help="output directory")
  g.set_defaults(func=_generate)

  t = sub.add_parser(
    "train-discriminator",
    help="train a linear head on mean hidden states of a 'label<TAB>text' file",
    description="Trains PPLM's discriminator (Linear on the mean of the final hidden states) "
    "on cached mean representations; writes OUT/head.safetensors, OUT/history.json and "
    "OUT/config.json (or, with --out FILE.safetensors, the head there and FILE.json, "
    "FILE.config.json beside it).",
  )
  cu.add_config_arguments(
    t, DiscriminatorConfig, out_help="output directory (or the head's FILE.safetensors)"
  )
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


def _read_prompts(path):
  """The non-empty lines of a prompts file."""
  from jaxnn import JaxnnError

  file = pathlib.Path(path).expanduser()
  try:
    lines = file.read_text(encoding="utf-8").splitlines()
  except FileNotFoundError:
    raise JaxnnError(f"no prompts file at {file} (one prompt a line)") from None
  except (UnicodeDecodeError, IsADirectoryError):
    raise JaxnnError(f"{file} is not a UTF-8 text file of prompts, one a line") from None
  prompts = [line.strip() for line in lines if line.strip()]
  if not prompts:
    raise JaxnnError(f"{file} holds no prompt; write one prompt a line")
  return prompts


def _generate(args) -> int:
  if args.list_bags:
    from jaxnn.pplm._attributes import read_words, wordlist_names

    for name in wordlist_names():
      print(f"{name:16s} {len(read_words(name))} words")
    return 0
  config, out = cu.resolve(args, GenerateConfig, "pplm generate")
  config.check()
  prompts = _read_prompts(config.prompts_file) if config.prompts_file else config.prompt
  cu.claim_out(out, "pplm generate", config)  # before the model loads and generates
  from jaxnn.pplm import run_pplm

  params, gpt2, tokenizer, description = _load_model(config.model)
  print(f"model: {description}", file=sys.stderr)
  scorer = None
  if config.ppl_model is not None:
    from jaxnn.lm import load_lm, load_tokenizer

    scorer = (*load_lm(config.ppl_model), load_tokenizer(config.ppl_model), config.ppl_model)
  summary = run_pplm(
    params,
    gpt2,
    tokenizer,
    prompts,
    config.steering,
    bags=_split_names(config.bow or ""),
    discriminator=config.discriminator,
    class_label=config.class_label,
    num_samples=config.num_samples,
    seed=config.seed,
    multi_token=not config.single_token_words,
    rank=config.rank,
    min_dist=config.min_dist,
    scorer=scorer,
    model_name=description,
    out_dir=out,
  )
  for name in ("samples", "baseline"):
    keys = [
      k
      for k in ("bag_word_rate", "class_probability", "perplexity", "dist_1", "dist_2", "dist_3")
      if k in summary["mean"][name]
    ]
    print(f"{name:9s} " + "  ".join(f"{k}={summary['mean'][name][k]:.3f}" for k in keys))
  batch = config.num_samples * (1 if isinstance(prompts, str) else len(prompts))
  print(f"tokens/s (steered, batch {batch}): {summary['tokens_per_second']:.1f}")
  print(f"wrote {pathlib.Path(out) / 'summary.json'}, config.json, samples.txt and baseline.txt")
  return 0


def _train_discriminator(args) -> int:
  config, out = cu.resolve(args, DiscriminatorConfig, "pplm train-discriminator")
  config.check()
  if not pathlib.Path(config.dataset).expanduser().is_file():
    from jaxnn import JaxnnError

    raise JaxnnError(f"no dataset file at {config.dataset} (one 'label<TAB>text' a line)")
  out = pathlib.Path(out).expanduser()
  if out.suffix == ".safetensors":  # the head's own path: OUT.json, OUT.config.json beside it
    head_path, history_path = out, out.with_suffix(".json")
    cache_dir = out.parent / ".pplm_features"
    cu.claim_out(
      out.parent, "pplm train-discriminator", config, config_path=out.with_suffix(".config.json")
    )
  else:
    head_path, history_path = out / "head.safetensors", out / "history.json"
    cache_dir = out / ".pplm_features"
    cu.claim_out(out, "pplm train-discriminator", config)
  cache_dir = pathlib.Path(config.cache_dir) if config.cache_dir else cache_dir
  from jaxnn.pplm._attributes import cached_features, save_discriminator, train_discriminator
  from jaxnn.train import write_json_atomic

  params, gpt2, tokenizer, description = _load_model(config.model)
  features, labels = cached_features(
    params,
    gpt2,
    tokenizer,
    config.dataset,
    cache_dir=cache_dir,
    max_tokens=config.max_tokens,
    progress=config.progress,
  )
  head, history = train_discriminator(
    features,
    labels,
    epochs=config.epochs,
    batch_size=config.batch_size,
    learning_rate=config.learning_rate,
    seed=config.seed,
    progress=config.progress,
  )
  save_discriminator(
    head, head_path, model=description, dataset=str(config.dataset), max_tokens=config.max_tokens
  )
  report = {
    "model": description,
    "dataset": str(config.dataset),
    "classes": list(head.classes),
    "examples": len(labels),
    "history": history,
  }
  write_json_atomic(history_path, report)
  print(json.dumps(history[-1]))
  print(f"classes {list(head.classes)}; wrote {head_path} and {history_path}")
  return 0

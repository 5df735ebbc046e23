"""A small GPT-2 trained by jaxnn on an offline English corpus, for machines without the hub.

PPLM (Dathathri et al. 2020) steers a language model, which cannot be
downloaded on an offline machine. This module trains a small GPT-2 (4 layers, 128 wide,
1.35M parameters, a 4,096-token byte-level BPE) on Debian's `fortunes`
package (2.3 MB of quotations, jokes and definitions on computers, science,
politics, law, food, religion, love, ...: `apt-get install fortunes`), and
saves it in Hugging Face's layout (config.json, model.safetensors,
tokenizer.json) so that `load_gpt2(folder)` and `load_tokenizer(folder)` read
it like any GPT-2. Held-out perplexity 194 per token (unigram: 862).

The trained weights ship inside the package (float16 safetensors, 2.7 MB):
training takes ~25 minutes on 2 busy cores, too long for a first call.
`ensure_offline_lm()` returns the shipped folder, or rebuilds it into
~/.cache/jaxnn when it is missing (same corpus, seeds and steps;
bit-identical on the same machine and versions).

Rebuild by hand (records training.json with the held-out perplexity):
  python -m jaxnn.lm._offline_lm --out DIR
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnn._errors import DatasetUnavailableError, JaxnnError
from jaxnn.lm._config import GPT2Config
from jaxnn.lm._loading import save_gpt2
from jaxnn.lm._model import gpt2_forward, init_cache, init_params
from jaxnn.lm._tokenizer import END_OF_TEXT
from jaxnn.train import make_optimizer

FORTUNES_DIR = Path("/usr/share/games/fortunes")
# ASCII drawings are not prose.
EXCLUDED_FILES = frozenset({"art", "ascii-art"})
HELD_OUT_EVERY = 20  # every 20th fortune is held out for perplexity
SHIPPED_DIR = Path(__file__).parent / "offline_lm"
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json")

CONFIG = GPT2Config(vocab_size=4096, n_positions=256, n_embd=128, n_layer=4, n_head=4)
TRAINING: dict[str, Any] = dict(
  seed=0, steps=500, batch_size=16, seq_len=128, learning_rate=3e-3, warmup_steps=40
)


def read_fortunes(folder: Path = FORTUNES_DIR) -> tuple[list[str], list[str]]:
  """(train, held_out) fortunes, in a fixed order; every 20th is held out."""
  if not folder.is_dir():
    raise DatasetUnavailableError(
      f"the offline corpus {folder} is missing: install Debian's fortunes package "
      f"(apt-get install fortunes); only rebuilding the shipped model needs it"
    )
  texts = []
  for path in sorted(
    p
    for p in folder.iterdir()
    if p.is_file() and "." not in p.name and p.name not in EXCLUDED_FILES
  ):
    raw = path.read_bytes().decode("utf-8", errors="replace")
    for entry in raw.split("\n%\n"):
      text = "\n".join(
        line.replace("\t", " ").rstrip() for line in entry.strip("%\n ").splitlines()
      )
      if len(text) >= 20:
        texts.append(text.strip())
  if not texts:
    raise DatasetUnavailableError(f"no fortunes found in {folder}; reinstall the fortunes package")
  held_out = texts[::HELD_OUT_EVERY]
  train = [t for i, t in enumerate(texts) if i % HELD_OUT_EVERY]
  return train, held_out


def train_tokenizer(texts: list[str], vocab_size: int):
  """A GPT-2-style byte-level BPE with <|endoftext|>, trained on `texts`."""
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

  tokenizer = Tokenizer(models.BPE())
  tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tokenizer.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(
    vocab_size=vocab_size,
    special_tokens=[END_OF_TEXT],
    initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    show_progress=False,
  )
  tokenizer.train_from_iterator(texts, trainer)
  return tokenizer


def token_stream(tokenizer, texts: list[str]) -> np.ndarray:
  """All texts as one int32 stream, each preceded by <|endoftext|> (as GPT-2 saw documents)."""
  eos = tokenizer.token_to_id(END_OF_TEXT)
  ids = [[eos, *e.ids] for e in tokenizer.encode_batch(texts)]
  return np.concatenate([np.asarray(i, np.int32) for i in ids])


def lm_loss(params, config: GPT2Config, tokens_BxT1):
  """Mean next-token cross-entropy (nats) of the windows `tokens_BxT1` (T + 1 tokens each)."""
  inputs_BxT, targets_BxT = tokens_BxT1[:, :-1], tokens_BxT1[:, 1:]
  cache = init_cache(config, inputs_BxT.shape[0], inputs_BxT.shape[1], params["wte"].dtype)
  logits_BxTxV, _, _ = gpt2_forward(params, config, cache, inputs_BxT)
  logp_BxTxV = jax.nn.log_softmax(logits_BxTxV, axis=-1)
  return -jnp.take_along_axis(logp_BxTxV, targets_BxT[..., None], axis=-1).mean()


def stream_perplexity(
  params, config: GPT2Config, stream: np.ndarray, seq_len: int = 128, batch_size: int = 16
) -> float:
  """Perplexity per token of a token stream, scored in non-overlapping windows."""
  n = (len(stream) - 1) // seq_len
  if n < 1:
    raise JaxnnError(f"need more than {seq_len} tokens to measure perplexity, got {len(stream)}")
  starts = np.arange(n) * seq_len
  windows = np.stack([stream[s : s + seq_len + 1] for s in starts])
  loss = jax.jit(lm_loss, static_argnums=1)
  total = 0.0
  for i in range(0, n, batch_size):
    chunk = windows[i : i + batch_size]
    total += float(loss(params, config, chunk)) * len(chunk)
  return math.exp(total / n)


def train_offline_lm(
  out_dir: str | os.PathLike, *, steps: int | None = None, progress: bool = True
) -> dict:
  """Trains the offline LM from the fortunes corpus and saves it to `out_dir` (HF layout).

  Returns the training record (also written to out_dir/training.json):
  corpus sizes, steps, losses and the held-out perplexity.
  """
  from jaxnn._progress import Progress

  t0 = time.perf_counter()
  cfg = dict(TRAINING, steps=steps or TRAINING["steps"])
  steps = cfg["steps"]
  train_texts, held_out = read_fortunes()
  tokenizer = train_tokenizer(train_texts, CONFIG.vocab_size)
  train_stream = token_stream(tokenizer, train_texts)
  held_stream = token_stream(tokenizer, held_out)
  config = CONFIG
  params = init_params(config, jax.random.key(cfg["seed"]))
  schedule = optax.warmup_cosine_decay_schedule(0.0, 1.0, cfg["warmup_steps"], steps, 0.05)
  optimizer = optax.chain(
    optax.clip_by_global_norm(1.0),
    make_optimizer("adam", cfg["learning_rate"], b2=0.99),
    optax.scale_by_schedule(schedule),
  )
  opt_state = optimizer.init(params)

  @jax.jit
  def step(params, opt_state, batch):
    loss, grads = jax.value_and_grad(lm_loss)(params, config, batch)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  rng = np.random.default_rng(cfg["seed"])
  width = cfg["seq_len"] + 1
  losses = []
  bar = Progress(steps, description="offline LM", enabled=progress)
  for _ in range(steps):
    starts = rng.integers(0, len(train_stream) - width, cfg["batch_size"])
    batch = np.stack([train_stream[s : s + width] for s in starts])
    params, opt_state, loss = step(params, opt_state, batch)
    losses.append(float(loss))
    if not math.isfinite(losses[-1]):
      raise JaxnnError(f"the offline LM's loss became {losses[-1]}; lower the learning rate")
    bar.set_postfix({"loss": f"{np.mean(losses[-20:]):.3f}"})
    bar.update()
  bar.close()
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  # Shipped in float16 (half the size); load_gpt2 reads it back as float32.
  save_gpt2(jax.tree.map(lambda a: a.astype(jnp.float16), params), config, out)
  tokenizer.save(str(out / "tokenizer.json"))
  from jaxnn.lm._loading import load_gpt2

  saved_params, _ = load_gpt2(out)
  record = {
    "corpus": f"Debian fortunes package ({FORTUNES_DIR}), files except {sorted(EXCLUDED_FILES)}",
    "train_fortunes": len(train_texts),
    "held_out_fortunes": len(held_out),
    "train_tokens": int(len(train_stream)),
    "held_out_tokens": int(len(held_stream)),
    "config": config.to_hf_dict(),
    "training": cfg,
    "final_train_loss": float(np.mean(losses[-50:])),
    "held_out_perplexity": stream_perplexity(saved_params, config, held_stream, cfg["seq_len"]),
    "train_perplexity_sample": stream_perplexity(
      saved_params, config, train_stream[: len(held_stream)], cfg["seq_len"]
    ),
    "seconds": time.perf_counter() - t0,
    "jax": jax.__version__,
  }
  (out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
  return record


def _complete(folder: Path) -> bool:
  return all((folder / f).is_file() for f in MODEL_FILES)


def ensure_offline_lm(cache_dir: str | os.PathLike | None = None) -> Path:
  """The folder of the offline LM: the shipped one, or one built on first use.

  Pass the returned folder to `load_gpt2` and `load_tokenizer`. When the
  shipped weights are missing (a trimmed install), it trains them into
  `cache_dir` (default ~/.cache/jaxnn/pplm_offline_lm), with a progress bar.
  """
  if _complete(SHIPPED_DIR):
    return SHIPPED_DIR
  folder = Path(
    cache_dir
    or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "jaxnn" / "pplm_offline_lm"
  )
  if not _complete(folder):
    print(
      f"jaxnn: training the offline PPLM language model into {folder} (about 20 minutes "
      f"of CPU, once)",
      flush=True,
    )
    tmp = folder.with_name(folder.name + ".partial")
    train_offline_lm(tmp)
    shutil.rmtree(folder, ignore_errors=True)  # an incomplete earlier build of our own cache
    tmp.replace(folder)
  return folder


def main(argv=None):
  parser = argparse.ArgumentParser(description="Train jaxnn's offline PPLM language model.")
  parser.add_argument("--out", required=True, help="folder to write the model to")
  parser.add_argument("--steps", type=int, default=None, help=f"default {TRAINING['steps']}")
  args = parser.parse_args(argv)
  record = train_offline_lm(args.out, steps=args.steps)
  print(json.dumps({k: record[k] for k in ("held_out_perplexity", "final_train_loss", "seconds")}))


if __name__ == "__main__":
  main()

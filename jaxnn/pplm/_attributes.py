"""PPLM attribute models: bags of words and linear discriminators.

Dathathri et al., "Plug and Play Language Models", ICLR 2020, section 4-5.
A bag of words has no parameters: log p(a|x) = log sum over its words of
p(word). Unlike the original, which keeps only words that are a single BPE
token, a multi-token word s1..sn counts with p(s1) p(s2|s1) ... p(sn|s1..).
A discriminator is one `Linear(hidden, classes)` on the mean over time of the
frozen LM's final (post layer-norm) hidden states; it is trained on cached
mean representations of any "label<TAB>text" file (Adam, lr 1e-4, batch 64,
10 epochs, at most 100 tokens after a prepended end-of-text token).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn._errors import JaxnnError
from jaxnn.lm import LMConfig, as_params, init_cache, lm_config, lm_forward
from jaxnn.pplm._steer import BagsOfWords, Discriminator


def start_token(tokenizer) -> int:
  """The token a document starts with: the family's beginning-of-text token, else end-of-text.

  GPT-2 has one token for both (<|endoftext|>, what PPLM prefixes prompts with).
  """
  start = getattr(tokenizer, "start_token_id", None)
  return tokenizer.eos_token_id if start is None else start


def _read_text(path: Path, what: str) -> str:
  """A UTF-8 text file; a one-line error for binary or other encodings."""
  try:
    data = path.read_bytes()
    if b"\0" in data:
      raise UnicodeDecodeError("utf-8", data[:1], 0, 1, "NUL byte (a binary file)")
    return data.decode("utf-8")
  except UnicodeDecodeError as e:
    raise JaxnnError(f"{path} is not a UTF-8 text file ({e.reason}); give {what}") from None
  except OSError as e:
    raise JaxnnError(f"cannot read {path} ({e.strerror})") from None


def wordlist_names() -> list[str]:
  """The bags of words shipped with jaxnn (the paper's topics)."""
  folder = importlib.resources.files("jaxnn.pplm") / "wordlists"
  return sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".txt"))


def read_words(name_or_path: str | os.PathLike) -> list[str]:
  """The words of a shipped bag (`military`, ...) or of a file with one word per line."""
  path = Path(name_or_path)
  if path.is_file():
    text = _read_text(path, "a word list with one word per line")
  elif str(name_or_path) in wordlist_names():
    folder = importlib.resources.files("jaxnn.pplm") / "wordlists"
    text = (folder / f"{name_or_path}.txt").read_text(encoding="utf-8")
  else:
    raise JaxnnError(
      f"unknown bag of words {str(name_or_path)!r}: use one of "
      f"{', '.join(wordlist_names())} or a file with one word per line"
    )
  words = list(dict.fromkeys(w.strip() for w in text.splitlines() if w.strip()))
  if not words:
    raise JaxnnError(f"the bag of words {str(name_or_path)!r} is empty")
  return words


def _word_ids(word, tokenizer, vocab_size) -> list[int]:
  """The token ids of one bag entry: a word (text), a token id, or a sequence of token ids."""
  if isinstance(word, (int, np.integer)) and not isinstance(word, bool):
    ids = [int(word)]
  elif isinstance(word, str):
    if tokenizer is None:
      raise JaxnnError(f"the bag word {word!r} needs a tokenizer (or give token ids)")
    encode_word = getattr(tokenizer, "encode_word", None)
    ids = encode_word(word.strip()) if encode_word else tokenizer.encode(" " + word.strip())
    if any(not 0 <= i < vocab_size for i in ids):
      raise JaxnnError(
        f"the tokenizer gives ids beyond the model's vocabulary ({vocab_size}); "
        f"load the tokenizer of the same model"
      )
    return ids
  elif isinstance(word, Sequence) and all(
    isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in word
  ):
    ids = [int(i) for i in word]
  else:
    raise JaxnnError(f"a bag entry must be a word, a token id or a list of token ids, got {word!r}")
  if not ids or any(not 0 <= i < vocab_size for i in ids):
    raise JaxnnError(
      f"the bag entry {word!r} holds token ids outside the model's vocabulary 0..{vocab_size - 1}"
    )
  return ids


def bag_of_words(
  bags: Sequence[str | os.PathLike | Sequence[str | int | Sequence[int]]],
  tokenizer,
  vocab_size: int,
  *,
  multi_token: bool = True,
) -> BagsOfWords:
  """Token ids of one or more bags of words, for `Attributes(bags=...)`.

  Each word is encoded as it appears inside a text, after a space
  (`Tokenizer.encode_word`). A bag may also hold token ids directly: an int
  is a one-token word, a list of ints a multi-token word.

  Args:
    bags: shipped names, word-list files, or lists of words and/or token ids.
    tokenizer: anything with `encode(text) -> list[int]` (`load_tokenizer`);
      None when the bags hold token ids only.
    vocab_size: the model's vocabulary size.
    multi_token: keep words of several tokens (p(s1) p(s2|s1) ...); False
      drops them as the original does.
  """
  if isinstance(bags, (str, os.PathLike)):
    bags = [bags]
  single_NxV = np.zeros((len(bags), vocab_size), np.float32)
  multi: list[tuple[list[int], int]] = []
  for n, bag in enumerate(bags):
    words = read_words(bag) if isinstance(bag, (str, os.PathLike)) else list(bag)
    for word in words:
      ids = _word_ids(word, tokenizer, vocab_size)
      if len(ids) == 1:
        single_NxV[n, ids[0]] = 1.0
      elif len(ids) > 1 and multi_token:
        multi.append((ids, n))
  unique = list({(tuple(ids), n): (ids, n) for ids, n in multi}.values())
  width = max([len(ids) for ids, _ in unique], default=2)
  tokens_MxW = np.zeros((len(unique), width), np.int32)
  for m, (ids, _) in enumerate(unique):
    tokens_MxW[m, : len(ids)] = ids
  for n in range(len(bags)):
    if not single_NxV[n].any() and not any(b == n for _, b in unique):
      raise JaxnnError(
        f"bag {n} has no word this tokenizer can encode as a single token; "
        f"allow multi-token words or use other words"
      )
  return BagsOfWords(
    jnp.asarray(single_NxV),
    jnp.asarray(tokens_MxW),
    jnp.asarray([len(ids) for ids, _ in unique], jnp.int32).reshape(-1),
    jnp.asarray([n for _, n in unique], jnp.int32).reshape(-1),
  )


class DiscriminatorHead(NamedTuple):
  """A trained linear head and the names of its classes."""

  kernel_DxC: jax.Array
  bias_C: jax.Array
  classes: tuple[str, ...]

  def toward(self, class_label: int | str) -> Discriminator:
    """The steering target: this head and one class (index or name)."""
    if isinstance(class_label, str) and not class_label.lstrip("-").isdigit():
      if class_label not in self.classes:
        raise JaxnnError(f"unknown class {class_label!r}; the classes are {list(self.classes)}")
      class_label = self.classes.index(class_label)
    label = int(class_label)
    if not 0 <= label < len(self.classes):
      raise JaxnnError(
        f"class label {label} is out of range 0..{len(self.classes) - 1} ({list(self.classes)})"
      )
    return Discriminator(self.kernel_DxC, self.bias_C, jnp.asarray(label, jnp.int32))


def read_labeled_texts(path: str | os.PathLike) -> tuple[list[str], list[str]]:
  """Labels and texts of a "label<TAB>text" file (one example a line)."""
  labels, texts = [], []
  content = _read_text(Path(path), "a text file with one 'label<TAB>text' a line")
  for number, line in enumerate(content.split("\n"), 1):
    if not line.strip():
      continue
    if "\t" not in line:
      raise JaxnnError(f"{path}:{number}: expected 'label<TAB>text', got {line[:60]!r}")
    label, text = line.rstrip("\r").split("\t", 1)
    labels.append(label.strip())
    texts.append(text)
  if len(set(labels)) < 2:
    raise JaxnnError(f"{path} needs examples of at least 2 classes, found {sorted(set(labels))}")
  return labels, texts


def _mean_hidden_fn(lm: LMConfig, max_len: int):
  @jax.jit
  def mean_hidden(params, tokens_BxT, mask_BxT):
    cache = init_cache(lm, tokens_BxT.shape[0], max_len, params["wte"].dtype)
    _, hidden_BxTxD, _ = lm_forward(params, lm, cache, tokens_BxT)
    hidden_BxTxD = hidden_BxTxD.astype(jnp.promote_types(hidden_BxTxD.dtype, jnp.float32))
    mask_BxTx1 = mask_BxT[:, :, None].astype(hidden_BxTxD.dtype)
    return (hidden_BxTxD * mask_BxTx1).sum(1) / mask_BxTx1.sum(1)

  return mean_hidden


def encode_mean_hidden(
  params,
  lm: LMConfig,
  tokenizer,
  texts: Sequence[str],
  *,
  max_tokens: int = 100,
  batch_size: int = 32,
  progress: bool = False,
):
  """Mean final hidden state of each text (end-of-text token prepended), N x D numpy.

  With `progress`, a bar on a terminal or a line per ~10% (`jaxnn._progress`).
  """
  from jaxnn._progress import Progress

  params = as_params(params)
  width = min(max_tokens + 1, lm_config(lm).max_positions)
  mean_hidden = _mean_hidden_fn(lm, width)
  out = []
  starts = range(0, len(texts), batch_size)
  bar = Progress(len(starts), description="mean hidden states", enabled=progress, unit="batches")
  for start in starts:
    chunk = texts[start : start + batch_size]
    tokens = np.zeros((batch_size, width), np.int32)
    mask = np.zeros((batch_size, width), bool)
    mask[:, 0] = True
    for i, text in enumerate(chunk):
      ids = [start_token(tokenizer)] + tokenizer.encode(text)[: width - 1]
      tokens[i, : len(ids)], mask[i, : len(ids)] = ids, True
    out.append(np.asarray(mean_hidden(params, tokens, mask))[: len(chunk)])
    bar.update()
  bar.close()
  return np.concatenate(out) if out else np.zeros((0, lm_config(lm).hidden_size), np.float32)


def _fingerprint(params, path, max_tokens) -> str:
  h = hashlib.sha256()
  h.update(Path(path).read_bytes())
  h.update(np.asarray(as_params(params)["wte"][:16]).tobytes())
  h.update(str(max_tokens).encode())
  return h.hexdigest()[:16]


def cached_features(params, lm, tokenizer, path, *, cache_dir, max_tokens=100, progress=False):
  """Mean representations of a "label<TAB>text" file, cached on disk (npz) by content."""
  labels, texts = read_labeled_texts(path)
  cache_file = Path(cache_dir) / f"features-{_fingerprint(params, path, max_tokens)}.npz"
  if cache_file.exists():
    features = np.load(cache_file)["features"]
  else:
    features = encode_mean_hidden(
      params, lm, tokenizer, texts, max_tokens=max_tokens, progress=progress
    )
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_suffix(".tmp.npz")
    np.savez(tmp, features=features)
    os.replace(tmp, cache_file)
  return features, labels


def train_discriminator(
  features_NxD,
  labels: Sequence[str],
  *,
  epochs: int = 10,
  batch_size: int = 64,
  learning_rate: float = 1e-4,
  seed: int = 0,
  validation_fraction: float = 0.1,
  progress: bool = False,
):
  """Trains the linear head on mean representations (the original's recipe).

  Returns:
    (DiscriminatorHead, history): history has one dict per epoch with the
    train loss and the held-out accuracy.
  """
  from jaxnn._progress import Progress
  from jaxnn.data import EpochBatcher
  from jaxnn.data._dataset import Split
  from jaxnn.train import from_function, init_train_state, make_optimizer, make_train_step

  classes = tuple(sorted(set(labels)))
  y_N = np.asarray([classes.index(label) for label in labels], np.int32)
  x_NxD = np.asarray(features_NxD, np.float32)
  order = np.random.default_rng(seed).permutation(len(y_N))
  n_val = int(round(validation_fraction * len(y_N))) if len(y_N) >= 20 else 0
  val, train = order[:n_val], order[n_val:]
  d, c = x_NxD.shape[1], len(classes)
  bound = 1 / np.sqrt(d)
  rng = np.random.default_rng(seed)
  init = {
    "kernel": rng.uniform(-bound, bound, (d, c)).astype(np.float32),
    "bias": rng.uniform(-bound, bound, (c,)).astype(np.float32),
  }
  model = from_function(
    lambda p, x: x @ p["kernel"] + p["bias"][None],
    jax.tree.map(jnp.asarray, init),
    l2=lambda p: jnp.zeros(()),
  )
  optimizer = make_optimizer("adam", learning_rate)
  step = jax.jit(make_train_step(model, optimizer))
  state = init_train_state(model, optimizer, seed)
  batcher = EpochBatcher(Split(x_NxD[train], y_N[train]), min(batch_size, len(train)), seed)
  history = []
  bar = Progress(epochs, description="discriminator", enabled=progress, unit="epochs")
  for epoch in range(epochs):
    losses = []
    for index in range(batcher.steps_per_epoch):
      state, metrics = step(state, *batcher.batch(epoch, index))
      losses.append(float(metrics["loss"]))
    record = {"epoch": epoch + 1, "train_loss": float(np.mean(losses))}
    if n_val:
      logits = x_NxD[val] @ np.asarray(state.params["kernel"]) + np.asarray(state.params["bias"])
      record["validation_accuracy"] = float(np.mean(logits.argmax(-1) == y_N[val]))
    history.append(record)
    bar.set_postfix({"loss": f"{record['train_loss']:.4f}"})
    bar.update()
  bar.close()
  head = DiscriminatorHead(state.params["kernel"], state.params["bias"], classes)
  return head, history


def save_discriminator(head: DiscriminatorHead, path: str | os.PathLike, **metadata) -> Path:
  """Writes the head as safetensors, its classes and `metadata` in the header."""
  from safetensors.numpy import save_file

  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  meta = {"classes": json.dumps(list(head.classes)), "metadata": json.dumps(metadata)}
  tmp = path.with_name(path.name + ".tmp")
  save_file(
    {
      "kernel": np.asarray(head.kernel_DxC, np.float32),
      "bias": np.asarray(head.bias_C, np.float32),
    },
    str(tmp),
    metadata=meta,
  )
  os.replace(tmp, path)
  return path


def load_discriminator(path: str | os.PathLike, hidden_size: int | None = None):
  """(DiscriminatorHead, metadata) from `save_discriminator`'s file; no pickle."""
  from safetensors import safe_open

  path = Path(path)
  if not path.is_file():
    raise JaxnnError(f"no discriminator at {path}; train one with `jaxnn pplm train-discriminator`")
  try:
    with safe_open(str(path), framework="numpy") as f:
      meta = f.metadata() or {}
      kernel, bias = f.get_tensor("kernel"), f.get_tensor("bias")
    classes = tuple(json.loads(meta["classes"]))
    metadata = json.loads(meta.get("metadata", "{}"))
  except Exception as e:
    raise JaxnnError(f"{path} is not a jaxnn discriminator file ({e})") from None
  if kernel.ndim != 2 or bias.shape != (kernel.shape[1],) or len(classes) != kernel.shape[1]:
    raise JaxnnError(
      f"{path} is corrupt: kernel {kernel.shape}, bias {bias.shape} and {len(classes)} "
      f"classes do not match; train the discriminator again"
    )
  if hidden_size is not None and kernel.shape[0] != hidden_size:
    raise JaxnnError(
      f"the discriminator {path} expects hidden size {kernel.shape[0]} but the "
      f"model has {hidden_size}; train it on this model"
    )
  return DiscriminatorHead(jnp.asarray(kernel), jnp.asarray(bias), classes), metadata

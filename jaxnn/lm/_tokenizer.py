"""The model's tokenizer with the `tokenizers` package, and the family's special tokens.

Read from tokenizer.json (every family on the hub), or from GPT-2's
vocab.json + merges.txt, in the same place as the weights (`load_lm`): a
local folder, a known name or a hub repo id. The beginning- and end-of-text
tokens come from tokenizer_config.json (bos_token, eos_token), else from
config.json (bos_token_id, eos_token_id), else GPT-2's <|endoftext|>.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from jaxnn._errors import JaxnnError
from jaxnn.lm._loading import TOKENIZER_EXTRAS, TOKENIZER_FILES, resolve_folder

#: GPT-2's end-of-text token, also the start of an empty prompt.
END_OF_TEXT = "<|endoftext|>"
# Encodes a word as it appears inside a text: after this word and a space.
_CONTEXT_WORD = "the"


class Tokenizer:
  """Text <-> token ids (a thin wrapper over a `tokenizers.Tokenizer`) and special tokens.

  Attributes:
    backend: the `tokenizers.Tokenizer`.
    eos_token_id: the end-of-text token.
    bos_token_id: the beginning-of-text token, or None where the family has
      none (GPT-2's is its end-of-text token).
    start_token_id: what a document starts with: bos, else eos (GPT-2's
      <|endoftext|>, as PPLM prefixes its prompts).
  """

  def __init__(self, tokenizer, source: str = "", *, bos: str | int | None = None, eos=None):
    self.backend = tokenizer
    self.source = source
    eos_id = self._id(eos) if eos is not None else None
    if eos_id is None:
      eos_id = tokenizer.token_to_id(END_OF_TEXT)
    if eos_id is None:
      raise JaxnnError(
        f"the tokenizer of {source or 'this model'} has no end-of-text token (no eos_token in "
        f"tokenizer_config.json, no eos_token_id in config.json, no {END_OF_TEXT}); "
        f"save the model's tokenizer files with save_pretrained"
      )
    self.eos_token_id: int = eos_id
    self.bos_token_id: int | None = self._id(bos) if bos is not None else None
    self.start_token_id: int = self.eos_token_id if self.bos_token_id is None else self.bos_token_id

  def _id(self, token):
    if isinstance(token, int):
      return token if 0 <= token < self.vocab_size else None
    return self.backend.token_to_id(token)

  @property
  def vocab_size(self) -> int:
    """Tokens the tokenizer knows, added ones included (the model's may be larger)."""
    return self.backend.get_vocab_size(with_added_tokens=True)

  def encode(self, text: str) -> list[int]:
    """Token ids of a text, without special tokens."""
    return self.backend.encode(text, add_special_tokens=False).ids

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    """`encode` of each text."""
    return [e.ids for e in self.backend.encode_batch(list(texts), add_special_tokens=False)]

  def encode_word(self, word: str) -> list[int]:
    """The tokens of a word as it appears inside a text, after a space.

    For byte-level BPE (GPT-2, Llama 3, Qwen) that is `encode(" " + word)`;
    for SentencePiece-style tokenizers (Llama 2, Mistral, Gemma) the word's
    tokens after "the " (a leading space there is a separate marker).
    """
    head = self.encode(_CONTEXT_WORD)
    ids = self.encode(f"{_CONTEXT_WORD} {word}")
    if ids[: len(head)] == head and len(ids) > len(head):
      return ids[len(head) :]
    return self.encode(" " + word)

  def decode(self, ids: Sequence[int]) -> str:
    """The text of token ids, special tokens included."""
    return self.backend.decode([int(i) for i in ids], skip_special_tokens=False)

  def token_to_id(self, token: str) -> int | None:
    """The id of a token's text (None if the vocabulary lacks it)."""
    return self.backend.token_to_id(token)

  def id_to_token(self, token_id: int) -> str | None:
    """The text of a token id (None if out of range)."""
    return self.backend.id_to_token(int(token_id))


GPT2Tokenizer = Tokenizer


def _read_json(path: Path) -> dict:
  if not path.is_file():
    return {}
  try:
    d = json.loads(path.read_text(encoding="utf-8"))
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise JaxnnError(f"{path} is not valid JSON ({e}); re-download or re-save it") from None
  return d if isinstance(d, dict) else {}


def _special(config: dict, tokenizer_config: dict, name: str):
  """The bos or eos token: its text from tokenizer_config.json, else its id from config.json."""
  token = tokenizer_config.get(f"{name}_token")
  if isinstance(token, dict):
    token = token.get("content")
  if isinstance(token, str):
    return token
  token_id = config.get(f"{name}_token_id")
  if isinstance(token_id, list) and token_id:
    token_id = token_id[0]
  if isinstance(token_id, int) and not isinstance(token_id, bool):
    return token_id
  return None


def tokenizer_from_files(folder: Path) -> Tokenizer:
  """From tokenizer.json, else vocab.json + merges.txt (byte-level BPE as in GPT-2)."""
  from tokenizers import AddedToken, decoders, models, pre_tokenizers
  from tokenizers import Tokenizer as Backend

  folder = Path(folder)
  config = _read_json(folder / "config.json")
  tokenizer_config = _read_json(folder / "tokenizer_config.json")
  bos = _special(config, tokenizer_config, "bos")
  eos = _special(config, tokenizer_config, "eos")
  try:
    if (folder / "tokenizer.json").is_file():
      backend = Backend.from_file(str(folder / "tokenizer.json"))
      return Tokenizer(backend, str(folder), bos=bos, eos=eos)
    backend = Backend(models.BPE.from_file(str(folder / "vocab.json"), str(folder / "merges.txt")))
  except JaxnnError:
    raise
  except Exception as e:  # tokenizers raises a bare Exception for unreadable files
    raise JaxnnError(f"cannot read the tokenizer in {folder} ({e}); re-save it") from None
  backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  backend.decoder = decoders.ByteLevel()
  # As in GPT-2's tokenizer.json: the end-of-text marker in a text is one token, not 13 bytes.
  backend.add_special_tokens([AddedToken(END_OF_TEXT, special=True)])
  return Tokenizer(backend, str(folder), bos=bos, eos=eos)


def load_tokenizer(name_or_path: str | os.PathLike) -> Tokenizer:
  """The tokenizer of a model name, hub repo id or local folder (as `load_lm`)."""
  return tokenizer_from_files(resolve_folder(name_or_path, TOKENIZER_FILES, TOKENIZER_EXTRAS))

"""GPT-2's byte-level BPE tokenizer with the `tokenizers` package.

Read from tokenizer.json, or from vocab.json + merges.txt, in the same place
as the weights (`load_gpt2`): a local folder, a known name or a hub repo id.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from jaxnn._errors import JaxnnError
from jaxnn.pplm._loading import TOKENIZER_FILES, resolve_folder

#: GPT-2's end-of-text token, also the start of an empty prompt.
END_OF_TEXT = "<|endoftext|>"


class GPT2Tokenizer:
  """Text <-> GPT-2 token ids (a thin wrapper over a `tokenizers.Tokenizer`).

  Words inside a text carry their leading space in GPT-2's BPE: the token(s)
  of "army" in "the army" are those of `encode(" army")`.
  """

  def __init__(self, tokenizer, source: str = ""):
    self.backend = tokenizer
    self.source = source
    eos = tokenizer.token_to_id(END_OF_TEXT)
    if eos is None:
      raise JaxnnError(
        f"the tokenizer of {source or 'this model'} has no {END_OF_TEXT} token; "
        f"is it a GPT-2 tokenizer?"
      )
    self.eos_token_id: int = eos

  @property
  def vocab_size(self) -> int:
    return self.backend.get_vocab_size(with_added_tokens=True)

  def encode(self, text: str) -> list[int]:
    return self.backend.encode(text, add_special_tokens=False).ids

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    return [e.ids for e in self.backend.encode_batch(list(texts), add_special_tokens=False)]

  def decode(self, ids: Sequence[int]) -> str:
    return self.backend.decode([int(i) for i in ids], skip_special_tokens=False)

  def token_to_id(self, token: str) -> int | None:
    return self.backend.token_to_id(token)

  def id_to_token(self, token_id: int) -> str | None:
    return self.backend.id_to_token(int(token_id))


def tokenizer_from_files(folder: Path) -> GPT2Tokenizer:
  """From tokenizer.json, else vocab.json + merges.txt (byte-level BPE as in GPT-2)."""
  from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

  try:
    if (folder / "tokenizer.json").is_file():
      return GPT2Tokenizer(Tokenizer.from_file(str(folder / "tokenizer.json")), str(folder))
    tokenizer = Tokenizer(
      models.BPE.from_file(str(folder / "vocab.json"), str(folder / "merges.txt"))
    )
  except Exception as e:  # tokenizers raises a bare Exception for unreadable files
    raise JaxnnError(f"cannot read the tokenizer in {folder} ({e}); re-save it") from None
  tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tokenizer.decoder = decoders.ByteLevel()
  # As in GPT-2's tokenizer.json: the end-of-text marker in a text is one token, not 13 bytes.
  tokenizer.add_special_tokens([AddedToken(END_OF_TEXT, special=True)])
  return GPT2Tokenizer(tokenizer, str(folder))


def load_tokenizer(name_or_path: str | os.PathLike) -> GPT2Tokenizer:
  """The GPT-2 BPE tokenizer of a model name, hub repo id or local folder (as `load_gpt2`)."""
  return tokenizer_from_files(resolve_folder(name_or_path, TOKENIZER_FILES))

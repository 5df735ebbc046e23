"""Fixtures for the PPLM tests: a tiny random GPT-2 saved the Hugging Face way.

Fixtures (session-scoped; use them in any tests/pplm test):
  tiny_gpt2_dir: a folder written by transformers' `save_pretrained`
    (config.json + model.safetensors) of a 2-layer, 32-wide, 4-head GPT-2 with
    initializer_range 0.2 (so that perturbations of its cache matter) and 64
    positions, plus its byte-level BPE tokenizer (tokenizer.json, vocab.json,
    merges.txt; <|endoftext|> included) trained on Python's own English docs.
    `load_gpt2(tiny_gpt2_dir)` and `load_tokenizer(tiny_gpt2_dir)` read it;
    `transformers.GPT2LMHeadModel.from_pretrained(tiny_gpt2_dir)` too.
  tiny_gpt2: `load_gpt2(tiny_gpt2_dir)`, i.e. (params, config) in float32.
  tiny_tokenizer: `load_tokenizer(tiny_gpt2_dir)`.
"""

import pydoc_data.topics

import pytest

TINY_VOCAB = 320


def english_text() -> list[str]:
  """Python's bundled documentation topics: English prose available offline everywhere."""
  return list(pydoc_data.topics.topics.values())


def train_tiny_tokenizer(vocab_size: int):
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

  tokenizer = Tokenizer(models.BPE())
  tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tokenizer.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(
    vocab_size=vocab_size,
    special_tokens=["<|endoftext|>"],
    initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    show_progress=False,
  )
  tokenizer.train_from_iterator(english_text(), trainer)
  return tokenizer


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory):
  import torch
  import transformers

  folder = tmp_path_factory.mktemp("tiny_gpt2")
  tokenizer = train_tiny_tokenizer(TINY_VOCAB)
  tokenizer.save(str(folder / "tokenizer.json"))
  tokenizer.model.save(str(folder))
  torch.manual_seed(0)
  config = transformers.GPT2Config(
    vocab_size=tokenizer.get_vocab_size(),
    n_positions=64,
    n_embd=32,
    n_layer=2,
    n_head=4,
    initializer_range=0.2,
    bos_token_id=0,
    eos_token_id=0,
  )
  model = transformers.GPT2LMHeadModel(config)
  # GPT-2 initializes layer-norm and biases to constants; random ones test their wiring too.
  with torch.no_grad():
    for name, p in model.named_parameters():
      if "ln" in name or name.endswith("bias"):
        p.add_(0.1 * torch.randn_like(p))
  model.save_pretrained(folder)
  return folder


@pytest.fixture(scope="session")
def tiny_gpt2(tiny_gpt2_dir):
  from jaxnn.pplm import load_gpt2

  return load_gpt2(tiny_gpt2_dir)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_gpt2_dir):
  from jaxnn.pplm import load_tokenizer

  return load_tokenizer(tiny_gpt2_dir)

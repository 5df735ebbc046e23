"""The offline language model: shipped weights, held-out perplexity, rebuild on first use.

Needs no system package: tests/lm/data/fortunes/held_out holds 160 fortunes
of the model's held-out split (every 20th fortune of Debian's `fortunes`
package, which the model never trained on), in the package's own format, and
is read by the same `read_fortunes` that reads /usr/share/games/fortunes.
It holds the first 160 of `read_fortunes()[1]` on a machine with the package.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from jaxnn._errors import DatasetUnavailableError
from jaxnn.lm import GPT2Config, _offline_lm, ensure_offline_lm, generate, load_gpt2, load_tokenizer

SAMPLE_DIR = Path(__file__).parent / "data" / "fortunes"


def held_out_sample() -> list[str]:
  train, held_out = _offline_lm.read_fortunes(SAMPLE_DIR)
  return train + held_out  # all of them are held-out fortunes of the real split


@pytest.fixture(scope="module")
def offline_lm():
  folder = ensure_offline_lm()
  assert folder == _offline_lm.SHIPPED_DIR, "the trained weights ship with the package"
  params, config = load_gpt2(folder)
  return folder, params, config, load_tokenizer(folder)


def test_offline_lm_beats_a_unigram_model_on_held_out_fortunes(offline_lm):
  folder, params, config, tokenizer = offline_lm
  texts = held_out_sample()
  assert len(texts) == 160
  held = _offline_lm.token_stream(tokenizer.backend, texts)
  # A unigram model fitted on the very text it scores (add-one smoothing): a generous baseline.
  counts = np.bincount(held, minlength=config.vocab_size) + 1.0
  unigram_ppl = math.exp(-np.log(counts / counts.sum())[held[1:]].mean())
  ppl = _offline_lm.stream_perplexity(params, config, held)
  record = json.loads((folder / "training.json").read_text())
  # The whole held-out split scored 194 when trained; this sample of it scores about the same.
  assert 0.7 * record["held_out_perplexity"] < ppl < 1.3 * record["held_out_perplexity"], ppl
  assert ppl < 0.6 * unigram_ppl, (ppl, unigram_ppl)


def test_perplexity_agrees_with_transformers(offline_lm):
  """Our windowed loss equals transformers' own LM loss on the saved checkpoint."""
  folder, params, config, tokenizer = offline_lm
  stream = _offline_lm.token_stream(tokenizer.backend, held_out_sample())
  windows = np.stack([stream[i * 65 : (i + 1) * 65] for i in range(4)])
  ours = _offline_lm.lm_loss(params, config, windows)
  model = transformers.GPT2LMHeadModel.from_pretrained(folder, dtype=torch.float32).eval()
  with torch.no_grad():
    ids = torch.tensor(windows, dtype=torch.long)
    theirs = model(ids, labels=ids).loss
  np.testing.assert_allclose(float(ours), float(theirs), rtol=1e-4)


def test_offline_lm_writes_english(offline_lm):
  _, params, config, tokenizer = offline_lm
  prompt = np.array([[tokenizer.eos_token_id, *tokenizer.encode("The computer")]], np.int32)
  text = tokenizer.decode(generate(params, config, prompt, 30)[0])
  words = text.split()
  assert len(words) >= 10 and sum(w.isalpha() for w in words) >= len(words) // 2, text


def test_rebuilds_when_the_shipped_weights_are_missing(monkeypatch, tmp_path):
  texts = held_out_sample()
  monkeypatch.setattr(_offline_lm, "read_fortunes", lambda: (texts[20:], texts[:20]))
  monkeypatch.setattr(_offline_lm, "SHIPPED_DIR", tmp_path / "trimmed_install")
  monkeypatch.setattr(
    _offline_lm,
    "CONFIG",
    GPT2Config(vocab_size=300, n_positions=64, n_embd=32, n_layer=1, n_head=2),
  )
  monkeypatch.setattr(
    _offline_lm,
    "TRAINING",
    dict(_offline_lm.TRAINING, steps=3, batch_size=4, seq_len=32, warmup_steps=1),
  )
  folder = ensure_offline_lm(tmp_path / "cache")
  assert folder == tmp_path / "cache"
  params, config = load_gpt2(folder)
  assert config.vocab_size == 300 and load_tokenizer(folder).vocab_size == 300
  record = json.loads((folder / "training.json").read_text())
  assert record["training"]["steps"] == 3 and math.isfinite(record["held_out_perplexity"])
  assert ensure_offline_lm(tmp_path / "cache") == folder  # built once, then reused


def test_missing_corpus_says_how_to_install(tmp_path):
  with pytest.raises(DatasetUnavailableError, match="apt-get install fortunes"):
    _offline_lm.read_fortunes(tmp_path / "no_fortunes")

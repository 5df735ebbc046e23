"""PPLM attribute models: shipped bags of words, token ids of words (multi-token
included), discriminator features (parity with transformers), training, files."""

import inspect
import os

import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import JaxnnError
from jaxnn.pplm import (
  DiscriminatorHead,
  bag_of_words,
  cached_features,
  encode_mean_hidden,
  load_discriminator,
  read_labeled_texts,
  read_words,
  save_discriminator,
  train_discriminator,
  wordlist_names,
)

# Sizes of the original's lists; ours are the project's own, of similar size.
ORIGINAL_SIZES = {
  "computers": 176,
  "fantasy": 26,
  "kitchen": 222,
  "legal": 131,
  "military": 149,
  "politics": 47,
  "positive_words": 2005,
  "religion": 232,
  "science": 48,
  "space": 18,
}


def test_shipped_word_lists():
  assert wordlist_names() == sorted(ORIGINAL_SIZES)
  for name, size in ORIGINAL_SIZES.items():
    words = read_words(name)
    assert 0.75 * size <= len(words) <= 1.25 * size, (name, len(words))
    assert len({w.lower() for w in words}) == len(words)
    assert all(w == w.strip() and " " not in w for w in words)
  assert "tank" in read_words("military") and "planet" in read_words("space")


def test_word_files_and_errors(tmp_path):
  path = tmp_path / "bag.txt"
  path.write_text("alpha\n\n beta \nalpha\n")
  assert read_words(path) == ["alpha", "beta"]
  with pytest.raises(JaxnnError, match="unknown bag"):
    read_words("no_such_topic")
  (tmp_path / "empty.txt").write_text("\n")
  with pytest.raises(JaxnnError, match="empty"):
    read_words(tmp_path / "empty.txt")


def test_bag_of_words_token_ids(tiny_tokenizer, tiny_gpt2):
  _, config = tiny_gpt2
  words = ["the", "of", "military", "potato", "is"]
  bags = bag_of_words([words, ["function"]], tiny_tokenizer, config.vocab_size)
  expected_multi = set()
  for n, bag in enumerate([words, ["function"]]):
    for w in bag:
      ids = tiny_tokenizer.encode(" " + w)
      assert tiny_tokenizer.decode(ids) == " " + w
      if len(ids) == 1:
        assert bags.single_NxV[n, ids[0]] == 1
      else:
        expected_multi.add((tuple(ids), n))
  got = {
    (tuple(np.asarray(t)[:k].tolist()), int(b))
    for t, k, b in zip(bags.multi_tokens_MxW, bags.multi_lengths_M, bags.multi_bag_M)
  }
  assert got == expected_multi and got, got
  assert int(bags.single_NxV.sum()) == sum(
    len(tiny_tokenizer.encode(" " + w)) == 1 for w in words + ["function"]
  )
  single_only = bag_of_words([words], tiny_tokenizer, config.vocab_size, multi_token=False)
  assert single_only.multi_tokens_MxW.shape[0] == 0
  with pytest.raises(JaxnnError, match="single token"):
    bag_of_words([["potato"]], tiny_tokenizer, config.vocab_size, multi_token=False)


def test_mean_hidden_matches_transformers(tiny_gpt2, tiny_gpt2_dir, tiny_tokenizer):
  import torch
  import transformers

  params, config = tiny_gpt2
  texts = [
    "The function returns a list.",
    "Numbers",
    "A much longer sentence about the interpreter, the modules and their attributes goes here.",
  ]
  ours = encode_mean_hidden(params, config, tiny_tokenizer, texts, max_tokens=20, batch_size=2)
  model = transformers.GPT2LMHeadModel.from_pretrained(tiny_gpt2_dir).eval()
  for text, row in zip(texts, ours):
    ids = [tiny_tokenizer.eos_token_id] + tiny_tokenizer.encode(text)[:20]
    with torch.no_grad():
      hidden = model(torch.tensor([ids]), output_hidden_states=True).hidden_states[-1]
    np.testing.assert_allclose(row, hidden[0].mean(0).numpy(), atol=2e-5)


def test_cached_features_and_training(tiny_gpt2, tiny_tokenizer, tmp_path):
  params, config = tiny_gpt2
  data = tmp_path / "data.tsv"
  data.write_text("pos\tgood fine great\nneg\tbad awful\npos\tgreat\nneg\tterrible bad\n")
  features, labels = cached_features(params, config, tiny_tokenizer, data, cache_dir=tmp_path / "c")
  (cache_file,) = list((tmp_path / "c").iterdir())
  mtime = os.stat(cache_file).st_mtime_ns
  again, _ = cached_features(params, config, tiny_tokenizer, data, cache_dir=tmp_path / "c")
  assert os.stat(cache_file).st_mtime_ns == mtime
  np.testing.assert_array_equal(features, again)
  assert labels == ["pos", "neg", "pos", "neg"] and features.shape == (4, config.n_embd)
  np.testing.assert_allclose(
    features,
    encode_mean_hidden(params, config, tiny_tokenizer, read_labeled_texts(data)[1]),
    atol=1e-6,
  )


def test_train_discriminator_learns_separable_classes():
  defaults = inspect.signature(train_discriminator).parameters
  assert (
    defaults["learning_rate"].default,
    defaults["batch_size"].default,
    defaults["epochs"].default,
  ) == (1e-4, 64, 10)
  rng = np.random.default_rng(0)
  y = rng.integers(0, 3, 600)
  centers = 2.0 * rng.normal(size=(3, 16))
  x = centers[y] + rng.normal(size=(600, 16))
  head, history = train_discriminator(x, [f"c{i}" for i in y], learning_rate=1e-2, epochs=10)
  assert head.classes == ("c0", "c1", "c2")
  assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
  assert history[-1]["validation_accuracy"] > 0.95


def test_discriminator_files_and_labels(tmp_path):
  head = DiscriminatorHead(jnp.ones((4, 2)), jnp.asarray([0.5, -0.5]), ("neg", "pos"))
  path = save_discriminator(head, tmp_path / "head.safetensors", model="tiny")
  loaded, meta = load_discriminator(path, hidden_size=4)
  np.testing.assert_array_equal(loaded.kernel_DxC, head.kernel_DxC)
  assert loaded.classes == ("neg", "pos") and meta == {"model": "tiny"}
  assert int(loaded.toward("pos").class_label) == 1 and int(loaded.toward("0").class_label) == 0
  with pytest.raises(JaxnnError, match="unknown class"):
    loaded.toward("neutral")
  with pytest.raises(JaxnnError, match="out of range"):
    loaded.toward(2)
  with pytest.raises(JaxnnError, match="hidden size"):
    load_discriminator(path, hidden_size=8)
  with pytest.raises(JaxnnError, match="train-discriminator"):
    load_discriminator(tmp_path / "missing.safetensors")
  (tmp_path / "bad.safetensors").write_bytes(b"not a tensor file")
  with pytest.raises(JaxnnError, match="not a jaxnn discriminator"):
    load_discriminator(tmp_path / "bad.safetensors")
  bad = tmp_path / "bad.tsv"
  bad.write_text("only one column\n")
  with pytest.raises(JaxnnError, match="label<TAB>text"):
    read_labeled_texts(bad)

"""PPLM evaluation: Dist-n, bag-word rate, perplexity (parity with transformers),
ranking, and `jaxnn pplm` end to end on a tiny GPT-2."""

import json

import numpy as np
import pytest

from jaxnn import JaxnnError
from jaxnn.cli import main
from jaxnn.pplm import (
  DiscriminatorHead,
  bag_word_rate,
  class_probabilities,
  discriminator_accuracy,
  dist_n,
  perplexity,
  rank_samples,
)


def test_dist_n_and_bag_word_rate():
  assert dist_n("a b a b", 1) == 2 / 4
  assert dist_n("a b a b", 2) == 2 / 3
  assert dist_n(["a b c", "a b d"], 2) == 3 / 4
  assert dist_n("a", 2) == 0.0
  assert bag_word_rate("The army's tanks, and the Army.", ["army", "tanks"]) == 2 / 6
  assert bag_word_rate("", ["army"]) == 0.0


def test_rank_samples_prefers_attribute_among_diverse():
  texts = ["war war war war", "a b c d", "e f g h"]
  assert rank_samples([0.9, 0.2, 0.5], texts) == 2
  assert rank_samples([0.9, 0.2, 0.5], texts, min_dist=0.0) == 0
  assert rank_samples([0.1], ["x x x x"]) == 0
  with pytest.raises(JaxnnError):
    rank_samples([], [])


def test_class_probabilities_and_accuracy():
  head = DiscriminatorHead(
    np.asarray([[1.0, -1.0], [0.0, 0.0]]), np.asarray([0.0, 0.0]), ("a", "b")
  )
  x = np.asarray([[1.0, 5.0], [-2.0, 0.0]])
  p = class_probabilities(x, head)
  np.testing.assert_allclose(p[0], [1 / (1 + np.exp(-2)), 1 / (1 + np.exp(2))])
  assert discriminator_accuracy(x, ["a", "b"], head) == 1.0
  assert discriminator_accuracy(x, ["b", "b"], head) == 0.5
  with pytest.raises(JaxnnError, match="not classes"):
    discriminator_accuracy(x, ["c", "a"], head)


def test_perplexity_matches_transformers(tiny_gpt2, tiny_gpt2_dir, tiny_tokenizer):
  import torch
  import transformers

  params, config = tiny_gpt2
  texts = ["The module defines a class.", "The list is sorted in place by the method."]
  prompts = ["The", "The list"]
  ours = perplexity(params, config, tiny_tokenizer, texts, prompts)
  model = transformers.GPT2LMHeadModel.from_pretrained(tiny_gpt2_dir).eval()
  for text, prompt, value in zip(texts, prompts, ours):
    prefix = [tiny_tokenizer.eos_token_id] + tiny_tokenizer.encode(prompt)
    ids = prefix + tiny_tokenizer.encode(text[len(prompt) :])
    with torch.no_grad():
      logp = torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1], -1)
    nll = -logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])][len(prefix) - 1 :].mean()
    np.testing.assert_allclose(value, float(torch.exp(nll)), rtol=1e-4)
  with pytest.raises(JaxnnError, match="does not start"):
    perplexity(params, config, tiny_tokenizer, ["abc"], ["x"])


@pytest.mark.slow
def test_cli_train_discriminator_and_generate(tiny_gpt2_dir, tiny_tokenizer, tmp_path, capsys):
  data = tmp_path / "data.tsv"
  data.write_text(
    "".join(
      f"{'calm' if i % 2 else 'loud'}\t{'the list' if i % 2 else 'TypeError'} {i}\n"
      for i in range(40)
    )
  )
  head = tmp_path / "head.safetensors"
  assert (
    main(
      [
        "pplm",
        "train-discriminator",
        "--model",
        str(tiny_gpt2_dir),
        "--dataset",
        str(data),
        "--out",
        str(head),
        "--epochs",
        "2",
      ]
    )
    == 0
  )
  report = json.loads(head.with_suffix(".json").read_text())
  assert report["classes"] == ["calm", "loud"] and len(report["history"]) == 2
  words = tmp_path / "words.txt"
  words.write_text("the\nof\nlist\nmodule\n")
  out = tmp_path / "run"
  prompts = tmp_path / "prompts.txt"  # two prompts of different lengths: one padded batch
  prompts.write_text("The list\n\nA module of the standard library\n")
  assert (
    main(
      [
        "pplm",
        "generate",
        "--model",
        str(tiny_gpt2_dir),
        "--prompts-file",
        str(prompts),
        "--bow",
        str(words),
        "--discriminator",
        str(head),
        "--class-label",
        "calm",
        "--length",
        "6",
        "--num-samples",
        "2",
        "--sample",
        "--rank",
        "--out",
        str(out),
      ]
    )
    == 0
  )
  summary = json.loads((out / "summary.json").read_text())
  assert summary["model"] == str(tiny_gpt2_dir) and summary["class_label"] == "calm"
  assert summary["tokens_per_second"] > 0 and summary["ranked_best"][0] in (0, 1)
  assert summary["ranked_best"][1] in (2, 3)
  assert summary["prompt"] == ["The list", "A module of the standard library"]
  for name in ("samples", "baseline"):
    assert len(summary[name]) == 4
    for i, entry in enumerate(summary[name]):
      assert entry["prompt"] == summary["prompt"][i // 2]
      assert entry["text"].startswith(entry["prompt"])
      for key in ("bag_word_rate", "class_probability", "perplexity", "dist_1", "dist_2", "dist_3"):
        assert np.isfinite(entry[key]), key
  assert "== samples 1 ==" in (out / "samples.txt").read_text()
  assert (out / "baseline.txt").exists()
  capsys.readouterr()
  assert main(["pplm", "generate", "--model", str(tiny_gpt2_dir), "--out", str(out)]) == 2
  assert "--bow" in capsys.readouterr().err
  for text, message in ((None, "no prompts file"), ("\n \n", "holds no prompt")):
    if text is not None:
      prompts.write_text(text)
    missing = prompts if text is not None else tmp_path / "missing.txt"
    argv = ["pplm", "generate", "--prompts-file", str(missing), "--bow", "space"]
    assert main([*argv, "--out", str(tmp_path / "not_written")]) == 2
    assert message in capsys.readouterr().err
  assert not (tmp_path / "not_written").exists()

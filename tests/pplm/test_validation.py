"""Impossible settings, foreign files and out-of-vocabulary ids: one-line errors, up front."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import JaxnnError
from jaxnn.cli import main
from jaxnn.pplm import (
  Attributes,
  Discriminator,
  DiscriminatorHead,
  PPLMConfig,
  bag_of_words,
  generate,
  load_discriminator,
  read_labeled_texts,
  read_words,
  save_discriminator,
  steered_generate,
)


@pytest.mark.parametrize("field", ["stepsize", "temperature", "gamma", "gm_scale", "kl_scale"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_settings_are_refused(field, value):
  with pytest.raises(JaxnnError) as e:
    PPLMConfig(**{field: value})
  assert field in str(e.value) and "\n" not in str(e.value)


def test_non_integer_counts_are_refused():
  with pytest.raises(JaxnnError, match="num_iterations must be an integer"):
    PPLMConfig(num_iterations=2.5)


def test_cli_refuses_a_nan_step_size(tiny_gpt2_dir, tmp_path, capsys):
  argv = ["pplm", "generate", "--model", str(tiny_gpt2_dir), "--bow", "military"]
  assert main([*argv, "--stepsize", "nan", "--out", str(tmp_path)]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("jaxnn: error:") and "stepsize" in err and "\n" not in err


def test_binary_and_foreign_text_files(tmp_path):
  binary = tmp_path / "words.bin"
  binary.write_bytes(bytes(range(256)) * 4)
  with pytest.raises(JaxnnError, match="not a UTF-8 text file"):
    read_words(binary)
  latin1 = tmp_path / "data.tsv"
  latin1.write_bytes("pos\tcaf\xe9 au lait\nneg\tna\xefve\n".encode("latin-1"))
  with pytest.raises(JaxnnError, match="not a UTF-8 text file"):
    read_labeled_texts(latin1)
  nul = tmp_path / "nul.tsv"
  nul.write_bytes(b"pos\tgood\x00\x00\nneg\tbad\n")
  with pytest.raises(JaxnnError, match="binary"):
    read_labeled_texts(nul)


def test_discriminator_whose_bias_does_not_match_its_kernel(tmp_path, tiny_gpt2):
  params, config = tiny_gpt2
  head = DiscriminatorHead(jnp.zeros((32, 3)), jnp.zeros((2,)), ("a", "b", "c"))
  path = save_discriminator(head, tmp_path / "head.safetensors")
  with pytest.raises(JaxnnError, match="corrupt"):
    load_discriminator(path)
  bad = Discriminator(jnp.zeros((32, 3)), jnp.zeros((2,)), jnp.asarray(0))
  with pytest.raises(JaxnnError, match="bias has shape"):
    steered_generate(params, config, [[0, 5]], Attributes(discriminators=(bad,)))
  wide = Discriminator(jnp.zeros((16, 3)), jnp.zeros((3,)), jnp.asarray(0))
  with pytest.raises(JaxnnError, match="hidden size is 32"):
    steered_generate(params, config, [[0, 5]], Attributes(discriminators=(wide,)))


def test_token_ids_outside_the_vocabulary_are_rejected(tiny_gpt2):
  params, config = tiny_gpt2
  bags = Attributes(bags=bag_of_words([[11, 40]], None, config.vocab_size))
  for prompt in ([[0, config.vocab_size]], [[0, -1]]):
    with pytest.raises(JaxnnError, match="outside the model's vocabulary"):
      steered_generate(params, config, prompt, bags, PPLMConfig(length=2))
    with pytest.raises(JaxnnError, match="outside the model's vocabulary"):
      generate(params, config, np.asarray(prompt), 2)
  with pytest.raises(JaxnnError, match="outside the model's vocabulary"):
    bag_of_words([[11, config.vocab_size]], None, config.vocab_size)
  with pytest.raises(JaxnnError, match="bags of words are over"):
    steered_generate(
      params, config, [[0, 5]], Attributes(bags=bag_of_words([[11]], None, 50)), PPLMConfig()
    )


def test_bags_given_as_token_ids(tiny_gpt2, tiny_tokenizer):
  _, config = tiny_gpt2
  ids = bag_of_words([[11, 40, [40, 7, 9]], [77]], None, config.vocab_size)
  assert np.flatnonzero(ids.single_NxV[0]).tolist() == [11, 40]
  assert np.flatnonzero(ids.single_NxV[1]).tolist() == [77]
  assert ids.multi_tokens_MxW.tolist() == [[40, 7, 9]] and ids.multi_bag_M.tolist() == [0]
  with pytest.raises(JaxnnError, match="needs a tokenizer"):
    bag_of_words([["function"]], None, config.vocab_size)
  mixed = bag_of_words([["function", 77]], tiny_tokenizer, config.vocab_size)
  assert mixed.single_NxV[0, 77] == 1
  assert mixed.single_NxV[0].sum() + mixed.multi_tokens_MxW.shape[0] == 2  # and 'function'
  with pytest.raises(JaxnnError, match="a bag entry must be"):
    bag_of_words([[1.5]], None, config.vocab_size)

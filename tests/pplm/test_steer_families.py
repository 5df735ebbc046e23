"""PPLM steering on a Llama-style model with grouped-query attention, exact against PyTorch.

The reference (tests/pplm/reference_torch.py) runs the original algorithm on
transformers' `LlamaForCausalLM` in float64 with its own cache (batch 1, the
unperturbed distribution recomputed over the whole sequence at every token);
jaxnn steers the same tiny checkpoint, loaded by `jaxnn.lm.load_lm`, with its
batched fixed-size caches. The perturbation acts on the 2 shared key/value
heads of each layer (4 query heads). Cases with prompts of different
lengths steer them as one left-padded batch (RoPE positions counted from each
row's first token); the reference steers each prompt alone.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference_torch import all_float64
from reference_torch import generate as reference_generate

from jaxnn.lm import load_lm
from jaxnn.pplm import Attributes, Discriminator, PPLMConfig, bag_of_words, steered_generate

BAG = [11, 40, 77, 90, 21, 63]
VOCAB = 96


@pytest.fixture(scope="module")
def tiny_llama_dir(tmp_path_factory):
  import torch
  import transformers

  config = transformers.LlamaConfig(
    vocab_size=VOCAB,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    initializer_range=0.2,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
  )
  torch.manual_seed(0)
  model = transformers.LlamaForCausalLM(config)
  with torch.no_grad():
    for _, p in model.named_parameters():
      if p.ndim == 1:
        p.add_(0.2 * torch.randn_like(p))
  folder = tmp_path_factory.mktemp("tiny_llama")
  model.save_pretrained(folder)
  return folder


@pytest.fixture(scope="module")
def torch_llama64(tiny_llama_dir):
  import transformers

  model = transformers.LlamaForCausalLM.from_pretrained(tiny_llama_dir, attn_implementation="sdpa")
  return all_float64(model.double().eval())


@pytest.fixture(scope="module")
def head64():
  import torch

  torch.manual_seed(3)
  return torch.nn.Linear(32, 3).double()


CASES = {
  # name: (PPLMConfig overrides, bag?, discriminator?, prompts)
  "bow_window_decay": (
    dict(window_length=3, decay=True, grad_length=5, stepsize=0.05),
    True,
    False,
    [[1, 17, 93, 5, 50], [1, 25, 3], [1]],  # left-padded: RoPE positions from each first token
  ),
  "discriminator_horizon2": (
    dict(horizon_length=2, gamma=1.0, num_iterations=4, stepsize=0.04),
    False,
    True,
    [[1, 33, 8, 70], [1, 9]],
  ),
  "both_recent_window": (
    dict(window_length=3, window_position="recent", stepsize=0.05, kl_scale=0.05),
    True,
    True,
    [[1, 59, 7, 61, 2, 18]],
  ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_llama_gqa_parity_with_torch_reference_float64(name, tiny_llama_dir, torch_llama64, head64):
  overrides, use_bag, use_disc, prompts = CASES[name]
  config = PPLMConfig(length=6, **overrides)
  with jax.enable_x64(True):
    params, lm = load_lm(tiny_llama_dir, dtype=jnp.float64)
    assert (lm.num_heads, lm.num_kv_heads) == (4, 2)
    disc = Discriminator(
      jnp.asarray(head64.weight.detach().numpy().T),
      jnp.asarray(head64.bias.detach().numpy()),
      jnp.asarray(2),
    )
    attributes = Attributes(
      bags=bag_of_words([BAG], None, VOCAB) if use_bag else None,
      discriminators=(disc,) if use_disc else (),
    )
    tokens, probs = steered_generate(params, lm, prompts, attributes, config, return_probs=True)
    _, still = steered_generate(
      params,
      lm,
      prompts,
      attributes,
      dataclasses.replace(config, stepsize=0.0),
      return_probs=True,
    )
  assert probs.dtype == jnp.float64
  for b, prompt in enumerate(prompts):
    ref_tokens, ref_probs = reference_generate(
      torch_llama64,
      prompt,
      length=config.length,
      bow_ids=[BAG] if use_bag else [],
      classifier=head64 if use_disc else None,
      class_label=2,
      stepsize=config.stepsize,
      temperature=config.temperature,
      top_k=config.top_k,
      num_iterations=config.num_iterations,
      grad_length=config.grad_length,
      window_length=config.window_length,
      horizon_length=config.horizon_length,
      decay=config.decay,
      gamma=config.gamma,
      gm_scale=config.gm_scale,
      kl_scale=config.kl_scale,
      recent_window=config.window_position == "recent",
    )
    assert np.asarray(tokens[b]).tolist() == ref_tokens
    ref = np.concatenate([p.detach().numpy() for p in ref_probs])
    np.testing.assert_allclose(np.asarray(probs[b]), ref, rtol=0, atol=1e-10)
  assert np.abs(np.asarray(probs) - np.asarray(still)).max() > 1e-3


@pytest.mark.slow
def test_bfloat16_weights_steer_with_float32_perturbation(tiny_llama_dir):
  """bfloat16 weights: the caches, perturbation and distributions are float32; greedy
  steering at stepsize 0 equals unsteered greedy decoding of the same bfloat16 model."""
  from jaxnn.lm import generate

  params, lm = load_lm(tiny_llama_dir, dtype=jnp.bfloat16)
  prompt = jnp.asarray([[1, 17, 93, 5], [1, 25, 3, 64]])
  attributes = Attributes(bags=bag_of_words([BAG], None, VOCAB))
  tokens, probs = steered_generate(
    params, lm, prompt, attributes, PPLMConfig(length=6, stepsize=0.0), return_probs=True
  )
  assert probs.dtype == jnp.float32
  np.testing.assert_array_equal(tokens, generate(params, lm, prompt, 6, greedy=True))
  steered = steered_generate(params, lm, prompt, attributes, PPLMConfig(length=6, stepsize=0.3))
  assert steered.shape == (2, 6)


@pytest.fixture(scope="module")
def llama_with_tokenizer_dir(tmp_path_factory):
  """A tiny Llama with a byte-level BPE tokenizer.json and Llama 3's special tokens."""
  import json
  import pydoc_data.topics

  import torch
  import transformers
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

  tokenizer = Tokenizer(models.BPE())
  tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tokenizer.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(
    vocab_size=300,
    special_tokens=["<|begin_of_text|>", "<|end_of_text|>"],
    initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    show_progress=False,
  )
  tokenizer.train_from_iterator(list(pydoc_data.topics.topics.values()), trainer)
  folder = tmp_path_factory.mktemp("llama_tok")
  tokenizer.save(str(folder / "tokenizer.json"))
  (folder / "tokenizer_config.json").write_text(
    json.dumps({"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"})
  )
  config = transformers.LlamaConfig(
    vocab_size=tokenizer.get_vocab_size(),
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    initializer_range=0.2,
    bos_token_id=0,
    eos_token_id=1,
  )
  torch.manual_seed(1)
  transformers.LlamaForCausalLM(config).save_pretrained(folder)
  return folder


@pytest.mark.slow
def test_cli_generate_steers_a_llama_folder(llama_with_tokenizer_dir, tmp_path, capsys):
  import json

  from jaxnn.cli import main
  from jaxnn.lm import load_tokenizer

  out = tmp_path / "run"
  argv = ["pplm", "generate", "--model", str(llama_with_tokenizer_dir), "--bow", "military"]
  assert main([*argv, "--length", "5", "--num-samples", "2", "--out", str(out)]) == 0
  summary = json.loads((out / "summary.json").read_text())
  assert summary["model"] == str(llama_with_tokenizer_dir)
  assert len(summary["samples"]) == 2 and "bag_word_rate" in summary["mean"]["samples"]
  tokenizer = load_tokenizer(llama_with_tokenizer_dir)
  assert tokenizer.start_token_id == tokenizer.token_to_id("<|begin_of_text|>") == 0
  assert "tokens/s" in capsys.readouterr().out

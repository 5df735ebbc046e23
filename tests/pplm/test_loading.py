"""Loading Hugging Face GPT-2 checkpoints and tokenizers: round trips, parity, clear errors."""

import json
import shutil

import huggingface_hub.constants
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file, save_file

from jaxnn import JaxnnError
from jaxnn.lm import _loading
from jaxnn.pplm import load_gpt2, load_tokenizer, save_gpt2

TEXTS = [
  "Hello world!",
  " The potato army marched on.",
  "tabs\tand\nnewlines  and   spaces",
  "naïve café — ünïcödé ✓",
  "<|endoftext|>Return the value",
]


def _copy(src, dst, names):
  dst.mkdir()
  for n in names:
    shutil.copy(src / n, dst / n)
  return dst


def test_save_gpt2_writes_what_transformers_reads(tiny_gpt2_dir, tiny_gpt2, tmp_path):
  params, config = tiny_gpt2
  folder = save_gpt2(params, config, tmp_path / "saved")
  again, config_again = load_gpt2(folder)
  assert config_again == config
  jax.tree.map(np.testing.assert_array_equal, again, params)
  ids = torch.tensor([[5, 17, 200, 3, 99]])
  with torch.no_grad():
    ref = transformers.GPT2LMHeadModel.from_pretrained(tiny_gpt2_dir).eval()(ids).logits
    ours = transformers.GPT2LMHeadModel.from_pretrained(folder).eval()(ids).logits
  np.testing.assert_array_equal(ours.numpy(), ref.numpy())


def test_missing_files_say_what_to_do(tiny_gpt2_dir, tmp_path):
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(JaxnnError, match="model.safetensors"):
    load_gpt2(empty)
  no_config = _copy(tiny_gpt2_dir, tmp_path / "no_config", ["model.safetensors"])
  with pytest.raises(JaxnnError, match="config.json"):
    load_gpt2(no_config)
  with pytest.raises(JaxnnError, match="tokenizer.json or vocab.json"):
    load_tokenizer(no_config)
  with pytest.raises(JaxnnError, match="not a folder"):
    load_gpt2(tmp_path / "nowhere" / "model")


def test_wrong_shapes_and_missing_tensors(tiny_gpt2_dir, tmp_path):
  folder = _copy(tiny_gpt2_dir, tmp_path / "bad", ["config.json", "model.safetensors"])
  tensors = load_file(folder / "model.safetensors")
  key = "transformer.h.1.mlp.c_fc.weight"
  save_file({**tensors, key: tensors[key][:, :-1].copy()}, folder / "model.safetensors")
  with pytest.raises(JaxnnError, match=r"h\.1\.mlp\.c_fc\.weight.*shape \(32, 127\).*\(32, 128\)"):
    load_gpt2(folder)
  del tensors[key]
  save_file(tensors, folder / "model.safetensors")
  with pytest.raises(JaxnnError, match=r"lacks the tensor 'h\.1\.mlp\.c_fc\.weight'"):
    load_gpt2(folder)
  (folder / "model.safetensors").write_bytes(b"not a safetensors file")
  with pytest.raises(JaxnnError, match="cannot read"):
    load_gpt2(folder)
  config = json.loads((tiny_gpt2_dir / "config.json").read_text())
  (folder / "config.json").write_text(json.dumps({**config, "activation_function": "relu"}))
  with pytest.raises(JaxnnError, match="activation_function"):
    load_gpt2(folder)


def test_unknown_name_and_offline_hub(monkeypatch, tmp_path):
  with pytest.raises(JaxnnError, match="unknown model 'gpt3-huge'"):
    load_gpt2("gpt3-huge")
  monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
  monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
  with pytest.raises(JaxnnError, match="cannot be reached.*ensure_offline_lm"):
    load_gpt2("gpt2-medium")
  with pytest.raises(JaxnnError, match="cannot be reached"):
    load_tokenizer("someone/fine-tuned-gpt2")
  # Not flagged offline, but no network: the probe fails fast instead of retrying for ~25 s.
  monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)

  def no_network(*args, **kwargs):
    raise OSError("network unreachable")

  monkeypatch.setattr(_loading.socket, "create_connection", no_network)
  with pytest.raises(JaxnnError, match="cannot be reached"):
    load_gpt2("gpt2")


def test_float64_needs_x64(tiny_gpt2_dir):
  if jax.config.jax_enable_x64:
    pytest.fail("x64 must be off by default in the test session")
  with pytest.raises(JaxnnError, match="jax_enable_x64"):
    load_gpt2(tiny_gpt2_dir, dtype=jnp.float64)


def test_tokenizer_matches_transformers_slow_gpt2_tokenizer(
  tiny_gpt2_dir, tiny_tokenizer, tmp_path
):
  """The pure-Python GPT2Tokenizer of transformers is an independent BPE implementation."""
  slow = transformers.GPT2Tokenizer(
    str(tiny_gpt2_dir / "vocab.json"), str(tiny_gpt2_dir / "merges.txt")
  )
  from_vocab = load_tokenizer(_copy(tiny_gpt2_dir, tmp_path / "vm", ["vocab.json", "merges.txt"]))
  assert tiny_tokenizer.eos_token_id == from_vocab.eos_token_id == slow.eos_token_id
  for text in TEXTS:
    ids = tiny_tokenizer.encode(text)
    assert ids == from_vocab.encode(text) == slow.encode(text), text
    assert tiny_tokenizer.decode(ids) == text
  assert tiny_tokenizer.encode_batch(TEXTS) == [tiny_tokenizer.encode(t) for t in TEXTS]
  assert tiny_tokenizer.vocab_size == 320


@pytest.mark.parametrize("sharded", [False, True])
def test_hub_download_path(monkeypatch, tiny_gpt2_dir, tiny_gpt2, tmp_path, sharded):
  """The hub path with huggingface_hub stubbed by a local 'remote': cache miss, then download."""
  import huggingface_hub
  from huggingface_hub import errors

  remote = _copy(tiny_gpt2_dir, tmp_path / "remote", ["config.json", "tokenizer.json"])
  tensors = load_file(tiny_gpt2_dir / "model.safetensors")
  if sharded:
    keys = sorted(tensors)
    shards = {
      "model-00001-of-00002.safetensors": keys[::2],
      "model-00002-of-00002.safetensors": keys[1::2],
    }
    for name, ks in shards.items():
      save_file({k: tensors[k] for k in ks}, remote / name)
    (remote / "model.safetensors.index.json").write_text(
      json.dumps({"weight_map": {k: name for name, ks in shards.items() for k in ks}})
    )
  else:
    shutil.copy(tiny_gpt2_dir / "model.safetensors", remote / "model.safetensors")
  requests = []

  def fake_download(repo_id, filename, local_files_only=False):
    requests.append((repo_id, filename, local_files_only))
    cache = tmp_path / "cache" / repo_id.replace("/", "--")
    if (cache / filename).is_file():
      return str(cache / filename)
    if local_files_only:
      raise errors.LocalEntryNotFoundError(f"{filename} not cached")
    if not (remote / filename).is_file():
      raise errors.EntryNotFoundError(f"{filename} not on the hub")
    cache.mkdir(parents=True, exist_ok=True)
    shutil.copy(remote / filename, cache / filename)
    return str(cache / filename)

  class Connection:
    def close(self):
      pass

  monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
  monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
  monkeypatch.setattr(_loading.socket, "create_connection", lambda *a, **k: Connection())
  params, config = load_gpt2("gpt2-medium")
  assert requests[0] == ("openai-community/gpt2-medium", "config.json", True)
  assert ("openai-community/gpt2-medium", "config.json", False) in requests
  jax.tree.map(np.testing.assert_array_equal, params, tiny_gpt2[0])
  assert load_tokenizer("gpt2-medium").encode("Hello world") == load_tokenizer(
    tiny_gpt2_dir
  ).encode("Hello world")
  # Now cached: a second load never asks the network.
  requests.clear()
  load_gpt2("gpt2-medium")
  assert all(local for _, _, local in requests)
  (remote / "model.safetensors").unlink(missing_ok=True)
  (remote / "model.safetensors.index.json").unlink(missing_ok=True)
  with pytest.raises(JaxnnError, match="only safetensors"):
    load_gpt2("someone/pickled-only")

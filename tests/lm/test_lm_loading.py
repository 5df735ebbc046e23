"""Loading any family: sharded safetensors, dtypes, tokenizers' special tokens, clear errors."""

import json
import shutil

import huggingface_hub.constants
import jax
import numpy as np
import pytest
from families import make_model

from jaxnn import JaxnnError
from jaxnn.lm import LMConfig, load_lm, load_tokenizer

ENGLISH = [
  "The army marched over the hills at dawn while the cooks baked bread.",
  "A computer program reads the data, then writes the answer to the screen.",
  "The lake is deep and the water is cold in the winter months.",
] * 20


def _files(folder, *names):
  return {n: (folder / n).read_bytes() for n in names}


def test_sharded_checkpoint_equals_single_file(family_dir, tmp_path):
  single = family_dir("mistral")
  make_model("mistral").save_pretrained(tmp_path, max_shard_size="20KB")
  assert (tmp_path / "model.safetensors.index.json").is_file()
  assert len(list(tmp_path.glob("model-*.safetensors"))) > 2
  a, config_a = load_lm(single)
  b, config_b = load_lm(tmp_path)
  assert config_a == config_b
  jax.tree.map(np.testing.assert_array_equal, a, b)


def test_corrupt_index_and_config_are_one_line_errors(family_dir, tmp_path):
  make_model("llama3").save_pretrained(tmp_path, max_shard_size="20KB")
  index = tmp_path / "model.safetensors.index.json"
  good = index.read_text()
  for garbled, match in [
    ("{not json", "not valid JSON"),
    ('{"weight_map": [1, 2]}', "weight_map"),
    ('{"weight_map": {"a": "../../etc/passwd.safetensors"}}', "same folder"),
    (b"\xff\xfe\x00binary", "not valid JSON"),
  ]:
    if isinstance(garbled, bytes):
      index.write_bytes(garbled)
    else:
      index.write_text(garbled)
    with pytest.raises(JaxnnError, match=match) as e:
      load_lm(tmp_path)
    assert "\n" not in str(e.value)
  index.write_text(good)
  next(tmp_path.glob("model-00002-*.safetensors")).unlink()
  with pytest.raises(JaxnnError, match="lacks the shard"):
    load_lm(tmp_path)
  folder = family_dir("qwen3")
  config = json.loads((folder / "config.json").read_text())
  bad = tmp_path / "bad_config"
  bad.mkdir()
  shutil.copy(folder / "model.safetensors", bad / "model.safetensors")
  for change, match in [
    ({"hidden_size": "32"}, "'hidden_size' must be int"),
    ({"rms_norm_eps": [1e-6]}, "'rms_norm_eps' must be float"),
    ({"num_key_value_heads": 3}, "multiple of num_key_value_heads|must be a multiple"),
    ({"model_type": "mamba"}, "supported: gpt2, llama, mistral"),
    ({"rope_parameters": {"rope_type": "wavelet"}}, "'wavelet'.*supported: default"),
    ({"rope_parameters": {"rope_theta": "big"}}, "rope_theta.*must be float"),
    ({"tie_word_embeddings": "no"}, "must be bool"),
  ]:
    (bad / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(JaxnnError, match=match) as e:
      load_lm(bad)
    assert "\n" not in str(e.value)
  (bad / "config.json").write_text("[1, 2, 3]")
  with pytest.raises(JaxnnError, match="JSON object"):
    load_lm(bad)
  (bad / "config.json").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
  with pytest.raises(JaxnnError, match="not valid JSON"):
    load_lm(bad)


def test_wrong_tensor_shape_names_the_tensor(family_dir, tmp_path):
  from safetensors.numpy import load_file, save_file

  folder = family_dir("phi3")
  shutil.copy(folder / "config.json", tmp_path / "config.json")
  tensors = load_file(folder / "model.safetensors")
  key = "model.layers.1.self_attn.qkv_proj.weight"
  save_file({**tensors, key: tensors[key][:-1]}, tmp_path / "model.safetensors")
  with pytest.raises(JaxnnError, match=r"qkv_proj\.weight.*shape \(63, 32\).*\(64, 32\)"):
    load_lm(tmp_path)
  del tensors[key]
  save_file(tensors, tmp_path / "model.safetensors")
  with pytest.raises(JaxnnError, match="lacks the tensor.*Phi-3 checkpoint"):
    load_lm(tmp_path)


def test_offline_hub_name_says_which_folder_to_pass(monkeypatch, tmp_path):
  monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
  monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
  with pytest.raises(JaxnnError, match="cannot be reached.*pass the folder that holds its config"):
    load_lm("Qwen/Qwen2.5-0.5B")


def test_configs_of_real_hub_layouts():
  """Older config.json layouts (rope_theta, rope_scaling, rotary_pct) as the hub serves them."""
  llama31 = LMConfig.from_hf_dict(
    {
      "model_type": "llama",
      "hidden_size": 2048,
      "intermediate_size": 8192,
      "num_attention_heads": 32,
      "num_key_value_heads": 8,
      "num_hidden_layers": 16,
      "max_position_embeddings": 131072,
      "vocab_size": 128256,
      "rms_norm_eps": 1e-5,
      "rope_theta": 500000.0,
      "rope_scaling": {
        "factor": 32.0,
        "high_freq_factor": 4.0,
        "low_freq_factor": 1.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
      },
      "tie_word_embeddings": True,
      "hidden_act": "silu",
    }
  )
  assert llama31.rope_theta == 500000.0 and dict(llama31.rope_scaling)["factor"] == 32.0
  assert (llama31.num_kv_heads, llama31.head_dim, llama31.tie_embeddings) == (8, 64, True)
  pythia = LMConfig.from_hf_dict(
    {
      "model_type": "gpt_neox",
      "hidden_size": 512,
      "intermediate_size": 2048,
      "num_attention_heads": 8,
      "num_hidden_layers": 6,
      "max_position_embeddings": 2048,
      "vocab_size": 50304,
      "rotary_pct": 0.25,
      "rotary_emb_base": 10000,
      "use_parallel_residual": True,
      "hidden_act": "gelu",
      "layer_norm_eps": 1e-5,
      "tie_word_embeddings": False,
    }
  )
  assert pythia.rotary == 16 and pythia.parallel_residual and pythia.norm == "layer"
  qwen = LMConfig.from_hf_dict(
    {
      "model_type": "qwen2",
      "hidden_size": 896,
      "intermediate_size": 4864,
      "num_attention_heads": 14,
      "num_key_value_heads": 2,
      "num_hidden_layers": 24,
      "max_position_embeddings": 32768,
      "vocab_size": 151936,
      "rope_theta": 1000000.0,
      "sliding_window": 32768,
      "use_sliding_window": False,
      "max_window_layers": 21,
      "tie_word_embeddings": True,
    }
  )
  assert qwen.sliding_window == 0 and qwen.qkv_bias and not qwen.out_bias


def _train_tokenizer(kind):
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

  tokenizer = Tokenizer(models.BPE(unk_token="<unk>" if kind == "metaspace" else None))
  if kind == "metaspace":  # Llama 2 / Mistral style: spaces become a marker, prefixed to the text
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first")
    tokenizer.decoder = decoders.Metaspace(prepend_scheme="first")
    special = ["<unk>", "<s>", "</s>"]
  else:
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    special = ["<|begin_of_text|>", "<|end_of_text|>"]
  trainer = trainers.BpeTrainer(vocab_size=200, special_tokens=special, show_progress=False)
  tokenizer.train_from_iterator(ENGLISH, trainer)
  return tokenizer


@pytest.mark.parametrize("kind", ["metaspace", "byte_level"])
def test_tokenizer_special_tokens_and_words(kind, tmp_path):
  tokenizer = _train_tokenizer(kind)
  tokenizer.save(str(tmp_path / "tokenizer.json"))
  bos, eos = ("<s>", "</s>") if kind == "metaspace" else ("<|begin_of_text|>", "<|end_of_text|>")
  (tmp_path / "tokenizer_config.json").write_text(
    json.dumps({"bos_token": {"content": bos}, "eos_token": eos})
  )
  ours = load_tokenizer(tmp_path)
  assert ours.bos_token_id == tokenizer.token_to_id(bos) == ours.start_token_id
  assert ours.eos_token_id == tokenizer.token_to_id(eos)
  for word in ("army", "bread", "computer"):
    inside = ours.encode(f"the {word}")
    assert inside == ours.encode("the") + ours.encode_word(word), (word, inside)
  # Without tokenizer_config.json the ids come from config.json.
  (tmp_path / "tokenizer_config.json").unlink()
  (tmp_path / "config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": [2, 0]}))
  from_ids = load_tokenizer(tmp_path)
  assert (from_ids.bos_token_id, from_ids.eos_token_id) == (1, 2)

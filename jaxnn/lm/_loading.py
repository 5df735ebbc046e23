"""Hugging Face checkpoints from safetensors: a local folder or the hub.

`load_lm(name_or_path)` reads config.json and model.safetensors (or the
shards listed in model.safetensors.index.json) of any supported family and
converts the weights to jaxnn's layout (`jaxnn.lm._model`); `load_gpt2` is
the GPT-2 form with its `GPT2Config`. Weights stored in bfloat16, float16
or float32 are read with `safetensors` only: no pickle, never
pytorch_model.bin. A hub name needs the network (or the local Hugging Face
cache); offline, the error names the folder to pass instead.
"""

from __future__ import annotations

import json
import os
import re
import socket
import urllib.parse
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn._errors import JaxnnError
from jaxnn.lm._config import SUPPORTED_MODEL_TYPES, GPT2Config, LMConfig, lm_config
from jaxnn.lm._model import Params, as_params, param_specs

#: Short model names and the Hugging Face repositories they stand for.
KNOWN_MODELS = {
  "gpt2": "openai-community/gpt2",
  "gpt2-medium": "openai-community/gpt2-medium",
  "gpt2-large": "openai-community/gpt2-large",
  "gpt2-xl": "openai-community/gpt2-xl",
  "distilgpt2": "distilbert/distilgpt2",
}
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# GPT-2's Hugging Face names (per layer "h.{i}.<name>") -> path in jaxnn's params.
_GPT2_LAYER_KEYS = {
  "ln_1.weight": ("ln_1", "scale"),
  "ln_1.bias": ("ln_1", "bias"),
  "attn.c_attn.weight": ("attn", "c_attn", "kernel"),
  "attn.c_attn.bias": ("attn", "c_attn", "bias"),
  "attn.c_proj.weight": ("attn", "c_proj", "kernel"),
  "attn.c_proj.bias": ("attn", "c_proj", "bias"),
  "ln_2.weight": ("ln_2", "scale"),
  "ln_2.bias": ("ln_2", "bias"),
  "mlp.c_fc.weight": ("mlp", "c_fc", "kernel"),
  "mlp.c_fc.bias": ("mlp", "c_fc", "bias"),
  "mlp.c_proj.weight": ("mlp", "c_proj", "kernel"),
  "mlp.c_proj.bias": ("mlp", "c_proj", "bias"),
}
_GPT2_TOP_KEYS = {
  "wte.weight": ("wte",),
  "wpe.weight": ("wpe",),
  "ln_f.weight": ("ln_f", "scale"),
  "ln_f.bias": ("ln_f", "bias"),
}
WEIGHT_FILES = (
  ("config.json", "model.safetensors"),
  ("config.json", "model.safetensors.index.json"),
)
TOKENIZER_FILES = (("tokenizer.json",), ("vocab.json", "merges.txt"))
# Read when present next to tokenizer.json: the family's special tokens.
TOKENIZER_EXTRAS = ("tokenizer_config.json", "config.json")


def _hub_offline() -> bool:
  from huggingface_hub import constants

  if constants.HF_HUB_OFFLINE:
    return True
  host = urllib.parse.urlparse(constants.ENDPOINT).hostname
  try:
    socket.create_connection((host, 443), timeout=3).close()
  except OSError:
    return True
  return False


def _shard_names(index_path: Path) -> list[str]:
  """The shard files an index lists, checked: a JSON object whose weight_map maps names to files."""
  try:
    index = json.loads(index_path.read_text(encoding="utf-8"))
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise JaxnnError(f"{index_path} is not valid JSON ({e}); re-download or re-save it") from None
  weight_map = index.get("weight_map") if isinstance(index, dict) else None
  if (
    not isinstance(weight_map, dict)
    or not weight_map
    or not all(isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items())
  ):
    raise JaxnnError(
      f"{index_path} has no 'weight_map' of tensor names to shard files; re-download or re-save it"
    )
  shards = sorted(set(weight_map.values()))
  for shard in shards:
    if Path(shard).name != shard or not shard.endswith(".safetensors"):
      raise JaxnnError(
        f"{index_path} lists the shard {shard!r}, not a .safetensors file in the same folder"
      )
  return shards


def _from_hub(repo_id: str, name: str, alternatives, extras=()) -> Path:
  """Downloads (or finds in the local cache) the first complete set of files; returns its folder."""
  import huggingface_hub
  from huggingface_hub import errors

  def fetch(local_only: bool) -> Path | None:
    for files in alternatives:
      try:
        paths = [
          Path(huggingface_hub.hf_hub_download(repo_id, f, local_files_only=local_only))
          for f in files
        ]
      except errors.LocalEntryNotFoundError:
        if local_only:
          continue
        raise
      except errors.EntryNotFoundError:
        continue
      if files[-1].endswith(".index.json"):
        for shard in _shard_names(paths[-1]):
          huggingface_hub.hf_hub_download(repo_id, shard, local_files_only=local_only)
      for extra in extras:
        try:
          huggingface_hub.hf_hub_download(repo_id, extra, local_files_only=local_only)
        except (errors.EntryNotFoundError, errors.LocalEntryNotFoundError):
          pass
      return paths[0].parent
    return None

  try:
    folder = fetch(local_only=True)
    if folder is not None:
      return folder
    if _hub_offline():
      raise JaxnnError(
        f"{name!r} is not a local folder and the Hugging Face hub cannot be reached (offline, "
        f"and it is not in the local cache): pass the folder that holds its config.json, "
        f"model.safetensors and tokenizer.json (e.g. one saved by save_pretrained), or use "
        f"the offline model (jaxnn.lm.ensure_offline_lm())"
      )
    folder = fetch(local_only=False)
  except errors.RepositoryNotFoundError:
    raise JaxnnError(
      f"no model {repo_id!r} on the Hugging Face hub; known names: "
      f"{', '.join(KNOWN_MODELS)}, a hub id 'owner/name', or a local folder"
    ) from None
  except (errors.LocalEntryNotFoundError, OSError) as e:
    raise JaxnnError(
      f"could not download {repo_id!r} from the Hugging Face hub ({e}); check the "
      f"connection or pass a local folder"
    ) from None
  if folder is None:
    wanted = " or ".join(" + ".join(files) for files in alternatives)
    raise JaxnnError(
      f"{repo_id!r} on the hub has no {wanted}; jaxnn reads only safetensors "
      f"(never pickled pytorch_model.bin)"
    )
  return folder


def resolve_folder(name_or_path: str | os.PathLike, alternatives=WEIGHT_FILES, extras=()) -> Path:
  """The local folder that holds one complete set of `alternatives` for a name or path."""
  path = Path(name_or_path).expanduser()
  name = str(name_or_path)
  if path.is_dir():
    if not any(all((path / f).is_file() for f in files) for files in alternatives):
      wanted = " or ".join(" + ".join(files) for files in alternatives)
      raise JaxnnError(
        f"{path} has no {wanted}; save the model with save_pretrained "
        f"(safetensors) or jaxnn.lm.save_gpt2"
      )
    return path
  if name in KNOWN_MODELS:
    return _from_hub(KNOWN_MODELS[name], name, alternatives, extras)
  if _REPO_ID.match(name) and not name.startswith("."):
    return _from_hub(name, name, alternatives, extras)
  if path.exists() or os.sep in name or name.startswith((".", "~")):
    raise JaxnnError(
      f"{name} is not a folder; pass a folder with config.json and model.safetensors"
    )
  raise JaxnnError(
    f"unknown model {name!r}; use one of {', '.join(KNOWN_MODELS)}, a hub repo id "
    f"'owner/name', or a local folder"
  )


def read_config_json(folder: Path) -> dict:
  """config.json of a model folder as a dict; one-line errors for missing or foreign files."""
  try:
    d = json.loads((folder / "config.json").read_text(encoding="utf-8"))
  except FileNotFoundError:
    raise JaxnnError(f"{folder} has no config.json; save the model with save_pretrained") from None
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise JaxnnError(f"{folder / 'config.json'} is not valid JSON ({e})") from None
  if not isinstance(d, dict):
    raise JaxnnError(f"{folder / 'config.json'} must hold a JSON object, got {type(d).__name__}")
  return d


def load_config(folder: Path) -> GPT2Config:
  """The `GPT2Config` of a GPT-2 folder (see `load_lm_config` for every family)."""
  return GPT2Config.from_hf_dict(read_config_json(Path(folder)))


def load_lm_config(folder: Path) -> LMConfig:
  """The `LMConfig` of a model folder's config.json (any supported family)."""
  return LMConfig.from_hf_dict(read_config_json(Path(folder)))


def _read_tensors(folder: Path) -> dict[str, np.ndarray]:
  """Every tensor of the folder's safetensors file(s), as numpy (bfloat16 through ml_dtypes)."""
  from safetensors import SafetensorError, safe_open

  if (folder / "model.safetensors").is_file():
    files = [folder / "model.safetensors"]
  else:
    index = folder / "model.safetensors.index.json"
    files = [folder / f for f in _shard_names(index)]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
      raise JaxnnError(f"{folder} lacks the shard(s) {', '.join(missing)} listed in {index.name}")
  tensors = {}
  for f in files:
    try:
      # "flax" reads bfloat16 too (numpy has no bfloat16); converted to numpy right away.
      with safe_open(str(f), framework="flax") as opened:
        for key in opened.keys():
          tensors[key] = np.asarray(opened.get_tensor(key))
    except (SafetensorError, OSError, ValueError, TypeError) as e:
      raise JaxnnError(f"cannot read {f} as safetensors ({e}); re-download or re-save it") from None
  return tensors


def _check_dtype(dtype):
  dtype = jnp.dtype(dtype)
  if dtype == jnp.float64 and not jax.config.jax_enable_x64:
    raise JaxnnError("float64 parameters need jax.config.update('jax_enable_x64', True) first")
  if dtype not in (jnp.float64, jnp.float32, jnp.bfloat16, jnp.float16):
    raise JaxnnError(f"dtype must be float32, bfloat16, float16 or float64, got {dtype}")
  return dtype


class _Tensors:
  """The checkpoint's tensors by Hugging Face name, with one-line errors naming the folder."""

  def __init__(self, folder: Path, tensors: dict[str, np.ndarray], family: str):
    self.folder, self.tensors, self.family = folder, tensors, family

  def has(self, name):
    return name in self.tensors

  def get(self, name, shape):
    if name not in self.tensors:
      raise JaxnnError(
        f"{self.folder} lacks the tensor {name!r}; is it a {self.family} checkpoint?"
      )
    value = self.tensors[name]
    if value.shape != tuple(shape):
      raise JaxnnError(
        f"{self.folder}: tensor {name!r} has shape {value.shape}, but config.json implies "
        f"{tuple(shape)}; the weights do not match the config"
      )
    return value


def _gpt2_params(t: _Tensors, c: LMConfig) -> Params:
  specs = param_specs(c)
  t.tensors = {k.removeprefix("transformer."): v for k, v in t.tensors.items()}
  params: Params = {}
  for key, path in _GPT2_TOP_KEYS.items():
    _set(params, path, t.get(key, _get(specs, path).shape))
  params["h"] = [{} for _ in range(c.num_layers)]
  for i, layer_specs in enumerate(specs["h"]):
    for name, path in _GPT2_LAYER_KEYS.items():
      _set(params["h"][i], path, t.get(f"h.{i}.{name}", _get(layer_specs, path).shape))
  if t.has("lm_head.weight") and not np.array_equal(t.tensors["lm_head.weight"], params["wte"]):
    raise JaxnnError(f"{t.folder}: lm_head.weight differs from wte.weight; jaxnn's GPT-2 ties them")
  return params


def _linear(t: _Tensors, name, out_dim, in_dim, bias: bool):
  """A torch Linear (weight out x in) as jaxnn's {"kernel": in x out, "bias"}."""
  p = {"kernel": t.get(f"{name}.weight", (out_dim, in_dim)).T}
  if bias:
    p["bias"] = t.get(f"{name}.bias", (out_dim,))
  return p


def _stack_linears(t: _Tensors, names_and_dims, in_dim, bias: bool):
  """Several Linears with the same input side by side (q, k, v or gate, up)."""
  parts = [_linear(t, name, out, in_dim, bias) for name, out in names_and_dims]
  p = {"kernel": np.concatenate([q["kernel"] for q in parts], axis=1)}
  if bias:
    p["bias"] = np.concatenate([q["bias"] for q in parts])
  return p


def _norm(t: _Tensors, name, dim, bias: bool):
  p = {"scale": t.get(f"{name}.weight", (dim,))}
  if bias:
    p["bias"] = t.get(f"{name}.bias", (dim,))
  return p


def _llama_like_params(t: _Tensors, c: LMConfig) -> Params:
  """Llama, Mistral, Qwen2/3, Gemma 1/2 and Phi-3 (names under "model.")."""
  d, kd, f = c.hidden_size, c.head_dim, c.intermediate_size
  hq, hkv = c.num_heads * kd, c.num_kv_heads * kd
  layers = []
  for i in range(c.num_layers):
    pre = f"model.layers.{i}"
    if c.model_type == "phi3":
      qkv = _linear(t, f"{pre}.self_attn.qkv_proj", hq + 2 * hkv, d, c.qkv_bias)
      fc = _linear(t, f"{pre}.mlp.gate_up_proj", 2 * f, d, c.mlp_bias)
    else:
      qkv = _stack_linears(
        t,
        [(f"{pre}.self_attn.{n}_proj", w) for n, w in (("q", hq), ("k", hkv), ("v", hkv))],
        d,
        c.qkv_bias,
      )
      fc = _stack_linears(
        t, [(f"{pre}.mlp.gate_proj", f), (f"{pre}.mlp.up_proj", f)], d, c.mlp_bias
      )
    attn = {"c_attn": qkv, "c_proj": _linear(t, f"{pre}.self_attn.o_proj", d, hq, c.out_bias)}
    if c.qk_norm:
      attn["q_norm"] = {"scale": t.get(f"{pre}.self_attn.q_norm.weight", (kd,))}
      attn["k_norm"] = {"scale": t.get(f"{pre}.self_attn.k_norm.weight", (kd,))}
    layer = {
      "ln_1": _norm(t, f"{pre}.input_layernorm", d, False),
      "attn": attn,
      "mlp": {"c_fc": fc, "c_proj": _linear(t, f"{pre}.mlp.down_proj", d, f, c.mlp_bias)},
    }
    if c.sandwich_norms:  # Gemma 2: post_attention_layernorm is after attention
      layer["post_attn_norm"] = _norm(t, f"{pre}.post_attention_layernorm", d, False)
      layer["ln_2"] = _norm(t, f"{pre}.pre_feedforward_layernorm", d, False)
      layer["post_mlp_norm"] = _norm(t, f"{pre}.post_feedforward_layernorm", d, False)
    else:
      layer["ln_2"] = _norm(t, f"{pre}.post_attention_layernorm", d, False)
    layers.append(layer)
  params = {
    "wte": t.get("model.embed_tokens.weight", (c.vocab_size, d)),
    "h": layers,
    "ln_f": _norm(t, "model.norm", d, False),
  }
  if not c.tie_embeddings:
    params["lm_head"] = t.get("lm_head.weight", (c.vocab_size, d))
  return params


def _neox_params(t: _Tensors, c: LMConfig) -> Params:
  """GPT-NeoX/Pythia: query_key_value interleaves (q, k, v) per head; it is reordered."""
  d, kd, f, h = c.hidden_size, c.head_dim, c.intermediate_size, c.num_heads
  layers = []
  for i in range(c.num_layers):
    pre = f"gpt_neox.layers.{i}"
    qkv = _linear(t, f"{pre}.attention.query_key_value", 3 * h * kd, d, c.qkv_bias)
    # Output features are (head, [q k v], K); jaxnn wants ([q k v], head, K).
    qkv["kernel"] = qkv["kernel"].reshape(d, h, 3, kd).transpose(0, 2, 1, 3).reshape(d, 3 * h * kd)
    if c.qkv_bias:
      qkv["bias"] = qkv["bias"].reshape(h, 3, kd).transpose(1, 0, 2).reshape(-1)
    layers.append(
      {
        "ln_1": _norm(t, f"{pre}.input_layernorm", d, True),
        "attn": {
          "c_attn": qkv,
          "c_proj": _linear(t, f"{pre}.attention.dense", d, h * kd, c.out_bias),
        },
        "ln_2": _norm(t, f"{pre}.post_attention_layernorm", d, True),
        "mlp": {
          "c_fc": _linear(t, f"{pre}.mlp.dense_h_to_4h", f, d, c.mlp_bias),
          "c_proj": _linear(t, f"{pre}.mlp.dense_4h_to_h", d, f, c.mlp_bias),
        },
      }
    )
  params = {
    "wte": t.get("gpt_neox.embed_in.weight", (c.vocab_size, d)),
    "h": layers,
    "ln_f": _norm(t, "gpt_neox.final_layer_norm", d, True),
  }
  if not c.tie_embeddings:
    params["lm_head"] = t.get("embed_out.weight", (c.vocab_size, d))
  return params


def _params_from_tensors(folder, tensors, c: LMConfig) -> Params:
  family = SUPPORTED_MODEL_TYPES[c.model_type]
  t = _Tensors(folder, tensors, family)
  if c.model_type == "gpt2":
    params = _gpt2_params(t, c)
  elif c.model_type == "gpt_neox":
    params = _neox_params(t, c)
  else:
    params = _llama_like_params(t, c)
  expected = jax.tree.map(lambda s: s.shape, param_specs(c))
  got = jax.tree.map(lambda a: a.shape, params)
  if jax.tree.structure(expected) != jax.tree.structure(got) or expected != got:
    raise JaxnnError(f"{folder}: the weights do not match config.json (tensor layout differs)")
  return params


def load_lm(name_or_path: str | os.PathLike, dtype=jnp.float32) -> tuple[Params, LMConfig]:
  """Loads a Hugging Face checkpoint of a supported family as (params, config).

  Args:
    name_or_path: a local folder with config.json and model.safetensors (or
      model.safetensors.index.json and its shards), a hub repo id such as
      "Qwen/Qwen2.5-0.5B" or "meta-llama/Llama-3.2-1B", or a GPT-2 name
      (gpt2, gpt2-medium, ...).
    dtype: the parameters' dtype, whatever the stored one (bfloat16 on an
      accelerator halves the memory; float64 needs `jax_enable_x64`).

  Raises:
    JaxnnError: unknown name or architecture (with the supported ones),
      offline without a local copy, a missing file, a corrupt or foreign
      config.json, index or safetensors file, a tensor missing or of the
      wrong shape.
  """
  dtype = _check_dtype(dtype)
  folder = resolve_folder(name_or_path)
  config = load_lm_config(folder)
  params = _params_from_tensors(folder, _read_tensors(folder), config)
  return jax.tree.map(lambda a: jnp.asarray(a, dtype), params), config


def load_gpt2(name_or_path: str | os.PathLike, dtype=jnp.float32) -> tuple[Params, GPT2Config]:
  """Loads a Hugging Face GPT-2 checkpoint as (params, GPT2Config); see `load_lm`.

  Args:
    name_or_path: gpt2, gpt2-medium, gpt2-large, gpt2-xl, distilgpt2, a hub
      repo id, or a local folder with config.json and model.safetensors.
    dtype: the parameters' dtype (float64 needs `jax_enable_x64`).
  """
  dtype = _check_dtype(dtype)
  folder = resolve_folder(name_or_path)
  config = load_config(folder)
  params = _params_from_tensors(folder, _read_tensors(folder), config.lm)
  return jax.tree.map(lambda a: jnp.asarray(a, dtype), params), config


def save_gpt2(params: Params, config: GPT2Config, folder: str | os.PathLike) -> Path:
  """Writes config.json and model.safetensors in Hugging Face's GPT-2 layout."""
  from safetensors.numpy import save_file

  if not isinstance(config, GPT2Config):
    raise JaxnnError(f"save_gpt2 writes GPT-2 models; got a {lm_config(config).model_type} config")
  params = jax.tree.map(np.asarray, as_params(params))
  folder = Path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  tensors = {key: _get(params, path) for key, path in _GPT2_TOP_KEYS.items()}
  for i, layer in enumerate(params["h"]):
    tensors.update(
      {
        f"h.{i}.{name}": np.ascontiguousarray(_get(layer, path))
        for name, path in _GPT2_LAYER_KEYS.items()
      }
    )
  tmp = folder / "model.safetensors.tmp"
  save_file(tensors, tmp, metadata={"format": "pt"})
  tmp.replace(folder / "model.safetensors")
  (folder / "config.json").write_text(json.dumps(config.to_hf_dict(), indent=2) + "\n")
  return folder


def _get(tree, path):
  for p in path:
    tree = tree[p]
  return tree


def _set(tree, path, value):
  for p in path[:-1]:
    tree = tree.setdefault(p, {})
  tree[path[-1]] = value

"""Hugging Face GPT-2 checkpoints from safetensors: a local folder or the hub.

`load_gpt2("gpt2-medium")` (the default LM of PPLM, Dathathri et al. 2020),
any other GPT-2 size, a hub repo id ("owner/name") or a local folder holding
config.json and model.safetensors (a fine-tuned model saved with
`save_pretrained`). Weights are read with `safetensors` only: no pickle,
never pytorch_model.bin.
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
from jaxnn.pplm._gpt2 import GPT2Config, Params, as_params, param_specs

#: Short model names and the Hugging Face repositories they stand for.
KNOWN_MODELS = {
  "gpt2": "openai-community/gpt2",
  "gpt2-medium": "openai-community/gpt2-medium",
  "gpt2-large": "openai-community/gpt2-large",
  "gpt2-xl": "openai-community/gpt2-xl",
  "distilgpt2": "distilbert/distilgpt2",
}
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# Hugging Face names (per layer "h.{i}.<name>") -> path in jaxnn's params.
_LAYER_KEYS = {
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
_TOP_KEYS = {
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


def _from_hub(repo_id: str, name: str, alternatives) -> Path:
  """Downloads (or finds in the local cache) the first complete set of files; returns its folder."""
  from huggingface_hub import errors, hf_hub_download

  def fetch(local_only: bool) -> Path | None:
    for files in alternatives:
      try:
        paths = [Path(hf_hub_download(repo_id, f, local_files_only=local_only)) for f in files]
      except errors.LocalEntryNotFoundError:
        if local_only:
          continue
        raise
      except errors.EntryNotFoundError:
        continue
      if files[-1].endswith(".index.json"):
        index = json.loads(paths[-1].read_text())
        for shard in sorted(set(index["weight_map"].values())):
          hf_hub_download(repo_id, shard, local_files_only=local_only)
      return paths[0].parent
    return None

  try:
    folder = fetch(local_only=True)
    if folder is not None:
      return folder
    if _hub_offline():
      raise JaxnnError(
        f"{name!r} is not a local folder and the Hugging Face hub cannot be reached (offline, "
        f"and it is not in the local cache): pass a folder with config.json, model.safetensors "
        f"and tokenizer files, or use the offline model (jaxnn.pplm.ensure_offline_lm())"
      )
    folder = fetch(local_only=False)
  except errors.RepositoryNotFoundError:
    raise JaxnnError(
      f"no model {repo_id!r} on the Hugging Face hub; known names: "
      f"{', '.join(KNOWN_MODELS)}, or a local folder"
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


def resolve_folder(name_or_path: str | os.PathLike, alternatives=WEIGHT_FILES) -> Path:
  """The local folder that holds one complete set of `alternatives` for a name or path."""
  path = Path(name_or_path).expanduser()
  name = str(name_or_path)
  if path.is_dir():
    if not any(all((path / f).is_file() for f in files) for files in alternatives):
      wanted = " or ".join(" + ".join(files) for files in alternatives)
      raise JaxnnError(
        f"{path} has no {wanted}; save the model with save_pretrained "
        f"(safetensors) or jaxnn.pplm.save_gpt2"
      )
    return path
  if name in KNOWN_MODELS:
    return _from_hub(KNOWN_MODELS[name], name, alternatives)
  if _REPO_ID.match(name) and not name.startswith("."):
    return _from_hub(name, name, alternatives)
  if path.exists() or os.sep in name or name.startswith((".", "~")):
    raise JaxnnError(
      f"{name} is not a folder; pass a folder with config.json and model.safetensors"
    )
  raise JaxnnError(
    f"unknown model {name!r}; use one of {', '.join(KNOWN_MODELS)}, a hub repo id "
    f"'owner/name', or a local folder"
  )


def load_config(folder: Path) -> GPT2Config:
  """Reads the `GPT2Config` from a Hugging Face model folder's config.json.

  Raises:
    JaxnnError: if the folder has no config.json.
  """
  try:
    return GPT2Config.from_hf_dict(json.loads((folder / "config.json").read_text()))
  except FileNotFoundError:
    raise JaxnnError(f"{folder} has no config.json; save the model with save_pretrained") from None
  except json.JSONDecodeError as e:
    raise JaxnnError(f"{folder / 'config.json'} is not valid JSON ({e})") from None


def _read_tensors(folder: Path) -> dict[str, np.ndarray]:
  from safetensors import SafetensorError
  from safetensors.numpy import load_file

  if (folder / "model.safetensors").is_file():
    files = [folder / "model.safetensors"]
  else:
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    files = [folder / f for f in sorted(set(index["weight_map"].values()))]
  tensors = {}
  for f in files:
    try:
      tensors.update(load_file(f))
    except (SafetensorError, OSError) as e:
      raise JaxnnError(f"cannot read {f} as safetensors ({e}); re-download or re-save it") from None
  return {k.removeprefix("transformer."): v for k, v in tensors.items()}


def load_gpt2(name_or_path: str | os.PathLike, dtype=jnp.float32) -> tuple[Params, GPT2Config]:
  """Loads a Hugging Face GPT-2 checkpoint as (params, config).

  Args:
    name_or_path: gpt2, gpt2-medium, gpt2-large, gpt2-xl, distilgpt2, a hub
      repo id, or a local folder with config.json and model.safetensors.
    dtype: the parameters' dtype (float64 needs `jax_enable_x64`).

  Raises:
    JaxnnError: unknown name, offline without a local copy, missing file,
      unsupported config, or a tensor missing or of the wrong shape.
  """
  dtype = jnp.dtype(dtype)
  if dtype == jnp.float64 and not jax.config.jax_enable_x64:
    raise JaxnnError("float64 parameters need jax.config.update('jax_enable_x64', True) first")
  folder = resolve_folder(name_or_path)
  config = load_config(folder)
  tensors = _read_tensors(folder)
  specs = param_specs(config)

  def take(key, path, expected):
    if key not in tensors:
      raise JaxnnError(f"{folder} lacks the tensor {key!r}; is it a GPT-2 checkpoint?")
    value = tensors[key]
    if value.shape != tuple(expected):
      raise JaxnnError(
        f"{folder}: tensor {key!r} has shape {value.shape}, but config.json implies "
        f"{tuple(expected)} ({'.'.join(path)}); the weights do not match the config"
      )
    return value.astype(dtype)

  params: Params = {}
  for key, path in _TOP_KEYS.items():
    spec = _get(specs, path)
    _set(params, path, take(key, path, spec.shape))
  params["h"] = [{} for _ in range(config.n_layer)]
  for i, layer_specs in enumerate(specs["h"]):
    for name, path in _LAYER_KEYS.items():
      _set(
        params["h"][i],
        path,
        take(f"h.{i}.{name}", ("h", str(i), *path), _get(layer_specs, path).shape),
      )
  if "lm_head.weight" in tensors and not np.array_equal(
    tensors["lm_head.weight"], tensors["wte.weight"]
  ):
    raise JaxnnError(f"{folder}: lm_head.weight differs from wte.weight; jaxnn's GPT-2 ties them")
  return jax.tree.map(lambda a: jnp.asarray(a, dtype), params), config


def save_gpt2(params: Params, config: GPT2Config, folder: str | os.PathLike) -> Path:
  """Writes config.json and model.safetensors in Hugging Face's GPT-2 layout."""
  from safetensors.numpy import save_file

  params = jax.tree.map(np.asarray, as_params(params))
  folder = Path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  tensors = {key: _get(params, path) for key, path in _TOP_KEYS.items()}
  for i, layer in enumerate(params["h"]):
    tensors.update(
      {
        f"h.{i}.{name}": np.ascontiguousarray(_get(layer, path))
        for name, path in _LAYER_KEYS.items()
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

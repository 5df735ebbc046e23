"""Fixtures for the language-model tests: tiny random models of every family (transformers)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from families import save_family  # noqa: E402


@pytest.fixture(scope="session")
def family_dir(tmp_path_factory):
  """family_dir(name) -> a folder with the family's tiny model (config.json + model.safetensors)."""
  made = {}

  def make(name):
    if name not in made:
      made[name] = save_family(name, tmp_path_factory.mktemp(name))
    return made[name]

  return make


@pytest.fixture(scope="session")
def tiny_gpt2(family_dir):
  """(params, GPT2Config) of the tiny GPT-2, float32."""
  from jaxnn.lm import load_gpt2

  return load_gpt2(family_dir("gpt2"))

"""The examples in the docstrings of every public name run as written.

Each public module's `__all__` (the names the API reference renders) is searched for
`>>>` examples; every module and object with examples is one test. An example runs with
its public module's names and the usual `jax`, `jnp` (jax.numpy), `np` (numpy) and `nnx`
(flax.nnx) available, as in the JAX and Flax documentation; importing them is fine too.
"""

import doctest
import importlib
import inspect
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs" / "_ext"))
from jaxnn_api import public_modules  # noqa: E402 - the site's own list of public modules


def _globs(module) -> dict:
  import jax
  import jax.numpy as jnp
  import numpy as np
  from flax import nnx

  names = {name: getattr(module, name) for name in getattr(module, "__all__", [])}
  return {**names, "jax": jax, "jnp": jnp, "np": np, "nnx": nnx}


def _docstring_examples():
  finder = doctest.DocTestFinder(recurse=True, exclude_empty=True)
  seen = set()
  for module_name in public_modules():
    module = importlib.import_module(module_name)
    objects = [(module_name, module)] + [
      (f"{module_name}.{name}", getattr(module, name)) for name in getattr(module, "__all__", [])
    ]
    for qualname, obj in objects:
      if not (inspect.ismodule(obj) or inspect.isclass(obj) or inspect.isfunction(obj)):
        continue
      for test in finder.find(obj, qualname, module=False, globs=_globs(module)):
        key = test.docstring  # a docstring reached twice (module and name) runs once
        if test.examples and key not in seen:
          seen.add(key)
          yield pytest.param(test, id=test.name)


@pytest.mark.parametrize("test", list(_docstring_examples()))
def test_docstring_example(test):
  report: list[str] = []
  runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
  runner.run(test, out=report.append)
  assert runner.failures == 0, "".join(report)


def test_examples_exist():
  """The reference keeps a handful of runnable examples, at least one per method."""
  names = {p.values[0].name.split(".")[1] for p in _docstring_examples()}
  assert {"coordconv", "subspace", "lca", "pplm", "models"} <= names

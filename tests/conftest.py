"""Test configuration: 8 CPU devices, so the data-parallel path runs every time.

On 2 CPU cores, back-to-back data-parallel steps over 8 devices can deadlock
in XLA's CPU all-reduce; tests that train over several devices use 2 of them,
or block on every step when they use all 8.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_numpy_rank_promotion", "raise")


import pathlib  # noqa: E402

import pytest  # noqa: E402

COLABS = pathlib.Path(__file__).resolve().parents[1] / "colabs"


@pytest.fixture
def run_notebook(monkeypatch, tmp_path):
  """Executes colabs/<name> with the given environment, in tmp_path.

  Returns (text of all outputs, number of PNG images shown). The notebooks read
  their small test settings from environment variables, so they run unchanged
  on Colab with their full defaults.
  """

  def run(name: str, env: dict[str, str], backend: str = "Agg"):
    import nbclient
    import nbformat

    for key, value in {**env, "MPLBACKEND": backend, "JAX_PLATFORMS": "cpu"}.items():
      monkeypatch.setenv(key, value)
    nb = nbformat.read(COLABS / name, as_version=4)
    nbclient.NotebookClient(
      nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outputs)
    images = sum("image/png" in o.get("data", {}) for o in outputs)
    return text, images

  return run

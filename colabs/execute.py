"""Executes the notebooks and saves them WITH their outputs (plots visible when browsing).

    python colabs/execute.py                 # every notebook, the settings below
    python colabs/execute.py lca.ipynb       # some of them

Each notebook runs in a temporary folder (its run directories are not kept),
on the CPU, with the settings in `SETTINGS` (the notebooks read them from
environment variables; on Colab, with none set, they use their full defaults).
The saved outputs are kept compact: progress bars (stderr) are dropped, long
text outputs are cut to their last lines, and execution timestamps are
removed. The settings each notebook ran with are recorded in its metadata
(`jaxnn.executed_with`) and printed by its parameters cell.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
# Small settings that run in minutes on a laptop CPU; the method notebooks' full
# defaults (and `jaxnn reproduce`'s default size) are what to run for the papers' results.
SETTINGS = {
  "index.ipynb": {"JAXNN_REPRODUCE_PRESET": "quick"},
  "coordconv.ipynb": {
    "JAXNN_COORDCONV_EPOCHS": "2",
    "JAXNN_COORDCONV_BASELINE_EPOCHS": "2",
    "JAXNN_COORDCONV_TRAIN_EXAMPLES": "512",
  },
  "intrinsic_dimension.ipynb": {
    "JAXNN_ID_DATASET": "digits",
    "JAXNN_ID_WIDTHS": "32",
    "JAXNN_ID_DIMS": "8,16,32,64,128",
    "JAXNN_ID_SEEDS": "2",
    "JAXNN_ID_STEPS": "500",
    "JAXNN_ID_TOY_MAX_D": "12",
    "JAXNN_ID_TOY_PROJECTIONS": "fastfood",
  },
  "lca.ipynb": {"JAXNN_LCA_DATASET": "mnist5k", "JAXNN_LCA_EPOCHS": "3"},
  "pplm.ipynb": {"JAXNN_PPLM_LENGTH": "20", "JAXNN_PPLM_SAMPLES": "2"},
}
MAX_TEXT_LINES = 40


def compact(nb) -> None:
  """Drops stderr streams and timing metadata, and cuts long text outputs, in place."""
  for cell in nb.cells:
    if cell.cell_type != "code":
      continue
    cell.metadata.pop("execution", None)
    kept = []
    for output in cell.get("outputs", []):
      if output.get("output_type") == "stream" and output.get("name") == "stderr":
        continue
      if output.get("output_type") == "stream":
        lines = output["text"].splitlines(keepends=True)
        if len(lines) > MAX_TEXT_LINES:
          cut = len(lines) - MAX_TEXT_LINES
          output["text"] = f"[... {cut} lines cut ...]\n" + "".join(lines[-MAX_TEXT_LINES:])
      kept.append(output)
    cell.outputs = kept


def execute(name: str, timeout: int) -> None:
  """Runs colabs/<name> with its settings and saves it in place with its outputs."""
  import nbclient
  import nbformat

  settings = SETTINGS[name]
  env = {
    **settings,
    "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    "JAX_PLATFORMS": "cpu",
  }
  saved = {k: os.environ.get(k) for k in env}
  os.environ.update(env)
  try:
    nb = nbformat.read(HERE / name, as_version=4)
    with tempfile.TemporaryDirectory() as workdir:
      nbclient.NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": workdir}}
      ).execute()
  finally:
    for k, v in saved.items():
      if v is None:
        os.environ.pop(k, None)
      else:
        os.environ[k] = v
  compact(nb)
  nb.metadata["jaxnn"] = {"executed_with": settings}
  nbformat.write(nb, HERE / name)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("names", nargs="*", help=f"notebooks (default: {', '.join(SETTINGS)})")
  parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
  args = parser.parse_args(argv)
  for name in args.names or SETTINGS:
    if name not in SETTINGS:
      parser.error(f"unknown notebook {name!r}; choose from {', '.join(SETTINGS)}")
    print(f"executing {name}", file=sys.stderr, flush=True)
    execute(name, args.timeout)
  return 0


if __name__ == "__main__":
  sys.exit(main())

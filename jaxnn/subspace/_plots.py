"""The d_int90 plot: validation accuracy vs subspace dimension d (Li et al. 2018, Fig. 3)."""

from __future__ import annotations

import pathlib

import numpy as np


def plot_sweep(results: dict, path: str | pathlib.Path | None = None, ax=None):
  """Plots every config's accuracy, the mean per d, the baseline, the 90% line and d_int90.

  Args:
    results: the content of a sweep's `results.json`.
    path: where to save a PNG (None: do not save).
    ax: a matplotlib Axes to draw on (None: a new figure).

  Returns:
    The matplotlib Figure.
  """
  from matplotlib.figure import Figure

  fig = ax.figure if ax is not None else Figure(figsize=(6.4, 4.2))
  ax = ax or fig.add_subplot()
  configs = results["configs"]
  d = np.array([c["d"] for c in configs])
  acc = np.array([c["validation_accuracy"] for c in configs])
  ax.scatter(d, acc, s=14, alpha=0.5, color="tab:blue", label="one seed")
  dims = np.unique(d)
  ax.plot(dims, [acc[d == k].mean() for k in dims], "o-", color="tab:blue", label="mean over seeds")
  ax.axhline(
    results["baseline"],
    color="black",
    lw=1,
    label=f"baseline ({results['baseline_kind']}) {results['baseline']:.3f}",
  )
  ax.axhline(
    results["threshold"],
    color="tab:red",
    ls="--",
    lw=1,
    label=f"{results['fraction']:.0%} of baseline",
  )
  if results["d_int90"] is not None:
    ax.axvline(
      results["d_int90"], color="tab:green", ls=":", lw=1.5, label=f"d_int90 = {results['d_int90']}"
    )
  ax.set_xscale("log")
  ax.set_xlabel("subspace dimension d")
  ax.set_ylabel("validation accuracy")
  settings = results.get("settings", {})
  widths = (
    "-".join(map(str, settings["widths"]))
    if results["model"] == "fc" and "widths" in (settings)
    else ""
  )
  shuffled = ", shuffled pixels" if settings.get("shuffled_pixels") else ""
  ax.set_title(
    f"{results['dataset']}{shuffled} {results['model']} {widths} "
    f"({results['projection']}, D = {results['D']:,}, {results['steps']} steps)",
    fontsize=9,
  )
  ax.legend(fontsize=8, loc="lower right")
  fig.tight_layout()
  if path is not None:
    fig.savefig(path, dpi=120)
  return fig

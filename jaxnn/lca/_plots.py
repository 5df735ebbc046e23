"""The paper's views of LCA as PNG files (matplotlib, Agg backend).

Each function takes the arrays of `records_to_numpy` and writes one figure;
`plot_all` writes them all into a directory and returns the paths.
"""

from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _set(records, name):
  return {k.split("/", 1)[1]: v for k, v in records.items() if k.startswith(f"{name}/")}


def _save(fig, path) -> pathlib.Path:
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return pathlib.Path(path)


def plot_loss_vs_lca(records, name, path):
  """Actual loss vs the loss rebuilt from the cumulative LCA (paper Fig. 2a)."""
  rec = _set(records, name)
  actual = rec["loss_T1"]
  rebuilt = actual[0] + np.concatenate([[0.0], np.cumsum(rec["lca_T"] + rec["state_change_T"])])
  first = actual[0] + np.concatenate(
    [[0.0], np.cumsum(rec["first_order_T"] + rec["state_change_T"])]
  )
  change = actual[-1] - actual[0]
  rel = abs(change - (rebuilt[-1] - actual[0])) / abs(change) if change else float("nan")
  fig, ax = plt.subplots(figsize=(6, 4))
  ax.plot(actual, label="actual loss", lw=2)
  ax.plot(rebuilt, "--", label="L0 + cumulative LCA")
  ax.plot(first, ":", label="L0 + cumulative first-order LCA")
  ax.set(xlabel="iteration", ylabel=f"{name} loss", title=f"{name}: relative error {rel:.2e}")
  ax.legend()
  return _save(fig, path)


def plot_layer_totals(records, name, path):
  """Total LCA of each layer (negative helps, positive hurts; paper Fig. 4)."""
  rec = _set(records, name)
  layers = [str(l) for l in records["layers"]]
  totals = rec["layer_TxL"].sum(0)
  fig, ax = plt.subplots(figsize=(max(4, 0.7 * len(layers) + 2), 4))
  ax.bar(range(len(layers)), totals, color=["tab:red" if v > 0 else "tab:green" for v in totals])
  ax.axhline(0, color="k", lw=0.8)
  ax.set_xticks(range(len(layers)), layers, rotation=45, ha="right")
  ax.set(ylabel="total LCA (loss units)", title=f"{name}: LCA per layer")
  return _save(fig, path)


def plot_helped_histograms(records, name, path):
  """% of parameters helping per iteration; % of iterations each parameter helped (Fig. 3)."""
  rec = _set(records, name)
  P = len(rec["total_P"])
  moved = rec["moved_T"] > 0
  moving_params = rec["moved_count_P"] > 0
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  axes[0].hist(100 * rec["helped_T"] / P, bins=40, alpha=0.7, label="of all parameters")
  axes[0].hist(
    100 * rec["helped_T"][moved] / rec["moved_T"][moved],
    bins=40,
    alpha=0.7,
    label="of parameters that moved",
  )
  axes[0].set(
    xlabel="% of parameters helped", ylabel="iterations", title="parameters helped per iteration"
  )
  axes[0].legend()
  axes[1].hist(
    100 * rec["helped_count_P"][moving_params] / rec["moved_count_P"][moving_params], bins=40
  )
  axes[1].set(
    xlabel="% of its moving iterations a parameter helped",
    ylabel="parameters",
    title=f"iterations helped per parameter ({int((~moving_params).sum())} never moved)",
  )
  return _save(fig, path)


def plot_cumulative_layers(records, name, path):
  """Cumulative LCA of each layer over training (paper Fig. 5)."""
  rec = _set(records, name)
  fig, ax = plt.subplots(figsize=(6, 4))
  for layer, series in zip(records["layers"], rec["layer_TxL"].T):
    ax.plot(np.cumsum(series), label=str(layer))
  ax.axhline(0, color="k", lw=0.8)
  ax.set(xlabel="iteration", ylabel="cumulative LCA", title=f"{name}: cumulative LCA per layer")
  ax.legend()
  return _save(fig, path)


def plot_neuron_heatmap(records, name, path):
  """Neuron x iteration LCA, green helps and red hurts (paper Fig. 6)."""
  rec = _set(records, name)
  values = rec["neuron_TxN"].T
  limit = float(np.percentile(np.abs(values), 99)) or 1.0
  fig, ax = plt.subplots(figsize=(8, 5))
  im = ax.imshow(
    values, aspect="auto", cmap="RdYlGn_r", vmin=-limit, vmax=limit, interpolation="nearest"
  )
  bounds = np.flatnonzero(np.diff(records["neuron_layer_N"])) + 0.5
  for b in bounds:
    ax.axhline(b, color="k", lw=0.6)
  ax.set(
    xlabel="iteration",
    ylabel="neuron (grouped by layer)",
    title=f"{name}: LCA per neuron per iteration",
  )
  fig.colorbar(im, ax=ax, label="LCA (green helps, red hurts)")
  return _save(fig, path)


def plot_trajectories(records, name, path, num=4, seed=0):
  """Best and random tracked parameters: cumulative LCA and value over training (Fig. 7)."""
  rec = _set(records, name)
  tracked = rec["tracked_TxK"]
  totals = tracked.sum(0)
  best = np.argsort(totals)[:num]
  rest = np.setdiff1d(np.arange(tracked.shape[1]), best)
  random = np.random.default_rng(seed).choice(rest, min(num, len(rest)), replace=False)
  fig, axes = plt.subplots(2, 2, figsize=(10, 6), sharex=True)
  for col, (title, idx) in enumerate((("best tracked", best), ("random tracked", random))):
    for k in idx:
      label = f"param {int(records['tracked_index_K'][k])}"
      axes[0, col].plot(np.cumsum(tracked[:, k]), label=label)
      axes[1, col].plot(records["tracked_value_T1xK"][:, k], label=label)
    axes[0, col].set(title=f"{title} parameters", ylabel="cumulative LCA")
    axes[1, col].set(xlabel="iteration", ylabel="value")
    axes[0, col].legend(fontsize=7)
  return _save(fig, path)


#: The plots `plot_all` writes, by name: each a function `(records, set_name, path)`.
VIEWS = {
  "loss_vs_lca": plot_loss_vs_lca,
  "layer_totals": plot_layer_totals,
  "helped_histograms": plot_helped_histograms,
  "cumulative_layers": plot_cumulative_layers,
  "neuron_heatmap": plot_neuron_heatmap,
  "trajectories": plot_trajectories,
}


def plot_all(records, set_names, directory) -> list[pathlib.Path]:
  """Writes every view for every evaluation set as `<dir>/<set>_<view>.png`."""
  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  return [
    fn(records, name, directory / f"{name}_{view}.png")
    for name in set_names
    for view, fn in VIEWS.items()
  ]

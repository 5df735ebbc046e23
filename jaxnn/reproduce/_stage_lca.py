"""Stage 3: training is noisy, by loss change allocation (Lan et al. 2019).

`jaxnn.lca.run_lca` on MNIST-FC (784-100-50-10, SGD lr 0.01 momentum 0.9):
the fraction of parameters that help per iteration, the LCA sum against the
loss change, per-layer totals and the synchronization of layers against chance.
"""

from __future__ import annotations

import pathlib

from jaxnn.reproduce._config import Preset
from jaxnn.reproduce._plotting import figure, save
from jaxnn.reproduce._verdict import check, num, pct, verdict

PAPER = {
  "fraction_helped": "50.3% - 51.6%",
  "lca_sum": "equals the loss change (per-iteration error <= 1e-3)",
  "layers": "some layers hurt overall (positive total), often the last",
  "synchronization": "layers' learning peaks coincide more often than chance",
}


def run(p: Preset, out: pathlib.Path, progress: bool, report) -> dict:
  """Runs (or resumes) the LCA training in `out/run/`."""
  import numpy as np

  from jaxnn.lca import LCAConfig, run_lca

  report(f"lca: MNIST-FC on {p.lca_dataset}, {p.lca_epochs} epochs, batch {p.lca_batch_size}")
  summary = run_lca(
    LCAConfig(
      dataset=p.lca_dataset,
      model="fc",
      widths=(100, 50),
      epochs=p.lca_epochs,
      batch_size=p.lca_batch_size,
      max_train=p.lca_max_train,
      validation_lca=False,
      num_shuffles=p.lca_shuffles,
      num_devices=1,
      plots=False,
      progress=progress,
    ),
    out / "run",
  )
  train = summary["train"]
  sync = train["synchronization"]["all_layers"]
  records = summary["records"]
  lca_T = np.asarray(records["train/lca_T"], np.float64)
  loss_T1 = np.asarray(records["train/loss_T1"], np.float64)
  result = {
    "dataset": p.lca_dataset,
    "params": summary["params"],
    "iterations": summary["steps"],
    "epochs": p.lca_epochs,
    "batch_size": p.lca_batch_size,
    "train_accuracy": summary["train_accuracy"],
    "test_accuracy": summary["test_accuracy"],
    "fraction_helped_mean": train["fraction_helped_mean"],
    "fraction_helped_min": train["fraction_helped_min"],
    "fraction_helped_max": train["fraction_helped_max"],
    "fraction_helped_of_moved_mean": train["fraction_helped_of_moved_mean"],
    "never_moved_params": train["never_moved_params"],
    "loss_change": train["loss_change"],
    "lca_sum": train["lca_sum"],
    "relative_error": train["relative_error"],
    "max_abs_iteration_error": train["max_abs_iteration_error"],
    "first_order_relative_error": train["first_order"]["relative_error"],
    "layer_totals": train["layer_totals"],
    "synchronization": {
      "observed": sync["observed"],
      "shuffled_mean": sync["shuffled_mean"],
      "shuffled_p_value": sync["shuffled_p_value"],
      "ratio_to_chance": sync["ratio_to_chance"],
      "shuffles": p.lca_shuffles,
    },
  }
  result.update(_findings(result))
  result["plots"] = [_plot_loss(lca_T, loss_T1, out), _plot_layers(result["layer_totals"], out)]
  return result


def _findings(r: dict) -> dict:
  positive = [name for name, total in r["layer_totals"].items() if total > 0]
  sync = r["synchronization"]
  checks = [
    check(
      "barely over half of the parameters help per iteration (paper 50.3-51.6%)",
      "mean fraction of all parameters with LCA < 0 in [45%, 60%]",
      r["fraction_helped_mean"],
      r["fraction_helped_mean"] is not None and 0.45 <= r["fraction_helped_mean"] <= 0.60,
    ),
    check(
      "the LCA sums to the loss change",
      "abs(sum LCA - loss change) <= 1% of the change",
      r["relative_error"],
      r["relative_error"] is not None and r["relative_error"] <= 0.01,
    ),
    check(
      "some layer goes backwards (positive total LCA)",
      "at least one layer total > 0",
      positive,
      bool(positive),
    ),
    check(
      "layers learn in synchrony, more often than chance",
      "iterations where every layer peaks >= 2x the shuffled mean, shuffled p < 0.01",
      sync["ratio_to_chance"],
      sync["ratio_to_chance"] is not None
      and sync["ratio_to_chance"] >= 2
      and sync["shuffled_p_value"] < 0.01,
    ),
  ]
  return {
    "checks": checks,
    "verdict": verdict(checks),
    "paper": PAPER,
    "headline": {
      "paper": "50.3-51.6% of parameters help; LCA sum = loss change; some layers hurt; "
      "synchronized peaks",
      "this_run": f"{pct(r['fraction_helped_mean'])} help "
      f"({pct(r['fraction_helped_of_moved_mean'])} of those that moved); "
      f"sum {num(r['lca_sum'], '.4f')} vs change {num(r['loss_change'], '.4f')}; "
      f"{len(positive)} layer(s) hurt; peaks together "
      f"{num(r['synchronization']['ratio_to_chance'], '.1f')} times chance",
    },
  }


def _plot_loss(lca_T, loss_T1, out: pathlib.Path) -> str:
  import numpy as np

  fig, ax = figure()
  t = np.arange(len(loss_T1))
  marker = "o" if len(t) <= 30 else None
  ax.plot(t, loss_T1, marker=marker, markersize=3, label="actual training loss")
  ax.plot(
    t,
    loss_T1[0] + np.concatenate([[0.0], np.cumsum(lca_T)]),
    linestyle="--",
    marker=marker,
    markersize=3,
    label="initial loss + cumulative LCA",
  )
  ax.set_xlabel("iteration")
  ax.set_ylabel("training-set loss")
  ax.set_title("The LCA sum tracks the loss", fontsize=9)
  ax.legend(fontsize=8, frameon=False)
  return save(fig, out / "lca_loss.png")


def _plot_layers(layer_totals: dict, out: pathlib.Path) -> str:
  fig, ax = figure()
  names = list(layer_totals)
  values = [layer_totals[n] for n in names]
  ax.bar(names, values, color=["tab:red" if v > 0 else "tab:green" for v in values])
  ax.axhline(0, color="black", linewidth=0.8)
  ax.set_ylabel("total LCA (negative = helped)")
  ax.set_title("Per-layer LCA totals", fontsize=9)
  ax.tick_params(axis="x", labelsize=8, rotation=20)
  return save(fig, out / "lca_layers.png")


def render(r: dict) -> str:
  """The stage's Markdown section body."""
  sync = r["synchronization"]
  totals = ", ".join(f"{k} {num(v, '+.4f')}" for k, v in r["layer_totals"].items())
  return "\n".join(
    [
      f"MNIST-FC (784-100-50-10, {r['params']:,} parameters) on {r['dataset']}, SGD lr 0.01 "
      f"momentum 0.9, batch {r['batch_size']}, {r['epochs']} epochs ({r['iterations']} "
      "iterations); LCA by adaptive Simpson on the whole training set.",
      "",
      "| measured (training set) | value |",
      "|---|---|",
      f"| accuracy train / test | {pct(r['train_accuracy'])} / {pct(r['test_accuracy'])} |",
      f"| fraction helped per iteration, of all parameters (mean [min, max]) | "
      f"{pct(r['fraction_helped_mean'])} [{pct(r['fraction_helped_min'])}, "
      f"{pct(r['fraction_helped_max'])}] |",
      f"| fraction helped, of parameters that moved | {pct(r['fraction_helped_of_moved_mean'])} |",
      f"| parameters that never moved (LCA exactly 0, counted as not helping) | "
      f"{r['never_moved_params']:,} |",
      f"| loss change vs sum of LCA | {num(r['loss_change'], '.5f')} vs "
      f"{num(r['lca_sum'], '.5f')} (relative error {num(r['relative_error'], '.1e')}; "
      f"first order {num(r['first_order_relative_error'], '.1e')}) |",
      f"| largest per-iteration error | {num(r['max_abs_iteration_error'], '.1e')} |",
      f"| per-layer totals | {totals} |",
      f"| iterations where all layers peak together vs shuffled | {sync['observed']} vs "
      f"{num(sync['shuffled_mean'], '.1f')} ({num(sync['ratio_to_chance'], '.1f')}x; p = "
      f"{num(sync['shuffled_p_value'], '.3f')} over {sync['shuffles']} shuffles) |",
      "",
    ]
  )

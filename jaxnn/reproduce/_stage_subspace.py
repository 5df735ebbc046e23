"""Stage 2: intrinsic dimension is far below the parameter count (Li et al. 2018).

d_int90 sweeps (`jaxnn.subspace.run_sweep`) of FC networks of several widths
and depths and of LeNet, each against its direct baseline (the same network
trained normally: the "individual" baseline).
"""

from __future__ import annotations

import pathlib

from jaxnn.reproduce._config import Preset
from jaxnn.reproduce._plotting import figure, legend, line, save
from jaxnn.reproduce._verdict import check, fmt, verdict

PAPER = {
  "mnist_fc_200x2": {"D": 199_210, "d_int90": 750},
  "mnist_lenet": {"D": 44_426, "d_int90": 290},
  "fc_family": "d_int90 about 400-1,000 while D grows 24x (39,760 .. 959,610)",
}


def _networks(p: Preset) -> list[tuple[str, dict]]:
  nets = [
    (f"fc_{'x'.join(map(str, w))}", dict(model="fc", widths=w, dims=p.id_dims))
    for w in p.id_fc_widths
  ]
  if p.id_lenet:
    nets.append(("lenet", dict(model="lenet", dims=p.id_lenet_dims)))
  return nets


def run(p: Preset, out: pathlib.Path, progress: bool, report) -> dict:
  """Runs (or resumes) one sweep per network in `out/<network>/`."""
  from jaxnn.subspace import SweepConfig, run_sweep

  networks = {}
  nets = _networks(p)
  for i, (name, fields) in enumerate(nets):
    report(f"subspace {i + 1}/{len(nets)}: {name} on {p.id_dataset}")
    results = run_sweep(
      SweepConfig(
        dataset=p.id_dataset,
        projection=p.id_projection,
        seeds=p.id_seeds,
        steps=p.id_steps,
        learning_rate=p.id_lr,
        baseline_learning_rate=1e-3,
        baseline="individual",
        max_train=p.id_max_train,
        num_devices=1,
        progress=progress,
        **fields,
      ),
      out / name,
    )
    networks[name] = {
      "model": fields["model"],
      "widths": list(fields.get("widths", ())),
      "D": results["D"],
      "steps": results["steps"],
      "baseline": results["baseline"],
      "threshold": results["threshold"],
      "d_int90": results["d_int90"],
      "accuracy_by_d": results["mean_validation_accuracy_by_d"],
    }
  result = {"dataset": p.id_dataset, "projection": p.id_projection, "networks": networks}
  result.update(_findings(networks, p))
  result["plots"] = [_plot(networks, out)]
  return result


def _findings(networks: dict, p: Preset) -> dict:
  fc = {k: n for k, n in networks.items() if n["model"] == "fc"}
  found = {k: n["d_int90"] for k, n in networks.items()}
  fc_found = [n["d_int90"] for n in fc.values() if n["d_int90"] is not None]
  fc_D = [n["D"] for n in fc.values()]
  small = [d is not None and d <= 0.1 * networks[k]["D"] for k, d in found.items()]
  spread = max(fc_found) / min(fc_found) if len(fc_found) == len(fc) and fc_found else None
  checks = [
    check(
      "d_int90 exists and is far below D for every network",
      "d_int90 found on the grid and <= 10% of D",
      {k: d for k, d in found.items()},
      all(small),
    ),
    check(
      "d_int90 stays roughly constant as the FC network grows (paper: 400-1,000 while D grows 24x)",
      "max / min FC d_int90 <= 4 (the grid's steps are 2x) while D grows >= 2x",
      spread,
      spread is not None and spread <= 4 and max(fc_D) >= 2 * min(fc_D),
    ),
  ]
  lenet = networks.get("lenet")
  if lenet is not None:
    fc_median = sorted(fc_found)[len(fc_found) // 2] if fc_found else None
    checks.append(
      check(
        "LeNet's d_int90 is below the FC networks' (paper: 290 vs 750)",
        "LeNet d_int90 <= the median FC d_int90",
        lenet["d_int90"],
        lenet["d_int90"] is not None and fc_median is not None and lenet["d_int90"] <= fc_median,
      )
    )
  return {
    "checks": checks,
    "verdict": verdict(checks),
    "paper": PAPER,
    "headline": {
      "paper": "MNIST FC 200-200: 750 of 199,210; LeNet: 290 of 44,426; FC family 400-1,000",
      "this_run": "; ".join(
        f"{k}: {fmt(n['d_int90']) if n['d_int90'] is not None else 'not found'} of {n['D']:,}"
        for k, n in networks.items()
      )
      + f" ({p.id_dataset}, {p.id_steps:,} steps)",
    },
  }


def _plot(networks: dict, out: pathlib.Path) -> str:
  fig, ax = figure()
  for name, n in networks.items():
    dims = sorted(int(d) for d in n["accuracy_by_d"])
    line(
      ax, dims, [n["accuracy_by_d"][str(d)] / n["baseline"] for d in dims], f"{name} (D={n['D']:,})"
    )
  ax.axhline(0.9, color="tab:red", linestyle=":", linewidth=1, label="90% of baseline")
  ax.set_xscale("log")
  dims = sorted({int(d) for n in networks.values() for d in n["accuracy_by_d"]})
  ax.set_xticks(dims, [str(d) for d in dims], fontsize=8)
  ax.minorticks_off()
  ax.set_xlabel("subspace dimension d")
  ax.set_ylabel("validation accuracy / direct baseline")
  ax.set_title("Accuracy vs subspace dimension", fontsize=9)
  legend(ax, len(networks) + 1)
  return save(fig, out / "subspace_accuracy_vs_d.png")


def render(result: dict) -> str:
  """The stage's Markdown section body."""
  rows = [
    "| network | D | direct baseline (val.) | 90% threshold | d_int90 | d_int90 / D | "
    "accuracy at each d |",
    "|---|---|---|---|---|---|---|",
  ]
  for name, n in result["networks"].items():
    by_d = ", ".join(
      f"{d}: {a:.3f}" for d, a in sorted(n["accuracy_by_d"].items(), key=lambda kv: int(kv[0]))
    )
    ratio = f"{100 * n['d_int90'] / n['D']:.2f}%" if n["d_int90"] else "-"
    rows.append(
      f"| {name} | {n['D']:,} | {n['baseline']:.3f} | {n['threshold']:.3f} | "
      f"{n['d_int90'] if n['d_int90'] is not None else 'not found'} | {ratio} | "
      f"{by_d} |"
    )
  return (
    f"Dataset {result['dataset']}, {result['projection']} projection, the direct baseline "
    "of each network trained normally with the same steps (Adam lr 1e-3); theta_d trained "
    "with Adam lr as in the settings below. d_int90 = the smallest tried d whose mean "
    "validation accuracy reaches 90% of the baseline (so it is an upper bound at the grid's "
    "resolution). The paper's MNIST numbers use the global baseline 1.0 on full MNIST.\n\n"
    + "\n".join(rows)
    + "\n"
  )

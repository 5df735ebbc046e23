"""Wall time to 100% test accuracy: CoordConv vs the deconv baselines (Liu et al. 2018, Fig. 5).

Runs `jaxnn.coordconv.run_task` on coordinate classification for the CoordConv
model and each deconv baseline (mul, kernel_size), evaluating the test split
every epoch and stopping at 100% test accuracy or after `--epochs`. Reports,
per model, the wall time and epoch at which test accuracy first reached 100%
(or "not reached" with the best test accuracy seen). Same process, same
threads, one after the other.

  taskset -c 0,1 python benchmarks/coordconv_time_to_perfect.py --split quadrant --epochs 10
"""

from __future__ import annotations

import argparse
import json
import pathlib
import tempfile

from jaxnn.coordconv import TaskConfig, run_task


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--split", default="quadrant", choices=("uniform", "quadrant"))
  parser.add_argument("--epochs", type=int, default=10, help="budget per model")
  parser.add_argument("--deconv", nargs="*", default=["1,3", "2,4"],
                      help="deconv baselines as mul,kernel_size")
  parser.add_argument("--coordconv-lr", type=float, default=1e-2)
  parser.add_argument("--deconv-lr", type=float, default=1e-3)
  parser.add_argument("--out", default=None, help="where the runs go (default: a temp dir)")
  args = parser.parse_args()
  root = pathlib.Path(args.out or tempfile.mkdtemp(prefix="coordconv_ttp_"))
  runs = [("coordconv", TaskConfig(model="coordconv", learning_rate=args.coordconv_lr))]
  for spec in args.deconv:
    mul, k = (int(v) for v in spec.split(","))
    runs.append((f"deconv m={mul} k={k}", TaskConfig(model="conv", mul=mul, kernel_size=k,
                                                       learning_rate=args.deconv_lr)))
  print("| model | params | epochs to 100% test | seconds to 100% test | best test acc | epochs run |")
  print("|---|---|---|---|---|---|")
  rows = []
  for name, base in runs:
    config = TaskConfig(**{**base.__dict__, "task": "classification", "split": args.split,
                           "epochs": args.epochs, "stop_at_perfect": True, "num_devices": 1,
                           "progress": False})
    s = run_task(config, root / name.replace(" ", "_").replace(",", ""), plots=False)
    first = s["first_perfect_test"]
    best = max(r["test_accuracy"] for r in s["history"])
    row = dict(model=name, params=s["params"], epochs_to_perfect=first and first["epoch"],
               seconds_to_perfect=first and round(first["elapsed_s"], 1), best_test_accuracy=best,
               epochs_run=s["epochs_run"])
    rows.append(row)
    reached = (f"{first['epoch']:g}", f"{first['elapsed_s']:.0f}") if first else ("not reached",) * 2
    print(f"| {name} | {s['params']:,} | {reached[0]} | {reached[1]} | {best:.4f} | {s['epochs_run']:g} |")
  (root / "time_to_perfect.json").write_text(json.dumps(rows, indent=2))
  print(f"wrote {root / 'time_to_perfect.json'}")


if __name__ == "__main__":
  main()

"""`jaxnn subspace sweep`: d_int90 sweeps (Li et al. 2018)."""

from __future__ import annotations

import argparse
import json

from jaxnn import _cli_utils as cu


def _dims(text: str):
  """ "auto" or a comma-separated list of positive integers."""
  return None if text.strip().lower() == "auto" else cu.int_list(text)


def _baseline(text: str):
  """ "individual" or a global accuracy in (0, 1]."""
  if text == "individual":
    return text
  value = cu.positive_float(text)
  if value > 1:
    raise argparse.ArgumentTypeError(f"a global baseline is an accuracy in (0, 1], got {value}")
  return value


def register(subparsers) -> None:
  p = subparsers.add_parser("subspace", help="random-subspace training and intrinsic dimension")
  commands = p.add_subparsers(dest="subspace_command", metavar="COMMAND", required=True)
  s = commands.add_parser(
    "sweep",
    help="train (d, seed) configs in random subspaces and measure d_int90",
    description="Trains every (d, seed) config (vmapped programs, configs split across the "
    "local devices), writes OUT/results.json, OUT/results.csv and "
    "OUT/accuracy_vs_d.png. Rerunning the same command resumes: saved configs "
    "are not trained again.",
    formatter_class=argparse.ArgumentDefaultsHelpFormatter,
  )
  s.add_argument("--dataset", default="mnist5k", help="registered dataset (see `jaxnn datasets`)")
  s.add_argument("--model", default="fc", help="fc, lenet, lca_lenet or resnet20")
  s.add_argument("--widths", type=cu.int_list, default=(200, 200), help="hidden widths of fc")
  s.add_argument("--projection", default="fastfood", help="dense, sparse or fastfood")
  s.add_argument(
    "--dims",
    type=_dims,
    default=(100, 200, 400, 800),
    help="comma-separated subspace dimensions, or 'auto' (grid, then bisection)",
  )
  s.add_argument("--seeds", type=cu.positive_int, default=3, help="seeds per dimension")
  s.add_argument(
    "--steps",
    type=cu.positive_int,
    default=2000,
    help="Adam steps per config (d_int90 depends on it: it is recorded)",
  )
  s.add_argument("--batch-size", type=cu.positive_int, default=128)
  s.add_argument(
    "--lr",
    type=cu.positive_float,
    default=3e-2,
    help="Adam learning rate of theta_d (subspace training needs more than direct training)",
  )
  s.add_argument(
    "--baseline-lr",
    type=cu.positive_float,
    default=1e-3,
    help="Adam learning rate of the individual baseline (full model)",
  )
  s.add_argument("--weight-decay", type=float, default=0.0, help="L2 on the full theta_D")
  s.add_argument(
    "--baseline",
    type=_baseline,
    default="individual",
    help="'individual' (normal training, done by the sweep) or a global accuracy",
  )
  s.add_argument("--fraction", type=cu.fraction, default=0.9, help="d_int threshold x baseline")
  s.add_argument("--data-seed", type=int, default=0, help="the validation split")
  s.add_argument(
    "--validation-size",
    type=cu.size,
    default=None,
    help="count or fraction of training data held out (default: the dataset's)",
  )
  s.add_argument("--shuffled-pixels", action="store_true", help="fixed pixel permutation")
  s.add_argument("--shuffled-labels", type=cu.fraction, default=0.0, help="fraction shuffled")
  s.add_argument("--max-train", type=cu.positive_int, default=None, help="cap on training examples")
  s.add_argument("--d-min", type=cu.positive_int, default=10, help="auto: first grid point")
  s.add_argument("--d-max", type=cu.positive_int, default=None, help="auto: last grid point (D)")
  s.add_argument(
    "--resolution",
    type=cu.positive_float,
    default=0.05,
    help="auto: stop at this bracket width (>= 1: dims, < 1: relative)",
  )
  s.add_argument(
    "--configs-per-program",
    type=cu.positive_int,
    default=None,
    help="configs trained together in one compiled program (default: 16; one per "
    "device for convolutional models on a CPU, where XLA runs them slower in "
    "a loop)",
  )
  s.add_argument(
    "--configs-per-vmap",
    type=cu.positive_int,
    default=None,
    help="configs vmapped at once per device (default: 1 on a CPU, i.e. lax.map "
    "of one config at a time; all of them on accelerators)",
  )
  cu.add_run_arguments(s, out_help="sweep directory")
  s.set_defaults(func=_sweep)


def _sweep(args) -> int:
  from jaxnn.train import initialize_distributed

  initialize_distributed()  # a no-op unless the environment describes a multi-process job
  from jaxnn.subspace._sweep import SweepConfig, run_sweep

  config = SweepConfig(
    dataset=args.dataset,
    model=args.model,
    widths=args.widths,
    projection=args.projection,
    dims=args.dims,
    seeds=args.seeds,
    steps=args.steps,
    batch_size=args.batch_size,
    learning_rate=args.lr,
    baseline_learning_rate=args.baseline_lr,
    weight_decay=args.weight_decay,
    baseline=args.baseline,
    fraction=args.fraction,
    data_seed=args.data_seed,
    validation_size=args.validation_size,
    shuffled_pixels=args.shuffled_pixels,
    shuffled_labels=args.shuffled_labels,
    max_train=args.max_train,
    d_min=args.d_min,
    d_max=args.d_max,
    resolution=args.resolution,
    configs_per_program=args.configs_per_program,
    configs_per_vmap=args.configs_per_vmap,
    num_devices=args.devices,
    progress=not args.no_progress,
  )
  results = run_sweep(config, args.out)
  keys = (
    "dataset",
    "model",
    "projection",
    "D",
    "steps",
    "baseline_kind",
    "baseline",
    "threshold",
    "d_int90",
    "mean_validation_accuracy_by_d",
  )
  print(json.dumps({k: results[k] for k in keys}, indent=2))
  print(f"wrote {args.out}/results.json, results.csv and accuracy_vs_d.png")
  return 0

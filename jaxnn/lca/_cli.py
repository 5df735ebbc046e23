"""`jaxnn lca`: train a network with loss change allocation, write the analyses and plots."""

from __future__ import annotations

import argparse
import json

from jaxnn import _cli_utils as cu


def register(subparsers) -> None:
  p = subparsers.add_parser(
    "lca",
    help="loss change allocation during training (Lan et al. 2019)",
    description="Train a network and allocate every iteration's loss change to its parameters "
    "(full-set gradients, adaptive Simpson). Writes OUT/summary.json, "
    "OUT/lca_records.npz, PNG views, metrics.jsonl and checkpoints; rerunning "
    "resumes. Defaults: the paper's MNIST-FC 784-100-50-10, SGD lr 0.01 "
    "momentum 0.9, batch 250.",
    formatter_class=argparse.ArgumentDefaultsHelpFormatter,
  )
  p.add_argument("--dataset", default="mnist5k", help="registered dataset (see `jaxnn datasets`)")
  p.add_argument("--model", default="fc", help="fc, lenet, lca_lenet or resnet20")
  p.add_argument("--widths", type=cu.int_list, default=(100, 50), help="hidden widths of fc")
  p.add_argument("--epochs", type=cu.positive_int, default=1)
  p.add_argument("--batch-size", type=cu.positive_int, default=250)
  p.add_argument("--optimizer", default="momentum", help="adam, momentum or sgd")
  p.add_argument("--lr", type=cu.positive_float, default=0.01, help="learning rate")
  p.add_argument("--momentum", type=cu.fraction, default=0.9)
  p.add_argument(
    "--weight-decay",
    type=float,
    default=0.0,
    help="L2 used in training (LCA allocates the data loss only)",
  )
  p.add_argument("--seed", type=int, default=0)
  p.add_argument(
    "--validation-size",
    type=cu.size,
    default=None,
    help="count or fraction of training data held out (default: the dataset's)",
  )
  p.add_argument("--max-train", type=cu.positive_int, default=None, help="cap on training examples")
  p.add_argument(
    "--lca-subset",
    type=cu.positive_int,
    default=None,
    help="evaluate LCA on this many fixed random training examples (default: all)",
  )
  p.add_argument("--no-validation", action="store_true", help="do not allocate the validation loss")
  p.add_argument("--method", default="simpson", choices=("simpson", "first_order"))
  p.add_argument(
    "--threshold",
    type=cu.positive_float,
    default=1e-3,
    help="absolute per-iteration error that triggers more Simpson splits",
  )
  p.add_argument("--max-splits", type=cu.positive_int, default=32, help="power of two")
  p.add_argument(
    "--chunk-size",
    type=cu.positive_int,
    default=1000,
    help="examples per chunk of the full-set gradients (bounds memory)",
  )
  p.add_argument(
    "--stream",
    action="store_true",
    help="also write the full iterations x parameters LCA to OUT/lca_<set>.npy",
  )
  p.add_argument("--no-plots", action="store_true")
  p.add_argument(
    "--checkpoint-every",
    type=cu.positive_int,
    default=None,
    help="steps between checkpoints (default: every 10 epochs, and the last step)",
  )
  p.add_argument(
    "--compile-cache",
    default="~/.cache/jaxnn/xla",
    help="JAX persistent compilation cache directory: reruns skip XLA compilation "
    "('none' to turn it off)",
  )
  p.add_argument(
    "--no-stem",
    action="store_true",
    help="fc: evaluate the first layer at every gradient point instead of "
    "interpolating its output (same LCA, more products)",
  )
  p.add_argument(
    "--slow-compile",
    action="store_true",
    help="compile with XLA's default CPU options (slower to compile, same results)",
  )
  cu.add_run_arguments(p)
  p.set_defaults(func=_lca)


def _lca(args) -> int:
  from jaxnn.lca import LCAConfig, run_lca

  config = LCAConfig(
    dataset=args.dataset,
    model=args.model,
    widths=args.widths,
    epochs=args.epochs,
    batch_size=args.batch_size,
    optimizer=args.optimizer,
    learning_rate=args.lr,
    momentum=args.momentum,
    weight_decay=args.weight_decay,
    seed=args.seed,
    validation_size=args.validation_size,
    max_train=args.max_train,
    lca_train_subset=args.lca_subset,
    validation_lca=not args.no_validation,
    method=args.method,
    threshold=args.threshold,
    max_splits=args.max_splits,
    chunk_size=args.chunk_size,
    stream=args.stream,
    num_devices=args.devices,
    checkpoint_every=args.checkpoint_every,
    compile_cache=None if args.compile_cache.lower() == "none" else args.compile_cache,
    stem=not args.no_stem,
    fast_compile=not args.slow_compile,
    plots=not args.no_plots,
    progress=not args.no_progress,
  )
  summary = run_lca(config, args.out)
  keys = (
    "params",
    "steps",
    "train_accuracy",
    "validation_accuracy",
    "test_accuracy",
    "loss_change",
    "lca_sum",
    "relative_error",
    "max_abs_iteration_error",
    "fraction_helped_mean",
    "fraction_helped_of_moved_mean",
    "layer_totals",
    "seconds",
  )
  print(json.dumps({k: summary[k] for k in keys if k in summary}, indent=2))
  print(f"wrote {args.out}/summary.json, lca_records.npz, the PNG views and checkpoints/")
  return 0

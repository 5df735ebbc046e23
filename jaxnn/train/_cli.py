"""`jaxnn train` and `jaxnn datasets`."""

from __future__ import annotations

import argparse
import json

from jaxnn import _cli_utils as cu


def register(subparsers) -> None:
  p = subparsers.add_parser(
    "train",
    help="train a network on a dataset (supervised)",
    description="Train a model with the data-parallel engine. Writes OUT/metrics.jsonl, "
    "OUT/summary.json and Orbax checkpoints; rerunning resumes.",
    formatter_class=argparse.ArgumentDefaultsHelpFormatter,
  )
  p.add_argument("--dataset", default="mnist5k", help="registered dataset (see `jaxnn datasets`)")
  p.add_argument("--model", default="fc", help="fc, lenet, lca_lenet or resnet20")
  p.add_argument("--widths", type=cu.int_list, default=(200, 200), help="hidden widths of fc")
  p.add_argument("--epochs", type=cu.positive_int, default=5)
  p.add_argument("--batch-size", type=cu.positive_int, default=128)
  p.add_argument("--optimizer", default="adam", help="adam, momentum or sgd")
  p.add_argument("--lr", type=cu.positive_float, default=1e-3, help="learning rate")
  p.add_argument("--momentum", type=cu.fraction, default=0.9)
  p.add_argument("--weight-decay", type=float, default=0.0, help="L2 on the weights")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument(
    "--validation-size",
    type=cu.size,
    default=None,
    help="count or fraction of training data held out (default: the dataset's)",
  )
  p.add_argument("--shuffled-pixels", action="store_true", help="fixed pixel permutation")
  p.add_argument(
    "--shuffled-labels", type=cu.fraction, default=0.0, help="fraction of labels shuffled"
  )
  p.add_argument("--max-train", type=cu.positive_int, default=None, help="cap on training examples")
  cu.add_run_arguments(p)
  p.add_argument(
    "--resume-from-previous",
    action="store_true",
    help="if the newest checkpoint is corrupt, set it aside and resume from the last intact one",
  )
  p.set_defaults(func=_train)

  d = subparsers.add_parser("datasets", help="list the datasets and whether they work offline")
  d.set_defaults(func=_datasets)


def _train(args) -> int:
  from jaxnn.train import TrainConfig, train_and_evaluate

  config = TrainConfig(
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
    shuffled_pixels=args.shuffled_pixels,
    shuffled_labels=args.shuffled_labels,
    max_train=args.max_train,
    num_devices=args.devices,
    progress=not args.no_progress,
    resume_from_previous=args.resume_from_previous,
  )
  summary = train_and_evaluate(config, args.out)
  keys = (
    "dataset",
    "model",
    "params",
    "train_accuracy",
    "validation_accuracy",
    "test_accuracy",
    "steps",
    "seconds",
  )
  print(json.dumps({k: summary[k] for k in keys if k in summary}, indent=2))
  print(f"wrote {args.out}/summary.json, metrics.jsonl and checkpoints/")
  return 0


def _datasets(args) -> int:
  from jaxnn.data import registered_datasets

  for name, spec in sorted(registered_datasets().items()):
    print(f"{name:16s} {'offline' if spec.offline else 'online '}  {spec.description}")
  return 0

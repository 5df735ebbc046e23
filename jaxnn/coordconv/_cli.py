"""`jaxnn coordconv classify|regress|render`: the paper's Not-so-Clevr experiments."""

from __future__ import annotations

import argparse
import json

from jaxnn import _cli_utils as cu

_COMMANDS = {"classify": "classification", "regress": "regression", "render": "rendering"}


def register(subparsers) -> None:
  p = subparsers.add_parser(
    "coordconv",
    help="CoordConv (Liu et al. 2018): Not-so-Clevr experiments",
    description="Train the paper's CoordConv or baseline model on a Not-so-Clevr task. Writes "
    "OUT/summary.json, OUT/metrics.jsonl, PNG plots and Orbax checkpoints; "
    "rerunning resumes.",
  )
  sub = p.add_subparsers(dest="coordconv_command", metavar="TASK", required=True)
  for command, task in _COMMANDS.items():
    c = sub.add_parser(
      command, help=f"coordinate {task}", formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    c.add_argument(
      "--split",
      choices=("uniform", "quadrant"),
      default="quadrant",
      help="uniform: random 25%% test; quadrant: bottom-right quadrant held out",
    )
    c.add_argument(
      "--model",
      choices=("coordconv", "conv"),
      default="coordconv",
      help="coordconv, or conv: the task's deconv/conv baseline",
    )
    c.add_argument(
      "--epochs",
      type=cu.positive_int,
      default=None,
      help="default: the paper's (50; 1,000 for the deconv baselines)",
    )
    c.add_argument(
      "--lr",
      type=cu.positive_float,
      default=None,
      help="Adam learning rate (default: the paper's for this task and model)",
    )
    c.add_argument("--batch-size", type=cu.positive_int, default=16)
    c.add_argument(
      "--lr-schedule",
      choices=("constant", "cosine"),
      default="constant",
      help="constant (the paper) or cosine decay to 0 over the run",
    )
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--weight-decay", type=float, default=0.0, help="L2 on the kernels")
    c.add_argument("--mul", type=cu.positive_int, default=1, help="baseline width multiplier")
    c.add_argument(
      "--kernel-size",
      type=cu.positive_int,
      default=3,
      help="deconv kernel size (baseline) / renderer conv kernel size",
    )
    c.add_argument("--with-r", action="store_true", help="add the radius channel")
    if task == "classification":
      c.add_argument(
        "--widths",
        type=cu.int_list,
        default=None,
        help="CoordConv classifier 1x1 conv widths, e.g. 8,8 (default: the paper's 32,32,64,64)",
      )
    c.add_argument(
      "--train-examples",
      type=cu.positive_int,
      default=None,
      help="train on a random subset of this many examples (quick runs)",
    )
    c.add_argument(
      "--eval-every", type=cu.positive_int, default=1, help="epochs between evaluations"
    )
    c.add_argument(
      "--stop-at-perfect",
      action="store_true",
      help="stop once test accuracy reaches 100%% (classification, rendering)",
    )
    c.add_argument(
      "--max-seconds",
      type=cu.positive_float,
      default=None,
      help="stop at the first evaluation after this much wall time",
    )
    c.add_argument("--data-dir", default=None, help="TFDS cache (default ~/.cache/jaxnn/tfds)")
    cu.add_run_arguments(c)
    c.set_defaults(func=_run, task=task)


def _run(args) -> int:
  from jaxnn.coordconv import TaskConfig, run_task

  config = TaskConfig(
    task=args.task,
    split=args.split,
    model=args.model,
    epochs=args.epochs,
    learning_rate=args.lr,
    batch_size=args.batch_size,
    lr_schedule=args.lr_schedule,
    weight_decay=args.weight_decay,
    seed=args.seed,
    mul=args.mul,
    kernel_size=args.kernel_size,
    with_r=args.with_r,
    train_examples=args.train_examples,
    eval_every=args.eval_every,
    widths=getattr(args, "widths", None),
    stop_at_perfect=args.stop_at_perfect,
    max_seconds=args.max_seconds,
    num_devices=args.devices,
    progress=not args.no_progress,
    data_dir=args.data_dir,
  )
  summary = run_task(config, args.out)
  keys = (
    "task",
    "split",
    "model",
    "params",
    "train_accuracy",
    "test_accuracy",
    "train_iou",
    "test_iou",
    "train_pixel_error",
    "test_pixel_error",
    "epochs_run",
    "seconds",
  )
  print(json.dumps({k: summary[k] for k in keys if k in summary}, indent=2))
  print(f"wrote {args.out}/summary.json, metrics.jsonl, {', '.join(summary.get('plots', []))}")
  return 0

"""`jaxnn coordconv classify|regress|render`: the paper's Not-so-Clevr experiments."""

from __future__ import annotations

from jaxnn import _cli_utils as cu
from jaxnn.configs import TaskConfig

_COMMANDS = {"classify": "classification", "regress": "regression", "render": "rendering"}


def register(subparsers) -> None:
  p = subparsers.add_parser(
    "coordconv",
    help="CoordConv (Liu et al. 2018): Not-so-Clevr experiments",
    description="Train the paper's CoordConv or baseline model on a Not-so-Clevr task. Writes "
    "OUT/config.json, OUT/summary.json, OUT/metrics.jsonl, PNG plots and Orbax checkpoints; "
    "rerunning resumes.",
  )
  sub = p.add_subparsers(dest="coordconv_command", metavar="TASK", required=True)
  for command, task in _COMMANDS.items():
    c = sub.add_parser(
      command,
      aliases=[task],
      help=f"coordinate {task}",
      description=f"Coordinate {task} on Not-so-Clevr (Liu et al. 2018). Writes "
      "OUT/config.json, summary.json, metrics.jsonl, PNG plots and checkpoints; rerunning "
      "resumes.",
    )
    exclude = () if task == "classification" else ("widths",)
    cu.add_config_arguments(c, TaskConfig, exclude=exclude)
    c.set_defaults(func=_run, coordconv_task=task)


def _run(args) -> int:
  verb = {task: verb for verb, task in _COMMANDS.items()}.get(args.coordconv_command)
  command = f"coordconv {verb or args.coordconv_command}"
  config, out = cu.resolve(args, TaskConfig, command, defaults=TaskConfig(task=args.coordconv_task))
  if config.task != args.coordconv_task:
    from jaxnn._errors import JaxnnError

    raise JaxnnError(f"{args.config} is a {config.task} config: run it with that task's command")
  config = config.resolved()
  cu.claim_out(out, command, config, config.run_identity(), checkpointed=True)
  from jaxnn.coordconv import run_task

  summary = run_task(config, out)
  cu.write_config(out, command, config, config.run_identity())  # also after a lost one
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
  plots = "".join(f", {p}" for p in summary.get("plots", []))
  cu.print_summary(summary, keys, f"wrote {out}/config.json, summary.json, metrics.jsonl{plots}")
  return 0

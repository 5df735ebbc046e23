"""`jaxnn reproduce`: the four findings, offline, in one command (see `ReproduceConfig`)."""

from __future__ import annotations

import argparse

from jaxnn.reproduce._config import STAGES, ReproduceConfig, parse_only


def _only(text: str) -> tuple[str, ...]:
  from jaxnn._errors import JaxnnError

  try:
    return parse_only(text)
  except JaxnnError as e:
    raise argparse.ArgumentTypeError(str(e)) from None


def register(subparsers) -> None:
  """Adds the `reproduce` subcommand."""
  p = subparsers.add_parser(
    "reproduce",
    help="reproduce the four papers' findings and write a report",
    description="Reproduces CoordConv, intrinsic dimension, LCA and PPLM findings and writes "
    "OUT/report.md, OUT/report.html and OUT/summary.json. Rerunning the same command reuses "
    "the finished stages.",
  )
  p.add_argument("--out", required=True, help="report folder (created; finished stages reused)")
  size = p.add_mutually_exclusive_group()
  size.add_argument(
    "--quick",
    action="store_const",
    const="quick",
    dest="preset",
    help="tiny settings: a minute or two on 2 CPU cores (what the tests run)",
  )
  size.add_argument(
    "--full",
    action="store_const",
    const="full",
    dest="preset",
    help="the papers' settings (online datasets, GPT-2 medium; for a GPU/Colab)",
  )
  p.add_argument(
    "--only",
    type=_only,
    default=STAGES,
    help=f"comma-separated stages to run, of {','.join(STAGES)} (default: all)",
  )
  p.add_argument("--no-progress", action="store_true", help="no progress lines or bars")
  p.set_defaults(func=main, preset="default")


def config_from_args(args: argparse.Namespace) -> ReproduceConfig:
  """The `ReproduceConfig` of parsed arguments."""
  return ReproduceConfig(
    out=args.out, preset=args.preset, only=tuple(args.only), progress=not args.no_progress
  )


def main(args: argparse.Namespace) -> int:
  from jaxnn.reproduce._run import run_reproduce

  config = config_from_args(args)
  summary = run_reproduce(config, log=config.progress)
  for stage, result in summary["stages"].items():
    print(f"{stage}: {result['verdict']}")
  print(f"report: {config.out}/report.md")
  return 0

"""Argument types shared by the subcommands."""

from __future__ import annotations

import argparse


def int_list(text: str) -> tuple[int, ...]:
  """ "200,200" -> (200, 200); a clear argparse error otherwise."""
  try:
    values = tuple(int(v) for v in text.split(",") if v.strip())
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
  if not values or any(v < 1 for v in values):
    raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
  return values


def _number(text: str, cast: type, valid, kind: str, requirement: str):
  """`cast(text)` if `valid` of it, else an argparse error naming `requirement`."""
  try:
    value = cast(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
  if not valid(value):
    raise argparse.ArgumentTypeError(f"expected {requirement}, got {value}")
  return value


def positive_int(text: str) -> int:
  return _number(text, int, lambda v: v >= 1, "an integer", "a positive integer")


def positive_float(text: str) -> float:
  return _number(text, float, lambda v: v > 0, "a number", "a positive number")


def fraction(text: str) -> float:
  return _number(text, float, lambda v: 0 <= v <= 1, "a number", "a fraction in [0, 1]")


def size(text: str) -> int | float:
  """A count ("500") or a fraction ("0.1")."""
  try:
    return int(text)
  except ValueError:
    return fraction(text)


def device_count(text: str) -> int | None:
  """A positive number of devices, or "all" (None: every local device)."""
  return None if text.strip().lower() == "all" else positive_int(text)


def add_run_arguments(parser: argparse.ArgumentParser, out_help: str = "run directory") -> None:
  """The options every training command shares: --devices, --out, --no-progress."""
  parser.add_argument(
    "--devices", type=device_count, default="all", help="number of devices to use, or all"
  )
  parser.add_argument("--out", required=True, help=out_help)
  parser.add_argument("--no-progress", action="store_true", help="no progress bar")

"""Argument types shared by the subcommands."""

from __future__ import annotations

import argparse


def int_list(text: str) -> tuple[int, ...]:
  """"200,200" -> (200, 200); a clear argparse error otherwise."""
  try:
    values = tuple(int(v) for v in text.split(",") if v.strip())
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
  if not values or any(v < 1 for v in values):
    raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
  return values


def positive_int(text: str) -> int:
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
  if value < 1:
    raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
  return value


def positive_float(text: str) -> float:
  try:
    value = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
  if not value > 0:
    raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
  return value


def fraction(text: str) -> float:
  try:
    value = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
  if not 0 <= value <= 1:
    raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1], got {value}")
  return value


def size(text: str) -> int | float:
  """A count ("500") or a fraction ("0.1")."""
  try:
    return int(text)
  except ValueError:
    return fraction(text)

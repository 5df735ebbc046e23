"""The verdict rule shared by every finding, and the rounding that keeps summaries stable.

A finding is a list of checks, each a claim of the paper turned into a
threshold on this run's numbers. The verdict is

- "reproduced": every check holds;
- "partly": at least one check holds, not all;
- "not": no check holds.
"""

from __future__ import annotations

import math

#: The verdicts a finding can get, best first.
VERDICTS = ("reproduced", "partly", "not")
#: How a finding's checks make its verdict, as the report states it.
RULE = (
  "Each finding is a list of checks (a claim of the paper as a threshold on this run's "
  "numbers). Verdict: **reproduced** when every check holds, **partly** when at least one "
  "holds, **not** when none does."
)


def check(claim: str, rule: str, value, passed: bool) -> dict:
  """One check: the paper's claim, the threshold applied, this run's value, whether it holds."""
  return {"claim": claim, "rule": rule, "value": value, "passed": bool(passed)}


def verdict(checks: list[dict]) -> str:
  """ "reproduced" if every check passed, "partly" if some did, "not" if none did."""
  passed = sum(c["passed"] for c in checks)
  if checks and passed == len(checks):
    return "reproduced"
  return "partly" if passed else "not"


def rounded(value, digits: int = 6):
  """Floats (also inside lists and dicts) to `digits` significant digits; NaN -> None."""
  if isinstance(value, float):
    if not math.isfinite(value):
      return None
    return float(f"{value:.{digits}g}")
  if isinstance(value, dict):
    return {str(k): rounded(v, digits) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [rounded(v, digits) for v in value]
  if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy scalars
    return rounded(value.item(), digits)
  return value


def fmt(value, digits: int = 3) -> str:
  """A number for a table: integers with thousands separators, floats to `digits` places."""
  if value is None:
    return "n/a"
  if isinstance(value, bool):
    return "yes" if value else "no"
  if isinstance(value, int):
    return f"{value:,}"
  if isinstance(value, float):
    return f"{value:,.{digits}f}"
  return str(value)


def num(value, spec: str = ".3f") -> str:
  """`format(value, spec)`, or "n/a" for a missing value (a NaN in the run)."""
  if value is None or (isinstance(value, float) and not math.isfinite(value)):
    return "n/a"
  return format(value, spec)


def pct(value) -> str:
  """A fraction as a percentage with one decimal."""
  return "n/a" if value is None else f"{100 * value:.1f}%"

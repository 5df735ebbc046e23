"""d_int90 from sweep results, and the automatic search that finds it.

Li et al. (2018) define d_int90 as the smallest subspace dimension d whose mean
validation accuracy over seeds exceeds 90% of a baseline accuracy. The search
below finds it without a hand-chosen list: a coarse geometric grid brackets the
threshold (smallest dims first, a few per round, so that no round trains dims
far above the threshold), then rounds of evenly spaced interior points shrink
the bracket to a requested resolution. Every round depends only on
the scores of earlier rounds, so a resumed search replays the same rounds.

References:
  Li, Farkhoor, Liu, Yosinski. "Measuring the Intrinsic Dimension of Objective
  Landscapes", ICLR 2018.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple

import numpy as np

from jaxnn._errors import JaxnnError


def mean_by_dim(configs: Iterable[Mapping], key: str = "validation_accuracy") -> dict[int, float]:
  """{d: mean of `key` over the configs (seeds) with that d}, sorted by d.

  Examples:
    >>> from jaxnn.subspace import mean_by_dim
    >>> mean_by_dim([{"d": 20, "validation_accuracy": 0.5}, {"d": 10, "validation_accuracy": 0.25},
    ...              {"d": 20, "validation_accuracy": 0.75}])
    {10: 0.25, 20: 0.625}
  """
  values: dict[int, list[float]] = {}
  for c in configs:
    values.setdefault(int(c["d"]), []).append(float(c[key]))
  return {d: float(np.mean(values[d])) for d in sorted(values)}


def intrinsic_dim(mean_score_by_d: Mapping[int, float], threshold: float) -> int | None:
  """The smallest d whose mean score exceeds `threshold` (strictly); None if none does.

  Examples:
    >>> from jaxnn.subspace import intrinsic_dim
    >>> baseline = 0.98  # accuracy of direct training
    >>> intrinsic_dim({100: 0.60, 200: 0.85, 400: 0.91}, threshold=0.9 * baseline)
    400
  """
  passing = [d for d, score in mean_score_by_d.items() if score > threshold]
  return min(passing) if passing else None


def threshold_for(baseline: float, fraction: float = 0.9) -> float:
  """The accuracy d_int90 must exceed: `fraction` x baseline."""
  return fraction * baseline


def geometric_grid(d_min: int, d_max: int, ratio: float = 2.0) -> list[int]:
  """d_min, d_min*ratio, ... (rounded, distinct), always ending at d_max."""
  if not 1 <= d_min <= d_max:
    raise JaxnnError(f"need 1 <= d_min <= d_max, got d_min={d_min}, d_max={d_max}")
  if not ratio > 1:
    raise JaxnnError(f"the grid ratio must be > 1, got {ratio}")
  grid, d = [], float(d_min)
  while round(d) < d_max:
    if not grid or round(d) > grid[-1]:
      grid.append(int(round(d)))
    d *= ratio
  return grid + [d_max]


def interior_points(lo: int, hi: int, count: int) -> list[int]:
  """Up to `count` distinct integers strictly between lo and hi, evenly spaced."""
  points = np.round(lo + (hi - lo) * np.arange(1, count + 1) / (count + 1)).astype(int)
  return sorted({int(p) for p in points if lo < p < hi})


def resolved(lo: int, hi: int, resolution: float) -> bool:
  """Whether the bracket (lo fails, hi passes) is fine enough to stop.

  `resolution` >= 1 is an absolute width in dimensions; < 1 a width relative
  to hi. Adjacent integers are always resolved.
  """
  width = hi - lo
  return width <= 1 or width <= (resolution if resolution >= 1 else resolution * hi)


class SearchResult(NamedTuple):
  """What the automatic search found.

  Attributes:
    d_int: the smallest evaluated d whose score exceeds the threshold, or
      None if even d_max does not.
    bracket: (lo, hi): lo the largest evaluated d below d_int (0 if none),
      hi = d_int.
    rounds: the dims evaluated in each round, in order.
    scores: {d: mean score} of every evaluated d.
  """

  d_int: int | None
  bracket: tuple[int, int] | None
  rounds: list[list[int]]
  scores: dict[int, float]


def search_intrinsic_dim(
  evaluate: Callable[[Sequence[int]], Mapping[int, float]],
  threshold: float,
  *,
  d_min: int,
  d_max: int,
  resolution: float = 0.05,
  points_per_round: int = 4,
  ratio: float = 2.0,
  grid_points_per_round: int = 3,
) -> SearchResult:
  """Finds the smallest d whose score exceeds `threshold`: grid, then bisection.

  Assumes the score grows with d (as accuracy does, up to seed noise); d_int is
  always reported from all evaluated dims by `intrinsic_dim`, so a
  non-monotone score never yields a d that did not pass.

  Args:
    evaluate: `evaluate(dims) -> {d: mean score}` for a round of dims (the sweep
      trains them as one program; a resumed sweep returns saved scores).
    threshold: the score to exceed (0.9 x baseline for d_int90).
    d_min, d_max: the range searched; the coarse grid starts at d_min.
    resolution: stop when the bracket is this wide (>= 1: dims; < 1: fraction
      of its upper end) or its ends are adjacent integers.
    points_per_round: dims evaluated per bisection round; set it so that one
      round fills one compiled program.
    ratio: the coarse grid's growth factor.
    grid_points_per_round: grid dims evaluated per round, smallest first (at
      most `points_per_round`): the search stops at the first round with a
      passing d, so no dim above ratio^grid_points_per_round x d_int is
      trained (their cost grows with d for dense and sparse projections).
  """
  if points_per_round < 1 or grid_points_per_round < 1:
    raise JaxnnError(
      f"points_per_round and grid_points_per_round must be at least 1, got "
      f"{points_per_round} and {grid_points_per_round}"
    )
  if not resolution > 0:
    raise JaxnnError(f"resolution must be positive, got {resolution}")
  scores: dict[int, float] = {}
  rounds: list[list[int]] = []

  def run(dims):
    rounds.append(list(dims))
    got = evaluate(list(dims))
    missing = set(dims) - set(got)
    if missing:
      raise JaxnnError(f"evaluate returned no score for dims {sorted(missing)}")
    scores.update({int(d): float(got[d]) for d in dims})

  grid = geometric_grid(d_min, d_max, ratio)
  per_round = min(points_per_round, grid_points_per_round)
  for start in range(0, len(grid), per_round):
    run(grid[start : start + per_round])
    if intrinsic_dim(scores, threshold) is not None:
      break
  while True:
    hi = intrinsic_dim(scores, threshold)
    if hi is None:
      return SearchResult(None, None, rounds, scores)
    lo = max((d for d in scores if d < hi), default=0)
    if resolved(lo, hi, resolution):
      return SearchResult(hi, (lo, hi), rounds, scores)
    run(interior_points(lo, hi, points_per_round))

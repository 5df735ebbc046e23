"""d_int90 logic and the automatic search, against hand-computed and analytic cases."""

import math

import pytest

from jaxnn import JaxnnError
from jaxnn.subspace import get_projection, train_toy
from jaxnn.subspace._search import (
  geometric_grid,
  interior_points,
  intrinsic_dim,
  mean_by_dim,
  resolved,
  search_intrinsic_dim,
  threshold_for,
)
from jaxnn.subspace._sweep import config_grid, program_chunks


def test_mean_by_dim_and_intrinsic_dim_by_hand():
  configs = [
    {"d": 20, "seed": 0, "validation_accuracy": 0.80},
    {"d": 20, "seed": 1, "validation_accuracy": 0.90},
    {"d": 10, "seed": 0, "validation_accuracy": 0.50},
    {"d": 40, "seed": 0, "validation_accuracy": 0.95},
    {"d": 40, "seed": 1, "validation_accuracy": 0.93},
  ]
  means = mean_by_dim(configs)
  assert list(means) == [10, 20, 40]
  assert means == pytest.approx({10: 0.5, 20: 0.85, 40: 0.94})
  # Individual baseline 0.95: threshold 0.855; d=20's mean 0.85 does not exceed it.
  assert threshold_for(0.95) == pytest.approx(0.855)
  assert intrinsic_dim(means, threshold_for(0.95)) == 40
  # Global baseline 0.9 (threshold 0.81): d=20 passes.
  assert intrinsic_dim(means, threshold_for(0.9)) == 20
  # "Exceeds" is strict, and a non-monotone curve reports the smallest passing d.
  assert intrinsic_dim({10: 0.9}, 0.9) is None
  assert intrinsic_dim({10: 0.95, 20: 0.8, 40: 0.97}, 0.9) == 10
  assert intrinsic_dim({}, 0.5) is None


def test_grid_points_and_resolution():
  assert geometric_grid(10, 100) == [10, 20, 40, 80, 100]
  assert geometric_grid(1, 1) == [1]
  assert geometric_grid(3, 10, ratio=1.5) == [3, 4, 7, 10]  # 3, 4.5, 6.75, then d_max
  assert interior_points(10, 20, 3) == [12, 15, 18]
  assert interior_points(9, 10, 4) == []
  assert interior_points(0, 4, 10) == [1, 2, 3]
  assert resolved(9, 10, 0.01) and not resolved(8, 10, 0.1) and resolved(90, 100, 0.1)
  assert resolved(100, 120, 20) and not resolved(100, 121, 20)
  with pytest.raises(JaxnnError, match="d_min"):
    geometric_grid(0, 10)


def test_programs_pad_at_most_twice_their_dims():
  # A coarse grid from 10 to D: never one program padded to D for all.
  grid = config_grid([10, 20, 40, 80, 160, 199_210], 1)
  assert program_chunks(grid, 16) == [
    [(10, 0), (20, 0), (40, 0)],
    [(80, 0), (160, 0)],
    [(199_210, 0)],
  ]
  # Seeds of one d always share a program, up to its size.
  assert program_chunks(config_grid([750], 5), 2) == [
    [(750, 0), (750, 1)],
    [(750, 2), (750, 3)],
    [(750, 4)],
  ]
  for programs in (
    program_chunks(config_grid([100, 200, 300, 400, 600, 800, 1200], 2), 16),
    program_chunks(grid, 16),
  ):
    for program in programs:
      dims = [d for d, _ in program]
      assert len(dims) * max(dims) <= 2 * sum(dims)


@pytest.mark.parametrize("points_per_round", [1, 3, 8])
def test_search_finds_analytic_threshold(points_per_round):
  # accuracy(d) = 1 - exp(-d / 100) exceeds 0.9 first at d = ceil(100 ln 10) = 231.
  calls = []

  def evaluate(dims):
    calls.append(list(dims))
    return {d: 1 - math.exp(-d / 100) for d in dims}

  found = search_intrinsic_dim(
    evaluate, 0.9, d_min=10, d_max=100_000, resolution=1, points_per_round=points_per_round
  )
  assert found.d_int == math.ceil(100 * math.log(10)) == 231
  assert found.bracket == (230, 231)
  assert found.rounds == calls and all(len(r) <= points_per_round for r in calls)
  # The grid (10, 20, ..., 320 passes) goes in rounds of at most 3, smallest first, and
  # never beyond the first passing grid point's round.
  per_round = min(points_per_round, 3)
  grid = [10, 20, 40, 80, 160, 320]
  grid_rounds = [grid[i : i + per_round] for i in range(0, len(grid), per_round)]
  assert calls[: len(grid_rounds)] == grid_rounds
  assert max(d for r in calls for d in r) == 320


def test_search_relative_resolution_and_unreached():
  found = search_intrinsic_dim(
    lambda dims: {d: float(d >= 1000) for d in dims},
    0.5,
    d_min=10,
    d_max=10_000,
    resolution=0.1,
    points_per_round=2,
  )
  lo, hi = found.bracket
  assert found.d_int == hi >= 1000 > lo and hi - lo <= 0.1 * hi
  none = search_intrinsic_dim(lambda dims: {d: 0.0 for d in dims}, 0.5, d_min=10, d_max=100)
  assert none.d_int is None and none.bracket is None and max(none.scores) == 100


@pytest.mark.parametrize("projection", ["dense", "fastfood"])
@pytest.mark.slow
def test_search_finds_toy_intrinsic_dimension_ten(projection):
  """The toy problem's d_int is exactly 10 (Li et al. 2018, Sec. 2): the search finds it."""
  P = get_projection(projection)

  def evaluate(dims):
    return {d: sum(train_toy(d, P, seed).solved for seed in (0, 1)) / 2 for d in dims}

  found = search_intrinsic_dim(evaluate, 0.5, d_min=2, d_max=64, resolution=1, points_per_round=3)
  assert found.d_int == 10 and found.bracket == (9, 10)

"""The synchronization test on constructed series with known answers."""

import numpy as np

from jaxnn.lca import synchronization


def _noise(T, L, seed):
  return np.random.default_rng(seed).normal(size=(T, L))


def test_synchronized_layers_beat_chance():
  T = 400
  shared = _noise(T, 1, 0)
  lca_TxL = -(shared + 0.05 * _noise(T, 3, 1))  # every layer learns on the same iterations
  result = synchronization(lca_TxL, num_shuffles=200)
  assert result["all_layers"]["observed"] > 5 * result["all_layers"]["shuffled_mean"]
  assert result["all_layers"]["shuffled_p_value"] == 0.0
  assert result["pairs"]["shifted_p_value"] == 0.0


def test_independent_layers_look_like_chance():
  result = synchronization(-_noise(2000, 3, 2), num_shuffles=300)
  for key in ("all_layers", "pairs"):
    assert result[key]["shuffled_p_value"] > 0.01
    assert 0.6 < result[key]["ratio_to_chance"] < 1.6


def test_peaks_are_positive_strict_local_maxima():
  learning = np.array([0.0, 2.0, 1.0, 3.0, -1.0, -0.5, -2.0])
  # Peaks at t=1 and t=3; t=5 is a local maximum but negative (the layer hurt).
  other = np.array([0.0, 2.0, 1.0, 0.5, 0.2, 0.1, 0.0])  # peaks at t=1 only
  result = synchronization(-np.stack([learning, other], 1), num_shuffles=10)
  assert result["peaks_per_layer"] == [2, 1]
  assert result["all_layers"]["observed"] == 1

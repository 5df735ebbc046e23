"""Intrinsic dimension of FC on shuffled pixels (Li et al. 2018, Section 3.2).

Reproduces: d_int90 of FC 200-200 when the pixels are permuted, on mnist5k (3,600 train / 400 validation), sparse P, 2,000 Adam steps, theta_d at lr 3e-2, the
  individual baseline at lr 1e-3.
Paper: d_int90 750, unchanged (an FC network has no spatial prior to lose).
Measured here: d_int90 1,200, the same as on unshuffled pixels with the same grid (1 seed).
Runtime: not recorded (5 configs and 1 baseline of 2,000 steps).
Command:
  jaxnn subspace sweep --config experiments/intrinsic_dim_fc_mnist5k_shuffled.py --out runs/intrinsic_dim_fc_mnist5k_shuffled

Results of the measured run: experiments/results/intrinsic_dim_fc_mnist5k_shuffled/.
"""

from jaxnn.configs import SweepConfig


def get_config():
  """The config of this experiment."""
  return SweepConfig(
    dataset="mnist5k",
    projection="sparse",
    steps=2000,
    learning_rate=3e-2,
    baseline_learning_rate=1e-3,
    model="fc",
    widths=(200, 200),
    shuffled_pixels=True,
    dims=(200, 400, 600, 800, 1200),
    seeds=1,
  )

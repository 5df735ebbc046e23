"""Intrinsic dimension of LeNet on shuffled pixels (Li et al. 2018, Section 3.2).

Reproduces: d_int90 of LeNet when the pixels are permuted (one fixed permutation), on mnist5k (3,600 train / 400 validation), sparse P, 2,000 Adam steps, theta_d at lr 3e-2, the
  individual baseline at lr 1e-3.
Paper: d_int90 1,400 (rises from 290: convolution's prior no longer fits).
Measured here: d_int90 1,200 (2 seeds; rises from 250).
Runtime: not recorded (6 configs and 2 baselines of 2,000 steps).
Command:
  jaxnn subspace sweep --config experiments/intrinsic_dim_lenet_mnist5k_shuffled.py --out runs/intrinsic_dim_lenet_mnist5k_shuffled

Results of the measured run: experiments/results/intrinsic_dim_lenet_mnist5k_shuffled/.
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
    model="lenet",
    shuffled_pixels=True,
    dims=(600, 900, 1200),
    seeds=2,
  )

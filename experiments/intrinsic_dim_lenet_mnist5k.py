"""Intrinsic dimension of MNIST LeNet (Li et al. 2018, Table 1).

Reproduces: d_int90 of LeNet (D = 44,426) on mnist5k (3,600 train / 400 validation), sparse P, 2,000 Adam steps, theta_d at lr 3e-2, the
  individual baseline at lr 1e-3.
Paper: d_int90 290.
Measured here: d_int90 250 (2 seeds; threshold 0.859 = 0.9 x the baseline 0.955).
Runtime: not recorded (12 configs and 2 baselines of 2,000 steps).
Command:
  jaxnn subspace sweep --config experiments/intrinsic_dim_lenet_mnist5k.py --out runs/intrinsic_dim_lenet_mnist5k

Results of the measured run: experiments/results/intrinsic_dim_lenet_mnist5k/.
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
    dims=(100, 150, 200, 250, 300, 600),
    seeds=2,
  )

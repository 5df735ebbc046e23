"""Intrinsic dimension of LeNet on Fashion-MNIST.

Reproduces: d_int90 of LeNet on full Fashion-MNIST (54,000 train / 6,000 validation), sparse P, Adam, theta_d at lr
  3e-2, the individual baseline at lr 1e-3, automatic search to 10%, 2,000 steps.
Paper: no paper number (a new measurement with the paper's method).
Measured here: d_int90 400 (bracket 360-400; baseline 0.872).
Runtime: 6-14 minutes on one core of a 2-core CPU.
Command:
  jaxnn subspace sweep --config experiments/intrinsic_dim_lenet_fashion_mnist.py --out runs/intrinsic_dim_lenet_fashion_mnist

Results of the measured run: experiments/results/intrinsic_dim_lenet_fashion_mnist/.
"""

from jaxnn.configs import SweepConfig


def get_config():
  """The config of this experiment."""
  return SweepConfig(
    dataset="fashion_mnist",
    projection="sparse",
    steps=2000,
    learning_rate=3e-2,
    baseline_learning_rate=1e-3,
    model="lenet",
    dims=None,
    resolution=0.1,
    seeds=1,
  )

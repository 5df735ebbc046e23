"""Intrinsic dimension of LeNet on Fashion-MNIST with shuffled pixels.

Reproduces: d_int90 of LeNet with permuted pixels on full Fashion-MNIST (54,000 train / 6,000 validation), sparse P, Adam, theta_d at lr
  3e-2, the individual baseline at lr 1e-3, automatic search to 10%, 2,000 steps.
Paper: no paper number (on MNIST: rises from 290 to 1,400).
Measured here: d_int90 400, the same as unshuffled: under the individual rule the rise is not
  reproduced here, because the shuffled baseline drops (0.872 to 0.850) instead.
Runtime: 6-14 minutes on one core of a 2-core CPU.
Command:
  jaxnn subspace sweep --config experiments/intrinsic_dim_lenet_fashion_mnist_shuffled.py --out runs/intrinsic_dim_lenet_fashion_mnist_shuffled

Results of the measured run: experiments/results/intrinsic_dim_lenet_fashion_mnist_shuffled/.
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
    shuffled_pixels=True,
    dims=None,
    resolution=0.1,
    seeds=1,
  )

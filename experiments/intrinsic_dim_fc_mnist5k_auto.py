"""Intrinsic dimension of MNIST FC 784-200-200-10, automatic search (Li et al. 2018, Table 1).

Reproduces: d_int90 of the FC network (D = 199,210) by the automatic search (`dims=None`:
  geometric rounds, then bisection to 10%) on mnist5k (3,600 train / 400 validation), sparse P, 2,000 Adam steps, theta_d at lr 3e-2, the
  individual baseline at lr 1e-3.
Paper: d_int90 750 (full MNIST, global baseline 1.0).
Measured here: d_int90 640 with 2 seeds (bracket 604-640); 715 with 1 seed (add --num-seeds 1;
  experiments/results/intrinsic_dim_fc_mnist5k_auto/seeds1/).
Runtime: about 11 minutes (2 seeds) on one core of a 2-core CPU.
Command:
  jaxnn subspace sweep --config experiments/intrinsic_dim_fc_mnist5k_auto.py --out runs/intrinsic_dim_fc_mnist5k_auto

Results of the measured run: experiments/results/intrinsic_dim_fc_mnist5k_auto/.
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
    dims=None,
    resolution=0.1,
    seeds=2,
  )

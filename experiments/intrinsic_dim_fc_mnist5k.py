"""Intrinsic dimension of MNIST FC 784-200-200-10, hand-chosen grid (Li et al. 2018, Table 1).

Reproduces: d_int90 of the FC network (D = 199,210) on mnist5k (3,600 train / 400 validation), sparse P, 2,000 Adam steps, theta_d at lr 3e-2, the
  individual baseline at lr 1e-3.
Paper: d_int90 750 (full MNIST, global baseline 1.0).
Measured here: d_int90 1,200 (2 seeds; threshold 0.843 = 0.9 x the baseline 0.936). Between d = 460
  and 1,250 the accuracies sit within the validation noise of the threshold; see
  intrinsic_dim_fc_mnist5k_auto for the bisected value.
Runtime: not recorded (14 configs and 2 baselines of 2,000 steps).
Command:
  jaxnn subspace sweep --config experiments/intrinsic_dim_fc_mnist5k.py --out runs/intrinsic_dim_fc_mnist5k

Results of the measured run: experiments/results/intrinsic_dim_fc_mnist5k/.
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
    dims=(100, 200, 300, 400, 600, 800, 1200),
    seeds=2,
  )

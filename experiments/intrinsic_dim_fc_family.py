"""Intrinsic dimension across the FC family: 4 widths x 5 depths (Li et al. 2018, Figure 4).

Reproduces: d_int90 of FC networks of widths 50, 100, 200, 400 and depths 1-5 (D = 39,760 to
  959,610) on mnist5k (3,600 train / 400 validation), sparse P, 2,000 Adam steps, theta_d at lr 3e-2, the
  individual baseline at lr 1e-3. The config is the width-200, depth-1 member; the others
  are the same command with --widths W (50 ... 400,400,400,400,400); the 200,200 member
  is intrinsic_dim_fc_mnist5k. The two depth-5 members of width 200 and 400 pass no d <= 1,200:
  they were run with --dims 200,400,600,800,1200,1600,2400.
Paper: d_int90 roughly constant, about 400-1,000, while D grows 24x.
Measured here: d_int90 400-1,600 over the 20 members (18 of 20 within 400-1,200; 1,600 for
  the depth-5 members of widths 200 and 400), 2 seeds each.
Runtime: 40-166 s per member and seed on one core of a 2-core CPU (101 s and 195 s more
  for d = 1,600 and 2,400 of the two depth-5 members).
Command:
  jaxnn subspace sweep --config experiments/intrinsic_dim_fc_family.py --out runs/intrinsic_dim_fc_family

Results of the measured run: experiments/results/intrinsic_dim_fc_family/.
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
    widths=(200,),
    dims=(200, 400, 600, 800, 1200),
    seeds=2,
    configs_per_program=2,
  )

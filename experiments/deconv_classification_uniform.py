"""Deconvolution baseline, coordinate classification, uniform split (Liu et al. 2018).

Reproduces: the deconvolution baseline (m=1, k=3) on the uniform split.
Paper: at most about 86% test accuracy (best of a 1,000-epoch grid).
Measured here: 27.9% test accuracy after 15 epochs (train 30.4%); with lr 1e-3, 14.6% at
  best in 9 epochs (benchmarks/coordconv_time_to_perfect.py --splits uniform). Not reproduced: the paper's 86% needs its 1,000-epoch grid, not run here.
Runtime: about 17 minutes (15 epochs) on one core of a 2-core CPU.
Command:
  jaxnn coordconv classify --config experiments/deconv_classification_uniform.py --out runs/deconv_classification_uniform
"""

from jaxnn.configs import TaskConfig


def get_config():
  """The config of this experiment."""
  return TaskConfig(
    task="classification",
    split="uniform",
    model="conv",
    epochs=15,
    learning_rate=0.01,
    max_seconds=1020.0,
    num_devices=1,
  )

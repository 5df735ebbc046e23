"""Convolution baseline, coordinate regression, quadrant split (Liu et al. 2018).

Reproduces: the failure of the convolutional regressor (72,850 parameters) on the held-out
  quadrant.
Paper: fails (a large pixel error on the held-out quadrant).
Measured here: 11.5 px test error after 10 epochs (train 1.0 px).
Runtime: not recorded (10 epochs).
Command:
  jaxnn coordconv regress --config experiments/conv_regression_quadrant.py --out runs/conv_regression_quadrant
"""

from jaxnn.configs import TaskConfig


def get_config():
  """The config of this experiment."""
  return TaskConfig(task="regression", split="quadrant", model="conv", epochs=10, num_devices=1)

"""CoordConv, rendering a square from its coordinates, quadrant split (Liu et al. 2018).

Reproduces: the CoordConv renderer (11,850 parameters) painting the 9x9 square on the held-out
  quadrant.
Paper: CoordConv generalizes to the quadrant (shown as a figure, no number).
Measured here: test IoU 0.46 after 5 epochs (train IoU 0.87; 0.24 / 0.47 / 0.46 at epochs
  3-5). Only 5 of the paper's 50 epochs.
Runtime: not recorded (5 epochs).
Command:
  jaxnn coordconv render --config experiments/coordconv_rendering_quadrant.py --out runs/coordconv_rendering_quadrant
"""

from jaxnn.configs import TaskConfig


def get_config():
  """The config of this experiment."""
  return TaskConfig(task="rendering", split="quadrant", model="coordconv", epochs=5, num_devices=1)

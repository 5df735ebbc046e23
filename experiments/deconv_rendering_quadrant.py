"""Deconvolution baseline, rendering, quadrant split (Liu et al. 2018).

Reproduces: the deconvolution renderer (107,882 parameters) on the held-out quadrant.
Paper: the deconvolution baseline fails to generalize to the quadrant (figure, no number).
Measured here: test IoU 0.0 after 10 epochs: it paints nothing on train or test (pixel
  accuracy 0.980, that of the all-black canvas).
Runtime: not recorded (10 epochs).
Command:
  jaxnn coordconv render --config experiments/deconv_rendering_quadrant.py --out runs/deconv_rendering_quadrant
"""

from jaxnn.configs import TaskConfig


def get_config():
  """The config of this experiment."""
  return TaskConfig(task="rendering", split="quadrant", model="conv", epochs=10, num_devices=1)

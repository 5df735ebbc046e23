"""Deconvolution baseline, coordinate classification, quadrant split (Liu et al. 2018).

Reproduces: the failure of the deconvolution baseline (m=1, k=3, 103,585 parameters) on the
  held-out quadrant.
Paper: about 0% test accuracy (after a 1,000-epoch grid).
Measured here: 0.0% test accuracy after 4 epochs (train 15.5%). Only 4 of the paper's 1,000 epochs.
Runtime: about 45 s per epoch on a 2-core CPU (4 epochs).
Command:
  jaxnn coordconv classify --config experiments/deconv_classification_quadrant.py --out runs/deconv_classification_quadrant
"""

from jaxnn.configs import TaskConfig


def get_config():
  """The config of this experiment."""
  return TaskConfig(
    task="classification",
    split="quadrant",
    model="conv",
    epochs=4,
    learning_rate=0.001,
    num_devices=1,
  )

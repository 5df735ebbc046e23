"""CoordConv, coordinate classification, quadrant split (Liu et al. 2018, Table 1).

Reproduces: test accuracy of the paper's CoordConv classifier (7,553 parameters) on the held-out
  bottom-right quadrant of Not-so-Clevr.
Paper: 100% test accuracy.
Measured here: 100.0% (729/729) at epoch 11 (test accuracy by epoch 33.5 / 69.1 / 75.6 /
  78.5 / 84.0 / 87.2 / 95.1 / 98.8 / 99.2 / 99.9 / 100%).
Runtime: 835 s (11 epochs) on one core of a 2-core CPU.
Command:
  jaxnn coordconv classify --config experiments/coordconv_classification_quadrant.py --out runs/coordconv_classification_quadrant
"""

from jaxnn.configs import TaskConfig


def get_config():
  """The config of this experiment."""
  return TaskConfig(
    task="classification",
    split="quadrant",
    model="coordconv",
    epochs=25,
    learning_rate=0.01,
    stop_at_perfect=True,
    num_devices=1,
  )

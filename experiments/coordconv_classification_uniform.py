"""CoordConv, coordinate classification, uniform split (Liu et al. 2018, Table 1).

Reproduces: test accuracy of the paper's CoordConv classifier on the uniform random 25% split.
Paper: 100% test accuracy.
Measured here: 100% (768/768) after 1 epoch.
Runtime: about 30 s per epoch on one core of an idle 2-core CPU (1 epoch needed).
Command:
  jaxnn coordconv classify --config experiments/coordconv_classification_uniform.py --out runs/coordconv_classification_uniform
"""

from jaxnn.configs import TaskConfig


def get_config():
  """The config of this experiment."""
  return TaskConfig(
    task="classification",
    split="uniform",
    model="coordconv",
    epochs=6,
    learning_rate=0.01,
    stop_at_perfect=True,
    num_devices=1,
  )

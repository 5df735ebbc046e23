"""LCA of MNIST-FC 784-100-50-10 over 100 epochs (Lan et al. 2019, Section 3).

Reproduces: the loss change allocation of the paper's MNIST-FC (84,060 parameters; SGD lr 0.01,
  momentum 0.9, batch 250) on mnist5k, 1,400 iterations, adaptive Simpson: the fraction of
  parameters that help, the LCA sum against the loss change, per-layer totals and the
  synchronization of layers.
Paper: 50.3-51.6% of parameters help per iteration; the LCA sum equals the loss change;
  per-iteration error <= 1e-3; layers learn in sync more often than chance.
Measured here: 58.4% of the 84,060 parameters help per iteration (mean; range 46.6-70.3%); loss
  change -2.36808 vs LCA sum -2.36807 (relative error 3.6e-6); largest per-iteration
  error 1.4e-4 (2 Simpson splits everywhere).
Runtime: 725 s on one core of a 2-core CPU.
Command:
  jaxnn lca --config experiments/lca_mnist_fc.py --out runs/lca_mnist_fc
"""

from jaxnn.configs import LCAConfig


def get_config():
  """The config of this experiment."""
  return LCAConfig(
    dataset="mnist5k",
    model="fc",
    widths=(100, 50),
    epochs=100,
    batch_size=250,
    optimizer="momentum",
    learning_rate=0.01,
    momentum=0.9,
    method="simpson",
  )

"""`jaxnn lca`: train a network with loss change allocation, write the analyses and plots."""

from __future__ import annotations

from jaxnn import _cli_utils as cu
from jaxnn.configs import LCAConfig


def register(subparsers) -> None:
  p = subparsers.add_parser(
    "lca",
    help="loss change allocation during training (Lan et al. 2019)",
    description="Train a network and allocate every iteration's loss change to its parameters "
    "(full-set gradients, adaptive Simpson). Writes OUT/config.json, OUT/summary.json, "
    "OUT/lca_records.npz, PNG views, metrics.jsonl and checkpoints; rerunning resumes. "
    "Defaults: the paper's MNIST-FC 784-100-50-10, SGD lr 0.01 momentum 0.9, batch 250.",
  )
  cu.add_config_arguments(p, LCAConfig)
  p.set_defaults(func=_lca)


def _lca(args) -> int:
  config, out = cu.resolve(args, LCAConfig, "lca")
  from jaxnn.train import initialize_distributed

  initialize_distributed()  # a no-op unless the environment describes a multi-process job
  from jaxnn.lca import run_lca
  from jaxnn.train._multihost import is_leader, on_leader

  # Process 0 alone claims --out and writes the files; an error there stops every process.
  on_leader(lambda: cu.claim_out(out, "lca", config, config.run_identity(), checkpointed=True))
  summary = run_lca(config, out)
  if not is_leader():
    return 0
  cu.write_config(out, "lca", config, config.run_identity())  # also after a lost one
  keys = (
    "params",
    "steps",
    "train_accuracy",
    "validation_accuracy",
    "test_accuracy",
    "loss_change",
    "lca_sum",
    "relative_error",
    "max_abs_iteration_error",
    "fraction_helped_mean",
    "fraction_helped_of_moved_mean",
    "layer_totals",
    "seconds",
  )
  cu.print_summary(
    summary, keys, f"wrote {out}/config.json, summary.json, lca_records.npz, views and checkpoints/"
  )
  return 0

"""`jaxnn subspace sweep`: d_int90 sweeps (Li et al. 2018)."""

from __future__ import annotations

from jaxnn import _cli_utils as cu
from jaxnn.configs import SweepConfig


def register(subparsers) -> None:
  p = subparsers.add_parser("subspace", help="random-subspace training and intrinsic dimension")
  commands = p.add_subparsers(dest="subspace_command", metavar="COMMAND", required=True)
  s = commands.add_parser(
    "sweep",
    help="train (d, seed) configs in random subspaces and measure d_int90",
    description="Trains every (d, seed) config (vmapped programs, configs split across the "
    "local devices), writes OUT/config.json, OUT/results.json, OUT/results.csv and "
    "OUT/accuracy_vs_d.png. Rerunning the same command resumes: saved configs are not "
    "trained again.",
  )
  cu.add_config_arguments(
    s, SweepConfig, out_help="sweep directory (created; rerunning the command resumes it)"
  )
  s.set_defaults(func=_sweep)


def _sweep(args) -> int:
  config, out = cu.resolve(args, SweepConfig, "subspace sweep")
  from jaxnn.train import initialize_distributed

  initialize_distributed()  # a no-op unless the environment describes a multi-process job
  from jaxnn.subspace._sweep import run_sweep, validate
  from jaxnn.train._multihost import on_leader

  validate(config)
  # Process 0 alone claims --out; an error there stops every process.
  on_leader(lambda: cu.claim_out(out, "subspace sweep", config, config.identity()))

  results = run_sweep(config, out)
  keys = (
    "dataset",
    "model",
    "projection",
    "D",
    "steps",
    "baseline_kind",
    "baseline",
    "threshold",
    "d_int90",
    "mean_validation_accuracy_by_d",
  )
  plot = " and accuracy_vs_d.png" if config.plots else ""
  cu.print_summary(results, keys, f"wrote {out}/config.json, results.json, results.csv{plot}")
  return 0

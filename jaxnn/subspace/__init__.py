"""Intrinsic dimension: training any model in a random subspace (Li et al. 2018).

- Projections P: R^d -> R^D (`dense_projection`, `sparse_projection`,
  `fastfood_projection`, `get_projection`), nested in d, and the
  Walsh-Hadamard transform `walsh_hadamard`.
- The wrapper (`make_subspace`, `subspace_model`, `make_subspace_train_step`):
  any `FunctionalModel` as a model of theta_d, theta_D = theta_0 + P theta_d,
  with SAID's per-tensor scales (Aghajanyan et al. 2021) as an option.
- The toy problem of the paper (`train_toy`, `toy_intrinsic_dim`), whose
  intrinsic dimension is exactly 10.
- d_int90 sweeps (`SweepConfig`, `run_sweep`): configs trained together
  (vmapped, sharded over the devices of one or several processes), resumable,
  of a built-in model and dataset or of your own (`run_sweep(..., model=,
  data=)`); the automatic search (`search_intrinsic_dim`), `intrinsic_dim`,
  `mean_by_dim`, `plot_sweep`. Several processes: docs/distributed.md.

References:
  Li, Farkhoor, Liu, Yosinski. "Measuring the Intrinsic Dimension of Objective
  Landscapes", ICLR 2018.
"""

from jaxnn.subspace._plots import plot_sweep
from jaxnn.subspace._projections import (
  PROJECTIONS,
  DenseState,
  FastfoodState,
  Projection,
  SparseState,
  dense_projection,
  fastfood_projection,
  get_projection,
  sparse_projection,
  walsh_hadamard,
)
from jaxnn.subspace._search import SearchResult, intrinsic_dim, mean_by_dim, search_intrinsic_dim
from jaxnn.subspace._sweep import SweepConfig, run_sweep
from jaxnn.subspace._toy import ToyResult, toy_intrinsic_dim, toy_loss, toy_model, train_toy
from jaxnn.subspace._wrapper import (
  Subspace,
  SubspaceModel,
  SubspaceState,
  make_subspace,
  make_subspace_train_step,
  subspace_model,
)

__all__ = [
  "DenseState",
  "FastfoodState",
  "PROJECTIONS",
  "Projection",
  "SearchResult",
  "SparseState",
  "Subspace",
  "SweepConfig",
  "intrinsic_dim",
  "mean_by_dim",
  "plot_sweep",
  "run_sweep",
  "search_intrinsic_dim",
  "SubspaceModel",
  "SubspaceState",
  "ToyResult",
  "dense_projection",
  "fastfood_projection",
  "get_projection",
  "make_subspace",
  "make_subspace_train_step",
  "sparse_projection",
  "subspace_model",
  "toy_intrinsic_dim",
  "toy_loss",
  "toy_model",
  "train_toy",
  "walsh_hadamard",
]

"""LCA: loss change allocation, computed during training (Lan et al. 2019).

The loss change of every iteration is split among the parameters by a path
integral of the full-set gradient along the step. Pieces, from the inside out:
- integrators (pure): `first_order`, `simpson`, `adaptive_simpson`, all
  adaptive refinement in `refine_simpson` (its carry: `SimpsonLoop`);
- `trajectory_lca(loss_fn, iterates)`: the LCA of a given trajectory
  (iterates in memory, or files of `save_iterate` / `load_iterates`);
- evaluation sets in chunks (`make_eval_sets`), their full-set loss
  (`full_set_loss`), the parameters' layers and neurons in the model's order
  (`make_layout`, `definition_order`);
- `lca_accumulator(model, num_steps)`: init / update functions that allocate
  one iteration and accumulate summaries; `with_lca(train_step, acc)` wraps
  any train step for `jaxnn.train.run_loop`; `LinearStem` (`fc_stem`,
  `check_stem`): an exact saving for models whose first layer is affine in
  its weights (`drop_zero_features`: without the input features 0 in every
  evaluation example); `LCAStream`: the full per-parameter array on disk;
- `summarize`, `synchronization`: the paper's analyses; `plot_all`: its views;
- `run_lca(LCAConfig(...), workdir, dataset=..., model=...)`: the whole job
  behind `jaxnn lca`, on a built-in or your own model and data
  (`init_lca_model`, `compiler_options`: its faster-compiling setup).

References:
  Lan, Liu, Zhou, Yosinski. "LCA: Loss Change Allocation for Neural Network
  Training", NeurIPS 2019. https://arxiv.org/abs/1909.01440
"""

from jaxnn.lca._accumulate import (
  METHODS,
  LCAAccumulator,
  LCAState,
  SetRecord,
  lca_accumulator,
  with_lca,
)
from jaxnn.lca._analysis import records_to_numpy, summarize, synchronization
from jaxnn.lca._eval_sets import EvalSet, make_eval_set, make_eval_sets
from jaxnn.lca._full_set import full_set_loss
from jaxnn.lca._integrate import (
  MAX_SPLITS,
  THRESHOLD,
  Allocation,
  Point,
  SimpsonLoop,
  adaptive_simpson,
  first_order,
  refine_simpson,
  simpson,
  simpson_weights,
  tree_sum,
)
from jaxnn.lca._layout import Layout, definition_order, layer_names, make_layout
from jaxnn.lca._plots import VIEWS, plot_all
from jaxnn.lca._run import LCAConfig, compiler_options, init_lca_model, run_lca
from jaxnn.lca._stem import LinearStem, check_stem, drop_zero_features, fc_stem
from jaxnn.lca._stream import LCAStream
from jaxnn.lca._trajectory import TrajectoryLCA, load_iterates, save_iterate, trajectory_lca

__all__ = [
  "Allocation",
  "EvalSet",
  "LCAAccumulator",
  "LCAConfig",
  "LCAState",
  "LCAStream",
  "Layout",
  "LinearStem",
  "MAX_SPLITS",
  "METHODS",
  "Point",
  "SetRecord",
  "SimpsonLoop",
  "THRESHOLD",
  "TrajectoryLCA",
  "VIEWS",
  "adaptive_simpson",
  "check_stem",
  "compiler_options",
  "definition_order",
  "drop_zero_features",
  "fc_stem",
  "first_order",
  "full_set_loss",
  "init_lca_model",
  "layer_names",
  "load_iterates",
  "lca_accumulator",
  "make_eval_set",
  "make_eval_sets",
  "make_layout",
  "plot_all",
  "records_to_numpy",
  "refine_simpson",
  "save_iterate",
  "run_lca",
  "simpson",
  "simpson_weights",
  "summarize",
  "synchronization",
  "trajectory_lca",
  "tree_sum",
  "with_lca",
]

"""LCA: loss change allocation, computed during training (Lan et al. 2019).

The loss change of every iteration is split among the parameters by a path
integral of the full-set gradient along the step. Pieces, from the inside out:

- integrators (pure): `first_order`, `simpson`, `adaptive_simpson`;
- `lca_accumulator(model, num_steps)`: init / update functions that allocate
  one iteration and accumulate summaries; `with_lca(train_step, acc)` wraps
  any train step for `jaxnn.train.run_loop`; `LinearStem` (`fc_stem`,
  `check_stem`): an exact saving for models whose first layer is affine in
  its weights (`drop_zero_features`: without the input features 0 in every
  evaluation example);
- `summarize`, `synchronization`: the paper's analyses; `plot_all`: its views;
- `run_lca(LCAConfig(...), workdir)`: the whole job behind `jaxnn lca`
  (`init_model`, `compiler_options`: its faster-compiling setup).

References:
  Lan, Liu, Zhou, Yosinski. "LCA: Loss Change Allocation for Neural Network
  Training", NeurIPS 2019. https://arxiv.org/abs/1909.01440
"""

from jaxnn.lca._accumulate import (
  METHODS,
  EvalSet,
  Layout,
  LCAAccumulator,
  LCAState,
  LinearStem,
  SetRecord,
  check_stem,
  drop_zero_features,
  fc_stem,
  full_set_loss,
  layer_names,
  lca_accumulator,
  make_eval_set,
  make_eval_sets,
  make_layout,
  with_lca,
)
from jaxnn.lca._analysis import records_to_numpy, summarize, synchronization
from jaxnn.lca._integrate import (
  MAX_SPLITS,
  THRESHOLD,
  Allocation,
  Point,
  adaptive_simpson,
  first_order,
  simpson,
  simpson_weights,
  tree_sum,
)
from jaxnn.lca._plots import VIEWS, plot_all
from jaxnn.lca._run import LCAConfig, compiler_options, init_model, run_lca
from jaxnn.lca._stream import LCAStream

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
  "THRESHOLD",
  "VIEWS",
  "adaptive_simpson",
  "check_stem",
  "compiler_options",
  "drop_zero_features",
  "fc_stem",
  "first_order",
  "full_set_loss",
  "init_model",
  "layer_names",
  "lca_accumulator",
  "make_eval_set",
  "make_eval_sets",
  "make_layout",
  "plot_all",
  "records_to_numpy",
  "run_lca",
  "simpson",
  "simpson_weights",
  "summarize",
  "synchronization",
  "tree_sum",
  "with_lca",
]

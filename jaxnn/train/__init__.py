"""The training engine: pure steps, a data-parallel loop, checkpoints, metrics.

Methods build on three layers:
- `FunctionalModel` (`from_nnx`, `from_linen`, `from_equinox`, `from_function`,
  `as_model`): any model as pure functions.
- `make_train_step` / `make_eval_step` / `make_loss_fn`: pure steps to wrap.
- `run_loop`: jit + sharding over devices, Orbax resume, JSONL metrics, NaN guard.
`train_and_evaluate(TrainConfig(...), workdir)` is the plain supervised job.
"""

from jaxnn.train._checkpoint import Checkpointer
from jaxnn.train._functional import (
  FunctionalModel,
  as_model,
  from_equinox,
  from_function,
  from_linen,
  from_nnx,
  kernel_l2,
)
from jaxnn.train._inputs import as_dataset
from jaxnn.train._io import MetricsLog, to_jsonable, write_json_atomic
from jaxnn.train._loop import TrainConfig, make_evaluator, run_loop, train_and_evaluate
from jaxnn.train._optim import OPTIMIZERS, make_optimizer
from jaxnn.train._parallel import DataParallel, data_parallel, initialize_distributed
from jaxnn.train._steps import (
  CLASSIFICATION,
  REGRESSION,
  Objective,
  TrainState,
  init_train_state,
  make_eval_step,
  make_loss_fn,
  make_train_step,
)

__all__ = [
  "CLASSIFICATION",
  "Checkpointer",
  "DataParallel",
  "FunctionalModel",
  "MetricsLog",
  "OPTIMIZERS",
  "Objective",
  "REGRESSION",
  "TrainConfig",
  "TrainState",
  "as_dataset",
  "as_model",
  "data_parallel",
  "from_equinox",
  "from_function",
  "from_linen",
  "from_nnx",
  "init_train_state",
  "initialize_distributed",
  "kernel_l2",
  "make_eval_step",
  "make_evaluator",
  "make_loss_fn",
  "make_optimizer",
  "make_train_step",
  "run_loop",
  "to_jsonable",
  "train_and_evaluate",
  "write_json_atomic",
]

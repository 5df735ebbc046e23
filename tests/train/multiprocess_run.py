"""The training run shared by the multi-process test and its single-process twin."""

from jaxnn.data import EpochBatcher, load_dataset
from jaxnn.models import create_model
from jaxnn.train import (
  data_parallel,
  from_nnx,
  init_train_state,
  make_optimizer,
  make_train_step,
  run_loop,
)

NUM_DEVICES = 4
STEPS = 30


def train(workdir, steps: int = STEPS):
  model = from_nnx(create_model("fc", (8, 8, 1), 10, widths=(16,), seed=0))
  opt = make_optimizer("momentum", 0.05)
  batcher = EpochBatcher(load_dataset("digits").train, 64, 0)
  return run_loop(
    make_train_step(model, opt),
    init_train_state(model, opt),
    batcher,
    steps,
    dp=data_parallel(64, NUM_DEVICES),
    workdir=workdir,
    progress=False,
    log_every=10,
    checkpoint_every=10,
    run_config={"test": "multiprocess"},
  )

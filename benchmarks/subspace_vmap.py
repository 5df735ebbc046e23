"""16 subspace configs trained together (one vmapped program) vs one after another.

Side by side in one process, same threads: the throughput (config-steps per
second, steady state, compilation excluded) of
  - one after another: the single-config step of `make_subspace_train_step`
    (jitted once, its frozen state an argument), run config after config;
  - together: the sweep's stacked step (`make_stack_step`), 16 configs of 4
    dims x 4 seeds in one program, padded to the largest d and masked, vmapped
    in chunks of `chunk` configs (`jax.lax.map`; the sweep's default is
    `vmap_chunk`);
  - exact-d programs: the same 16 configs as 4 programs (one per d, 4 seeds
    vmapped, no padding), to weigh padding + masking against one program per d.

Usage (pin the threads; the machine is shared, so ratios are noisy):
  taskset -c 0,1 python benchmarks/subspace_vmap.py --steps 20
  taskset -c 0,1 python benchmarks/subspace_vmap.py --steps 20 --datasets digits --widths 32
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn.data import EpochBatcher, load_dataset
from jaxnn.models import count_params, create_model
from jaxnn.subspace import make_subspace, make_subspace_train_step
from jaxnn.subspace._sweep_engine import (StackedBatcher, make_stack_step, subspace_stack,
                                          vmap_chunk)
from jaxnn.train import from_nnx, init_train_state, make_optimizer

DIMS = (100, 200, 400, 750)
SEEDS = (0, 1, 2, 3)


def _seconds_per_step(step, carry, batches, steps):
  carry, m = step(carry, *batches(0))
  carry, m = step(carry, *batches(1))
  jax.block_until_ready(m)
  t = time.perf_counter()
  for s in range(steps):
    carry, m = step(carry, *batches(s + 2))
  jax.block_until_ready(m)
  return (time.perf_counter() - t) / steps


def bench(dataset: str, projection: str, steps: int, chunks, widths=(200, 200)) -> dict:
  data = load_dataset(dataset)
  model_init = lambda key: from_nnx(create_model("fc", data.input_shape, data.num_classes, seed=key,
                                                 widths=widths))
  D = count_params(model_init(jax.random.PRNGKey(0)).params)
  optimizer = make_optimizer("adam", 1e-3)
  configs = [(d, s) for d in DIMS for s in SEEDS]
  row = {"dataset": dataset, "model": f"fc {widths}", "D": D, "projection": projection,
         "configs": len(configs), "steps_timed": steps}

  # One after another: one compiled single-config step reused for every config.
  per_config = []
  for d, seed in configs:
    subspace = make_subspace(model_init, d, projection)
    state = subspace.init(jax.random.PRNGKey(seed))
    step = jax.jit(make_subspace_train_step(subspace, optimizer), donate_argnums=0)
    batcher = EpochBatcher(data.train, 128, seed)
    carry = init_train_state(subspace.bind(state), optimizer, seed)
    per_config.append(_seconds_per_step(
        lambda c, x, y: step(c, x, y, state, jnp.int32(d)), carry,
        lambda s: batcher.at_step(s), steps))
  sequential = len(configs) / sum(per_config)
  row["one_after_another_config_steps_per_s"] = sequential

  dims, seeds = [d for d, _ in configs], [s for _, s in configs]
  for chunk in chunks:
    member, stack = subspace_stack(model_init, projection, dims, seeds, optimizer)
    step = jax.jit(make_stack_step(member, optimizer, chunk=chunk), donate_argnums=0)
    batcher = StackedBatcher(data.train, 128, seeds)
    t = _seconds_per_step(step, stack, batcher.at_step, steps)
    row[f"together_chunk{chunk}_config_steps_per_s"] = len(configs) / t
    row[f"together_chunk{chunk}_speedup"] = len(configs) / t / sequential

  auto = vmap_chunk(D, len(configs))
  row["auto_chunk"] = auto
  exact = 0.0
  for d in DIMS:
    member, stack = subspace_stack(model_init, projection, [d] * len(SEEDS), list(SEEDS), optimizer)
    step = jax.jit(make_stack_step(member, optimizer, chunk=min(auto, len(SEEDS))), donate_argnums=0)
    batcher = StackedBatcher(data.train, 128, list(SEEDS))
    exact += _seconds_per_step(step, stack, batcher.at_step, steps)
  row["exact_d_programs_config_steps_per_s"] = len(configs) / exact
  row["exact_d_programs_speedup"] = len(configs) / exact / sequential
  return row


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=20, help="timed steps per program")
  parser.add_argument("--projection", default="fastfood")
  parser.add_argument("--datasets", default="digits,mnist5k", help="comma-separated")
  parser.add_argument("--widths", default="200,200", help="hidden widths of the FC model")
  args = parser.parse_args()
  widths = tuple(int(w) for w in args.widths.split(","))
  print(f"jax {jax.__version__}, {jax.device_count()} device(s)", flush=True)
  chunks = {"digits": (1, 16), "mnist5k": (1, 2, 4, 16)}
  for dataset in args.datasets.split(","):
    row = bench(dataset, args.projection, args.steps, chunks.get(dataset, (1, 16)), widths)
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}),
          flush=True)


if __name__ == "__main__":
  main()

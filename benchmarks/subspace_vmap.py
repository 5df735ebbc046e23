"""16 subspace configs trained together (one program) vs one after another.

Side by side in one process, same threads: the throughput (config-steps per
second, steady state, compilation excluded) of
  - one after another: the single-config step of `make_subspace_train_step`
    (jitted once per d, its frozen state an argument), run config after config;
  - together: the sweep's stacked step (`make_stack_step`), 16 configs of 4
    dims x 4 seeds in one program, padded to the largest d and masked, in
    chunks of `chunk` configs (`jax.lax.map` over chunks, each chunk vmapped;
    chunk 1 is a plain `lax.map`; the sweep's default is `vmap_chunk`), the
    training inputs on the device and each step's batches gathered there from
    indices, as the sweep does; `host_batches`: the default chunk with the
    16 batches gathered and stacked on the host and copied every step instead;
  - exact-d programs: the same 16 configs as 4 programs (one per d, 4 seeds,
    no padding), to weigh padding + masking against one program per d.
Every variant is timed `--repeats` times, interleaved (A B C A B C ...), and
the fastest repeat counts, so that a burst of load from other processes
penalizes no variant in particular.

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

from jaxnn.data import EpochBatcher, load_dataset
from jaxnn.models import count_params, create_model
from jaxnn.subspace import make_subspace, make_subspace_train_step
from jaxnn.subspace._sweep_engine import (StackedBatcher, make_stack_step, subspace_stack,
                                          vmap_chunk)
from jaxnn.train import from_nnx, init_train_state, make_optimizer

DIMS = (100, 200, 400, 750)
SEEDS = (0, 1, 2, 3)


class Timed:
  """A step, its carry and batches; `run(steps)` returns seconds per step (carry kept)."""

  def __init__(self, step, carry, batches):
    self.step, self.carry, self.batches, self.at = step, carry, batches, 0
    self.run(2)  # compile and warm up

  def run(self, steps: int) -> float:
    carry, m = self.carry, None
    jax.block_until_ready(carry)
    t = time.perf_counter()
    for _ in range(steps):
      carry, m = self.step(carry, *self.batches(self.at))
      self.at += 1
    jax.block_until_ready(m)
    self.carry = carry
    return (time.perf_counter() - t) / steps


def bench(dataset: str, projection: str, steps: int, repeats: int, chunks, widths) -> dict:
  data = load_dataset(dataset)
  model_init = lambda key: from_nnx(create_model("fc", data.input_shape, data.num_classes, seed=key,
                                                 widths=widths))
  D = count_params(model_init(jax.random.PRNGKey(0)).params)
  optimizer = make_optimizer("adam", 1e-3)
  configs = [(d, s) for d in DIMS for s in SEEDS]
  auto = vmap_chunk(len(configs))
  chunks = sorted(set(chunks) | {auto})
  row = {"dataset": dataset, "model": f"fc {widths}", "D": D, "projection": projection,
         "configs": len(configs), "steps_timed": steps, "repeats": repeats, "auto_chunk": auto}

  sequential = []  # one compiled single-config step per d, reused by its seeds
  for d in DIMS:
    subspace = make_subspace(model_init, d, projection)
    step = jax.jit(make_subspace_train_step(subspace, optimizer), donate_argnums=0)
    for seed in SEEDS:
      state = subspace.init(jax.random.PRNGKey(seed))
      sequential.append(Timed(
          lambda c, x, y, step=step, state=state, d=d: step(c, x, y, state, jnp.int32(d)),
          init_train_state(subspace.bind(state), optimizer, seed),
          EpochBatcher(data.train, 128, seed).at_step))

  x_train = jax.device_put(data.train.x)

  def stacked(dims, seeds, chunk, indexed=True):
    member, stack = subspace_stack(model_init, projection, dims, seeds, optimizer)
    step = jax.jit(make_stack_step(member, optimizer, chunk=chunk, indexed=indexed),
                   donate_argnums=0)
    batcher = StackedBatcher(data.train, 128, seeds, indices=indexed)
    if indexed:
      return Timed(lambda c, i, y: step(c, i, y, x_train), stack, batcher.at_step)
    return Timed(step, stack, batcher.at_step)

  dims, seeds = [d for d, _ in configs], [s for _, s in configs]
  together = {f"together_chunk{chunk}": stacked(dims, seeds, chunk) for chunk in chunks}
  together["together_host_batches"] = stacked(dims, seeds, auto, indexed=False)
  exact = [stacked([d] * len(SEEDS), list(SEEDS), min(auto, len(SEEDS))) for d in DIMS]

  best: dict[str, float] = {}
  for _ in range(repeats):
    times = {"one_after_another": sum(t.run(steps) for t in sequential),
             "exact_d_programs": sum(t.run(steps) for t in exact),
             **{name: t.run(steps) for name, t in together.items()}}
    best = {k: min(v, best.get(k, v)) for k, v in times.items()}
  base = len(configs) / best["one_after_another"]
  for name, seconds in best.items():
    row[f"{name}_config_steps_per_s"] = len(configs) / seconds
    row[f"{name}_speedup"] = len(configs) / seconds / base
  return row


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=20, help="timed steps per program and repeat")
  parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats (best counts)")
  parser.add_argument("--projection", default="fastfood")
  parser.add_argument("--datasets", default="digits,mnist5k", help="comma-separated")
  parser.add_argument("--widths", default="200,200", help="hidden widths of the FC model")
  parser.add_argument("--chunks", default="1,16", help="configs vmapped at once (plus the default)")
  args = parser.parse_args()
  widths = tuple(int(w) for w in args.widths.split(","))
  chunks = [int(c) for c in args.chunks.split(",")]
  print(f"jax {jax.__version__}, {jax.device_count()} device(s)", flush=True)
  for dataset in args.datasets.split(","):
    row = bench(dataset, args.projection, args.steps, args.repeats, chunks, widths)
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}),
          flush=True)


if __name__ == "__main__":
  main()

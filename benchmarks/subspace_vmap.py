"""16 subspace configs trained together (one program) vs one after another.

Side by side in one process, same threads: the throughput (config-steps per
second, steady state, compilation excluded) of
  - direct: the foundation's train step of the full model (no subspace), per
    seed, as the reference cost of the model itself;
  - one after another: the single-config step of `make_subspace_train_step`
    (jitted once per d, its frozen state an argument), run config after config;
  - together: the sweep's stacked step (`make_stack_step`), 16 configs of 4
    dims x 4 seeds in one program, padded to the largest d and masked, in
    chunks of `chunk` configs (`jax.lax.map` over chunks, each chunk vmapped;
    chunk 1 is a plain `lax.map`; the sweep's default is `vmap_chunk`), the
    training inputs on the device and each step's batches gathered there from
    indices, as the sweep does; `host_batches`: the default chunk with the
    16 batches gathered and stacked on the host and copied every step instead;
  - one-config programs: the sweep's stacked step with one config per program
    (no `jax.lax.map` loop; the sweep's default for convolutional models on a
    CPU), one program after another;
  - exact-d programs: the same 16 configs as 4 programs (one per d, 4 seeds,
    no padding), to weigh padding + masking against one program per d.
Every variant is timed `--repeats` times, interleaved (A B C A B C ...), and
the fastest repeat counts, so that a burst of load from other processes
penalizes no variant in particular.

`--breakdown` (LeNet) also times the model's own operations one by one at the
same batch (forward convolutions, their weight and input gradients, the
pooling's forward and backward), each next to its FLOP count, to show where a
LeNet step's time goes.

`--out` writes the result as JSON: one run per dataset and model (a run replaces the
file's run of the same dataset and model), each with the command that produced it.

Usage (pin the threads; the machine is shared, so ratios are noisy):
  taskset -c 0,1 python benchmarks/subspace_vmap.py --steps 20 --datasets mnist5k \
    --out benchmarks/results/subspace_vmap.json
  taskset -c 0,1 python benchmarks/subspace_vmap.py --steps 50 --datasets digits --widths 32 \
    --out benchmarks/results/subspace_vmap.json
  taskset -c 0 python benchmarks/subspace_vmap.py --threads 1 --datasets mnist5k --model lenet \
    --projection sparse --dims 300,600 --seeds 0,1 --chunks 1 --breakdown
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import _results  # noqa: I001 (before _threads: it notes the caller's XLA settings)
from _threads import pin_xla_threads

pin_xla_threads(int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else 2)

import jax  # noqa: E402 (after the thread settings)
import jax.numpy as jnp
import numpy as np  # noqa: E402

from jaxnn.data import EpochBatcher, load_dataset
from jaxnn.models import count_params, create_model
from jaxnn.subspace import make_subspace, make_subspace_train_step
from jaxnn.subspace._sweep_engine import (
  StackedBatcher,
  make_stack_step,
  subspace_stack,  # noqa: E402
  vmap_chunk,
)
from jaxnn.train import from_nnx, init_train_state, make_optimizer, make_train_step  # noqa: E402


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


def bench(
  dataset: str,
  model: str,
  projection: str,
  steps: int,
  repeats: int,
  chunks,
  widths,
  grid_dims,
  grid_seeds,
) -> dict:
  data = load_dataset(dataset)
  model_init = lambda key: from_nnx(
    create_model(model, data.input_shape, data.num_classes, seed=key, widths=widths)
  )
  D = count_params(model_init(jax.random.PRNGKey(0)).params)
  optimizer = make_optimizer("adam", 1e-3)
  configs = [(d, s) for d in grid_dims for s in grid_seeds]
  auto = vmap_chunk(len(configs))
  chunks = sorted(set(chunks) | {auto})
  row = {
    "dataset": dataset,
    "model": model + (f" {widths}" if model == "fc" else ""),
    "D": D,
    "projection": projection,
    "configs": len(configs),
    "steps_timed": steps,
    "repeats": repeats,
    "auto_chunk": auto,
  }

  direct = []  # the full model, no subspace: what the model itself costs
  for seed in grid_seeds:
    full = model_init(jax.random.PRNGKey(seed))
    step = jax.jit(make_train_step(full, optimizer), donate_argnums=0)
    direct.append(
      Timed(
        step, init_train_state(full, optimizer, seed), EpochBatcher(data.train, 128, seed).at_step
      )
    )

  sequential = []  # one compiled single-config step per d, reused by its seeds
  for d in grid_dims:
    subspace = make_subspace(model_init, d, projection)
    step = jax.jit(make_subspace_train_step(subspace, optimizer), donate_argnums=0)
    for seed in grid_seeds:
      state = subspace.init(jax.random.PRNGKey(seed))
      sequential.append(
        Timed(
          lambda c, x, y, step=step, state=state, d=d: step(c, x, y, state, jnp.int32(d)),
          init_train_state(subspace.bind(state), optimizer, seed),
          EpochBatcher(data.train, 128, seed).at_step,
        )
      )

  x_train = jax.device_put(data.train.x)

  def stacked(dims, seeds, chunk, indexed=True):
    member, stack = subspace_stack(model_init, projection, dims, seeds, optimizer)
    step = jax.jit(
      make_stack_step(member, optimizer, chunk=chunk, indexed=indexed), donate_argnums=0
    )
    batcher = StackedBatcher(data.train, 128, seeds, indices=indexed)
    if indexed:
      return Timed(lambda c, i, y: step(c, i, y, x_train), stack, batcher.at_step)
    return Timed(step, stack, batcher.at_step)

  dims, seeds = [d for d, _ in configs], [s for _, s in configs]
  together = {f"together_chunk{chunk}": stacked(dims, seeds, chunk) for chunk in chunks}
  together["together_host_batches"] = stacked(dims, seeds, auto, indexed=False)
  exact = [
    stacked([d] * len(grid_seeds), list(grid_seeds), min(auto, len(grid_seeds))) for d in grid_dims
  ]
  single = [stacked([d], [s], 1) for d, s in configs]

  best: dict[str, float] = {}
  for _ in range(repeats):
    times = {
      "direct_per_seed": sum(t.run(steps) for t in direct) * len(grid_dims),
      "one_after_another": sum(t.run(steps) for t in sequential),
      "exact_d_programs": sum(t.run(steps) for t in exact),
      "one_config_programs": sum(t.run(steps) for t in single),
      **{name: t.run(steps) for name, t in together.items()},
    }
    best = {k: min(v, best.get(k, v)) for k, v in times.items()}
  base = len(configs) / best["one_after_another"]
  for name, seconds in best.items():
    row[f"{name}_config_steps_per_s"] = len(configs) / seconds
    row[f"{name}_speedup"] = len(configs) / seconds / base
  row["ms_per_config_step"] = {k: round(v / len(configs) * 1e3, 2) for k, v in best.items()}
  return row


def lenet_breakdown(repeats: int, batch: int = 128) -> dict:
  """Milliseconds of each LeNet operation at `batch` (best of `repeats`), with its GFLOP/s."""
  dn = ("NHWC", "HWIO", "NHWC")
  conv = lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=dn)
  pool = lambda h: jax.lax.reduce_window(
    h, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID"
  )
  rng = np.random.default_rng(0)
  arr = lambda *shape: jnp.asarray(rng.standard_normal(shape, dtype=np.float32))
  x, w0, h1, w1 = arr(batch, 28, 28, 1), arr(5, 5, 1, 6), arr(batch, 12, 12, 6), arr(5, 5, 6, 16)
  g0, g1, p0 = arr(batch, 24, 24, 6), arr(batch, 8, 8, 16), arr(batch, 24, 24, 6)
  flops0, flops1 = 2 * batch * 24 * 24 * 6 * 25, 2 * batch * 8 * 8 * 16 * 150
  weight_grad = lambda x, w, g: jax.vjp(lambda w: conv(x, w), w)[1](g)
  input_grad = lambda x, w, g: jax.vjp(lambda x: conv(x, w), x)[1](g)
  pool_grad = lambda h, g: jax.vjp(pool, h)[1](g)
  ops = {
    "conv0 forward (1->6)": (conv, (x, w0), flops0),
    "conv0 weight gradient": (weight_grad, (x, w0, g0), flops0),
    "conv1 forward (6->16)": (conv, (h1, w1), flops1),
    "conv1 weight gradient": (weight_grad, (h1, w1, g1), flops1),
    "conv1 input gradient": (input_grad, (h1, w1, g1), flops1),
    "pool0 forward": (pool, (p0,), 0),
    "pool0 backward": (pool_grad, (p0, pool(p0)), 0),
  }
  out = {}
  for name, (fn, args, flops) in ops.items():
    fn = jax.jit(fn)
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeats):
      t = time.perf_counter()
      for _ in range(10):
        r = fn(*args)
      jax.block_until_ready(r)
      best = min(best, (time.perf_counter() - t) / 10)
    out[name] = {
      "ms": round(best * 1e3, 2),
      **({"GFLOP/s": round(flops / best / 1e9, 2)} if flops else {}),
    }
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=20, help="timed steps per program and repeat")
  parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats (best counts)")
  parser.add_argument(
    "--threads", type=int, default=2, help="1: XLA's Eigen pool off (pin with taskset -c 0)"
  )
  parser.add_argument("--model", default="fc", help="fc or lenet")
  parser.add_argument("--dims", default="100,200,400,750", help="comma-separated subspace dims")
  parser.add_argument("--seeds", default="0,1,2,3", help="comma-separated seeds per dim")
  parser.add_argument(
    "--breakdown", action="store_true", help="also time LeNet's operations one by one"
  )
  parser.add_argument("--projection", default="fastfood")
  parser.add_argument("--datasets", default="digits,mnist5k", help="comma-separated")
  parser.add_argument("--widths", default="200,200", help="hidden widths of the FC model")
  parser.add_argument("--chunks", default="1,16", help="configs vmapped at once (plus the default)")
  parser.add_argument("--out", default=None, help="write the result as JSON here")
  args = parser.parse_args()
  widths = tuple(int(w) for w in args.widths.split(","))
  chunks = [int(c) for c in args.chunks.split(",")]
  dims = tuple(int(d) for d in args.dims.split(","))
  seeds = tuple(int(s) for s in args.seeds.split(","))
  print(
    f"jax {jax.__version__}, {jax.device_count()} device(s), threads {args.threads}", flush=True
  )
  extra = {"threads": args.threads, "jax": jax.__version__}
  if args.breakdown:
    extra["lenet_ops_batch_128"] = lenet_breakdown(args.repeats)
    print(json.dumps({"lenet_ops_batch_128": extra["lenet_ops_batch_128"]}), flush=True)
  runs = []
  for dataset in args.datasets.split(","):
    row = bench(
      dataset, args.model, args.projection, args.steps, args.repeats, chunks, widths, dims, seeds
    )
    print(
      json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}),
      flush=True,
    )
    runs.append({**row, **extra})
  if args.out:
    _results.write(
      args.out,
      {
        "setup": f"{len(dims) * len(seeds)} configs = dims {{{', '.join(map(str, dims))}}} x "
        f"seeds {{{', '.join(map(str, seeds))}}}, {args.projection}, batch 128, Adam; best of "
        "interleaved repeats",
        "unit": "config-steps per second",
        "runs": runs,
      },
      runs_key=("dataset", "model"),
    )


if __name__ == "__main__":
  main()

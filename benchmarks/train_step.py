"""jaxnn's training step vs an equivalent PyTorch CPU loop, and data-parallel overhead.

Both sides train the same MLP (784-200-200-10, ReLU, Adam lr 1e-3 b2 0.99,
batch 128, cross-entropy) on the same random batches, in one process, timed in
alternating rounds so that machine noise hits both; the figure is the ratio of
medians. Run pinned to the same cores for both, e.g.

  taskset -c 0 python benchmarks/train_step.py --threads 1 --out benchmarks/results/train_step.json
  taskset -c 0,1 python benchmarks/train_step.py --threads 2 \
    --out benchmarks/results/train_step.json

`--out` writes the result as JSON; the file keeps one run per thread count (a run replaces
the file's run with the same `--threads`), each with the command that produced it.

The data-parallel part compares the same jitted step on a 1-device mesh and on
a 2-device mesh (fake CPU devices sharing the same cores, so the ratio is the
pure overhead of partitioning and the gradient all-reduce).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import _results  # noqa: I001 (before _threads: it notes the caller's XLA settings)
from _threads import pin_xla_threads


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--threads", type=int, default=1)
  parser.add_argument("--steps", type=int, default=50, help="steps per timed round")
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--out", default=None, help="write the result as JSON here")
  args = parser.parse_args()
  pin_xla_threads(args.threads)

  import jax

  jax.config.update("jax_num_cpu_devices", 2)
  import numpy as np
  import torch

  torch.set_num_threads(args.threads)

  from jaxnn.models import create_model
  from jaxnn.train import data_parallel, from_nnx, init_train_state, make_optimizer, make_train_step

  rng = np.random.default_rng(0)
  xs = rng.random((args.steps, 128, 28, 28, 1), dtype=np.float32)
  ys = rng.integers(0, 10, (args.steps, 128)).astype(np.int32)

  model = from_nnx(create_model("fc", (28, 28, 1), 10))
  opt = make_optimizer("adam", 1e-3)
  step = make_train_step(model, opt)

  def jax_runner(num_devices):
    dp = data_parallel(128, num_devices)
    jitted = jax.jit(
      step,
      in_shardings=(dp.replicated, dp.batch, dp.batch),
      out_shardings=(dp.replicated, dp.replicated),
      donate_argnums=0,
    )
    batches = [dp.shard_batch(x, y) for x, y in zip(xs, ys)]
    state = [jax.device_put(init_train_state(model, opt), dp.replicated, may_alias=False)]

    def run():
      s = state[0]
      for x, y in batches:
        s, m = jitted(s, x, y)
        jax.block_until_ready(s)  # every step synchronized, like the torch loop
      state[0] = s

    return run

  net = torch.nn.Sequential(
    torch.nn.Flatten(),
    torch.nn.Linear(784, 200),
    torch.nn.ReLU(),
    torch.nn.Linear(200, 200),
    torch.nn.ReLU(),
    torch.nn.Linear(200, 10),
  )
  torch_opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.99))
  txs, tys = torch.from_numpy(xs), torch.from_numpy(ys).long()

  def torch_run():
    for x, y in zip(txs, tys):
      torch_opt.zero_grad(set_to_none=True)
      loss = torch.nn.functional.cross_entropy(net(x), y)
      loss.backward()
      torch_opt.step()

  runners = {
    "jaxnn (1 device)": jax_runner(1),
    "jaxnn (2-device data parallel)": jax_runner(2),
    "pytorch": torch_run,
  }
  for run in runners.values():
    run()  # compile / warm up
  times = {k: [] for k in runners}
  for _ in range(args.rounds):
    for name, run in runners.items():
      t0 = time.perf_counter()
      run()
      times[name].append((time.perf_counter() - t0) / args.steps * 1e3)
  med = {k: statistics.median(v) for k, v in times.items()}
  print(
    f"threads={args.threads} steps/round={args.steps} rounds={args.rounds} "
    f"jax={jax.__version__} torch={torch.__version__}"
  )
  for k, v in med.items():
    print(f"  {k:32s} {v:7.3f} ms/step (median)")
  j1, j2, pt = med["jaxnn (1 device)"], med["jaxnn (2-device data parallel)"], med["pytorch"]
  print(f"  speed-up jaxnn vs pytorch: {pt / j1:.2f}x (goal >= 1)")
  print(f"  data-parallel overhead, 2 devices vs 1 on the same cores: {j2 / j1:.2f}x")
  sys.stdout.flush()
  if args.out:
    _results.write(
      args.out,
      {
        "model": "MLP 784-200-200-10, Adam lr 1e-3 b2 0.99, batch 128, random batches",
        "unit": "median ms per step",
        "runs": [
          {
            "threads": args.threads,
            "steps_per_round": args.steps,
            "rounds": args.rounds,
            "jax": jax.__version__,
            "torch": torch.__version__,
            "jaxnn_ms": j1,
            "jaxnn_2dev_data_parallel_ms": j2,
            "torch_ms": pt,
            "speedup_vs_torch": pt / j1,
            "data_parallel_2dev_vs_1dev": j2 / j1,
            "rounds_ms": times,
          }
        ],
      },
      runs_key=("threads",),
    )


if __name__ == "__main__":
  main()

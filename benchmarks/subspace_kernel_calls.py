"""The two Fastfood kernel calls of the MNIST FC subspace step, timed alone.

The forward (theta_0 + P theta_d written into the 6 parameter leaves of
784-200-200-10, D = 199,210, d = 750) and its backward (P^T of the leaves'
cotangents), each jitted on its own, one thread: hot (called back to back),
and after an XLA sweep over `--sweep-mb` of memory before every call (which
evicts the kernel's perm, G and scratch from the caches, as the model's
forward and backward do between the calls in a training step). Median CPU ms
per call over `--rounds` rounds of `--calls` calls.

Run (`--out` writes the result as JSON, with the command that produced it):

  flock /tmp/jaxnn_bench.lock taskset -c 0 python benchmarks/subspace_kernel_calls.py \
    --out benchmarks/results/subspace_kernel_calls.json
"""

from __future__ import annotations

import argparse
import statistics
import time

import _results  # noqa: I001 (before _threads: it notes the caller's XLA settings)
from _threads import pin_xla_threads

SHAPES = ((200,), (784, 200), (200,), (200, 200), (10,), (200, 10))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--d", type=int, default=750)
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--calls", type=int, default=30)
  parser.add_argument("--sweep-mb", type=float, default=16.0)
  parser.add_argument("--out", default=None, help="write the result as JSON here")
  args = parser.parse_args()
  pin_xla_threads(1)
  import jax
  import jax.numpy as jnp
  import numpy as np

  from jaxnn.subspace import fastfood_projection

  D = sum(int(np.prod(s)) for s in SHAPES)
  projection = fastfood_projection("native")
  state = projection.init(jax.random.PRNGKey(0), D, args.d)
  rng = np.random.default_rng(0)
  theta = jnp.asarray(rng.normal(size=args.d).astype(np.float32) * 0.01)
  base = jnp.asarray(rng.normal(size=D).astype(np.float32) * 0.05)
  forward = jax.jit(lambda s, t, b: projection.apply_leaves(s, t, b, SHAPES))

  def backward_fn(s, t, b, cotangents):
    _, vjp = jax.vjp(lambda t: projection.apply_leaves(s, t, b, SHAPES), t)
    return vjp(cotangents)[0]

  backward = jax.jit(backward_fn)
  leaves = forward(state, theta, base)
  cotangents = [jnp.asarray(rng.normal(size=l.shape).astype(np.float32)) for l in leaves]
  calls = {
    "forward": lambda: forward(state, theta, base),
    "backward": lambda: backward(state, theta, base, cotangents),
  }
  sweep = jax.jit(lambda x: x * 1.0001)
  memory = [jnp.ones(int(args.sweep_mb * 2**20 / 8), jnp.float32)]  # read and written: sweep-mb

  for call in calls.values():
    jax.block_until_ready(call())
  result = {
    "setup": f"the two Fastfood kernel calls of the MNIST FC step (D = {D:,}, d = {args.d}), "
    "one thread",
    "unit": f"median CPU ms per call over {args.rounds} rounds of {args.calls} calls",
    "sweep_mb": args.sweep_mb,
  }
  for name, call in calls.items():
    for swept in (False, True):
      rounds = []
      for _ in range(args.rounds):
        cpu = 0.0
        for _ in range(args.calls):
          if swept:
            memory[0] = sweep(memory[0]).block_until_ready()
          start = time.process_time()
          jax.block_until_ready(call())
          cpu += time.process_time() - start
        rounds.append(cpu / args.calls * 1e3)
      label = f"after a {args.sweep_mb:g} MB sweep" if swept else "hot"
      print(f"{name:8s} {label:22s} {statistics.median(rounds):.3f} ms")
      result[f"{name}_{'swept' if swept else 'hot'}_ms"] = statistics.median(rounds)
  if args.out:
    _results.write(args.out, result)


if __name__ == "__main__":
  main()

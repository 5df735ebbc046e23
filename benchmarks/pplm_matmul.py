"""Few-row products with cold weights: jaxnn's CPU kernel against XLA's dot.

On GPT-2 shapes (12 blocks of distinct random weights plus the tied
embedding, 500 MB for GPT-2 small, so the weights come from memory as in a
one-token pass), times at M rows (the batch) and one thread, in one process
and interleaved:

  forward:  every dense layer's x @ W (W[K, N]) and the head's h @ wte^T,
  backward: every dense layer's dy @ W^T and the head's dlogits @ wte
            (the products of the steering gradient w.r.t. activations),

each set compiled as one XLA program of XLA dots ("xla") or of the kernel's
calls ("kernel"), plus each product kind alone over its 12 matrices. Prints
and writes the median seconds, GFLOP/s (2 M K N per product) and GB/s of
weights read.

  flock /tmp/jaxnn_bench.lock taskset -c 0 python benchmarks/pplm_matmul.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import time

from _threads import pin_xla_threads

SIZES = {"gpt2": (768, 12), "gpt2-medium": (1024, 24)}
VOCAB = 50257


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--size", choices=sorted(SIZES), default="gpt2")
  parser.add_argument("--threads", type=int, default=1)
  parser.add_argument("--rows", default="1,8", help="comma-separated row counts M")
  parser.add_argument("--repeats", type=int, default=7)
  parser.add_argument("--out", default=None, help="write the numbers as JSON here")
  args = parser.parse_args(argv)
  pin_xla_threads(args.threads)
  load_before = os.getloadavg()
  import jax
  import jax.numpy as jnp
  import numpy as np

  from jaxnn.lm import _matmul_kernel

  if not _matmul_kernel.available():
    raise SystemExit(f"the kernel did not build: {_matmul_kernel.error()}")
  d, layers = SIZES[args.size]
  shapes = [(d, 3 * d), (d, d), (d, 4 * d), (4 * d, d)]  # c_attn, attn c_proj, c_fc, mlp c_proj
  rng = np.random.default_rng(0)
  weights = [
    [jnp.asarray(0.02 * rng.standard_normal(s, np.float32)) for s in shapes] for _ in range(layers)
  ]
  wte = jnp.asarray(0.02 * rng.standard_normal((VOCAB, d), np.float32))
  rows_list = [int(r) for r in args.rows.split(",")]

  kernels = {
    "xla": (lambda x, w: x @ w, lambda x, w: x @ w.T),
    "kernel": (_matmul_kernel.matmul, _matmul_kernel.matmul_t),
  }

  def programs(m):
    """{name: (jitted fn, args, flops, weight bytes)} for M = m."""
    xs = {s: jnp.asarray(rng.standard_normal((m, s[0]), np.float32)) for s in shapes}
    dys = {s: jnp.asarray(rng.standard_normal((m, s[1]), np.float32)) for s in shapes}
    h = jnp.asarray(rng.standard_normal((m, d), np.float32))
    dlogits = jnp.asarray(rng.standard_normal((m, VOCAB), np.float32))
    dense_flops = sum(2 * m * k * n for k, n in shapes) * layers
    dense_bytes = sum(4 * k * n for k, n in shapes) * layers
    head_flops, head_bytes = 2 * m * VOCAB * d, 4 * VOCAB * d
    out = {}
    for name, (kn, nk) in kernels.items():
      fwd = jax.jit(
        lambda ws, wte, xs, h, kn=kn, nk=nk: (
          [[kn(xs[s], w) for s, w in zip(shapes, layer)] for layer in ws],
          nk(h, wte),
        )
      )
      bwd = jax.jit(
        lambda ws, wte, dys, g, kn=kn, nk=nk: (
          [[nk(dys[s], w) for s, w in zip(shapes, layer)] for layer in ws],
          kn(g, wte),
        )
      )
      out[f"forward/{name}"] = (
        fwd,
        (weights, wte, xs, h),
        dense_flops + head_flops,
        dense_bytes + head_bytes,
      )
      out[f"backward/{name}"] = (
        bwd,
        (weights, wte, dys, dlogits),
        dense_flops + head_flops,
        dense_bytes + head_bytes,
      )
      for i, (k, n) in enumerate(shapes):
        mats = [layer[i] for layer in weights]
        out[f"x@W {k}x{n}/{name}"] = (
          jax.jit(lambda ws, x, kn=kn: [kn(x, w) for w in ws]),
          (mats, xs[(k, n)]),
          2 * m * k * n * layers,
          4 * k * n * layers,
        )
        out[f"dy@W^T {k}x{n}/{name}"] = (
          jax.jit(lambda ws, y, nk=nk: [nk(y, w) for w in ws]),
          (mats, dys[(k, n)]),
          2 * m * k * n * layers,
          4 * k * n * layers,
        )
      out[f"h@wte^T/{name}"] = (
        jax.jit(lambda w, x, nk=nk: nk(x, w)),
        (wte, h),
        head_flops,
        head_bytes,
      )
      out[f"dlogits@wte/{name}"] = (
        jax.jit(lambda w, g, kn=kn: kn(g, w)),
        (wte, dlogits),
        head_flops,
        head_bytes,
      )
    return out

  all_programs = {m: programs(m) for m in rows_list}
  # Correctness of what is timed: the kernel's outputs against XLA's.
  for m, progs in all_programs.items():
    for part in ("forward", "backward"):
      fn_x, a_x, _, _ = progs[f"{part}/xla"]
      fn_k, a_k, _, _ = progs[f"{part}/kernel"]
      ref, got = jax.tree.leaves(fn_x(*a_x)), jax.tree.leaves(fn_k(*a_k))
      err = max(float(jnp.max(jnp.abs(r - g)) / jnp.max(jnp.abs(r))) for r, g in zip(ref, got))
      if err > 1e-4:
        raise SystemExit(f"kernel differs from XLA at M={m} ({part}): relative error {err}")
  times = {(m, name): [] for m, progs in all_programs.items() for name in progs}
  for _ in range(args.repeats):
    for m, progs in all_programs.items():
      for name, (fn, fargs, _, _) in progs.items():
        start = time.perf_counter()
        jax.block_until_ready(fn(*fargs))
        times[(m, name)].append(time.perf_counter() - start)
  results = {
    "size": args.size,
    "threads": args.threads,
    "repeats": args.repeats,
    "cpu_affinity": sorted(os.sched_getaffinity(0)),
    "load_average_before": load_before,
    "rows": {},
  }
  for m, progs in all_programs.items():
    table = {}
    for name, (_, _, flops, nbytes) in progs.items():
      t = float(np.median(times[(m, name)][1:] if args.repeats > 2 else times[(m, name)]))
      table[name] = {"seconds": t, "gflops": flops / t / 1e9, "weight_gb_per_s": nbytes / t / 1e9}
    results["rows"][m] = table
  results["load_average_after"] = os.getloadavg()
  print(f"load average {load_before[0]:.2f} -> {results['load_average_after'][0]:.2f}")
  names = sorted(
    {n.split("/")[0] for n in all_programs[rows_list[0]]},
    key=lambda n: (n not in ("forward", "backward"), n),
  )
  for name in names:
    cells = []
    for m in rows_list:
      for impl in ("xla", "kernel"):
        r = results["rows"][m][f"{name}/{impl}"]
        cells.append(
          f"M={m} {impl} {1e3 * r['seconds']:7.1f} ms {r['gflops']:5.1f} GF/s "
          f"{r['weight_gb_per_s']:5.1f} GB/s"
        )
    print(f"{name:20s} | " + " | ".join(cells))
  lo = rows_list[0]
  set_seconds = lambda m, impl: sum(
    results["rows"][m][f"{p}/{impl}"]["seconds"] for p in ("forward", "backward")
  )
  best_lo = min(set_seconds(lo, impl) for impl in ("xla", "kernel"))
  for m in rows_list[1:]:
    for impl in ("xla", "kernel"):
      print(
        f"{impl}: forward + backward sets, M={m} / M={lo}: "
        f"{set_seconds(m, impl) / set_seconds(lo, impl):.2f}x"
      )
    print(f"kernel at M={m} / the faster at M={lo}: {set_seconds(m, 'kernel') / best_lo:.2f}x")
  if args.out:
    with open(args.out, "w") as f:
      json.dump(results, f, indent=1)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())

"""Subspace training speed: jaxnn vs direct training vs PyTorch, and the largest D.

Side by side in one run, on the MNIST FC of Li et al. (2018) (784-200-200-10,
D = 199,210), d = 750, batch 128, Adam (lr 1e-3, beta2 0.99), L2 `--weight-decay`
on the full theta_D:

- jaxnn direct training, jaxnn dense subspace, jaxnn Fastfood subspace (also
  through the flat (D,) theta_D instead of the fused kernel, and in XLA ops);
- the same three in PyTorch (`benchmarks/subspace_torch.py`).

Every variant runs `--steps` steps per round; rounds interleave the variants
so that the noise of a shared machine hits all of them alike; the median round
is reported. Both frameworks run on the same number of threads
(`--threads`, default 1: XLA's Eigen pool off and one intra-op thread;
`torch.set_num_threads`). Then `--widths` probes the largest Fastfood model
that trains: FC 784-w-w-10 for growing w, each in a subprocess whose peak
memory is measured, stopping before a size could need more than half of the
memory available.

Run: `python benchmarks/subspace_core.py --out benchmarks/results/subspace_core.json`
(about 10 minutes on a shared 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from _threads import pin_xla_threads

# FLOPs of one training step of 784-200-200-10 at batch B (multiply-add = 2).
SIZES = (784, 200, 200, 10)


def model_flops(batch: int, sizes=SIZES) -> dict:
  weights = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
  forward = 2 * batch * sum(weights)
  weight_grads = 2 * batch * sum(weights)
  input_grads = 2 * batch * sum(weights[1:])  # no gradient for the input image
  return dict(
    forward=forward,
    weight_grads=weight_grads,
    input_grads=input_grads,
    total=forward + weight_grads + input_grads,
  )


def projection_flops(D: int, d: int, name: str) -> int:
  """P theta_d forward and P^T g backward."""
  if name == "dense":
    return 2 * (2 * D * d)
  L = 1 << (D - 1).bit_length()
  wht = L * L.bit_length() - L  # L log2 L additions
  return 2 * (2 * wht + 4 * L)  # 2 WHTs + B, G, permutation, scale; forward and backward


def wht_radix2(x):
  """The textbook WHT: log2(L) radix-2 butterfly passes (the baseline jaxnn's beats)."""
  import jax.numpy as jnp

  L, h = x.shape[-1], 1
  while h < L:
    x_2h = x.reshape(L // (2 * h), 2, h)
    x = jnp.stack([x_2h[:, 0] + x_2h[:, 1], x_2h[:, 0] - x_2h[:, 1]], axis=1).reshape(L)
    h *= 2
  return x


def jax_runner(step, state, x, y, *extra):
  """`run(n)`: n jitted steps on (x, y) from a copy of `state` (donated), carried over calls."""
  import jax
  import jax.numpy as jnp

  step = jax.jit(step, donate_argnums=0)
  holder = [jax.tree.map(jnp.copy, state)]  # donated: leave the model's own arrays alone

  def run(n):
    s = holder[0]
    for _ in range(n):
      s, _ = step(s, x, y, *extra)
    jax.block_until_ready(s)
    holder[0] = s

  run(2)  # compile
  return run


def time_rounds(variants: dict, steps: int, rounds: int) -> dict:
  """Per-step wall and CPU (process) time of every variant, interleaved rounds.

  On a shared machine the CPU time of a one-thread run is the steadier figure:
  it does not count the time other processes hold the core.
  """
  wall = {name: [] for name in variants}
  cpu = {name: [] for name in variants}
  for _ in range(rounds):
    for name, run in variants.items():
      w0, c0 = time.perf_counter(), time.process_time()
      run(steps)
      wall[name].append((time.perf_counter() - w0) / steps)
      cpu[name].append((time.process_time() - c0) / steps)
  return {
    name: dict(
      wall_median_s=statistics.median(wall[name]),
      wall_min_s=min(wall[name]),
      cpu_median_s=statistics.median(cpu[name]),
      cpu_min_s=min(cpu[name]),
      cpu_rounds_s=cpu[name],
    )
    for name in variants
  }


def round_ratios(times: dict, name: str, base: str) -> dict:
  """`name` / `base` CPU time per step round by round (the two ran back to back)."""
  ratios = [a / b for a, b in zip(times[name]["cpu_rounds_s"], times[base]["cpu_rounds_s"])]
  return dict(median=statistics.median(ratios), min=min(ratios), max=max(ratios))


def speed(args) -> dict:
  import jax
  import jax.numpy as jnp
  import numpy as np
  import torch

  from benchmarks.subspace_torch import DirectFC, SubspaceFC, make_torch_step
  from jaxnn.models import create_model
  from jaxnn.subspace import (
    Projection,
    dense_projection,
    fastfood_projection,
    make_subspace_train_step,
    subspace_model,
  )
  from jaxnn.train import (
    CLASSIFICATION,
    from_nnx,
    init_train_state,
    make_optimizer,
    make_train_step,
  )

  torch.set_num_threads(args.threads)
  torch.set_num_interop_threads(args.threads)
  rng = np.random.default_rng(0)
  x = rng.random((args.batch, 28, 28, 1), np.float32)
  y = rng.integers(0, 10, args.batch).astype(np.int32)
  x_jax, y_jax = jnp.asarray(x), jnp.asarray(y)
  x_torch, y_torch = torch.from_numpy(x), torch.from_numpy(y).long()

  model = from_nnx(create_model("fc", (28, 28, 1), 10, seed=0))
  optimizer = make_optimizer("adam", 1e-3, b2=0.99)
  wd = args.weight_decay
  variants = {}

  variants["jax direct"] = jax_runner(
    make_train_step(model, optimizer, CLASSIFICATION, wd),
    init_train_state(model, optimizer),
    x_jax,
    y_jax,
  )
  D = None
  fastfood = fastfood_projection("native")
  # "fastfood flat": the same kernel without `apply_leaves`, i.e. theta_0 + P theta_d as one
  # (D,) vector sliced into the leaves and a concatenated gradient (the path before the fused
  # kernel; the path of dense and sparse projections).
  projections = {
    "dense": dense_projection(),
    "fastfood": fastfood,
    "fastfood flat": Projection(fastfood.init, fastfood.apply),
    "fastfood xla": fastfood_projection("xla"),
  }
  for name, projection in projections.items():
    sub = subspace_model(model, args.d, projection, seed=0)
    D = sub.subspace.num_params
    step = make_subspace_train_step(sub.subspace, optimizer, CLASSIFICATION, wd)
    variants[f"jax {name}"] = jax_runner(
      step, init_train_state(sub.model, optimizer), x_jax, y_jax, sub.state, jnp.int32(args.d)
    )
    if name == "dense":
      P_state = sub.state.projection

  def torch_runner(module):
    step = make_torch_step(module, 1e-3, wd)

    def run(n):
      for _ in range(n):
        step(x_torch, y_torch)

    run(2)
    return run

  variants["torch direct"] = torch_runner(DirectFC(SIZES))
  for name in ("dense", "fastfood"):
    variants[f"torch {name}"] = torch_runner(SubspaceFC(SIZES, args.d, name))

  # The dense floor on this machine: P theta_d and P^T g each read all of P
  # (D * d floats) once, for 2 FLOPs per 4 bytes, so they are bound by memory
  # bandwidth. Timed alone here: the two matrix-vector products of the step,
  # and a plain read of P (a sum), over the same rounds as the steps.
  theta_d = jnp.asarray(rng.normal(size=args.d).astype(np.float32))
  g_D = jnp.asarray(rng.normal(size=D).astype(np.float32))
  P_dxD = P_state.P_dxD
  kernels = {
    "P theta_d": (jax.jit(lambda P, t: t @ P), theta_d),
    "P^T g": (jax.jit(lambda P, g: P @ g), g_D),
    "read P (sum)": (jax.jit(lambda P, _: jnp.sum(P)), g_D),
  }

  def kernel_runner(f, arg):
    f(P_dxD, arg).block_until_ready()

    def run(n):
      for _ in range(n):
        out = f(P_dxD, arg)
      out.block_until_ready()

    return run

  results = time_rounds(variants, args.steps, args.rounds)
  results |= time_rounds(
    {name: kernel_runner(*k) for name, k in kernels.items()}, args.steps, args.rounds
  )
  from jaxnn.subspace import _projections, walsh_hadamard

  L = 1 << (D - 1).bit_length()
  v = jnp.asarray(rng.normal(size=L).astype(np.float32))
  whts = {}
  for name, f in (
    ("jaxnn walsh_hadamard (C++ kernel)", walsh_hadamard),
    ("jaxnn XLA transform (radix-4 + H_64 matmul)", _projections._wht_xla),
    ("radix-2 butterfly in XLA", wht_radix2),
  ):
    f = jax.jit(f)
    np.testing.assert_allclose(f(v), walsh_hadamard(v), rtol=1e-3, atol=1e-2)

    def run(n, f=f):
      for _ in range(n):
        out = f(v)
      out.block_until_ready()

    whts[name] = run
  results |= time_rounds(whts, 4 * args.steps, args.rounds)
  flops = model_flops(args.batch)
  floors = {"direct": 1.0}
  for name in ("dense", "fastfood"):
    floors[name] = (flops["total"] + projection_flops(D, args.d, name)) / flops["total"]
  P_bytes = 4 * D * args.d
  cpu = {name: t["cpu_median_s"] for name, t in results.items()}
  bandwidth = {name: P_bytes / cpu[name] / 1e9 for name in kernels}
  # Dense floor from bandwidth: the direct step plus two reads of P at the
  # fastest read rate measured (so no gemv can beat it on this machine).
  read_floor_s = 2 * P_bytes / (max(bandwidth.values()) * 1e9)
  return dict(
    D=D,
    d=args.d,
    batch=args.batch,
    threads=args.threads,
    steps=args.steps,
    rounds=args.rounds,
    weight_decay=wd,
    model_flops=flops,
    projection_flops={n: projection_flops(D, args.d, n) for n in ("dense", "fastfood")},
    flop_floor_ratio=floors,
    P_bytes=P_bytes,
    read_bandwidth_GBps=bandwidth,
    dense_bandwidth_floor_s=cpu["jax direct"] + read_floor_s,
    dense_bandwidth_floor_ratio=(cpu["jax direct"] + read_floor_s) / cpu["jax direct"],
    round_ratios={
      name: round_ratios(results, name, "jax direct")
      for name in variants
      if name.startswith("jax ")
    },
    load_average=os.getloadavg(),
    times=results,
  )


def probe(width: int, d: int, steps: int) -> dict:
  """Trains FC 784-w-w-10 with Fastfood for `steps` steps; peak memory and time."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  from jaxnn.models import create_model
  from jaxnn.subspace import make_subspace_train_step, subspace_model
  from jaxnn.train import from_nnx, init_train_state, make_optimizer

  t0 = time.perf_counter()
  model = from_nnx(create_model("fc", (28, 28, 1), 10, seed=0, widths=(width, width)))
  sub = subspace_model(model, d, "fastfood", seed=0)
  del model
  jax.block_until_ready(sub.state)
  init_s = time.perf_counter() - t0
  optimizer = make_optimizer("adam", 1e-3)
  step = jax.jit(make_subspace_train_step(sub.subspace, optimizer), donate_argnums=0)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.random((128, 28, 28, 1), np.float32))
  y = jnp.asarray(rng.integers(0, 10, 128).astype(np.int32))
  state = jax.tree.map(jnp.copy, init_train_state(sub.model, optimizer))
  losses, times = [], []
  for _ in range(steps):
    t0 = time.perf_counter()
    state, metrics = step(state, x, y, sub.state, jnp.int32(d))
    losses.append(float(metrics["loss"]))
    times.append(time.perf_counter() - t0)
  return dict(
    width=width,
    D=sub.subspace.num_params,
    L=int(sub.state.projection.B.shape[-1]),
    d=d,
    losses=losses,
    init_s=init_s,
    step_s=times,
    peak_rss_GB=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
  )


def mem_available_GB() -> float:
  with open("/proc/meminfo") as f:
    for line in f:
      if line.startswith("MemAvailable"):
        return int(line.split()[1]) / 2**20
  raise RuntimeError("no MemAvailable in /proc/meminfo")


def fc_params(width: int) -> int:
  return 784 * width + width + width * width + width + 10 * width + 10


def largest_d(args) -> list:
  """Probes the widths in order; a width runs only if it fits with a margin.

  Its peak is extrapolated from the last two probes (the marginal bytes per
  parameter, x 1.15) and must leave `--margin-gb` of the memory available
  then: the machine is shared and has no swap.
  """
  probes = []
  for width in (int(w) for w in args.widths.split(",")):
    D = fc_params(width)
    available = mem_available_GB()
    done = [p for p in probes if "peak_rss_GB" in p]
    if len(done) >= 2:
      (a, b) = done[-2:]
      per_param = (b["peak_rss_GB"] - a["peak_rss_GB"]) / (b["D"] - a["D"])
      needed = b["peak_rss_GB"] + 1.15 * per_param * (D - b["D"])
      if needed > available - args.margin_gb:
        probes.append(
          dict(
            width=width,
            D=D,
            skipped=f"would need ~{needed:.1f} GB, "
            f"{available:.1f} GB available (margin {args.margin_gb} GB)",
          )
        )
        print(json.dumps(probes[-1]), flush=True)
        break
    t0 = time.perf_counter()
    try:
      out = subprocess.run(
        [
          sys.executable,
          __file__,
          "--probe",
          str(width),
          "--threads",
          str(args.threads),
          "--d",
          str(args.d),
        ],
        capture_output=True,
        text=True,
        timeout=args.probe_timeout,
      )
    except subprocess.TimeoutExpired:
      probes.append(dict(width=width, D=D, failed=f"timed out after {args.probe_timeout} s"))
      print(json.dumps(probes[-1]), flush=True)
      break
    if out.returncode:
      probes.append(dict(width=width, D=D, failed=out.stderr[-2000:]))
      break
    probes.append(
      json.loads(out.stdout.strip().splitlines()[-1])
      | {"mem_available_GB": available, "wall_s_total": time.perf_counter() - t0}
    )
    print(json.dumps(probes[-1]), flush=True)
  return probes


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--threads", type=int, default=1)
  parser.add_argument("--d", type=int, default=750)
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--weight-decay", type=float, default=0.0)
  parser.add_argument(
    "--widths",
    default="",
    help="FC widths to probe for the largest D, in "
    "order, e.g. 1024,4096,8192,11585,15900 (empty: skip)",
  )
  parser.add_argument("--margin-gb", type=float, default=3.0)
  parser.add_argument("--probe-timeout", type=float, default=300.0, help="seconds per width")
  parser.add_argument("--skip-speed", action="store_true")
  parser.add_argument("--probe", type=int, default=0, help=argparse.SUPPRESS)
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  pin_xla_threads(args.threads)
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  if args.probe:
    print(json.dumps(probe(args.probe, args.d, steps=3)))
    return
  report = {}
  if not args.skip_speed:
    report["speed"] = speed(args)
    print(json.dumps(report["speed"], indent=1), flush=True)
  if args.widths:
    report["largest_d"] = largest_d(args)
  if args.out:
    with open(args.out, "w") as f:
      json.dump(report, f, indent=1)


if __name__ == "__main__":
  main()

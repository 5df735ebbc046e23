"""CoordConv layer vs a plain convolution with the same number of input channels.

Both sides run the same `nnx.Conv` kernel on a (B, 64, 64, c + 2) input; the
CoordConv side builds the two coordinate channels and concatenates them to a
(B, 64, 64, c) input first. The ratio is the whole cost of AddCoords (goal:
at most 1.1x). Rounds alternate between the two sides; medians are reported.

Run pinned to one core and one XLA thread:
  taskset -c 0 env XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \
      JAX_PLATFORMS=cpu python benchmarks/coordconv_layer.py \
      --out benchmarks/results/coordconv_layer.json

`--out` writes the result as JSON, with the command that produced it.
"""

from __future__ import annotations

import argparse
import statistics
import time

import _results  # noqa: I001 (first: it notes the caller's XLA settings)
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxnn.coordconv import CoordConv2D


def _timed(fn, *args, repeats: int) -> float:
  jax.block_until_ready(fn(*args))
  t0 = time.perf_counter()
  for _ in range(repeats):
    out = fn(*args)
  jax.block_until_ready(out)
  return (time.perf_counter() - t0) / repeats


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--size", type=int, default=64)
  parser.add_argument("--channels", type=int, nargs="+", default=[1, 8, 32])
  parser.add_argument("--out-channels", type=int, default=32)
  parser.add_argument("--kernel", type=int, default=3)
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--out", default=None, help="write the result as JSON here")
  args = parser.parse_args()
  rows = []
  print(
    f"jax {jax.__version__}, devices {jax.devices()}, batch {args.batch}, "
    f"{args.size}x{args.size}, kernel {args.kernel}, {args.out_channels} output channels"
  )
  print("| input channels c | pass | plain conv (c+2 ch) ms | CoordConv (c ch + 2) ms | ratio |")
  print("|---|---|---|---|---|")
  for c in args.channels:
    coord = CoordConv2D(c, args.out_channels, (args.kernel, args.kernel), rngs=nnx.Rngs(0))
    plain = nnx.Conv(c + 2, args.out_channels, (args.kernel, args.kernel), rngs=nnx.Rngs(0))
    g_coord, p_coord = nnx.split(coord)
    g_plain, p_plain = nnx.split(plain)
    rng = np.random.default_rng(0)
    x_c = jnp.asarray(rng.normal(size=(args.batch, args.size, args.size, c)), jnp.float32)
    x_plain = jnp.asarray(rng.normal(size=(args.batch, args.size, args.size, c + 2)), jnp.float32)
    fwd = {
      "plain": jax.jit(lambda p, x: nnx.merge(g_plain, p)(x)),
      "coord": jax.jit(lambda p, x: nnx.merge(g_coord, p)(x)),
    }
    bwd = {
      "plain": jax.jit(
        jax.grad(lambda p, x: jnp.sum(nnx.merge(g_plain, p)(x) ** 2), argnums=(0, 1))
      ),
      "coord": jax.jit(
        jax.grad(lambda p, x: jnp.sum(nnx.merge(g_coord, p)(x) ** 2), argnums=(0, 1))
      ),
    }
    inputs = {"plain": (p_plain, x_plain), "coord": (p_coord, x_c)}
    for name, fns in (("forward", fwd), ("forward+backward", bwd)):
      times = {"plain": [], "coord": []}
      for _ in range(args.rounds):
        for side in ("plain", "coord"):
          times[side].append(_timed(fns[side], *inputs[side], repeats=args.repeats))
      plain_ms, coord_ms = (1e3 * statistics.median(times[s]) for s in ("plain", "coord"))
      print(f"| {c} | {name} | {plain_ms:.2f} | {coord_ms:.2f} | {coord_ms / plain_ms:.3f} |")
      rows.append(
        {
          "input_channels": c,
          "pass_": name,
          "plain_conv_ms": plain_ms,
          "coordconv_ms": coord_ms,
          "ratio": coord_ms / plain_ms,
        }
      )
  if args.out:
    _results.write(
      args.out,
      {
        "setup": f"nnx.Conv {args.kernel}x{args.kernel}, {args.out_channels} output channels, "
        f"{args.size}x{args.size}, batch {args.batch}; plain conv on c + 2 channels vs "
        "CoordConv on c channels",
        "unit": f"median ms over {args.rounds} alternating rounds of {args.repeats} calls",
        "jax": jax.__version__,
        "devices": str(jax.devices()),
        "rows": rows,
      },
    )


if __name__ == "__main__":
  main()

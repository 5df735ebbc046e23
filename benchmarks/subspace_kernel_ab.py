"""The Fastfood CPU kernel of a git revision vs the working tree's, in one training step.

Side by side in one process, rounds interleaved: jaxnn's direct MNIST FC step
(784-200-200-10, batch 128, Adam, L2 1e-4) and the Fastfood subspace step
(d = 750) with the kernel source of `--rev` ("old", built under other FFI target
names) and with the current one ("new"). Prints the median CPU time per step
and the ratios, one thread.

Run:
`flock /tmp/jaxnn_bench.lock taskset -c 0 python benchmarks/subspace_kernel_ab.py --rev 7a39afa`
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import types

from _threads import pin_xla_threads
from subspace_core import jax_runner, time_rounds

REPO = pathlib.Path(__file__).resolve().parents[1]
KERNEL = "jaxnn/subspace/_fastfood_kernel.py"
KERNEL_CC = "jaxnn/subspace/fastfood_kernel.cc"


def load_kernel(rev: str) -> types.ModuleType:
  """The kernel module of `rev`, its FFI targets and library renamed so both can load."""
  source = subprocess.run(
    ["git", "-C", str(REPO), "show", f"{rev}:{KERNEL}"], capture_output=True, text=True, check=True
  ).stdout
  source = source.replace('"jaxnn_', '"abjaxnn_').replace(
    'NativeLibrary(\n    "fastfood"', 'NativeLibrary(\n    "fastfood_ab"'
  )
  module = types.ModuleType("fastfood_kernel_ab")
  exec(compile(source, f"{rev}:{KERNEL}", "exec"), module.__dict__)
  cc = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:{KERNEL_CC}"], capture_output=True)
  if cc.returncode == 0:  # a revision whose C++ is a .cc file: build that file's text
    from jaxnn._native import NativeLibrary

    library = module._LIBRARY
    module._LIBRARY = NativeLibrary(
      "fastfood_ab", cc.stdout.decode(), library.targets, library.flags, title=library.title
    )
  if not module.available():
    sys.exit(f"the kernel of {rev} does not build: {module.error()}")
  return module


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rev", required=True, help="git revision of the old kernel")
  parser.add_argument("--rounds", type=int, default=15)
  parser.add_argument("--steps", type=int, default=20)
  args = parser.parse_args()
  pin_xla_threads(1)
  sys.path.insert(0, str(REPO))
  import jax.numpy as jnp
  import numpy as np

  from jaxnn.models import create_model
  from jaxnn.subspace import (
    _fastfood_kernel,
    _projections,
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

  old_kernel = load_kernel(args.rev)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.random((128, 28, 28, 1), np.float32))
  y = jnp.asarray(rng.integers(0, 10, 128).astype(np.int32))
  model = from_nnx(create_model("fc", (28, 28, 1), 10, seed=0))
  optimizer = make_optimizer("adam", 1e-3, b2=0.99)

  variants = {
    "direct": jax_runner(
      make_train_step(model, optimizer, CLASSIFICATION, 1e-4),
      init_train_state(model, optimizer),
      x,
      y,
    )
  }
  for name, kernel in (("old", old_kernel), ("new", _fastfood_kernel)):
    _projections._fastfood_kernel = kernel
    sub = subspace_model(model, 750, fastfood_projection("native"), seed=0)
    step = make_subspace_train_step(sub.subspace, optimizer, CLASSIFICATION, 1e-4)
    # compiled here, while `kernel` is the module the projection calls
    variants[name] = jax_runner(
      step, init_train_state(sub.model, optimizer), x, y, sub.state, jnp.int32(750)
    )
  _projections._fastfood_kernel = _fastfood_kernel
  times = time_rounds(variants, args.steps, args.rounds)
  ms = {name: t["cpu_median_s"] * 1e3 for name, t in times.items()}
  print(
    f"CPU ms per step (median of {args.rounds} rounds): "
    + ", ".join(f"{name} {value:.3f}" for name, value in ms.items())
  )
  print(
    f"old / direct {ms['old'] / ms['direct']:.3f}, new / direct "
    f"{ms['new'] / ms['direct']:.3f}, new / old {ms['new'] / ms['old']:.3f}"
  )


if __name__ == "__main__":
  main()

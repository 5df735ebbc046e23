"""LCA speed and disk, side by side in one run (MNIST-FC 784-100-50-10 on mnist5k).

1. The original's three-stage pipeline (`lca_three_stage.py`, PyTorch + numpy,
   every iterate and gradient through the disk) against `jaxnn.lca.run_lca`
   end to end (compile, training, LCA, analyses, checkpoints, records), from
   the same initial weights and batches, so that their LCA must agree too.
   jaxnn runs twice: cold (an empty compilation cache: the first run of a
   configuration) and warm (a rerun in a fresh process, with JAX's persistent
   compilation cache filled by the cold run), with `LCAConfig`'s defaults:
   the first layer's output interpolated between each step's ends and its
   gradient integrated as dL/dz, transposed once per iteration (`fc_stem`,
   exact), both products without the input pixels that are 0 in every
   evaluation image (`drop_zero_features`, exact), and XLA's faster-compiling
   CPU options (`compiler_options`).
   Wall and CPU seconds (user + system, all threads) of each side.
   Goal: >= 2x faster and >= 100x less disk.

2. Overhead: the jitted train step with LCA (`with_lca`) against its floor, a
   jitted step doing the train step and the same full-set gradient evaluations
   (end point and midpoint, evaluated together on the training and validation
   sets, as the accumulator does) and nothing else. Goal: LCA / floor <= 1.2.
   Also the step with the first-layer stem, which needs fewer products than
   that floor.

Both sides get the same threads: run pinned to one core, under the shared lock,

  flock /tmp/jaxnn_bench.lock taskset -c 0 python benchmarks/lca_bench.py --epochs 30 \
    --out benchmarks/results/lca_bench.json

`--out` writes the result as JSON: one run per `--epochs` (a run replaces the file's run
with the same epochs), each with the command that produced it.

(XLA's CPU client and PyTorch are both set to a single thread below).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import _results  # noqa: I001 (before _threads: it notes the caller's XLA settings)
from _threads import pin_xla_threads

pin_xla_threads(1)

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from lca_three_stage import three_stage_lca  # noqa: E402

from jaxnn.data import EpochBatcher, load_dataset  # noqa: E402
from jaxnn.lca import (
  LCAConfig,
  drop_zero_features,
  fc_stem,
  full_set_loss,  # noqa: E402
  lca_accumulator,
  make_eval_sets,
  run_lca,
  with_lca,
)
from jaxnn.models import create_model  # noqa: E402
from jaxnn.train import (
  from_nnx,
  init_train_state,
  make_optimizer,  # noqa: E402
  make_train_step,
)

torch.set_num_threads(1)
torch.set_num_interop_threads(1)


COMPILES = {"count": 0, "seconds": 0.0, "cache_hits": 0}


def _on_event(event: str, duration: float, **kwargs) -> None:
  del kwargs
  if event == "/jax/core/compile/backend_compile_duration":
    COMPILES["count"] += 1
    COMPILES["seconds"] += duration
  elif event == "/jax/compilation_cache/cache_retrieval_time_sec":
    COMPILES["cache_hits"] += 1


jax.monitoring.register_event_duration_secs_listener(_on_event)


def _cpu_seconds() -> float:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def _timed(fn):
  """(result, wall seconds, CPU seconds, compilations {count, seconds, cache_hits})."""
  before = dict(COMPILES)
  w0, c0 = time.perf_counter(), _cpu_seconds()
  result = fn()
  wall, cpu = time.perf_counter() - w0, _cpu_seconds() - c0
  return result, wall, cpu, {k: COMPILES[k] - before[k] for k in COMPILES}


def _dir_bytes(path: pathlib.Path) -> int:
  return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def overhead(dataset, config: LCAConfig, steps: int, repeats: int) -> dict:
  model = from_nnx(
    create_model("fc", dataset.input_shape, dataset.num_classes, widths=config.widths)
  )
  optimizer = make_optimizer("momentum", config.learning_rate, momentum=config.momentum)
  train_step = make_train_step(model, optimizer)
  # On the device once, as `run_loop` passes it (not copied from the host at every step).
  host_set = make_eval_sets([dataset.train, dataset.validation], config.chunk_size)
  stem, stem_set = drop_zero_features(fc_stem(model.params), host_set)  # as `run_lca` does
  eval_set, stem_set = jax.device_put((host_set, stem_set))
  acc = lca_accumulator(model, steps)
  acc_stem = lca_accumulator(model, steps, stem=stem)
  acc_stem_all = lca_accumulator(model, steps, stem=fc_stem(model.params))  # every feature
  # The two points of an iteration at once, as the accumulator evaluates them.
  vg_pair = jax.vmap(full_set_loss(model), in_axes=(0, None, None))
  lca_step = jax.jit(with_lca(train_step, acc))
  lca_stem_step = jax.jit(with_lca(train_step, acc_stem))
  lca_stem_all_step = jax.jit(with_lca(train_step, acc_stem_all))

  @jax.jit
  def floor_step(state, x, y, eval_set):
    new_state, metrics = train_step(state, x, y)
    end_mid = jax.tree.map(
      lambda a, b: jax.numpy.stack([b, (a + b) / 2]), state.params, new_state.params
    )
    return new_state, vg_pair(end_mid, new_state.model_state, eval_set)

  batcher = EpochBatcher(dataset.train, config.batch_size, 0)
  batches = [batcher.at_step(t) for t in range(steps)]
  state0 = init_train_state(model, optimizer)
  lca0 = jax.jit(acc.init)(model.params, model.state, eval_set)
  lca_stem0 = jax.jit(acc_stem.init)(model.params, model.state, stem_set)
  lca_stem_all0 = jax.jit(acc_stem_all.init)(model.params, model.state, eval_set)

  def run_lca_steps(step=lca_step, lca_state=lca0, lca_set=eval_set):
    carry = (state0, lca_state)
    for x, y in batches:
      carry, _ = step(carry, x, y, lca_set)
    return jax.block_until_ready(carry)

  run_stem_steps = lambda: run_lca_steps(lca_stem_step, lca_stem0, stem_set)
  run_stem_all_steps = lambda: run_lca_steps(lca_stem_all_step, lca_stem_all0)

  def run_floor_steps():
    state = state0
    for x, y in batches:
      state, grads = floor_step(state, x, y, eval_set)
    return jax.block_until_ready((state, grads))

  carry = run_lca_steps()  # compile all first
  run_stem_steps()
  run_stem_all_steps()
  run_floor_steps()
  times = {"lca": [], "floor": [], "lca_stem": [], "lca_stem_all": []}
  for _ in range(repeats):
    for name, fn in (
      ("lca", run_lca_steps),
      ("floor", run_floor_steps),
      ("lca_stem", run_stem_steps),
      ("lca_stem_all", run_stem_all_steps),
    ):
      times[name].append(_timed(fn)[2])
  splits = np.asarray(carry[1].sets.splits_T)
  lca_s, floor_s, stem_s, stem_all_s = (
    float(np.median(times[k])) for k in ("lca", "floor", "lca_stem", "lca_stem_all")
  )
  # Per example and point: forward, weight gradient and input gradient products of each dense
  # layer (2 flops per multiply-add), but no input gradient for the first layer.
  kernels = [model.params[layer]["kernel"].size for layer in ("dense0", "dense1", "dense2")]
  flops = (
    2
    * sum(len(s) for s in (dataset.train, dataset.validation))
    * (4 * kernels[0] + 6 * sum(kernels[1:]))
  )
  a, b = jax.numpy.ones((1000, 784)), jax.numpy.ones((784, 200))
  matmul = jax.jit(lambda a, b: a @ b)
  jax.block_until_ready(matmul(a, b))
  mm_cpu = _timed(lambda: [jax.block_until_ready(matmul(a, b)) for _ in range(100)])[2] / 100
  return {
    "steps": steps,
    "lca_s": lca_s,
    "floor_s": floor_s,
    "ratio": lca_s / floor_s,
    "lca_stem_s": stem_s,
    "stem_ratio": stem_s / floor_s,
    "lca_stem_all_s": stem_all_s,
    "dropped_features": int(host_set.x[0, 0].size - stem_set.x.shape[-1]),
    "all_runs": times,
    "mean_splits": float(splits.mean()),
    "lca_gflops": flops * steps / lca_s / 1e9,
    "matmul_gflops": 2 * 1000 * 784 * 200 / mm_cpu / 1e9,
  }


def _jaxnn_side(dataset, config: LCAConfig, out: pathlib.Path) -> dict:
  summary, wall, cpu, compiles = _timed(lambda: run_lca(config, out, dataset=dataset))
  outputs = [out / "summary.json", out / "lca_records.npz"]
  return {
    "summary": summary,
    "wall_s": wall,
    "cpu_s": cpu,
    "compiles": compiles,
    "timings": summary["timings"],
    "disk_bytes_outputs": sum(p.stat().st_size for p in outputs),
    "disk_bytes_with_checkpoints": _dir_bytes(out),
  }


def _jaxnn_rerun(config: LCAConfig, out: pathlib.Path) -> dict:
  """`run_lca` in a fresh process (same threads and core), as a user's rerun: only the
  persistent compilation cache is shared with the cold run. Timed inside the child,
  around `run_lca` alone, as the other sides."""
  result = subprocess.run(
    [
      sys.executable,
      __file__,
      "--rerun-child",
      str(out),
      "--epochs",
      str(config.epochs),
      "--compile-cache",
      config.compile_cache,
    ],
    check=True,
    capture_output=True,
    text=True,
  )
  return json.loads(result.stdout.strip().splitlines()[-1])


def _rerun_child(out: str, epochs: int, cache: str) -> None:
  dataset = load_dataset("mnist5k")
  config = LCAConfig(epochs=epochs, plots=False, progress=False, compile_cache=cache)
  side = _jaxnn_side(dataset, config, pathlib.Path(out))
  side.pop("summary")
  print(json.dumps(side))


def pipelines(dataset, config: LCAConfig, workdir: pathlib.Path) -> dict:
  cache = workdir / "xla_cache"
  config = LCAConfig(**{**config.__dict__, "compile_cache": str(cache)})
  cold = _jaxnn_side(dataset, config, workdir / "jaxnn_cold")
  model = from_nnx(
    create_model(
      "fc", dataset.input_shape, dataset.num_classes, seed=config.seed, widths=config.widths
    )
  )
  init = [
    np.asarray(x)
    for layer in ("dense0", "dense1", "dense2")
    for x in (model.params[layer]["kernel"], model.params[layer]["bias"])
  ]
  batcher = EpochBatcher(dataset.train, config.batch_size, config.seed)
  steps = config.epochs * batcher.steps_per_epoch
  three, three_wall, three_cpu, _ = _timed(
    lambda: three_stage_lca(
      init,
      batcher,
      steps,
      {
        "train": (dataset.train.x, dataset.train.y),
        "validation": (dataset.validation.x, dataset.validation.y),
      },
      workdir / "three_stage",
      config.learning_rate,
      config.momentum,
    )
  )
  shutil.rmtree(workdir / "three_stage")
  warm = _jaxnn_rerun(config, workdir / "jaxnn_warm")
  parity = {}
  ours = cold["summary"]
  for name in ("train", "validation"):
    ours_layers = np.array(list(ours[name]["layer_totals"].values()))
    theirs = np.array(three["sets"][name]["layer_totals"])
    parity[name] = {
      "layer_totals_jaxnn": ours_layers.tolist(),
      "layer_totals_three_stage": theirs.tolist(),
      "max_rel_diff_layer_totals": float(np.max(np.abs(ours_layers - theirs) / np.abs(theirs))),
      "fraction_helped_jaxnn": ours[name]["fraction_helped_mean"],
      "fraction_helped_three_stage": float(
        np.mean(three["sets"][name]["helped_T"]) / ours[name]["num_params"]
      ),
    }
  return {
    "steps": steps,
    "cold": cold,
    "warm": warm,
    "three_stage_wall_s": three_wall,
    "three_stage_cpu_s": three_cpu,
    "three_stage_stages_s": three["timings"],
    "three_stage_disk_bytes": three["disk_bytes"],
    "parity": parity,
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--epochs", type=int, default=10, help="epochs of the pipeline comparison")
  parser.add_argument("--overhead-steps", type=int, default=28)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument(
    "--workdir", default=None, help="scratch directory (default: a temporary one)"
  )
  parser.add_argument("--out", default=None, help="write the result as JSON here")
  parser.add_argument("--rerun-child", default=None, help=argparse.SUPPRESS)
  parser.add_argument("--compile-cache", default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.rerun_child:
    _rerun_child(args.rerun_child, args.epochs, args.compile_cache)
    return
  dataset = load_dataset("mnist5k")
  config = LCAConfig(epochs=args.epochs, plots=False, progress=False)
  print(
    f"jax {jax.__version__} on {jax.devices()[0].platform}, torch {torch.__version__}, "
    f"torch threads {torch.get_num_threads()}, XLA_FLAGS={os.environ['XLA_FLAGS']!r}, "
    f"affinity {sorted(os.sched_getaffinity(0))}"
  )
  print(f"load average at start: {os.getloadavg()}")
  workdir = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="lca_bench_"))
  try:  # The scratch directory (and the compilation cache in it) lives until the end.
    run = report(args, dataset, config, workdir)
    if args.out:
      _results.write(
        args.out,
        {
          "setup": "MNIST-FC 784-100-50-10 on mnist5k, SGD lr 0.01 momentum 0.9, batch 250, LCA "
          "on the training and validation sets; both sides pinned to the same core, one thread",
          "unit": "CPU seconds (user + system) per side; disk in MiB",
          "runs": [run],
        },
        runs_key=("epochs",),
      )
  finally:
    if args.workdir is None:
      shutil.rmtree(workdir, ignore_errors=True)


def report(args, dataset, config: LCAConfig, workdir: pathlib.Path) -> dict:
  """Runs the comparisons, prints them and returns the run's numbers for `--out`."""
  p = pipelines(dataset, config, workdir)
  mb = lambda b: b / 2**20
  print(
    f"\n1. pipelines over {p['steps']} iterations ({args.epochs} epochs), training + "
    "validation LCA:"
  )
  stages = ", ".join(f"{k} {v:.1f} s" for k, v in p["three_stage_stages_s"].items())
  print(
    f"   three-stage: wall {p['three_stage_wall_s']:.1f} s, CPU {p['three_stage_cpu_s']:.1f} s "
    f"({stages} wall)"
  )
  for side in ("cold", "warm"):
    q = p[side]
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in q["timings"].items())
    print(
      f"   jaxnn run_lca {side}: wall {q['wall_s']:.1f} s, CPU {q['cpu_s']:.1f} s "
      f"(parts, wall: {parts}; {q['compiles']['count']} executables compiled or loaded in "
      f"{q['compiles']['seconds']:.1f} s wall, {q['compiles']['cache_hits']} of them from the "
      f"cache); speedup wall {p['three_stage_wall_s'] / q['wall_s']:.2f}x, CPU "
      f"{p['three_stage_cpu_s'] / q['cpu_s']:.2f}x (goal >= 2)"
    )
  q = p["cold"]
  disk = p["three_stage_disk_bytes"]
  print(
    f"   disk: three-stage {mb(disk):.1f} MiB; jaxnn outputs "
    f"{mb(q['disk_bytes_outputs']):.2f} MiB ({disk / q['disk_bytes_outputs']:.0f}x less), "
    f"with its Orbax checkpoints {mb(q['disk_bytes_with_checkpoints']):.2f} MiB "
    f"({disk / q['disk_bytes_with_checkpoints']:.0f}x less) (goal >= 100x)"
  )
  for name, q in p["parity"].items():
    print(
      f"   parity {name}: layer totals jaxnn {np.round(q['layer_totals_jaxnn'], 5).tolist()} "
      f"vs three-stage {np.round(q['layer_totals_three_stage'], 5).tolist()} (max rel diff "
      f"{q['max_rel_diff_layer_totals']:.2e}); fraction helped "
      f"{q['fraction_helped_jaxnn']:.4f} vs {q['fraction_helped_three_stage']:.4f}"
    )
  cold, warm = p["cold"], p["warm"]
  run = {
    "epochs": args.epochs,
    "iterations": p["steps"],
    "three_stage_cpu_s": p["three_stage_cpu_s"],
    "three_stage_wall_s": p["three_stage_wall_s"],
    "jaxnn_cold_cpu_s": cold["cpu_s"],
    "jaxnn_cold_wall_s": cold["wall_s"],
    "jaxnn_warm_cpu_s": warm["cpu_s"],
    "jaxnn_warm_wall_s": warm["wall_s"],
    "speedup_cold_cpu": p["three_stage_cpu_s"] / cold["cpu_s"],
    "speedup_warm_cpu": p["three_stage_cpu_s"] / warm["cpu_s"],
    "disk": {
      "three_stage_MiB": mb(disk),
      "jaxnn_outputs_MiB": mb(cold["disk_bytes_outputs"]),
      "jaxnn_with_checkpoints_MiB": mb(cold["disk_bytes_with_checkpoints"]),
      "ratio_outputs": disk / cold["disk_bytes_outputs"],
      "ratio_with_checkpoints": disk / cold["disk_bytes_with_checkpoints"],
    },
    "parity_max_rel_diff_layer_totals": {
      name: q["max_rel_diff_layer_totals"] for name, q in p["parity"].items()
    },
  }
  if args.overhead_steps:
    o = overhead(dataset, config, args.overhead_steps, args.repeats)
    run["overhead"] = {
      "steps": o["steps"],
      "repeats": args.repeats,
      "lca_step_s": o["lca_s"],
      "gradient_floor_s": o["floor_s"],
      "ratio": o["ratio"],
      "lca_step_with_stem_s": o["lca_stem_s"],
      "ratio_with_stem": o["stem_ratio"],
    }
    print(
      f"\n2. overhead over {o['steps']} steps, CPU seconds (median of {args.repeats}; mean "
      f"Simpson splits {o['mean_splits']:.2f}):"
    )
    print(
      f"   train step + LCA: {o['lca_s']:.3f} s; floor (train step + the same gradient "
      f"evaluations): {o['floor_s']:.3f} s; ratio {o['ratio']:.3f} (goal <= 1.2)"
    )
    print(
      f"   train step + LCA with the first-layer stem (fewer products): "
      f"{o['lca_stem_s']:.3f} s; ratio to the same floor {o['stem_ratio']:.3f}; the same "
      f"stem with every input feature (not dropping the {o['dropped_features']} that are 0 "
      f"in every evaluation image): {o['lca_stem_all_s']:.3f} s"
    )
    print(f"   all runs: {o['all_runs']}")
    print(
      f"   LCA step at {o['lca_gflops']:.0f} GFLOP/s (dense-layer products) vs a bare jitted "
      f"1000x784 @ 784x200 matmul at {o['matmul_gflops']:.0f} GFLOP/s"
    )
  print(f"load average at the end: {os.getloadavg()}")
  return run


if __name__ == "__main__":
  main()

"""LCA speed and disk, side by side in one run (MNIST-FC 784-100-50-10 on mnist5k).

1. Overhead: the jitted train step with LCA (`with_lca`) against its floor, a
   jitted step doing the train step and the same full-set gradient evaluations
   (end point and midpoint, on the training and validation sets) and nothing
   else. Goal: LCA / floor <= 1.2.
2. The original's three-stage pipeline (`lca_three_stage.py`, PyTorch + numpy,
   every iterate and gradient through the disk) against `jaxnn.lca.run_lca`
   end to end (compile, training, LCA, analyses, checkpoints, records), from
   the same initial weights and batches, so that their LCA must agree too.
   Goal: >= 2x faster and >= 100x less disk.

Both sides get the same threads: run pinned to one core,

  taskset -c 0 python benchmarks/lca_bench.py --epochs 10

(XLA's CPU client and PyTorch are both set to a single thread below).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import tempfile
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from jaxnn.data import EpochBatcher, load_dataset  # noqa: E402
from jaxnn.lca import (LCAConfig, full_set_loss, lca_accumulator, make_eval_set, run_lca,  # noqa: E402
                       with_lca)
from jaxnn.models import create_model  # noqa: E402
from jaxnn.train import from_nnx, init_train_state, make_optimizer, make_train_step  # noqa: E402

torch.set_num_threads(1)
torch.set_num_interop_threads(1)


def _dir_bytes(path: pathlib.Path) -> int:
  return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def overhead(dataset, config: LCAConfig, steps: int, repeats: int) -> dict:
  model = from_nnx(create_model("fc", dataset.input_shape, dataset.num_classes, widths=config.widths))
  optimizer = make_optimizer("momentum", config.learning_rate, momentum=config.momentum)
  train_step = make_train_step(model, optimizer)
  sets = (make_eval_set(dataset.train, config.chunk_size), make_eval_set(dataset.validation, config.chunk_size))
  acc = lca_accumulator(model, steps)
  vg = full_set_loss(model)
  lca_step = jax.jit(with_lca(train_step, acc))

  @jax.jit
  def floor_step(state, x, y, *eval_sets):
    new_state, metrics = train_step(state, x, y)
    mid = jax.tree.map(lambda a, b: (a + b) / 2, state.params, new_state.params)
    grads = [(vg(new_state.params, new_state.model_state, s), vg(mid, new_state.model_state, s))
             for s in eval_sets]
    return new_state, grads

  batcher = EpochBatcher(dataset.train, config.batch_size, 0)
  batches = [batcher.at_step(t) for t in range(steps)]
  state0 = init_train_state(model, optimizer)
  lca0 = jax.jit(acc.init)(model.params, model.state, sets)

  def run_lca_steps():
    carry = (state0, lca0)
    for x, y in batches:
      carry, _ = lca_step(carry, x, y, *sets)
    return jax.block_until_ready(carry)

  def run_floor_steps():
    state = state0
    for x, y in batches:
      state, grads = floor_step(state, x, y, *sets)
    return jax.block_until_ready((state, grads))

  carry = run_lca_steps()  # compile both first
  run_floor_steps()
  times = {"lca": [], "floor": []}
  for _ in range(repeats):
    for name, fn in (("lca", run_lca_steps), ("floor", run_floor_steps)):
      t0 = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - t0)
  splits = np.concatenate([np.asarray(r.splits_T) for r in carry[1].sets])
  lca_s, floor_s = float(np.median(times["lca"])), float(np.median(times["floor"]))
  return {"steps": steps, "lca_s": lca_s, "floor_s": floor_s, "ratio": lca_s / floor_s,
          "all_runs": times, "mean_splits": float(splits.mean())}


def pipelines(dataset, config: LCAConfig, workdir: pathlib.Path) -> dict:
  ours_dir = workdir / "jaxnn"
  t0 = time.perf_counter()
  ours = run_lca(config, ours_dir, dataset=dataset)
  ours_s = time.perf_counter() - t0
  outputs = [ours_dir / "summary.json", ours_dir / "lca_records.npz"]
  model = from_nnx(create_model("fc", dataset.input_shape, dataset.num_classes, seed=config.seed,
                                widths=config.widths))
  init = [np.asarray(x) for layer in ("dense0", "dense1", "dense2")
          for x in (model.params[layer]["kernel"], model.params[layer]["bias"])]
  batcher = EpochBatcher(dataset.train, config.batch_size, config.seed)
  steps = config.epochs * batcher.steps_per_epoch
  three = three_stage_lca(init, batcher, steps,
                          {"train": (dataset.train.x, dataset.train.y),
                           "validation": (dataset.validation.x, dataset.validation.y)},
                          workdir / "three_stage", config.learning_rate, config.momentum)
  parity = {}
  for name in ("train", "validation"):
    ours_layers = np.array(list(ours[name]["layer_totals"].values()))
    theirs = np.array(three["sets"][name]["layer_totals"])
    parity[name] = {
        "layer_totals_jaxnn": ours_layers.tolist(), "layer_totals_three_stage": theirs.tolist(),
        "max_rel_diff_layer_totals": float(np.max(np.abs(ours_layers - theirs) / np.abs(theirs))),
        "fraction_helped_jaxnn": ours[name]["fraction_helped_mean"],
        "fraction_helped_three_stage": float(np.mean(three["sets"][name]["helped_T"]) / ours[name]["num_params"])}
  return {"steps": steps, "jaxnn_s": ours_s, "three_stage_s": three["seconds"],
          "three_stage_stages_s": three["timings"], "speedup": three["seconds"] / ours_s,
          "jaxnn_disk_bytes_with_checkpoints": _dir_bytes(ours_dir),
          "jaxnn_disk_bytes_outputs": sum(p.stat().st_size for p in outputs),
          "three_stage_disk_bytes": three["disk_bytes"], "parity": parity}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--epochs", type=int, default=10, help="epochs of the pipeline comparison")
  parser.add_argument("--overhead-steps", type=int, default=28)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--workdir", default=None, help="scratch directory (default: a temporary one)")
  args = parser.parse_args()
  dataset = load_dataset("mnist5k")
  config = LCAConfig(epochs=args.epochs, plots=False, progress=False)
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}, torch {torch.__version__}, "
        f"torch threads {torch.get_num_threads()}, XLA_FLAGS={os.environ['XLA_FLAGS']!r}, "
        f"affinity {sorted(os.sched_getaffinity(0))}")
  o = overhead(dataset, config, args.overhead_steps, args.repeats)
  print(f"\n1. overhead over {o['steps']} steps (median of {args.repeats}; mean Simpson splits "
        f"{o['mean_splits']:.2f}):")
  print(f"   train step + LCA: {o['lca_s']:.3f} s; floor (train step + the same gradient "
        f"evaluations): {o['floor_s']:.3f} s; ratio {o['ratio']:.3f} (goal <= 1.2)")
  print(f"   all runs: {o['all_runs']}")
  workdir = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="lca_bench_"))
  try:
    p = pipelines(dataset, config, workdir)
  finally:
    if args.workdir is None:
      shutil.rmtree(workdir, ignore_errors=True)
  mb = lambda b: b / 2 ** 20
  print(f"\n2. pipelines over {p['steps']} iterations ({args.epochs} epochs), training + validation LCA:")
  print(f"   jaxnn run_lca end to end: {p['jaxnn_s']:.1f} s; three-stage: {p['three_stage_s']:.1f} s "
        f"({', '.join(f'{k} {v:.1f} s' for k, v in p['three_stage_stages_s'].items())}); "
        f"speedup {p['speedup']:.2f}x (goal >= 2)")
  print(f"   disk: three-stage {mb(p['three_stage_disk_bytes']):.1f} MiB; jaxnn outputs "
        f"{mb(p['jaxnn_disk_bytes_outputs']):.2f} MiB "
        f"({p['three_stage_disk_bytes'] / p['jaxnn_disk_bytes_outputs']:.0f}x less), with its Orbax "
        f"checkpoints {mb(p['jaxnn_disk_bytes_with_checkpoints']):.2f} MiB "
        f"({p['three_stage_disk_bytes'] / p['jaxnn_disk_bytes_with_checkpoints']:.0f}x less) (goal >= 100x)")
  for name, q in p["parity"].items():
    print(f"   parity {name}: layer totals jaxnn {np.round(q['layer_totals_jaxnn'], 5).tolist()} vs "
          f"three-stage {np.round(q['layer_totals_three_stage'], 5).tolist()} (max rel diff "
          f"{q['max_rel_diff_layer_totals']:.2e}); fraction helped {q['fraction_helped_jaxnn']:.4f} vs "
          f"{q['fraction_helped_three_stage']:.4f}")


if __name__ == "__main__":
  import sys
  sys.path.insert(0, str(pathlib.Path(__file__).parent))
  from lca_three_stage import three_stage_lca  # noqa: E402
  main()

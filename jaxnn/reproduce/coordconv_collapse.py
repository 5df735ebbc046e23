"""Why the paper-width CoordConv classifier can lose the held-out quadrant late in training.

A controlled experiment (docs/coordconv.md): train the paper's 7,553-parameter
classifier (Adam lr 1e-2, beta2 0.99, batch 16) on the quadrant split with the
canvas mirrored (the top-left quadrant held out), evaluate every epoch, and
snapshot the state every epoch. From the snapshot of the first epoch whose
training loss is exactly 0 in float32, continue with ONE factor changed:

- `loss64`: the same float32 network, the cross-entropy computed in float64
  (is it float32 saturation of the softmax?);
- `stable`: the float32 cross-entropy written so that it cannot round to 0
  (`log1p` of the other classes' mass), which keeps the label's gradient;
- `sgd_like`: Adam with eps 1e-3 instead of 1e-8, so a vanishing gradient
  gives a vanishing step (is it Adam normalizing vanishing gradients?);
- `lr1e-3`: the lower end of the paper's learning rates;
- `l2`: the paper's L2 on kernels (1e-4, Keras convention, as `--weight-decay`).

    python -m jaxnn.reproduce.coordconv_collapse --out runs/collapse --epochs 40

Writes `OUT/baseline.jsonl` (one record per epoch), `OUT/<variant>.jsonl` and
`OUT/summary.json`. CPU-heavy: about 4,096 pixels x 7.5k multiply-adds per
example; tens of seconds per epoch on one core.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np

CANVAS = 64
VARIANTS = ("loss64", "stable", "sgd_like", "lr1e-3", "l2")


def mirrored(x_Nx2: np.ndarray, label_N: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(x, y) -> (63 - x, 63 - y), pixel index y * 64 + x -> its mirror: 4095 - index."""
  return (CANVAS - 1) - x_Nx2, (CANVAS * CANVAS - 1) - label_N


def apply(params, x_Bx2):
  """`CoordConvClassifier`'s logits as per-pixel matmuls (the network is 1x1 convs).

  Same parameters, same function (checked against the module in `_setup`), several
  times faster on a CPU than XLA's 1x1 convolutions of 64x64 images.
  """
  import jax
  import jax.numpy as jnp

  ramp = jnp.arange(CANVAS, dtype=jnp.float32) / (CANVAS - 1) * 2 - 1
  xx_P = jnp.tile(ramp, CANVAS)  # column of pixel row * 64 + col
  yy_P = jnp.repeat(ramp, CANVAS)
  first = params["first"]["conv"]
  w_4xH = first["kernel"][0, 0]
  x_Bx2 = x_Bx2.astype(jnp.float32) / (CANVAS - 1) * 2 - 1
  h = (x_Bx2 @ w_4xH[:2])[:, None, :] + (
    xx_P[:, None] * w_4xH[2] + yy_P[:, None] * w_4xH[3] + first["bias"]
  )[None]
  h = jax.nn.relu(h)
  for layer in params["hidden"].values():
    h = jax.nn.relu(h @ layer["kernel"][0, 0] + layer["bias"])
  out = params["out"]
  return (h @ out["kernel"][0, 0] + out["bias"])[..., 0]


def _setup(seed: int):
  from flax import nnx

  from jaxnn.coordconv import create_task_model
  from jaxnn.data import load_dataset

  data = load_dataset("not_so_clevr", split="quadrant", task="classification", validation_size=0)
  train = mirrored(data.train.x, data.train.y)
  test = mirrored(data.test.x, data.test.y)
  module = create_task_model("classification", "coordconv", seed=seed)
  params = nnx.to_pure_dict(nnx.split(module)[1])
  check = np.array([[4.0, 59.0], [33.0, 10.0]], np.float32)
  np.testing.assert_allclose(apply(params, check), module(check), rtol=1e-4, atol=1e-4)
  return train, test, params


def _loss_fn(variant: str):
  import jax.numpy as jnp
  import optax

  if variant == "loss64":
    return lambda z, y: optax.softmax_cross_entropy_with_integer_labels(z.astype(jnp.float64), y)
  # The usual formula, as the runs that collapsed computed it (optax, float32).
  if variant == "stable":
    from jaxnn.coordconv._objectives import softmax_cross_entropy

    return softmax_cross_entropy
  return lambda z, y: optax.softmax_cross_entropy_with_integer_labels(z.astype(jnp.float32), y)


def _optimizer(variant: str, lr: float):
  import optax

  if variant == "sgd_like":
    return optax.adam(lr, b1=0.9, b2=0.99, eps=1e-3)
  if variant == "lr1e-3":
    return optax.adam(1e-3, b1=0.9, b2=0.99)
  return optax.adam(lr, b1=0.9, b2=0.99)


def _diagnostics(apply_fn, train, test):
  """describe(params) -> the gradient cosines on a fixed batch and train/test metrics."""
  import jax
  import jax.numpy as jnp
  import optax

  @jax.jit
  def evaluate(p, x, y):
    z = apply_fn(p, x)
    ce32 = optax.softmax_cross_entropy_with_integer_labels(z.astype(jnp.float32), y)
    top2 = jax.lax.top_k(z, 2)[0]
    return (
      jnp.sum(jnp.argmax(z, -1) == y),
      jnp.sum(ce32),
      jnp.sum(ce32 == 0.0),
      jnp.sum(top2[:, 0] - top2[:, 1]),
    )

  probe_x, probe_y = train[0][::37][:64], train[1][::37][:64]  # a fixed batch of 64

  @jax.jit
  def gradient_cosines(p):
    """Cosine of the float32 gradients (optax's CE, the stable CE) with the float64 CE's."""
    grads = [
      jax.grad(lambda q, f=f: jnp.mean(f(apply_fn(q, probe_x), probe_y)))(p)
      for f in (_loss_fn("baseline"), _loss_fn("stable"), _loss_fn("loss64"))
    ]
    flat = [jnp.concatenate([g.ravel() for g in jax.tree.leaves(t)]) for t in grads]

    def cos(a, b):
      return jnp.dot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b) + 1e-300)

    return cos(flat[0], flat[2]), cos(flat[1], flat[2]), jnp.linalg.norm(flat[2])

  def metrics(p, split):
    totals = np.zeros(4)
    for i in range(0, len(split[0]), 256):
      totals += np.array(
        [float(v) for v in evaluate(p, split[0][i : i + 256], split[1][i : i + 256])]
      )
    n = len(split[0])
    return {
      "accuracy": totals[0] / n,
      "loss": totals[1] / n,
      "zero_loss_fraction": totals[2] / n,
      "mean_top2_margin": totals[3] / n,
    }

  def describe(p) -> dict:
    cos32, cos_stable, norm64 = (float(v) for v in gradient_cosines(p))
    return {
      "grad_cosine_float32_vs_float64": cos32,
      "grad_cosine_stable_vs_float64": cos_stable,
      "probe_grad_norm_float64": norm64,
      "param_norm": float(optax.global_norm(p)),
      **{f"train_{k}": v for k, v in metrics(p, train).items()},
      **{f"test_{k}": v for k, v in metrics(p, test).items()},
    }

  return describe


def _train(
  apply_fn,
  params,
  opt_state,
  optimizer,
  loss,
  train,
  test,
  epochs,
  *,
  seed,
  first_epoch,
  l2=0.0,
  log=None,
  snapshots=None,
):
  import jax
  import jax.numpy as jnp
  import optax

  from jaxnn.data import EpochBatcher, Split

  def objective(p, x, y):
    data_loss = jnp.mean(loss(apply_fn(p, x), y))
    kernels = [v for path, v in jax.tree_util.tree_leaves_with_path(p) if "kernel" in str(path)]
    return data_loss + l2 * sum(jnp.sum(jnp.square(k)) for k in kernels), data_loss

  @jax.jit
  def step(p, s, x, y):
    (_, data_loss), g = jax.value_and_grad(objective, has_aux=True)(p, x, y)
    updates, s = optimizer.update(g, s, p)
    gnorm = optax.global_norm(g)
    return optax.apply_updates(p, updates), s, data_loss, gnorm, optax.global_norm(updates)

  describe = _diagnostics(apply_fn, train, test)

  batcher = EpochBatcher(Split(train[0], train[1]), 16, seed)
  for epoch in range(first_epoch, first_epoch + epochs):
    t0 = time.perf_counter()
    stats = []
    for index in range(batcher.steps_per_epoch):
      x, y = batcher.batch(epoch, index)
      params, opt_state, *s = step(params, opt_state, x, y)
      stats.append([float(v) for v in s])
    stats = np.array(stats)
    record = {
      "epoch": epoch + 1,
      "batch_loss_zero_fraction": float(np.mean(stats[:, 0] == 0.0)),
      "grad_norm_median": float(np.median(stats[:, 1])),
      "update_norm_median": float(np.median(stats[:, 2])),
      **describe(params),
      "seconds": time.perf_counter() - t0,
    }
    if log is not None:
      with open(log, "a") as f:
        f.write(json.dumps(record) + "\n")
    print(json.dumps(record), flush=True)
    if snapshots is not None:
      snapshots.append((record, jax.device_get((params, opt_state))))
  return params, opt_state


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True)
  parser.add_argument("--epochs", type=int, default=40, help="epochs of the baseline run")
  parser.add_argument("--variant-epochs", type=int, default=6, help="epochs of each variant")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--lr", type=float, default=1e-2)
  parser.add_argument("--variants", default=",".join(VARIANTS))
  parser.add_argument(
    "--saturate",
    type=float,
    default=0.0,
    help="branch after the last baseline epoch with the output layer scaled by this factor "
    "(logits x factor: same predictions, float32 loss saturated); 0: branch at the first "
    "epoch with half the training losses exactly 0",
  )
  parser.add_argument(
    "--fresh-adam",
    action="store_true",
    help="start every variant with a fresh Adam state (no moments from the baseline run)",
  )
  args = parser.parse_args(argv)
  import jax

  jax.config.update("jax_enable_x64", True)  # for the loss64 variant; arrays stay float32
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  train, test, params = _setup(args.seed)
  optimizer = _optimizer("baseline", args.lr)
  snapshots: list = []
  (out / "baseline.jsonl").unlink(missing_ok=True)
  _train(
    apply,
    params,
    optimizer.init(params),
    optimizer,
    _loss_fn("baseline"),
    train,
    test,
    args.epochs,
    seed=args.seed,
    first_epoch=0,
    log=out / "baseline.jsonl",
    snapshots=snapshots,
  )
  branch = next(
    (i for i, (r, _) in enumerate(snapshots) if r["train_zero_loss_fraction"] >= 0.5), None
  )
  summary = {
    "baseline": [r for r, _ in snapshots],
    "branch_epoch": None,
    "variants": {},
    "saturate": args.saturate,
  }
  if args.saturate:
    branch = len(snapshots) - 1
  if branch is not None:
    summary["branch_epoch"] = snapshots[branch][0]["epoch"]
    p0, s0 = snapshots[branch][1]
    if args.saturate:
      p0 = jax.tree.map(lambda v: v, p0)
      p0["out"] = jax.tree.map(lambda v: v * args.saturate, p0["out"])
      summary["saturated_state"] = _diagnostics(apply, train, test)(p0)
      print(json.dumps({"saturated_state": summary["saturated_state"]}), flush=True)
    for variant in args.variants.split(","):
      optimizer = _optimizer(variant, args.lr)  # Adam's state has the same form: keep its moments
      state = optimizer.init(p0) if args.fresh_adam else s0
      log = out / f"{variant}.jsonl"
      log.unlink(missing_ok=True)
      records: list = []
      _train(
        apply,
        p0,
        state,
        optimizer,
        _loss_fn(variant),
        train,
        test,
        args.variant_epochs,
        seed=args.seed,
        first_epoch=summary["branch_epoch"],
        l2=1e-4 if variant == "l2" else 0.0,
        log=log,
        snapshots=records,
      )
      summary["variants"][variant] = [r for r, _ in records]
  (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())

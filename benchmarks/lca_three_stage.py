"""The original LCA pipeline, rebuilt in PyTorch + numpy for comparison.

Lan et al. (2019) computed LCA in three stages, each through the disk:
1. train, saving every iterate theta_0..theta_T (float64, (T+1) x P);
2. reload every iterate and compute full-set gradients at it and at the
   midpoint of every step (float64, (2T+1) x P per evaluation set);
3. stream through weights and gradients to write the LCA array (T x P per
   set) with Simpson's rule (2 splits, the paper's "RK4" before refinement).

`three_stage_lca` does exactly that for an FC network trained with SGD and
momentum on the batches of a `jaxnn.data.EpochBatcher`, starting from given
initial weights, so its trajectory (and LCA) can be compared with jaxnn's.
Used by `benchmarks/lca_bench.py`.
"""

from __future__ import annotations

import pathlib
import time

import numpy as np
import torch


def _forward(weights, x):
  h = x.reshape(x.shape[0], -1)
  for i, (w, b) in enumerate(weights):
    h = h @ w + b
    if i < len(weights) - 1:
      h = torch.relu(h)
  return h


def _unflatten(theta_P, shapes):
  out, k = [], 0
  for shape in shapes:
    n = int(np.prod(shape))
    out.append(theta_P[k : k + n].reshape(shape))
    k += n
  return out


def _full_set_grad(theta_P, shapes, x, y, chunk=1000):
  theta = torch.tensor(theta_P, dtype=torch.float32, requires_grad=True)
  grad = torch.zeros_like(theta)
  for start in range(0, len(x), chunk):
    if theta.grad is not None:
      theta.grad = None
    params = _unflatten(theta, shapes)
    weights = list(zip(params[0::2], params[1::2]))
    logits = _forward(weights, x[start : start + chunk])
    loss = torch.nn.functional.cross_entropy(logits, y[start : start + chunk], reduction="sum")
    loss.backward()
    grad += theta.grad
  return grad.numpy().astype(np.float64) / len(x)


def three_stage_lca(
  init_params: list[np.ndarray],
  batcher,
  num_steps: int,
  eval_sets: dict,
  directory: str | pathlib.Path,
  lr: float = 0.01,
  momentum: float = 0.9,
) -> dict:
  """Runs the three stages; returns timings, bytes written and per-set LCA summaries.

  Args:
    init_params: [kernel0, bias0, kernel1, bias1, ...] as numpy arrays.
    batcher: gives the training batch of each step (`at_step`).
    num_steps: T.
    eval_sets: {name: (x, y)} numpy arrays for the full-set gradients.
    directory: where the stages write their files.
  """
  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  shapes = [p.shape for p in init_params]
  P = sum(p.size for p in init_params)
  timings = {}

  t0 = time.perf_counter()
  weights_path = directory / "weights.npy"
  saved = np.lib.format.open_memmap(
    weights_path, mode="w+", dtype=np.float64, shape=(num_steps + 1, P)
  )
  params = [torch.tensor(p, dtype=torch.float32, requires_grad=True) for p in init_params]
  optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum)
  flat = lambda: np.concatenate([p.detach().numpy().ravel() for p in params])
  saved[0] = flat()
  for t in range(num_steps):
    x, y = batcher.at_step(t)
    optimizer.zero_grad()
    logits = _forward(list(zip(params[0::2], params[1::2])), torch.from_numpy(x))
    torch.nn.functional.cross_entropy(logits, torch.from_numpy(y).long()).backward()
    optimizer.step()
    saved[t + 1] = flat()
  saved.flush()
  del saved
  timings["train_and_save"] = time.perf_counter() - t0

  t0 = time.perf_counter()
  weights = np.load(weights_path, mmap_mode="r")
  sets = {
    name: (torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y).long())
    for name, (x, y) in eval_sets.items()
  }
  for name, (x, y) in sets.items():
    grads = np.lib.format.open_memmap(
      directory / f"grads_{name}.npy", mode="w+", dtype=np.float64, shape=(2 * num_steps + 1, P)
    )
    for t in range(num_steps + 1):
      grads[2 * t] = _full_set_grad(weights[t], shapes, x, y)
      if t < num_steps:
        grads[2 * t + 1] = _full_set_grad((weights[t] + weights[t + 1]) / 2, shapes, x, y)
    grads.flush()
    del grads
  timings["recompute_gradients"] = time.perf_counter() - t0

  t0 = time.perf_counter()
  results = {}
  for name in sets:
    grads = np.load(directory / f"grads_{name}.npy", mmap_mode="r")
    lca = np.lib.format.open_memmap(
      directory / f"lca_{name}.npy", mode="w+", dtype=np.float64, shape=(num_steps, P)
    )
    lca_T = np.zeros(num_steps)
    helped_T = np.zeros(num_steps, np.int64)
    for t in range(num_steps):
      row = (
        (weights[t + 1] - weights[t]) * (grads[2 * t] + 4 * grads[2 * t + 1] + grads[2 * t + 2]) / 6
      )
      lca[t] = row
      lca_T[t], helped_T[t] = row.sum(), np.sum(row < 0)
    lca.flush()
    totals = np.asarray(lca).sum(0)
    bounds = np.cumsum([0] + [int(np.prod(s)) for s in shapes])
    layer_totals = [
      float(totals[bounds[2 * i] : bounds[2 * i + 2]].sum()) for i in range(len(shapes) // 2)
    ]
    results[name] = {"lca_T": lca_T, "helped_T": helped_T, "layer_totals": layer_totals}
    del lca
  timings["allocate"] = time.perf_counter() - t0
  disk = sum(f.stat().st_size for f in directory.iterdir())
  return {
    "timings": timings,
    "seconds": sum(timings.values()),
    "disk_bytes": disk,
    "sets": results,
    "final_weights": np.asarray(weights[-1]),
  }

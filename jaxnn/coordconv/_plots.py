"""PNG plots of a Not-so-Clevr run: learning curves, predictions on held-out examples."""

from __future__ import annotations

import pathlib

import jax
import numpy as np

CANVAS = 64


def _figure(**kwargs):
  """A figure outside pyplot: library plots never touch the user's backend (a notebook's)."""
  from matplotlib.figure import Figure

  return Figure(**kwargs)


def predict(model, state, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
  """Model outputs (inference mode) for `x`, in batches, as numpy."""
  apply = jax.jit(lambda p, s, xb: model.apply(p, s, xb, False, None)[0])
  return np.concatenate(
    [
      np.asarray(apply(state.params, state.model_state, x[i : i + batch_size]))
      for i in range(0, len(x), batch_size)
    ]
  )


def plot_learning_curves(history: list[dict], task: str, path: pathlib.Path) -> None:
  keys = {
    "classification": ("accuracy",),
    "regression": ("pixel_error",),
    "rendering": ("iou", "accuracy"),
  }[task]
  fig = _figure(figsize=(4.5 * (len(keys) + 1), 3.5))
  axes = fig.subplots(1, len(keys) + 1)
  epochs = [r["epoch"] for r in history]
  for ax, name in zip(axes, ("loss", *keys)):
    for split, style in (("train", "-"), ("test", "--")):
      ax.plot(epochs, [r[f"{split}_{name}"] for r in history], style, label=split)
    ax.set_xlabel("epoch")
    ax.set_title(name.replace("_", " "))
    if name in ("loss", "pixel_error"):
      ax.set_yscale("log")
    ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)


def _locations(x: np.ndarray, y: np.ndarray, task: str) -> np.ndarray:
  """(N, 2) integer centres (x, y) of examples, from the task's inputs or targets."""
  if task == "regression":
    return np.rint(y * CANVAS).astype(int)
  return np.rint(x).astype(int)


def plot_predictions(
  model, state, data, task: str, path: pathlib.Path, num_examples: int = 4
) -> None:
  """Predicted vs true on held-out (test) examples, plus where on the canvas test fails."""
  test = data.test
  pick = np.linspace(0, len(test) - 1, num_examples).astype(int)
  out_all = predict(model, state, test.x)
  locs = _locations(test.x, test.y, task)
  fig = _figure(figsize=(3 * (num_examples + 1), 6))
  axes = fig.subplots(2, num_examples + 1)
  for col, i in enumerate(pick):
    top, bottom = axes[0, col], axes[1, col]
    x0, y0 = locs[i]
    if task == "classification":
      prob = jax.nn.softmax(out_all[i]).reshape(CANVAS, CANVAS)
      top.imshow(np.asarray(prob), cmap="magma")
      truth = np.zeros((CANVAS, CANVAS))
      truth[y0, x0] = 1
      bottom.imshow(truth, cmap="magma")
      top.set_title(f"predicted p, ({x0},{y0})")
    elif task == "rendering":
      top.imshow(np.asarray(jax.nn.sigmoid(out_all[i][..., 0])), cmap="gray", vmin=0, vmax=1)
      bottom.imshow(test.y[i][..., 0], cmap="gray", vmin=0, vmax=1)
      top.set_title(f"predicted, ({x0},{y0})")
    else:
      top.imshow(test.x[i][..., 0], cmap="gray")
      px, py = out_all[i] * CANVAS
      top.plot([px], [py], "r+", markersize=12)
      top.set_title(f"true ({x0},{y0}) pred ({px:.1f},{py:.1f})")
      bottom.axis("off")
    if task != "regression":
      bottom.set_title("true")
  error_map = np.full((CANVAS, CANVAS), np.nan)
  if task == "classification":
    per_example = (np.argmax(out_all, -1) != test.y).astype(float)
    label = "test error (1 = wrong pixel)"
  elif task == "rendering":
    painted = jax.nn.sigmoid(out_all) > (128 / 255) / 2
    per_example = 1 - np.asarray(
      np.sum(painted & (test.y > 0), (1, 2, 3))
      / np.maximum(np.sum(painted | (test.y > 0), (1, 2, 3)), 1)
    )
    label = "test 1 - IoU"
  else:
    per_example = CANVAS * np.linalg.norm(out_all - test.y, axis=-1)
    label = "test error (pixels)"
  error_map[locs[:, 1], locs[:, 0]] = per_example
  im = axes[0, -1].imshow(error_map, cmap="viridis")
  axes[0, -1].set_title(label)
  fig.colorbar(im, ax=axes[0, -1])
  axes[1, -1].axis("off")
  fig.tight_layout()
  fig.savefig(path, dpi=100)


def plot_run(module, model, state, data, config, history, workdir: pathlib.Path) -> list[str]:
  """Writes `learning_curves.png` and `predictions.png`; returns their file names."""
  del module
  names = []
  if history:
    plot_learning_curves(history, config.task, workdir / "learning_curves.png")
    names.append("learning_curves.png")
  plot_predictions(model, state, data, config.task, workdir / "predictions.png")
  names.append("predictions.png")
  return names

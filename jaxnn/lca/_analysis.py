"""The paper's analyses on the accumulated LCA summaries (numpy, after training).

`records_to_numpy` turns an `LCAState` into plain arrays (saved as
`lca_records.npz`); `summarize` computes the numbers of the paper's findings
from them; `synchronization` tests whether per-layer learning peaks coincide
more often than chance.

References:
  Lan, Liu, Zhou, Yosinski. "LCA: Loss Change Allocation for Neural Network
  Training", NeurIPS 2019, Sections 3-5.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from jaxnn.lca._accumulate import LCAAccumulator, LCAState

SPLIT_LEVELS = (0, 2, 4, 8, 16, 32)


def records_to_numpy(accumulator: LCAAccumulator, state: LCAState) -> dict[str, np.ndarray]:
  """Flat `{name: array}` of everything accumulated, per set as `<set>/<field>`.

  Per-parameter pytrees are flattened in leaf order (`<set>/total_P`, ...).
  The record is cut to the iterations actually run.
  """
  state = jax.device_get(state)
  t = int(state.iteration)
  out = {
    "iteration": np.asarray(t),
    "tracked_index_K": np.asarray(state.tracked_index_K),
    "tracked_value_T1xK": np.asarray(state.tracked_value_T1xK)[: t + 1],
    "layers": np.asarray(accumulator.layout.layers),
    "neuron_layer_N": np.asarray(accumulator.layout.neuron_layer),
  }
  for i, name in enumerate(accumulator.set_names):
    rec = jax.tree.map(lambda a: a[i], state.sets)
    for field in rec._fields:
      value = getattr(rec, field)
      if field == "start":
        continue
      if field.endswith("_P"):
        out[f"{name}/{field}"] = np.asarray(value)
      else:
        value = np.asarray(value)
        out[f"{name}/{field}"] = value[: t + 1] if field == "loss_T1" else value[:t]
  return out


def _local_peaks(learning_TxL: np.ndarray) -> np.ndarray:
  """Iterations where a layer's learning (-LCA) is positive and above both neighbours."""
  v = learning_TxL
  peak = np.zeros(v.shape, bool)
  if len(v) >= 3:
    peak[1:-1] = (v[1:-1] > v[:-2]) & (v[1:-1] > v[2:]) & (v[1:-1] > 0)
  return peak


def synchronization(layer_TxL: np.ndarray, *, num_shuffles: int = 1000, seed: int = 0) -> dict:
  """How often per-layer learning peaks fall on the same iteration, vs chance.

  Learning of layer l at iteration t is -LCA[t, l] (its share of the loss
  decrease). A peak is a local maximum of positive learning. The statistic is
  the number of iterations where every layer peaks at once (and, with more
  than two layers, the mean over pairs of layers of shared peaks). Chance:
  each layer's peak iterations shuffled independently (`num_shuffles` times;
  the count of peaks per layer is kept), and as a stricter control, each
  layer's series circularly shifted by an independent random lag (which keeps
  its autocorrelation).

  Returns:
    A dict ``{"all_layers": {...}, "pairs": {...}, "peaks_per_layer": [...]}`` where each
    statistic has `observed`, `shuffled_mean`, `shuffled_std`,
    `shuffled_p_value` (fraction of shuffles >= observed), `shifted_mean`,
    `shifted_p_value` and `ratio_to_chance` (observed / shuffled mean).
  """
  peaks = _local_peaks(-np.asarray(layer_TxL, np.float64))
  T, L = peaks.shape
  pairs = [(a, b) for a in range(L) for b in range(a + 1, L)]

  def stats(p):
    together = int(np.sum(np.all(p, axis=1))) if L else 0
    pair = float(np.mean([np.sum(p[:, a] & p[:, b]) for a, b in pairs])) if pairs else 0.0
    return together, pair

  rng = np.random.default_rng(seed)
  shuffled = (
    np.array(
      [
        stats(np.stack([rng.permutation(peaks[:, l]) for l in range(L)], 1))
        for _ in range(num_shuffles)
      ]
    )
    if L and T
    else np.zeros((1, 2))
  )
  shifted = (
    np.array(
      [
        stats(np.stack([np.roll(peaks[:, l], rng.integers(T)) for l in range(L)], 1))
        for _ in range(num_shuffles)
      ]
    )
    if L and T
    else np.zeros((1, 2))
  )
  observed = stats(peaks)
  result = {
    "peaks_per_layer": peaks.sum(0).tolist(),
    "iterations": T,
    "definition": "peak: iteration where a layer's learning (-LCA) is positive and a "
    "strict local maximum",
  }
  for i, key in enumerate(("all_layers", "pairs")):
    mean = float(shuffled[:, i].mean())
    result[key] = {
      "observed": observed[i],
      "shuffled_mean": mean,
      "shuffled_std": float(shuffled[:, i].std()),
      "shuffled_p_value": float(np.mean(shuffled[:, i] >= observed[i])),
      "shifted_mean": float(shifted[:, i].mean()),
      "shifted_p_value": float(np.mean(shifted[:, i] >= observed[i])),
      "ratio_to_chance": observed[i] / mean if mean else float("nan"),
    }
  return result


def _phase(rec: dict[str, np.ndarray], num_params: int, sl: slice) -> dict[str, Any]:
  helped, moved = rec["helped_T"][sl], rec["moved_T"][sl]
  has_moved = moved > 0
  return {
    "iterations": [
      int(np.arange(len(rec["lca_T"]))[sl][0]),
      int(np.arange(len(rec["lca_T"]))[sl][-1]) + 1,
    ]
    if len(helped)
    else [],
    "fraction_helped_mean": float(np.mean(helped / num_params)) if len(helped) else float("nan"),
    "fraction_helped_of_moved_mean": float(np.mean(helped[has_moved] / moved[has_moved]))
    if has_moved.any()
    else float("nan"),
    "loss_change": float(np.sum(rec["lca_T"][sl] + rec["error_T"][sl] + rec["state_change_T"][sl])),
    "mean_abs_iteration_lca": float(np.mean(np.abs(rec["lca_T"][sl]))) if len(helped) else 0.0,
    "layer_totals": rec["layer_TxL"][sl].sum(0).tolist(),
  }


def summarize(
  records: dict[str, np.ndarray], set_names, threshold: float, num_shuffles: int = 1000
) -> dict[str, Any]:
  """The paper's numbers for each evaluation set, from `records_to_numpy` output.

  Per set: loss change vs the LCA sum (and the relative error), the largest
  per-iteration error, first order for comparison, split counts, the fraction
  of parameters that helped per iteration (among all, and among those that
  moved in that iteration), never-moving parameters, per-layer totals, early
  vs late training (first and last third) and layer synchronization. The
  training set's headline numbers are also at the top level.
  """
  layers = [str(l) for l in records["layers"]]
  out: dict[str, Any] = {
    "layers": layers,
    "iterations": int(records["iteration"]),
    "threshold": threshold,
  }
  for name in set_names:
    rec = {k.split("/", 1)[1]: v for k, v in records.items() if k.startswith(f"{name}/")}
    T, P = len(rec["lca_T"]), len(rec["total_P"])
    loss_change = float(rec["loss_T1"][-1] - rec["loss_T1"][0])
    lca_sum = float(np.sum(rec["lca_T"], dtype=np.float64))
    state_change = float(np.sum(rec["state_change_T"], dtype=np.float64))
    first_sum = float(np.sum(rec["first_order_T"], dtype=np.float64))
    denom = abs(loss_change) or float("nan")
    moved = rec["moved_T"] > 0
    never_moved = int(np.sum(rec["moved_count_P"] == 0))
    layer_totals = dict(zip(layers, rec["layer_TxL"].sum(0).astype(float).tolist()))
    per_param_helped = rec["helped_count_P"] / np.maximum(rec["moved_count_P"], 1)
    third = max(T // 3, 1)
    s = {
      "loss_initial": float(rec["loss_T1"][0]),
      "loss_final": float(rec["loss_T1"][-1]),
      "loss_change": loss_change,
      "lca_sum": lca_sum,
      "state_change_sum": state_change,
      "relative_error": abs(loss_change - lca_sum - state_change) / denom,
      "max_abs_iteration_error": float(np.max(np.abs(rec["error_T"]))) if T else 0.0,
      "iterations_over_threshold": int(np.sum(np.abs(rec["error_T"]) > threshold)),
      "splits_histogram": {
        str(k): int(np.sum(rec["splits_T"] == k))
        for k in SPLIT_LEVELS
        if np.any(rec["splits_T"] == k)
      },
      "first_order": {
        "lca_sum": first_sum,
        "relative_error": abs(loss_change - first_sum - state_change) / denom,
        "max_abs_iteration_error": float(np.max(np.abs(rec["first_order_error_T"]))) if T else 0.0,
        "mean_abs_iteration_error": float(np.mean(np.abs(rec["first_order_error_T"])))
        if T
        else 0.0,
      },
      "mean_abs_iteration_error": float(np.mean(np.abs(rec["error_T"]))) if T else 0.0,
      "num_params": P,
      "never_moved_params": never_moved,
      "fraction_helped_mean": float(np.mean(rec["helped_T"] / P)) if T else float("nan"),
      "fraction_helped_min": float(np.min(rec["helped_T"] / P)) if T else float("nan"),
      "fraction_helped_max": float(np.max(rec["helped_T"] / P)) if T else float("nan"),
      "fraction_helped_of_moved_mean": float(
        np.mean(rec["helped_T"][moved] / rec["moved_T"][moved])
      )
      if moved.any()
      else float("nan"),
      "fraction_helped_of_moved_min": float(np.min(rec["helped_T"][moved] / rec["moved_T"][moved]))
      if moved.any()
      else float("nan"),
      "fraction_helped_of_moved_max": float(np.max(rec["helped_T"][moved] / rec["moved_T"][moved]))
      if moved.any()
      else float("nan"),
      "params_helping_most_iterations": float(
        np.mean(per_param_helped[rec["moved_count_P"] > 0] > 0.5)
      )
      if np.any(rec["moved_count_P"] > 0)
      else float("nan"),
      "params_with_negative_total": float(np.mean(rec["total_P"] < 0)),
      "params_with_negative_total_of_moved": float(
        np.mean(rec["total_P"][rec["moved_count_P"] > 0] < 0)
      )
      if np.any(rec["moved_count_P"] > 0)
      else float("nan"),
      "layer_totals": layer_totals,
      "layers_with_positive_total": [l for l, v in layer_totals.items() if v > 0],
      "early": _phase(rec, P, slice(0, third)),
      "late": _phase(rec, P, slice(T - third, T)),
      "synchronization": synchronization(rec["layer_TxL"], num_shuffles=num_shuffles),
    }
    out[name] = s
  for key in (
    "fraction_helped_mean",
    "fraction_helped_of_moved_mean",
    "layer_totals",
    "max_abs_iteration_error",
    "relative_error",
    "loss_change",
    "lca_sum",
  ):
    out[key] = out[set_names[0]][key]
  return out

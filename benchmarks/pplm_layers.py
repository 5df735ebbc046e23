"""Why jaxnn's GPT-2 unrolls its blocks: one-token passes with three layer layouts.

On a GPT-2-shaped random model (batch B, a cache of 64 positions, 40 filled),
times a one-token forward pass and the gradient PPLM needs (with respect to
the cache, through the whole model) for:

  scan:        `lax.scan` over blocks stacked on a leading axis (jaxnn before),
  scan_unroll: the same scan with `unroll=True`,
  unrolled:    a Python loop over one weight dict per block, the cache (and
               the perturbation the gradient is taken for) stacked L x B x H x S x K,
  per_layer:   the same loop with the cache and the perturbation held as one
               array per layer (`gpt2_forward_layers`, what PPLM steers now),
  per_layer_xla: the same with every weight product by XLA's dot instead of
               jaxnn's CPU kernel (which the others use for float32 one-token
               passes of at most 32 rows),

and counts in the optimized XLA HLO the ops that slice a block's weights out
of the stack (`dynamic-slice` fusions producing weight-shaped arrays; on CPU
each is a copy of that layer's weights, per pass) and the `pad` ops of the
whole stacked cache (the gradient of slicing layer i out of the stack: every
layer's gradient padded to L x B x H x S x K and added). It reports the
arithmetic rate of each pass (multiply-adds of the dense layers and the head,
x 2; forward + gradient counted as 2 forwards, no weight gradients), and times
`lax.top_k` against `kth_largest` (the k-th largest of each row, what the
steering loop's top-k needs) on a B x vocabulary array. For reference it also
times transformers' one-token forward pass (with a cache) on the same shape
and batch.

  flock /tmp/jaxnn_bench.lock taskset -c 0 python benchmarks/pplm_layers.py --threads 1
  flock /tmp/jaxnn_bench.lock taskset -c 0 python benchmarks/pplm_layers.py --threads 1 \
      --batch 1,8 --variants per_layer,per_layer_xla
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from pathlib import Path

from _threads import pin_xla_threads

SIZES = {"gpt2": (768, 12, 12), "gpt2-medium": (1024, 24, 16)}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--size", choices=sorted(SIZES), default="gpt2")
  parser.add_argument("--threads", type=int, default=1)
  parser.add_argument(
    "--batch", default="1", help="batch size, or several (e.g. 1,8) timed interleaved in one run"
  )
  parser.add_argument(
    "--variants",
    default="scan,scan_unroll,unrolled,per_layer",
    help="comma-separated subset of scan, scan_unroll, unrolled, per_layer, per_layer_xla",
  )
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--out", default=None, help="write the numbers as JSON here")
  args = parser.parse_args(argv)
  pin_xla_threads(args.threads)
  load_before = os.getloadavg()
  import jax
  import jax.numpy as jnp
  import numpy as np

  from jaxnn.lm import GPT2Config, _products, init_cache, init_params
  from jaxnn.lm._generate import kth_largest
  from jaxnn.lm._model import _block, _norm
  from jaxnn.lm._products import tied_logits

  width, layers, heads = SIZES[args.size]
  config = GPT2Config(n_embd=width, n_layer=layers, n_head=heads)
  per_layer = init_params(config, jax.random.key(0))
  stacked = {**per_layer, "h": jax.tree.map(lambda *a: jnp.stack(a), *per_layer["h"])}
  length = jnp.asarray(40, jnp.int32)
  weight_shapes = {
    f"f32[{width},{3 * width}]",
    f"f32[{width},{4 * width}]",
    f"f32[{4 * width},{width}]",
    f"f32[{width},{width}]",
  }
  batches = [int(b) for b in args.batch.split(",")]
  kernel_rows = _products.MAX_KERNEL_ROWS
  results = {
    "size": args.size,
    "batch": args.batch,
    "threads": args.threads,
    "cpu_affinity": sorted(os.sched_getaffinity(0)),
    "load_average_before": load_before,
  }

  def head(params, x_BxTxD):
    hidden_BxTxD = _norm(config.lm, x_BxTxD, params["ln_f"])
    return tied_logits(hidden_BxTxD, params["wte"])

  def split(a_LxBxHxSxK):
    return [a_LxBxHxSxK[i] for i in range(layers)]

  timed = {}
  for batch in batches:  # every (batch, variant, pass) compiled first, then timed interleaved
    prefix = f"batch{batch}_" if len(batches) > 1 else ""
    cache = init_cache(config, batch, 64)
    k_LxBxHxSxK = 0.1 * jax.random.normal(jax.random.key(1), cache.k.shape)
    v_LxBxHxSxK = 0.1 * jax.random.normal(jax.random.key(2), cache.v.shape)
    token_Bx1 = jnp.full((batch, 1), 7)

    def embed(params, token_Bx1=token_Bx1):
      pos_1xD = jax.lax.dynamic_slice_in_dim(params["wpe"], length, 1, axis=0)
      return params["wte"][token_Bx1] + pos_1xD[None]

    def scan_forward(params, k, v, unroll=1, embed=embed):
      def step(x_BxTxD, inputs):
        layer, k_BxHxSxK, v_BxHxSxK = inputs
        x_BxTxD, *_ = _block(config.lm, 0, x_BxTxD, layer, k_BxHxSxK, v_BxHxSxK, length, None)
        return x_BxTxD, None

      x_BxTxD, _ = jax.lax.scan(step, embed(params), (params["h"], k, v), unroll=unroll)
      return head(params, x_BxTxD)

    def unrolled_forward(params, k, v, embed=embed):
      x_BxTxD = embed(params)
      for i, layer in enumerate(params["h"]):
        x_BxTxD, *_ = _block(config.lm, i, x_BxTxD, layer, k[i], v[i], length, None)
      return head(params, x_BxTxD)

    variants = {
      "scan": (scan_forward, stacked, lambda a: a),
      "scan_unroll": (functools.partial(scan_forward, unroll=True), stacked, lambda a: a),
      "unrolled": (unrolled_forward, per_layer, lambda a: a),
      "per_layer": (unrolled_forward, per_layer, split),
      "per_layer_xla": (unrolled_forward, per_layer, split),
    }
    variants = {name: variants[name] for name in args.variants.split(",")}
    cache_shape = "f32[" + ",".join(map(str, k_LxBxHxSxK.shape)) + "]"
    for name, (forward, params, form) in variants.items():
      # "_xla": GPT-2's weight products by XLA's dot, not the CPU kernel (retraced).
      _products.MAX_KERNEL_ROWS = 0 if name.endswith("_xla") else kernel_rows
      jax.clear_caches()
      k, v = form(k_LxBxHxSxK), form(v_LxBxHxSxK)

      def loss(dk, dv, params, forward=forward, k=k, v=v):
        logits_Bx1xV = forward(params, jax.tree.map(jnp.add, k, dk), jax.tree.map(jnp.add, v, dv))
        return jax.nn.log_softmax(logits_Bx1xV[:, 0])[:, 5].sum()

      zeros = jax.tree.map(jnp.zeros_like, k)
      fns = {
        "forward": (jax.jit(forward), (params, k, v)),
        "cache_gradient": (jax.jit(jax.grad(loss, argnums=(0, 1))), (zeros, zeros, params)),
      }
      for kind, (fn, fn_args) in fns.items():
        start = time.perf_counter()
        compiled = fn.lower(*fn_args).compile()
        compile_seconds = time.perf_counter() - start
        hlo = compiled.as_text().splitlines()
        jax.block_until_ready(compiled(*fn_args))
        results[f"{prefix}{name}_{kind}_compile_seconds"] = compile_seconds
        results[f"{prefix}{name}_{kind}_weight_slice_ops_in_hlo"] = sum(
          1
          for line in hlo
          if "dynamic-slice" in line
          and "fusion(" in line
          and any(f"= {s}" in line for s in weight_shapes)
        )
        results[f"{prefix}{name}_{kind}_cache_pad_ops_in_hlo"] = sum(
          1 for line in hlo if f"= {cache_shape}" in line and " pad(" in line
        )
        timed[(prefix, batch, name, kind)] = (compiled, fn_args)
  seconds = {key: [] for key in timed}
  for _ in range(args.repeats):  # interleaved, so load changes hit every variant alike
    for key, (compiled, fn_args) in timed.items():
      start = time.perf_counter()
      jax.block_until_ready(compiled(*fn_args))
      seconds[key].append(time.perf_counter() - start)
  dense = sum(x.size for x in jax.tree.leaves(per_layer["h"]) if x.ndim == 2)
  for (prefix, batch, name, kind), values in seconds.items():
    forward_flops = 2 * batch * (dense + per_layer["wte"].size)
    results[f"{prefix}forward_gflop"] = forward_flops / 1e9
    results[f"{prefix}{name}_{kind}_seconds_median"] = float(np.median(values))
    results[f"{prefix}{name}_{kind}_seconds_min"] = float(np.min(values))
    passes = 1 if kind == "forward" else 2
    results[f"{prefix}{name}_{kind}_gflop_per_second"] = (
      passes * forward_flops / 1e9 / float(np.median(values))
    )
  for batch in batches:
    prefix = f"batch{batch}_" if len(batches) > 1 else ""
    results.update(
      {
        prefix + key: value
        for key, value in _time_top_k(
          jax, jnp, np, kth_largest, batch, config.vocab_size, args.repeats
        ).items()
      }
    )
    if "scan" in args.variants.split(",") and "unrolled" in args.variants.split(","):
      for kind in ("forward", "cache_gradient"):
        results[f"{prefix}scan_over_unrolled_{kind}"] = (
          results[f"{prefix}scan_{kind}_seconds_median"]
          / results[f"{prefix}unrolled_{kind}_seconds_median"]
        )
    results[f"{prefix}transformers_forward_seconds_median"] = _time_transformers(
      config, batch, args.threads, args.repeats
    )
  results["load_average_after"] = os.getloadavg()
  print(json.dumps(results, indent=2))
  if args.out:
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
  return 0


def _time_top_k(jax, jnp, np, kth_largest, batch: int, vocab: int, repeats: int) -> dict:
  """Median seconds of the k-th largest (k = 10) of each row: lax.top_k vs kth_largest."""
  p_BxV = jax.nn.softmax(jax.random.normal(jax.random.key(3), (batch, vocab)), axis=-1)
  fns = {
    "top_k_lax_seconds_median": jax.jit(lambda p: jax.lax.top_k(p, 10)[0][:, -1:]),
    "top_k_kth_largest_seconds_median": jax.jit(lambda p: kth_largest(p, 10)),
  }
  out = {}
  for name, fn in fns.items():
    jax.block_until_ready(fn(p_BxV))
    seconds = []
    for _ in range(repeats):
      start = time.perf_counter()
      jax.block_until_ready(fn(p_BxV))
      seconds.append(time.perf_counter() - start)
    out[name] = float(np.median(seconds))
  assert np.array_equal(
    fns["top_k_lax_seconds_median"](p_BxV), fns["top_k_kth_largest_seconds_median"](p_BxV)
  )
  return out


def _time_transformers(config, batch: int, threads: int, repeats: int) -> float:
  import numpy as np
  import torch
  import transformers

  torch.set_num_threads(threads)
  torch.manual_seed(0)
  model = transformers.GPT2LMHeadModel(
    transformers.GPT2Config(n_embd=config.n_embd, n_layer=config.n_layer, n_head=config.n_head)
  ).eval()
  prompt = torch.randint(0, config.vocab_size, (batch, 40))
  token = torch.full((batch, 1), 7)
  seconds = []
  with torch.no_grad():
    for _ in range(repeats + 1):
      past = model(prompt, use_cache=True).past_key_values
      start = time.perf_counter()
      model(token, past_key_values=past, use_cache=True)
      seconds.append(time.perf_counter() - start)
  return float(np.median(seconds[1:]))


if __name__ == "__main__":
  sys.exit(main())

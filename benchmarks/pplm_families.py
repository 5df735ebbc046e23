"""PPLM steering speed on a Llama-shaped model vs GPT-2 small, and vs the plain-generation floor.

Both models are random (jaxnn.lm.init_params), about 125M parameters each:

  gpt2:  GPT-2 small (12 layers, width 768, 12 heads, vocabulary 50,257, tied
         head, learned positions).
  llama: Llama-shaped (12 layers, width 768, 12 query heads sharing 4
         key/value heads, SwiGLU MLP of 2,048, RoPE, RMSNorm, vocabulary
         32,000, untied head): 124.7M parameters.

For each model and batch size (1 and 8) the script times, in one process:
  steered:  jaxnn.pplm.steered_generate with a bag of 20 one-token words
            (the paper's BoW settings: 3 iterations, stepsize 0.03, window 5,
            gm 0.99; greedy), compile time excluded; tokens/s of all samples.
  floor:    what any implementation of PPLM must spend per token with the
            same model and cache: 1 + iterations x (forward + backward) + 1
            one-token passes, from the measured median time of a jit-compiled
            one-token forward pass and of a forward + gradient with respect
            to the cache (the step PPLM repeats), at the same batch and cache
            length. steered / floor is the ratio of seconds per token (>= 1:
            what the loop costs beyond its passes).

Run on one pinned core under the shared lock (about 10 minutes on a busy core;
benchmarks/results/pplm_families.json came from this command):
  flock /tmp/jaxnn_bench.lock taskset -c 0 python benchmarks/pplm_families.py --threads 1 \
    --length 8 --repeats 3 --out benchmarks/results/pplm_families.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from _threads import pin_xla_threads

ITERATIONS = 3


def _configs():
  from jaxnn.lm import GPT2Config, LMConfig

  return {
    "gpt2": GPT2Config().lm,
    "llama": LMConfig(
      model_type="llama",
      vocab_size=32000,
      hidden_size=768,
      num_layers=12,
      num_heads=12,
      num_kv_heads=4,
      head_dim=64,
      intermediate_size=2048,
      max_positions=2048,
      tie_embeddings=False,
    ),
  }


def _median_seconds(fn, args, repeats):
  import jax

  jax.block_until_ready(fn(*args))  # compile and warm up
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return sorted(times)[len(times) // 2]


def _floor(params, config, batch, cache_len, length, repeats):
  """Seconds per token of 1 + ITERATIONS x (forward + backward) + 1 one-token passes."""
  import jax
  import jax.numpy as jnp

  from jaxnn.lm import init_cache, lm_forward, lm_forward_layers

  cache = init_cache(config, batch, cache_len)
  cache = cache._replace(
    k=0.1 * jax.random.normal(jax.random.key(1), cache.k.shape),
    v=0.1 * jax.random.normal(jax.random.key(2), cache.v.shape),
    length=jnp.asarray(cache_len - length, jnp.int32),  # the middle of the generation
  )
  token_Bx1 = jnp.full((batch, 1), 7, jnp.int32)
  forward = jax.jit(lambda p, c, t: lm_forward(p, config, c, t)[0])

  def loss(dk, dv, p, c, t):
    layers = range(config.num_layers)
    logits, _, _, _ = lm_forward_layers(
      p, config, [c.k[i] + dk[i] for i in layers], [c.v[i] + dv[i] for i in layers], c.length, t
    )
    return jax.nn.log_softmax(logits[:, 0]).mean()

  zeros = tuple(jnp.zeros_like(cache.k[0]) for _ in range(config.num_layers))
  grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
  forward_s = _median_seconds(forward, (params, cache, token_Bx1), repeats)
  grad_s = _median_seconds(grad, (zeros, zeros, params, cache, token_Bx1), repeats)
  return {
    "forward_seconds": forward_s,
    "forward_backward_seconds": grad_s,
    "floor_seconds_per_step": 2 * forward_s + ITERATIONS * grad_s,
  }


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--length", type=int, default=12, help="tokens generated per sample")
  parser.add_argument("--batches", default="1,8")
  parser.add_argument("--models", default="gpt2,llama")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--threads", type=int, default=1)
  parser.add_argument("--out", default=None)
  args = parser.parse_args(argv)
  pin_xla_threads(args.threads)
  load_before = os.getloadavg()
  import jax
  import jax.numpy as jnp
  import numpy as np

  from jaxnn.lm import init_params
  from jaxnn.pplm import Attributes, PPLMConfig, bag_of_words, steered_generate

  settings = PPLMConfig(
    length=args.length,
    stepsize=0.03,
    num_iterations=ITERATIONS,
    window_length=5,
    gm_scale=0.99,
    kl_scale=0.01,
  )
  prompt_len = 8
  results = {}
  for name in args.models.split(","):
    config = _configs()[name]
    params = init_params(config, jax.random.key(0))
    count = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(params))
    bag = bag_of_words([list(range(100, 2100, 100))], None, config.vocab_size)
    attributes = Attributes(bags=bag)
    for batch in (int(b) for b in args.batches.split(",")):
      rng = np.random.default_rng(batch)
      prompt = jnp.asarray(rng.integers(3, 1000, (batch, prompt_len)), jnp.int32)
      timings = {}
      steered_generate(params, config, prompt, attributes, settings, timings=timings)
      cache_len = prompt_len + args.length
      floor = _floor(params, config, batch, cache_len, args.length // 2, args.repeats)
      seconds_per_step = timings["run_seconds"] / args.length
      results[f"{name}_batch{batch}"] = {
        "parameters": count,
        "steered_tokens_per_second": timings["tokens_per_second"],
        "steered_seconds_per_step": seconds_per_step,
        "compile_seconds": timings["compile_seconds"],
        **floor,
        "floor_tokens_per_second": batch / floor["floor_seconds_per_step"],
        "steered_over_floor": seconds_per_step / floor["floor_seconds_per_step"],
      }
      print(name, batch, json.dumps(results[f"{name}_batch{batch}"]), flush=True)
  for batch in (int(b) for b in args.batches.split(",")):
    if f"gpt2_batch{batch}" in results and f"llama_batch{batch}" in results:
      results[f"llama_over_gpt2_tokens_per_second_batch{batch}"] = (
        results[f"llama_batch{batch}"]["steered_tokens_per_second"]
        / results[f"gpt2_batch{batch}"]["steered_tokens_per_second"]
      )
  record = {
    "command": "python benchmarks/pplm_families.py " + " ".join(argv or sys.argv[1:]),
    "settings": {
      "length": args.length,
      "prompt_tokens": prompt_len,
      "iterations": ITERATIONS,
      "bag": "20 one-token words",
      "threads": args.threads,
      "dtype": "float32",
    },
    "results": results,
    "machine": {
      "cpu": platform.processor() or platform.machine(),
      "load_average_before": load_before,
      "load_average_after": os.getloadavg(),
      "jax": jax.__version__,
    },
  }
  if args.out:
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())

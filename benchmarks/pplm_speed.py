"""PPLM steering speed: jaxnn vs the original's way (PyTorch), and batch 8 vs 1.

Side by side in one process, on the same randomly initialized GPT-2 (saved by
transformers, read by both), the same prompt, bag of words and hyperparameters
(the paper's BoW example: stepsize 0.03, 3 iterations, window 5, gamma 1.5,
kl 0.01, gm 0.99; greedy, which costs the same as sampling):

  torch:  tests/pplm/reference_torch.py, run like the original (batch 1, the
          unperturbed distribution recomputed by a full forward pass over the
          whole sequence at every token).
  jaxnn:  jaxnn.pplm.steered_generate (two fixed-size caches, one jit-compiled
          loop), batch 1 and batch B; compile time excluded (reported apart);
          with GPT-2's weight products by jaxnn's CPU kernel (the default,
          "jaxnn_*") and by XLA's dot ("jaxnn_xla_*"). The speedups take, for
          each batch size, the faster of the two.

The original only runs batch 1, so the speed a user sees is jaxnn's batched
tokens/s against the original's; both ratios (jaxnn batch 1 and batch B vs
torch batch 1) are reported, and batch B vs batch 1 in jaxnn.

Pin both sides to the same cores and threads (--threads sets torch's threads
and, for 1, XLA's single-threaded CPU runtime), under the shared lock:
  flock /tmp/jaxnn_bench.lock taskset -c 0 python benchmarks/pplm_speed.py --threads 1
Goals: jaxnn >= 5x the torch tokens/s; batch 8 >= 4x batch 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from _threads import pin_xla_threads

SIZES = {  # GPT-2 shapes (vocab, positions, width, layers, heads)
  "gpt2": (50257, 1024, 768, 12, 12),
  "gpt2-medium": (50257, 1024, 1024, 24, 16),
  "mini": (8192, 512, 256, 4, 4),
}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--size", choices=sorted(SIZES), default="gpt2")
  parser.add_argument("--length", type=int, default=50)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument(
    "--threads",
    type=int,
    default=2,
    help="torch threads; pin the process (both sides) to as many cores with taskset",
  )
  parser.add_argument(
    "--products",
    default="kernel,xla",
    help="GPT-2's weight products to time jaxnn with, in order: 'kernel' "
    "(jaxnn's default: the CPU kernel for float32 one-token passes) and/or "
    "'xla' (XLA's dot everywhere)",
  )
  parser.add_argument("--out", default=None, help="write the numbers as JSON here")
  args = parser.parse_args(argv)
  pin_xla_threads(args.threads)
  load_before = os.getloadavg()
  import jax
  import jax.numpy as jnp
  import numpy as np
  import torch
  import transformers

  sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "pplm"))
  from reference_torch import generate as reference_generate

  from jaxnn.pplm import Attributes, BagsOfWords, PPLMConfig, load_gpt2, steered_generate

  torch.set_num_threads(args.threads)
  vocab, positions, width, layers, heads = SIZES[args.size]
  torch.manual_seed(0)
  model = transformers.GPT2LMHeadModel(
    transformers.GPT2Config(
      vocab_size=vocab, n_positions=positions, n_embd=width, n_layer=layers, n_head=heads
    )
  ).eval()
  folder = Path(tempfile.mkdtemp(prefix="pplm_bench_"))
  model.save_pretrained(folder)
  params, gpt2 = load_gpt2(folder)

  rng = np.random.default_rng(0)
  bag = sorted(rng.choice(vocab, 150, replace=False).tolist())
  prompt = [vocab - 1] + rng.integers(0, vocab, 3).tolist()
  hp = dict(
    stepsize=0.03,
    num_iterations=3,
    window_length=5,
    gamma=1.5,
    kl_scale=0.01,
    gm_scale=0.99,
    top_k=10,
  )
  config = PPLMConfig(length=args.length, **hp)
  single = np.zeros((1, vocab), np.float32)
  single[0, bag] = 1
  empty = jnp.zeros((0,), jnp.int32)
  attributes = Attributes(
    bags=BagsOfWords(jnp.asarray(single), jnp.zeros((0, 2), jnp.int32), empty, empty)
  )

  reference_generate(model, prompt, length=2, bow_ids=[bag], **hp)  # warm-up
  start = time.perf_counter()
  reference_generate(model, prompt, length=args.length, bow_ids=[bag], **hp)
  torch_seconds = time.perf_counter() - start
  results = {
    "size": args.size,
    "length": args.length,
    "threads": args.threads,
    "cpu_affinity": sorted(os.sched_getaffinity(0)),
    "torch_tokens_per_second": args.length / torch_seconds,
  }
  from jaxnn.lm import _products

  kernel_rows = _products.MAX_KERNEL_ROWS
  for products in args.products.split(","):
    # 'xla': no product goes to the kernel; retrace so that the setting takes effect.
    _products.MAX_KERNEL_ROWS = kernel_rows if products == "kernel" else 0
    jax.clear_caches()
    name = "jaxnn" if products == "kernel" else "jaxnn_xla"
    for batch in (1, args.batch):
      timings = {}
      steered_generate(
        params, gpt2, np.tile(np.asarray([prompt]), (batch, 1)), attributes, config, timings=timings
      )
      results[f"{name}_batch{batch}_tokens_per_second"] = timings["tokens_per_second"]
      results[f"{name}_batch{batch}_compile_seconds"] = timings["compile_seconds"]
  # Each batch size by the fastest path jaxnn has.
  b1 = max(results.get(f"{name}_batch1_tokens_per_second", 0) for name in ("jaxnn", "jaxnn_xla"))
  bn = max(
    results.get(f"{name}_batch{args.batch}_tokens_per_second", 0) for name in ("jaxnn", "jaxnn_xla")
  )
  results["speedup_jaxnn_batch1_vs_torch"] = b1 / results["torch_tokens_per_second"]
  results[f"speedup_jaxnn_batch{args.batch}_vs_torch"] = bn / results["torch_tokens_per_second"]
  results[f"speedup_batch{args.batch}_vs_batch1"] = bn / b1
  results["jax_devices"] = str(jax.devices())
  results["load_average_before"] = load_before
  results["load_average_after"] = os.getloadavg()
  print(json.dumps(results, indent=2))
  if args.out:
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())

"""Thread settings shared by the benchmark scripts (call before importing jax)."""

import os


def pin_xla_threads(threads: int) -> None:
  """One thread: XLA's Eigen pool off. More: XLA's default pool (pin the cores with taskset)."""
  flags = os.environ.get("XLA_FLAGS", "")
  if threads == 1 and "--xla_cpu_multi_thread_eigen=false" not in flags:
    flags += " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
  os.environ["XLA_FLAGS"] = flags.strip()
  os.environ.setdefault("JAX_PLATFORMS", "cpu")

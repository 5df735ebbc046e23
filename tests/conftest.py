"""Test configuration: 8 CPU devices, so the data-parallel path runs every time.

On 2 CPU cores, back-to-back data-parallel steps over 8 devices can deadlock
in XLA's CPU all-reduce; tests that train over several devices use 2 of them,
or block on every step when they use all 8.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_numpy_rank_promotion", "raise")

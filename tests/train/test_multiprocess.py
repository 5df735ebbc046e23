"""Multi-host training, simulated by 2 processes x 2 CPU devices on this machine.

The same run in one process over 4 devices is the reference: the parameters
agree, process 0 alone writes the metrics log, and the Orbax checkpoints that
both processes wrote together restore in a single process.
"""

import json
import os
import pathlib
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest
from jobs import free_port
from multiprocess_run import STEPS, train

from jaxnn.train import Checkpointer

HERE = pathlib.Path(__file__).parent


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path):
  workdir, out, port = tmp_path / "run", tmp_path / "params.npz", str(free_port())
  # The workers import this checkout's jaxnn (the repository root), like the test itself.
  env = {
    **os.environ,
    "JAX_PLATFORMS": "cpu",
    "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parents[1])]),
  }
  env.pop("XLA_FLAGS", None)
  procs = [
    subprocess.Popen(
      [
        sys.executable,
        str(HERE / "multiprocess_worker.py"),
        str(i),
        "2",
        port,
        str(workdir),
        str(out),
      ],
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for i in range(2)
  ]
  for p in procs:
    log, _ = p.communicate(timeout=400)
    assert p.returncode == 0, log[-3000:]

  multi = np.load(out)
  single = jax.device_get(train(None).params)
  chex.assert_trees_all_close(
    [multi[k] for k in multi.files], jax.tree.leaves(single), atol=1e-6, rtol=1e-5
  )
  steps = [
    json.loads(line)["step"] for line in (workdir / "metrics.jsonl").read_text().splitlines()
  ]
  assert steps == [10, 20, 30]
  ckpt = Checkpointer(workdir, {"test": "multiprocess"})
  assert ckpt.latest_step() == STEPS
  _, restored = ckpt.restore(jax.device_get(train(None, steps=1)))
  ckpt.close()
  assert int(restored.step) == STEPS
  chex.assert_trees_all_close(jax.device_get(restored.params), single, atol=1e-6, rtol=1e-5)

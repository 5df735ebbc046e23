"""Sweep inputs: your own model and arrays, the default learning rates, impossible
settings refused up front, damaged saved files refused without touching anything,
and which environments make the CLI join a multi-process job."""

import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxnn import JaxnnError
from jaxnn.cli import build_parser, main
from jaxnn.data import load_dataset
from jaxnn.models import create_model
from jaxnn.subspace import SweepConfig, run_sweep
from jaxnn.train import from_function, from_nnx, initialize_distributed

TINY = ["--dataset", "digits", "--widths", "16", "--batch-size", "32", "--no-progress"]
D_TINY = 64 * 16 + 16 + 16 * 10 + 10  # digits (8x8) FC 16: the model's parameter count


def _sweep(out, *extra):
  return main(["subspace", "sweep", *TINY, "--devices", "1", "--out", str(out), *extra])


def _hashes(directory):
  return {
    p.relative_to(directory).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
    for p in sorted(directory.rglob("*"))
    if p.is_file()
  }


def test_cli_defaults_are_the_documented_learning_rates():
  from jaxnn import _cli_utils as cu

  args = build_parser("subspace").parse_args(["subspace", "sweep", "--out", "x"])
  config, _ = cu.resolve(args, SweepConfig, "subspace sweep")
  # The published mnist5k numbers were measured with --lr 3e-2 --baseline-lr 1e-3.
  assert (config.learning_rate, config.baseline_learning_rate) == (3e-2, 1e-3)
  assert (SweepConfig().learning_rate, SweepConfig().baseline_learning_rate) == (3e-2, 1e-3)


def test_impossible_settings_are_refused_before_any_work(tmp_path, capsys):
  out = tmp_path / "s"
  assert _sweep(out, "--dims", f"10,{D_TINY + 1}") == 2
  err = capsys.readouterr().err
  assert f"exceeds the model's {D_TINY} parameters" in err and err.count("\n") == 1
  assert _sweep(out, "--dims", "auto", "--d-max", str(2 * D_TINY)) == 2
  assert "d_max" in capsys.readouterr().err
  assert _sweep(out, "--dims", "auto", "--d-min", str(D_TINY + 5)) == 2
  assert "d_min" in capsys.readouterr().err
  assert _sweep(out, "--dims", "10", "--weight-decay", "-0.1") == 2
  assert "weight" in capsys.readouterr().err
  # Nothing was trained or saved (the CLI records the settings it was given, config.json).
  assert not out.exists() or {p.name for p in out.iterdir()} <= {"config.json"}
  with pytest.raises(JaxnnError, match="weight"):
    run_sweep(SweepConfig(dataset="digits", weight_decay=float("nan")), tmp_path / "n")


def test_damaged_saved_files_are_named_and_left_alone(tmp_path, capsys):
  out = tmp_path / "s"
  args = ("--dims", "4", "--seeds", "1", "--steps", "5", "--configs-per-program", "1")
  assert _sweep(out, *args) == 0
  capsys.readouterr()
  for name, damage in (
    ("baseline.json", lambda text: text[: len(text) // 2]),  # truncated
    ("baseline.json", lambda text: '{"runs": [{"seed": "zero"}]}'),  # foreign content
    ("sweep.json", lambda text: "[]"),
    ("sweep.json", lambda text: text[:10]),
  ):
    path = out / name
    good = path.read_text()
    path.write_text(damage(good))
    before = _hashes(out)
    assert _sweep(out, *args) == 2
    err = capsys.readouterr().err
    assert str(path) in err and err.count("\n") == 1 and "Traceback" not in err
    assert _hashes(out) == before  # nothing overwritten, nothing added
    path.write_text(good)
  assert _sweep(out, *args) == 0


class _Mlp(nnx.Module):
  """A plain NNX module (no `train` argument), as a user would write one."""

  def __init__(self, rngs):
    self.hidden = nnx.Linear(64, 16, rngs=rngs)
    self.out = nnx.Linear(16, 10, rngs=rngs)

  def __call__(self, x, train=False, rngs=None):
    return self.out(jax.nn.relu(self.hidden(x.reshape(x.shape[0], -1))))


@pytest.mark.slow
def test_model_factory_and_arrays_equal_the_named_model_and_dataset(tmp_path):
  settings = dict(
    dataset="digits",
    widths=(16,),
    projection="dense",
    dims=(3, 8),
    seeds=1,
    steps=8,
    batch_size=32,
    learning_rate=1e-2,
    baseline=0.5,
    progress=False,
    num_devices=1,
  )
  named = run_sweep(SweepConfig(**settings), tmp_path / "named")
  data = load_dataset("digits")

  def fc(key):
    return from_nnx(create_model("fc", data.input_shape, 10, seed=key, widths=(16,)))

  arrays = {split: tuple(getattr(data, split)) for split in ("train", "validation", "test")}
  mine = run_sweep(SweepConfig(**settings), tmp_path / "mine", model=fc, data=arrays)
  assert mine["configs"] == named["configs"]  # the same configs, the same numbers
  assert mine["settings"]["D"] == named["D"] == D_TINY
  assert len(mine["settings"]["data_sha1"]) == 40

  # Resuming the directory with other data is refused; a plain NNX module and a pure
  # function go through the same sweep.
  other = {k: (x[::-1], y[::-1]) for k, (x, y) in arrays.items()}
  with pytest.raises(JaxnnError, match="data_sha1"):
    run_sweep(SweepConfig(**settings), tmp_path / "mine", model=fc, data=other)
  module = run_sweep(
    SweepConfig(**settings),
    tmp_path / "module",
    model=lambda key: _Mlp(nnx.Rngs(key)),
    data=arrays,
  )
  assert module["D"] == 64 * 16 + 16 + 16 * 10 + 10

  def linear(key):
    params = {"w": 0.01 * jax.random.normal(key, (64, 10)), "b": jnp.zeros(10)}
    return from_function(lambda p, x: x.reshape(x.shape[0], -1) @ p["w"] + p["b"][None], params)

  pure = run_sweep(SweepConfig(**settings), tmp_path / "pure", model=linear, data=arrays)
  assert pure["D"] == 650 and all(np.isfinite(c["validation_loss"]) for c in pure["configs"])
  with pytest.raises(JaxnnError, match="FunctionalModel or a Flax NNX module"):
    run_sweep(SweepConfig(**settings), tmp_path / "bad", model=lambda key: key, data=arrays)
  with pytest.raises(JaxnnError, match="'train' and 'validation'"):
    run_sweep(SweepConfig(**settings), tmp_path / "bad", model=fc, data={"train": arrays["train"]})


def test_which_environments_join_a_multi_process_job(monkeypatch):
  calls = []
  monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
  assert not initialize_distributed({})  # one machine, Colab: nothing to join
  assert not initialize_distributed({"JAXNN_DISTRIBUTED": "0", "JAX_COORDINATOR_ADDRESS": "h:1"})
  explicit = {
    "JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234",
    "JAXNN_NUM_PROCESSES": "4",
    "JAXNN_PROCESS_ID": "3",
  }
  assert initialize_distributed(explicit)
  assert calls[-1] == {
    "coordinator_address": "10.0.0.1:1234",
    "num_processes": 4,
    "process_id": 3,
  }
  slurm = {
    "SLURM_JOB_ID": "7",
    "SLURM_STEP_NODELIST": "node[1-2]",
    "SLURM_NTASKS": "16",
    "SLURM_PROCID": "5",
    "SLURM_LOCALID": "5",
  }
  assert initialize_distributed({**slurm, "SLURM_STEP_NUM_TASKS": "16"})
  assert calls[-1] == {}  # JAX reads SLURM's variables itself
  assert not initialize_distributed({**slurm, "SLURM_STEP_NUM_TASKS": "1"})
  assert initialize_distributed({"JAXNN_DISTRIBUTED": "1"}) and calls[-1] == {}  # TPU pods
  assert len(calls) == 3
  for bad in (
    {"JAX_COORDINATOR_ADDRESS": "h:1", "JAXNN_NUM_PROCESSES": "2"},
    {**explicit, "JAXNN_PROCESS_ID": "4"},
    {"JAXNN_DISTRIBUTED": "yes"},
  ):
    with pytest.raises(JaxnnError):
      initialize_distributed(bad)
  assert len(calls) == 3

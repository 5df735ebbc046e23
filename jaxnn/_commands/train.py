"""`jaxnn train` and `jaxnn datasets`."""

from __future__ import annotations

from jaxnn import _cli_utils as cu
from jaxnn.configs import TrainConfig


def register(subparsers) -> None:
  p = subparsers.add_parser(
    "train",
    help="train a network on a dataset (supervised)",
    description="Train a model with the data-parallel engine. Writes OUT/config.json, "
    "OUT/metrics.jsonl, OUT/summary.json and Orbax checkpoints; rerunning resumes.",
  )
  cu.add_config_arguments(p, TrainConfig)
  p.set_defaults(func=_train)

  d = subparsers.add_parser(
    "datasets",
    help="list the datasets, their sizes and whether they work offline",
    description="Lists every registered dataset with the split sizes load_dataset returns "
    "(train after the default validation hold-out); offline datasets are loaded to count them.",
  )
  d.set_defaults(func=_datasets)


def _train(args) -> int:
  config, out = cu.resolve(args, TrainConfig, "train")
  from jaxnn.train import initialize_distributed

  initialize_distributed()  # a no-op unless the environment describes a multi-process job
  from jaxnn.train import train_and_evaluate
  from jaxnn.train._multihost import is_leader, on_leader

  # Process 0 alone claims --out and writes the files; an error there stops every process.
  on_leader(lambda: cu.claim_out(out, "train", config, config.run_identity(), checkpointed=True))
  summary = train_and_evaluate(config, out)
  if not is_leader():
    return 0
  cu.write_config(out, "train", config, config.run_identity())  # also after a lost one
  keys = (
    "dataset",
    "model",
    "params",
    "train_accuracy",
    "validation_accuracy",
    "test_accuracy",
    "steps",
    "seconds",
  )
  cu.print_summary(
    summary, keys, f"wrote {out}/config.json, summary.json, metrics.jsonl and checkpoints/"
  )
  return 0


def _datasets(args) -> int:
  from jaxnn._errors import JaxnnError
  from jaxnn.data import load_dataset, registered_datasets
  from jaxnn.data import not_so_clevr as nsc

  for name, spec in sorted(registered_datasets().items()):
    where = "offline" if spec.offline else "online "
    if name == "not_so_clevr":  # sizes per held-out split, from the masks (no files written)
      locations = nsc.generate().locations
      sizes = "; ".join(
        f"{split}: train {int((~m).sum()):,} / test {int(m.sum()):,}"
        for split in nsc.SPLITS
        for m in [nsc.test_mask(locations, split)]
      )
    elif spec.offline:
      try:
        data = load_dataset(name)
      except JaxnnError as e:
        sizes = f"unavailable: {e}"
      else:
        n = data.info["sizes"]
        sizes = (
          f"train {n['train']:,} / validation {n['validation']:,} / test {n['test']:,}, "
          f"{'x'.join(map(str, data.input_shape))}, {data.num_classes} classes"
        )
    else:
      sizes = "sizes once downloaded"
    print(f"{name:14s} {where}  {sizes}\n{'':24s}{spec.description}")
  return 0

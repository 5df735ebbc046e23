"""What every subcommand shares: one-line argument errors, `--config`, `--out`, config.json.

A command adds its config's flags with `add_config_arguments(parser, Config)`
and turns the parsed arguments into `(config, out)` with `resolve`: the
`--config` file (if any), the flags given over it, every field checked, and
the output directory checked and claimed (`claim_out`) before any work starts.
Nothing here imports JAX.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from jaxnn import _config
from jaxnn._errors import JaxnnError


class ArgumentParser(argparse.ArgumentParser):
  """argparse with errors as one line and a pointer to `--help` (exit status 2)."""

  def error(self, message: str):
    self.exit(2, f"jaxnn: error: {message} (see `{self.prog} --help`)\n")


def add_config_arguments(
  parser: argparse.ArgumentParser,
  cls,
  *,
  out_help: str = "run directory (created; rerunning the command resumes it)",
  exclude=(),
) -> None:
  """`--config FILE`, `--out DIR` and a flag per field of the config class `cls`."""
  parser.usage = f"{parser.prog} [--config FILE] [--out DIR] [options]"
  parser.add_argument(
    "--config",
    metavar="FILE",
    default=None,
    help="a JSON config (a run's OUT/config.json reruns it) or a Python file whose "
    "get_config() returns the config; flags given beside it override its fields (default: "
    "none, the defaults below)",
  )
  parser.add_argument(
    "--out",
    metavar="DIR",
    default=None,
    help=f"{out_help}; required unless --config names a run's config.json (default: that run)",
  )
  _config.add_arguments(parser, cls, exclude=exclude)


def resolve(args: argparse.Namespace, cls, command: str, *, defaults=None):
  """`(config, out)`: the `--config` file (else `defaults`, else `cls()`) under the flags given.

  `out` is `--out`, or the directory of a `--config DIR/config.json` (a rerun
  resumes in place); one of them is required.
  """
  base = _config.load_config(args.config, cls, command) if args.config else defaults
  config = _config.from_args(cls, args, base)
  out = args.out
  if out is None and args.config:
    path = pathlib.Path(args.config).expanduser()
    if path.is_dir() or path.name == "config.json":
      out = str(path if path.is_dir() else path.parent)
  if out is None:
    raise JaxnnError(f"--out DIR is required (see `jaxnn {command} --help`)")
  return config, out


def saved_identity(saved) -> dict | None:
  """The settings a `config.json` pins: its `identity`, with any hand-added keys beside it.

  Runs written before config.json held the full config saved the identity
  alone, at the top level.
  """
  if not isinstance(saved, dict):
    return None
  if not isinstance(saved.get("identity"), dict):
    return saved
  extra = {k: v for k, v in saved.items() if k not in ("command", "config", "identity")}
  return {**saved["identity"], **extra}


def claim_out(
  out: str | pathlib.Path,
  command: str,
  config,
  identity: dict | None = None,
  *,
  checkpointed: bool = False,
  config_path: str | pathlib.Path | None = None,
) -> None:
  """Checks `out` before any work and writes `out/config.json` (the full, resolved config).

  An existing `config.json` of another run (another command, or other
  settings that `identity` says a resumed run must share) is an error, and
  nothing is written; the same run's is updated (e.g. a longer run). A
  `checkpointed` command's `config.json` is only checked here: the engine
  writes the settings a resumed run must share when it starts (and checks an
  unreadable or lost file), and `write_config` writes the full config once the
  run is done, so a run that fails leaves nothing behind it did not have.
  `config_path` writes the config elsewhere (a command whose output is a file).
  """
  out = pathlib.Path(out).expanduser()
  if out.exists() and not out.is_dir():
    raise JaxnnError(f"--out {out} is a file; give a directory")
  path = pathlib.Path(config_path) if config_path else out / "config.json"
  identity = None if identity is None else json.loads(json.dumps(identity))
  if path.exists():
    try:
      saved = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
      saved = None
    if not isinstance(saved, dict):
      if checkpointed:
        return  # the engine reports the file, and nothing is written
      raise JaxnnError(
        f"{path} is not a jaxnn run configuration; move it away or use another --out"
      )
    saved_command = saved.get("command")
    if saved_command not in (None, command):
      raise JaxnnError(
        f"{out} holds a `jaxnn {saved_command}` run; use another --out for `jaxnn {command}`"
      )
    pinned = saved_identity(saved)
    assert pinned is not None  # saved is a dict here
    if identity is not None and pinned != identity:
      diff = sorted(k for k in set(pinned) | set(identity) if pinned.get(k) != identity.get(k))
      details = "; ".join(f"{k}: saved {pinned.get(k)!r}, now {identity.get(k)!r}" for k in diff)
      raise JaxnnError(
        f"{out} holds a run with another configuration ({details}). Nothing was changed: use "
        f"another --out, or `--config {path}` to resume it"
      )
  if not checkpointed:
    write_config(path, command, config, identity)


def write_config(path: str | pathlib.Path, command: str, config, identity: dict | None) -> None:
  """Writes `path` (a run's `config.json`): the command, its full config and its identity."""
  from jaxnn.train import write_json_atomic

  path = pathlib.Path(path).expanduser()
  if path.is_dir():
    path = path / "config.json"
  content = {"command": command, "config": _config.to_dict(config)}
  if identity is not None:
    content["identity"] = json.loads(json.dumps(identity))
  write_json_atomic(path, content)


def print_summary(summary: dict, keys, wrote: str) -> None:
  """The headline numbers as JSON on stdout, then what was written."""
  print(json.dumps({k: summary[k] for k in keys if k in summary}, indent=2))
  print(wrote)


def warn(message: str) -> None:
  print(f"jaxnn: {message}", file=sys.stderr)

"""The `jaxnn` command: thin argument parsing over the library.

Each command has a module in `jaxnn._commands` with `register(subparsers)` that adds its
subcommand and sets `func=handler(args) -> int`. Only the module of the command
being run is imported (a method's package imports JAX and Flax), so that
`jaxnn --help` lists the commands without importing any of them. User errors (`JaxnnError`,
filesystem errors: missing, read-only or full) print one line and exit 2; there is never a
traceback for them.
"""

from __future__ import annotations

import argparse  # noqa: F401  (the parser's type, in annotations)
import importlib
import sys

from jaxnn._cli_utils import ArgumentParser
from jaxnn._errors import JaxnnError

# Command -> (module with a `register(subparsers)` function, one-line help).
COMMANDS = {
  "train": ("jaxnn._commands.train", "train a network on a dataset (supervised)"),
  "datasets": (
    "jaxnn._commands.train",
    "list the datasets, their sizes and whether they work offline",
  ),
  "coordconv": (
    "jaxnn._commands.coordconv",
    "CoordConv (Liu et al. 2018): Not-so-Clevr experiments",
  ),
  "lca": ("jaxnn._commands.lca", "loss change allocation during training (Lan et al. 2019)"),
  "subspace": ("jaxnn._commands.subspace", "random-subspace training and intrinsic dimension"),
  "pplm": ("jaxnn._commands.pplm", "PPLM: steer GPT-2 with bags of words or discriminators"),
  "reproduce": ("jaxnn.reproduce._cli", "reproduce the four papers' findings and write a report"),
}
COMMAND_MODULES = tuple(dict.fromkeys(module for module, _ in COMMANDS.values()))


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
  """The parser, with the full sub-parser of `command` only (None: every command).

  The other commands get a placeholder that carries their help line, so the
  top-level `--help` lists everything without importing the method packages.
  """
  parser = ArgumentParser(
    prog="jaxnn",
    description="CoordConv, intrinsic dimension, LCA and PPLM in JAX. Every command takes "
    "--config FILE and writes OUT/config.json; `jaxnn COMMAND --help` lists its settings.",
  )
  parser.add_argument("--version", action="version", version=f"jaxnn {_version()}")
  subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
  modules = (
    COMMAND_MODULES if command is None else ((COMMANDS[command][0],) if command in COMMANDS else ())
  )
  for module in modules:
    importlib.import_module(module).register(subparsers)
  for name, (_, help_line) in COMMANDS.items():
    if name not in subparsers.choices:
      subparsers.add_parser(name, help=help_line)
  return parser


def _command(argv: list[str]) -> str:
  """The first positional argument ("" if none): top-level options take no values."""
  return next((a for a in argv if not a.startswith("-")), "")


def _version() -> str:
  from jaxnn import __version__

  return __version__


_OUT_OF_MEMORY = (
  "out of memory: rerun with a smaller batch, model, length or subspace "
  "dimension, or fewer configs per program (--configs-per-program); nothing "
  "already saved was lost, and training commands resume from it"
)


def _is_out_of_memory(e: Exception) -> bool:
  """Whether `e` is XLA running out of (host or device) memory."""
  message = str(e)
  return type(e).__name__ in ("JaxRuntimeError", "XlaRuntimeError") and (
    "Out of memory" in message or "RESOURCE_EXHAUSTED" in message
  )


def _first_line(e: BaseException, limit: int = 200) -> str:
  return (str(e).strip().splitlines() or [type(e).__name__])[0][:limit]


def _storage_problem(e: Exception) -> str | None:
  """One line for a filesystem error (an `OSError`, also when a storage library wraps one).

  Full disks, read-only or missing directories and denied permissions are the
  user's to fix, so they get a line saying what failed and what to do, not a
  traceback. Returns None for every other error.
  """
  from jaxnn._errors import describe_os_error

  if isinstance(e, OSError):
    return describe_os_error(e) or f"{type(e).__name__}: {_first_line(e)}"
  return describe_os_error(e)


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else list(argv)
  parser = build_parser(_command(argv))
  try:
    args, unknown = parser.parse_known_args(argv)
  except SystemExit as e:  # --help and --version exit 0; an argument error returns 2, as others
    if e.code in (0, None):
      raise
    return 2
  if unknown:
    names = [getattr(args, "command", None)]
    names += [v for k, v in vars(args).items() if k.endswith("_command")]
    command = " ".join(["jaxnn", *filter(None, names)])
    print(
      f"jaxnn: error: unrecognized arguments: {' '.join(unknown)} (see `{command} --help`)",
      file=sys.stderr,
    )
    return 2
  if not getattr(args, "func", None):
    parser.print_help()
    return 2
  try:
    return int(args.func(args) or 0)
  except JaxnnError as e:
    print(f"jaxnn: error: {' '.join(str(e).split())}", file=sys.stderr)  # one line
    return 2
  except MemoryError as e:
    print(f"jaxnn: error: {_OUT_OF_MEMORY} ({e})", file=sys.stderr)
    return 2
  except Exception as e:  # XLA's runtime errors have no importable type before jax loads
    if _is_out_of_memory(e):
      print(f"jaxnn: error: {_OUT_OF_MEMORY} ({_first_line(e)})", file=sys.stderr)
      return 2
    storage = _storage_problem(e)
    if storage is None:
      raise
    print(f"jaxnn: error: {storage}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print(
      "jaxnn: interrupted; run the same command again to resume from the last checkpoint",
      file=sys.stderr,
    )
    return 130


if __name__ == "__main__":
  sys.exit(main())

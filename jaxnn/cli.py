"""The `jaxnn` command: thin argument parsing over the library.

Each method contributes a module with `register(subparsers)` that adds its
subcommand and sets `func=handler(args) -> int`. Only the module of the command
being run is imported (a method's package imports JAX and Flax), so that
`jaxnn --help` lists the commands without importing any of them. User errors (`JaxnnError`, bad
paths) print one line and exit 2; there is never a traceback for them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from jaxnn._errors import JaxnnError

# Command -> (module with a `register(subparsers)` function, one-line help).
COMMANDS = {
  "train": ("jaxnn.train._cli", "train a network on a dataset (supervised)"),
  "datasets": ("jaxnn.train._cli", "list the datasets and whether they work offline"),
  "coordconv": ("jaxnn.coordconv._cli", "CoordConv (Liu et al. 2018): Not-so-Clevr experiments"),
  "lca": ("jaxnn.lca._cli", "loss change allocation during training (Lan et al. 2019)"),
  "subspace": ("jaxnn.subspace._cli", "random-subspace training and intrinsic dimension"),
  "pplm": ("jaxnn.pplm._cli", "PPLM: steer GPT-2 with bags of words or discriminators"),
  "reproduce": ("jaxnn.reproduce._cli", "reproduce the four papers' findings and write a report"),
}
COMMAND_MODULES = tuple(dict.fromkeys(module for module, _ in COMMANDS.values()))


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
  """The parser, with the full sub-parser of `command` only (None: every command).

  The other commands get a placeholder that carries their help line, so the
  top-level `--help` lists everything without importing the method packages.
  """
  parser = argparse.ArgumentParser(
    prog="jaxnn", description="CoordConv, intrinsic dimension, LCA and PPLM in JAX."
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


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else list(argv)
  parser = build_parser(_command(argv))
  args = parser.parse_args(argv)
  if not getattr(args, "func", None):
    parser.print_help()
    return 2
  try:
    return int(args.func(args) or 0)
  except JaxnnError as e:
    print(f"jaxnn: error: {e}", file=sys.stderr)
    return 2
  except (
    FileNotFoundError,
    FileExistsError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
  ) as e:
    print(f"jaxnn: error: {e.strerror or e}: {e.filename}", file=sys.stderr)
    return 2
  except MemoryError as e:
    print(f"jaxnn: error: {_OUT_OF_MEMORY} ({e})", file=sys.stderr)
    return 2
  except Exception as e:  # XLA's runtime errors have no importable type before jax loads
    if not _is_out_of_memory(e):
      raise
    print(f"jaxnn: error: {_OUT_OF_MEMORY} ({str(e).splitlines()[0][:200]})", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print(
      "jaxnn: interrupted; run the same command again to resume from the last checkpoint",
      file=sys.stderr,
    )
    return 130


if __name__ == "__main__":
  sys.exit(main())

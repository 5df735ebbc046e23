"""The `jaxnn` command: thin argument parsing over the library.

Each method contributes a module with `register(subparsers)` that adds its
subcommand and sets `func=handler(args) -> int`. Handlers import the library
lazily so that `jaxnn --help` stays fast. User errors (`JaxnnError`, bad
paths) print one line and exit 2; there is never a traceback for them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from jaxnn._errors import JaxnnError

# Modules with a `register(subparsers)` function, one per command group.
COMMAND_MODULES = (
    "jaxnn.train._cli",
    "jaxnn.coordconv._cli",
    "jaxnn.lca._cli",
    "jaxnn.subspace._cli",
    "jaxnn.pplm._cli",
)


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="jaxnn", description="CoordConv, intrinsic dimension, LCA and PPLM in JAX.")
  parser.add_argument("--version", action="version", version=f"jaxnn {_version()}")
  subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
  for name in COMMAND_MODULES:
    importlib.import_module(name).register(subparsers)
  return parser


def _version() -> str:
  from jaxnn import __version__
  return __version__


def main(argv: list[str] | None = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  if not getattr(args, "func", None):
    parser.print_help()
    return 2
  try:
    return int(args.func(args) or 0)
  except JaxnnError as e:
    print(f"jaxnn: error: {e}", file=sys.stderr)
    return 2
  except (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError,
          NotADirectoryError) as e:
    print(f"jaxnn: error: {e.strerror or e}: {e.filename}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print("jaxnn: interrupted; run the same command again to resume from the last checkpoint",
          file=sys.stderr)
    return 130


if __name__ == "__main__":
  sys.exit(main())

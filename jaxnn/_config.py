"""Typed run configs, stated once: the CLI, config files and validation derive from them.

A command's settings are one frozen dataclass made with `@configclass`; each
field is a `setting(default, help, ...)` that carries its help text and its
checks (`positive`, `nonnegative`, `fraction`, `finite`, `choices`). From that
one statement:

- `add_arguments(parser, Config)` adds a flag per field (`--batch-size` for
  `batch_size`; booleans that default to True become `--no-...`), with
  `(default: ...)` written once, readably ("200,200", not a tuple);
- `load_config(path, Config)` reads a JSON config (what every run writes as
  `OUT/config.json`) or a Python experiment config (a module whose
  `get_config()` returns the dataclass); `from_args` lays the flags given on
  the command line over it;
- constructing the dataclass checks every field (`JaxnnError`, one line).

Why a small helper rather than tyro or simple_parsing: the commands already
share an argparse tree whose `--help` must import no JAX and stay instant,
flags keep the project's short names (`--lr`, `--devices`, `--no-plots`),
and errors must be one line with exit status 2; those libraries each pull in
their own help layout, error style and dependencies for what is ~200 lines
here. Nothing in this module imports JAX.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import pathlib
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

from jaxnn._errors import JaxnnError

_MISSING = dataclasses.MISSING


def setting(
  default: Any = _MISSING,
  help: str = "",
  *,
  default_factory: Callable[[], Any] | Any = _MISSING,
  flag: str | None = None,
  aliases: Sequence[str] = (),
  positive: bool = False,
  nonnegative: bool = False,
  fraction: bool = False,
  finite: bool = False,
  choices: Sequence[Any] | None = None,
  parse: Callable[[str], Any] | None = None,
  none: str | None = None,
  metavar: str | None = None,
  cli: bool = True,
) -> Any:
  """A config field with its help text and checks.

  Args:
    default: the default value.
    help: one line for `--help` (the default is appended).
    default_factory: instead of `default`, e.g. for a nested config.
    flag: the command-line flag (default `--field-name`, or `--no-field-name`
      for a boolean that defaults to True).
    aliases: older spellings, accepted but hidden from `--help`.
    positive: > 0 (numbers; every element of a sequence).
    nonnegative: >= 0.
    fraction: in [0, 1].
    finite: not NaN or infinite.
    choices: the allowed values.
    parse: turns the flag's text into the value (default: by the field's type).
    none: what a default of None means, for `--help` ("the paper's").
    metavar: the value's name in `--help`.
    cli: False: no flag (set in config files or in Python only).
  """
  metadata = dict(
    help=help,
    flag=flag,
    aliases=tuple(aliases),
    positive=positive,
    nonnegative=nonnegative,
    fraction=fraction,
    finite=finite,
    choices=None if choices is None else tuple(choices),
    parse=parse,
    none=none,
    metavar=metavar,
    cli=cli,
  )
  if default_factory is not _MISSING:
    return dataclasses.field(default_factory=default_factory, metadata=metadata)
  return dataclasses.field(default=default, metadata=metadata)


def _hints(cls) -> dict[str, Any]:
  return typing.get_type_hints(cls)


def _options(tp) -> tuple[Any, ...]:
  """The members of a union (`int | None` -> (int, NoneType)), or (tp,)."""
  if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
    return typing.get_args(tp)
  return (tp,)


def _is_sequence(tp) -> bool:
  return typing.get_origin(tp) in (tuple, list, Sequence)


def _describe(tp) -> str:
  names = []
  for option in _options(tp):
    if option is type(None):
      names.append("None")
    elif _is_sequence(option):
      names.append("a list of numbers")
    else:
      names.append(
        {bool: "true/false", int: "an integer", float: "a number", str: "text"}.get(
          option, getattr(option, "__name__", str(option))
        )
      )
  return " or ".join(names)


def _type_ok(value, tp) -> bool:
  for option in _options(tp):
    if option is type(None) and value is None:
      return True
    if option is bool and isinstance(value, bool):
      return True
    if option is int and isinstance(value, int) and not isinstance(value, bool):
      return True
    if option is float and isinstance(value, int | float) and not isinstance(value, bool):
      return True
    if option is str and isinstance(value, str):
      return True
    if _is_sequence(option) and isinstance(value, tuple | list):
      (element,) = typing.get_args(option)[:1] or (Any,)
      return all(element is Any or _type_ok(v, element) for v in value)
    if dataclasses.is_dataclass(option) and isinstance(value, option):
      return True
  return False


def check_field(name: str, value: Any, field: dataclasses.Field, tp) -> None:
  """Raises `JaxnnError` if `value` breaks the field's type or checks."""
  if not _type_ok(value, tp):
    raise JaxnnError(f"{name} must be {_describe(tp)}, got {value!r}")
  m = field.metadata
  if m.get("choices") is not None and value not in m["choices"] and value is not None:
    *rest, last = map(str, m["choices"])
    options = f"{', '.join(rest)} or {last}" if rest else last
    raise JaxnnError(f"unknown {name} {value!r}; choose from {options}")
  numbers = value if isinstance(value, tuple | list) else (value,)
  for v in numbers:
    if isinstance(v, bool) or not isinstance(v, int | float):
      continue
    checked = ("finite", "positive", "nonnegative", "fraction")
    if any(m.get(c) for c in checked) and not math.isfinite(v):
      raise JaxnnError(f"{name} must be a finite number, got {v}")
    if m.get("positive") and not v > 0:
      raise JaxnnError(f"{name} must be positive, got {v}")
    if m.get("nonnegative") and not v >= 0:
      raise JaxnnError(f"{name} must be non-negative, got {v}")
    if m.get("fraction") and not 0 <= v <= 1:
      raise JaxnnError(f"{name} must be a fraction in [0, 1], got {v}")


def _normalize(value, tp):
  """JSON's lists become tuples for sequence fields, so configs compare and hash."""
  if isinstance(value, list) and any(_is_sequence(o) for o in _options(tp)):
    return tuple(value)
  return value


def configclass(cls):
  """A frozen dataclass whose construction checks every field's `setting`.

  A `__post_init__` the class defines runs after the field checks (for checks
  across fields).
  """
  own_post_init = cls.__dict__.get("__post_init__")

  def __post_init__(self):
    hints = _hints(type(self))
    for field in dataclasses.fields(self):
      value = _normalize(getattr(self, field.name), hints[field.name])
      object.__setattr__(self, field.name, value)
      check_field(field.name, value, field, hints[field.name])
    if own_post_init is not None:
      own_post_init(self)

  cls.__post_init__ = __post_init__
  return dataclasses.dataclass(frozen=True)(cls)


def to_dict(config) -> dict:
  """The config as JSON-able nested dicts (tuples as lists)."""
  return json.loads(json.dumps(dataclasses.asdict(config)))


def from_dict(cls, values: dict, *, base=None, what: str = "config") -> Any:
  """`cls` from a dict of field values (nested dicts for nested configs) over `base`."""
  base = cls() if base is None else base
  fields = {f.name: f for f in dataclasses.fields(cls)}
  unknown = sorted(set(values) - set(fields))
  if unknown:
    raise JaxnnError(
      f"{what}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}"
    )
  hints = _hints(cls)
  changes = {}
  for name, value in values.items():
    if dataclasses.is_dataclass(hints[name]) and isinstance(value, dict):
      value = from_dict(hints[name], value, base=getattr(base, name), what=f"{what}.{name}")
    changes[name] = value
  return dataclasses.replace(base, **changes)


def load_config(path: str | pathlib.Path, cls, command: str | None = None) -> Any:
  """Reads a config file: JSON (a run's `config.json`, or the fields alone) or Python.

  A Python experiment config is a module with `get_config()` returning a
  `cls` (or a dict of its fields). A JSON file holds the fields, or
  `{"command": ..., "config": {fields}}` as runs write it; a run of another
  command is refused.
  """
  path = pathlib.Path(path).expanduser()
  if path.is_dir():
    path = path / "config.json"
  if not path.is_file():
    raise JaxnnError(f"no config file at {path}")
  if path.suffix == ".py":
    spec = importlib.util.spec_from_file_location(f"_jaxnn_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
      spec.loader.exec_module(module)
    except JaxnnError:
      raise
    except Exception as e:
      raise JaxnnError(f"{path} failed to run: {type(e).__name__}: {e}") from e
    if not callable(getattr(module, "get_config", None)):
      raise JaxnnError(f"{path} has no get_config() returning a {cls.__name__}")
    config = module.get_config()
    if isinstance(config, dict):
      return from_dict(cls, config, what=str(path))
    if not isinstance(config, cls):
      raise JaxnnError(
        f"{path}: get_config() returned a {type(config).__name__}, this command takes a "
        f"{cls.__name__}"
      )
    return config
  try:
    values = json.loads(path.read_text())
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise JaxnnError(f"{path} is not a JSON config ({e})") from None
  if not isinstance(values, dict):
    raise JaxnnError(f"{path} must hold a JSON object of settings")
  if isinstance(values.get("config"), dict):
    saved_command = values.get("command")
    if command is not None and saved_command not in (None, command):
      raise JaxnnError(f"{path} is a config of `jaxnn {saved_command}`, not `jaxnn {command}`")
    values = values["config"]
  return from_dict(cls, values, what=str(path))


# ---- the command line ----------------------------------------------------------------------


def format_default(value, field: dataclasses.Field | None = None) -> str:
  """A default as a user types it: "200,200", "0.001", "none"."""
  if value is None:
    return (field.metadata.get("none") if field is not None else None) or "none"
  if isinstance(value, tuple | list):
    return ",".join(format_default(v) for v in value)
  return str(value)


def _parse_sequence(text: str, element) -> tuple:
  try:
    return tuple((element or int)(v) for v in text.split(",") if v.strip())
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _parser_for(field: dataclasses.Field, tp) -> Callable[[str], Any]:
  """The flag's text -> a checked value (argparse errors name the flag)."""
  custom = field.metadata.get("parse")
  options = [o for o in _options(tp) if o is not type(None)]
  optional = type(None) in _options(tp)

  def parse(text: str):
    if custom is not None:
      value = custom(text)
    elif optional and text.strip().lower() in ("none", ""):
      value = None
    else:
      value = _MISSING
      for option in options:  # int before float: "500" is a count, "0.1" a fraction
        try:
          if _is_sequence(option):
            value = _parse_sequence(text, (typing.get_args(option) or (int,))[0])
            if not value:
              continue
          elif option in (int, float, str):
            value = option(text)
          else:
            continue
          break
        except (ValueError, argparse.ArgumentTypeError):
          continue
      if value is _MISSING:
        raise argparse.ArgumentTypeError(f"expected {_describe(tp)}, got {text!r}")
    try:
      check_field(field.name, value, field, tp)
    except JaxnnError as e:
      message = str(e)  # the flag is named by argparse: "argument --epochs: must be ..."
      message = message.removeprefix(f"{field.name} ")
      raise argparse.ArgumentTypeError(message) from None
    return value

  parse.__name__ = field.name  # argparse names the type in its messages
  return parse


def _flag(field: dataclasses.Field, default) -> str:
  if field.metadata.get("flag"):
    return field.metadata["flag"]
  name = field.name.replace("_", "-")
  return f"--no-{name}" if default is True else f"--{name}"


def add_arguments(parser: argparse.ArgumentParser, cls, *, exclude: Sequence[str] = ()) -> None:
  """Adds a flag per field of `cls` (recursing into nested configs).

  Every flag's argparse default is `SUPPRESS`, so that `from_args` sees only
  the flags given and lays them over the config file or the defaults.
  """
  _add(parser, cls, cls(), "", set(exclude))


def _add(parser, cls, base, prefix: str, exclude: set[str]) -> None:
  hints = _hints(cls)
  for field in dataclasses.fields(cls):
    if field.name in exclude or not field.metadata.get("cli", True):
      continue
    tp, default = hints[field.name], getattr(base, field.name)
    dest = prefix + field.name
    if dataclasses.is_dataclass(tp):
      _add(parser, tp, default, dest + ".", exclude)
      continue
    flag = _flag(field, default)
    help_text = field.metadata.get("help", "").replace("%", "%%")
    common = dict(dest=dest, default=argparse.SUPPRESS)
    if tp is bool:
      action = "store_false" if flag.startswith("--no-") and default is True else "store_true"
      parser.add_argument(flag, action=action, help=help_text, **common)
      for alias in field.metadata.get("aliases", ()):
        parser.add_argument(alias, action=action, help=argparse.SUPPRESS, **common)
      continue
    shown = format_default(default, field).replace("%", "%%")
    choices = field.metadata.get("choices")
    metavar = field.metadata.get("metavar") or (
      "{" + ",".join(map(str, choices)) + "}" if choices else flag[2:].replace("-", "_").upper()
    )
    parse = _parser_for(field, tp)
    parser.add_argument(
      flag,
      type=parse,
      metavar=metavar,
      help=f"{help_text} (default: {shown})" if help_text else f"(default: {shown})",
      **common,
    )
    for alias in field.metadata.get("aliases", ()):
      parser.add_argument(alias, type=parse, help=argparse.SUPPRESS, **common)


def from_args(cls, args: argparse.Namespace, base=None) -> Any:
  """`base` (default `cls()`) with the flags given in `args` laid over it."""
  given: dict[str, Any] = {}
  field_names = {f.name for f in dataclasses.fields(cls)}
  for dest, value in vars(args).items():
    head, _, rest = dest.partition(".")
    if head not in field_names:
      continue
    if rest:
      given.setdefault(head, {})[rest] = value
    else:
      given[head] = value
  return from_dict(cls, given, base=base, what="the command line")

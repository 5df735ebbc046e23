"""Sphinx extension: the API reference, generated from each public module's `__all__`.

On every build it writes one page per public module under ``docs/api/`` (a summary table
and the rendered docstring of every name in ``__all__``), so a new public name appears
without a hand edit. A public name without a docstring of its own is a build warning,
which ``sphinx-build -W`` turns into a failure.

`public_modules` and `missing_docstrings` are also used by ``tests/test_docs.py``.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import types
from pathlib import Path

ROOT_PACKAGE = "jaxnn"


def public_modules() -> list[str]:
  """Names of the modules whose `__all__` makes up the API: jaxnn and its public subpackages."""
  root = importlib.import_module(ROOT_PACKAGE)
  names = [ROOT_PACKAGE]
  for info in sorted(pkgutil.iter_modules(root.__path__), key=lambda i: i.name):
    if info.ispkg and not info.name.startswith("_"):
      names.append(f"{ROOT_PACKAGE}.{info.name}")
  return names


def _submodules(package: types.ModuleType) -> list[str]:
  names = [package.__name__]
  if hasattr(package, "__path__"):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
      names.append(info.name)
  return names


def data_doc(module_name: str, name: str) -> str | None:
  """The doc comment of a public constant: ``#:`` lines or a string after the assignment, or
  a comment on the assignment's line.

  Constants are re-exported from private modules, so every module of the package is searched.
  """
  from sphinx.pycode import ModuleAnalyzer

  package = importlib.import_module(module_name)
  # The package's own modules first, then the rest of jaxnn (a re-export of another package).
  candidates = _submodules(package)
  candidates += [
    m for m in _submodules(importlib.import_module(ROOT_PACKAGE)) if m not in candidates
  ]
  for sub in candidates:
    try:
      analyzer = ModuleAnalyzer.for_module(sub)
      analyzer.analyze()
    except Exception:  # noqa: BLE001 - a module without source has no doc comments
      continue
    for (_, attr), lines in analyzer.attr_docs.items():
      if attr == name and "".join(lines).strip():
        return "\n".join(lines).strip()
    # A comment on the assignment's own line documents it too: `LIMIT = 32  # The cap.`
    for line in analyzer.code.splitlines():
      match = re.match(rf"^{re.escape(name)}\s*(?::[^=]+)?=[^#]*#\s*(\S.*)$", line)
      if match:
        return match.group(1).strip()
  return None


def _is_generated_class_doc(cls: type, doc: str) -> bool:
  # dataclasses and NamedTuples write "Name(field, ...)" when the class has no docstring.
  return bool(re.fullmatch(rf"{re.escape(cls.__name__)}\(.*\)", doc.strip(), re.S))


def kind(obj: object) -> str:
  """How a public object is rendered: "class", "function" or "data"."""
  if isinstance(obj, (types.GenericAlias, types.UnionType)) or type(obj).__module__ == "typing":
    return "data"  # a type alias such as `Params = dict[str, Any]`
  if inspect.isclass(obj):
    return "class"
  if callable(obj) and not isinstance(obj, (str, bytes, int, float, tuple, list, dict)):
    return "function"
  return "data"


def missing_docstrings(module_name: str) -> list[str]:
  """Public names of `module_name` (its `__all__`) that have no docstring of their own."""
  module = importlib.import_module(module_name)
  missing = []
  if not (module.__doc__ or "").strip():
    missing.append(module_name)
  for name in getattr(module, "__all__", []):
    if name == "__version__":
      continue
    obj = getattr(module, name)
    k = kind(obj)
    if k == "class":
      doc = obj.__dict__.get("__doc__") or ""
      if not doc.strip() or _is_generated_class_doc(obj, doc):
        missing.append(f"{module_name}.{name}")
    elif k == "function":
      if not (getattr(obj, "__doc__", None) or "").strip():
        missing.append(f"{module_name}.{name}")
    elif not data_doc(module_name, name):
      missing.append(f"{module_name}.{name}")
  return missing


def _indent(text: str, prefix: str = "   ") -> str:
  return "\n".join(prefix + line if line.strip() else "" for line in text.splitlines())


def home_module(obj: object, modules: list[str]) -> str | None:
  """The public module a class or function belongs to: the deepest one containing the module
  that defines it (jaxnn.lm for jaxnn.lm._config.GPT2Config), among those exporting it."""
  defined_in = getattr(obj, "__module__", "") or ""
  homes = [m for m in modules if defined_in == m or defined_in.startswith(m + ".")]
  for m in sorted(homes, key=len, reverse=True):
    module = importlib.import_module(m)
    if any(getattr(module, n, None) is obj for n in getattr(module, "__all__", [])):
      return m
  return None


def module_page(module_name: str, modules: list[str] | None = None) -> str:
  """The Markdown (MyST) source of one module's API page.

  A class or function re-exported from another public module (`jaxnn.pplm.GPT2Config` is
  `jaxnn.lm.GPT2Config`) is documented once, in its home module, and linked from here.
  """
  modules = modules if modules is not None else public_modules()
  module = importlib.import_module(module_name)
  names = [n for n in getattr(module, "__all__", []) if n != "__version__"]
  reexports = {}
  for n in names:
    obj = getattr(module, n)
    if kind(obj) != "data":
      home = home_module(obj, modules)
      if home is not None and home != module_name:
        reexports[n] = home
  rst = [
    f".. automodule:: {module_name}",
    "   :no-members:",
    "",
    f".. currentmodule:: {module_name}",
    "",
  ]
  documented = [n for n in names if kind(getattr(module, n)) != "data" and n not in reexports]
  if documented:  # constants are left out: autosummary would show their type's docstring
    rst += [".. autosummary::", "   :nosignatures:", ""] + [f"   {n}" for n in documented] + [""]
  if reexports:
    rst += [".. rubric:: Re-exported", ""]
    rst += [f"- ``{n}``: :py:obj:`{home}.{n}`" for n, home in reexports.items()] + [""]
  for name in names:
    obj = getattr(module, name)
    k = kind(obj)
    if name in reexports:
      continue
    if k == "class":
      rst += [f".. autoclass:: {name}", "   :members:", ""]
    elif k == "function":
      rst += [f".. autofunction:: {name}", ""]
    else:
      value = repr(obj)
      rst += [f".. py:data:: {name}"]
      if len(value) <= 70 and "\n" not in value:
        rst += [f"   :value: {value}"]
      rst += ["", _indent(data_doc(module_name, name) or ""), ""]
  if module_name == ROOT_PACKAGE:
    rst += [
      ".. py:data:: __version__",
      f"   :value: {module.__version__!r}",
      "",
      "   The installed version of jaxnn.",
      "",
    ]
  body = "\n".join(rst).rstrip() + "\n"
  return f"# `{module_name}`\n\n```{{eval-rst}}\n{body}```\n"


def index_page(modules: list[str]) -> str:
  """The API index: one line per module (its docstring's first line) and the toctree."""
  lines = [
    "# API reference",
    "",
    "Every public name of jaxnn, generated from the docstrings of each module's `__all__`.",
    "",
  ]
  for name in modules:
    doc = (importlib.import_module(name).__doc__ or "").strip().splitlines()
    summary = doc[0] if doc else ""
    lines.append(f"- [`{name}`]({name}.md): {summary}")
  lines += ["", "```{toctree}", ":hidden:", ""] + modules + ["```", ""]
  return "\n".join(lines)


_SECTIONS = ("Reproduces:", "Paper:", "Measured here:", "Runtime:", "Command:")


def experiments_page(folder: Path) -> str:
  """The Markdown of the experiments page: every experiments/*.py docstring, by method."""
  import ast

  lines = [
    "# Experiment configs",
    "",
    "One config per reproduced result, in `experiments/` (a module whose `get_config()` returns "
    "the command's config). Each states what it reproduces, the paper's number, the number "
    "measured here and the command that reruns it; flags given after `--config` override the "
    "config's fields. Where the measured run's outputs are committed, they are in "
    "`experiments/results/<name>/`.",
    "",
  ]
  for path in sorted(folder.glob("*.py")):
    if path.stem.startswith("_"):
      continue
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    title, _, body = doc.partition("\n")
    lines += [f"## {path.stem}", "", title.strip(), ""]
    fields, rest = body, ""
    if "Command:" in body:
      fields, _, rest = body.partition("Command:")
    for section in _SECTIONS[:-1]:
      if section in fields:
        text = fields.split(section, 1)[1]
        for other in _SECTIONS:
          text = text.split(other, 1)[0]
        lines += [f"**{section[:-1]}**: " + " ".join(text.split()), ""]
    command, _, after = rest.strip("\n").partition("\n\n")
    if command:
      lines += [
        "```bash",
        "\n".join(line[2:] if line.startswith("  ") else line for line in command.splitlines()),
        "```",
        "",
      ]
    if after.strip():
      lines += [" ".join(after.split()), ""]
  return "\n".join(lines)


def _write_if_changed(path: Path, text: str) -> None:
  if not path.exists() or path.read_text() != text:
    path.write_text(text)


def generate(app) -> None:
  """builder-inited: write docs/api/*.md and warn about every public name without a docstring."""
  from sphinx.util import logging

  logger = logging.getLogger(__name__)
  out = Path(app.srcdir) / "api"
  out.mkdir(exist_ok=True)
  modules = public_modules()
  for name in modules:
    _write_if_changed(out / f"{name}.md", module_page(name, modules))
    for missing in missing_docstrings(name):
      logger.warning(
        f"public name without a docstring: {missing}", type="jaxnn", subtype="docstring"
      )
  _write_if_changed(out / "index.md", index_page(modules))
  experiments = Path(app.srcdir).parent / "experiments"
  if experiments.is_dir():
    _write_if_changed(out / "experiments.md", experiments_page(experiments))
  for stale in out.glob("*.md"):
    if stale.stem not in modules and stale.name not in ("index.md", "experiments.md"):
      stale.unlink()


_CODE = re.compile(r"(``.+?``|`[^`\n]+`)")
_BULLET = re.compile(r"^(\s*)[-*] \S")


def _escape_text(text: str) -> str:
  """Markdown habits that RST reads as markup, outside code spans: `|x|`, a lone `*`,
  a trailing underscore; a code span glued to a word (`vmap`ped)."""
  parts = _CODE.split(text)
  for i in range(0, len(parts), 2):
    t = parts[i]
    t = re.sub(r"(?<!\\)\|", r"\\|", t)
    t = re.sub(r"(?<![\\*])\*(?!\*)", r"\\*", t)
    t = re.sub(r"(?<=\w)_(?=\s|$|[.,;:)])", r"\\_", t)
    parts[i] = t
  for i in range(1, len(parts), 2):  # a code span touching a letter needs an escaped space
    if i + 1 < len(parts) and parts[i + 1][:1].isalnum():
      parts[i] += "\\ "
    if parts[i - 1][-1:].isalnum():
      parts[i] = "\\ " + parts[i]
  return "".join(parts)


def markdownish(lines: list[str]) -> list[str]:
  """Docstrings here are written in Markdown habits; make them valid RST.

  Escapes what RST would read as markup (see `_escape_text`), and puts the blank lines
  RST needs around a bulleted list written directly under a paragraph. Doctest blocks,
  literal blocks and directives are left alone.
  """
  out: list[str] = []
  in_doctest = False
  literal_indent = None
  list_indent = None
  for line in lines:
    stripped = line.strip()
    indent = len(line) - len(line.lstrip())
    if literal_indent is not None:
      if stripped and indent <= literal_indent:
        literal_indent = None
      else:
        out.append(line)
        continue
    if not stripped:
      in_doctest = False
      list_indent = None
      out.append(line)
      continue
    if stripped.startswith(">>>") or in_doctest:
      in_doctest = True
      out.append(line)
      continue
    if stripped.startswith(".. ") or stripped.endswith("::"):
      literal_indent = indent
      out.append(line)
      continue
    bullet = _BULLET.match(line)
    previous = out[-1] if out else ""
    if bullet and list_indent is None and previous.strip():
      out.append("")  # a list directly under a paragraph
    if bullet:
      list_indent = indent
    elif list_indent is not None and indent <= list_indent and previous.strip():
      out.append("")  # a paragraph directly under a list
      list_indent = None
    out.append(_escape_text(line) if not stripped.startswith(":") else _escape_field(line))
  return out


def _escape_field(line: str) -> str:
  """A field list line (`:param x: text`): escape its text, not its marker."""
  match = re.match(r"^(\s*:[^:]+:)(.*)$", line)
  if not match:
    return _escape_text(line)
  return match.group(1) + _escape_text(match.group(2))


def process_docstring(app, what, name, obj, options, lines):
  """autodoc-process-docstring (after napoleon): Markdown habits made valid RST."""
  lines[:] = markdownish(lines)


def skip_namedtuple_fields(app, what, name, obj, skip, options):
  """autodoc-skip-member: NamedTuple fields ("Alias for field number 0") are documented in
  their class's `Attributes:` section, not as members of their own."""
  if (getattr(obj, "__doc__", None) or "").startswith("Alias for field number"):
    return True
  return None


def setup(app):
  """Register the generator with Sphinx."""
  app.connect("builder-inited", generate)
  app.connect("autodoc-skip-member", skip_namedtuple_fields)
  app.connect("autodoc-process-docstring", process_docstring, priority=600)
  return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}

"""Sphinx configuration for the jaxnn documentation site.

Build and serve locally (see contributing.md):
  sphinx-build -W --keep-going -b html docs docs/_build/html
  python -m http.server -d docs/_build/html
"""

import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))  # the checkout's jaxnn, not an installed copy
sys.path.insert(0, str(DOCS / "_ext"))

project = "jaxnn"
author = "the jaxnn authors"
copyright = "the jaxnn authors"  # noqa: A001 - Sphinx's name

extensions = [
  "myst_nb",  # Markdown (MyST) pages and notebooks
  "sphinx.ext.autodoc",
  "sphinx.ext.autosummary",
  "sphinx.ext.napoleon",  # Google-style docstrings
  "sphinx.ext.mathjax",
  "sphinx.ext.viewcode",
  "jaxnn_api",  # docs/_ext/jaxnn_api.py: API pages from __all__, missing docstrings fail
]

# Notebooks (colabs/, linked as docs/colabs) render with the outputs stored in them; the
# tests execute them separately.
nb_execution_mode = "off"
nb_merge_streams = True
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
# Not pages: build outputs, report plots and data.
exclude_patterns = [
  "_build",
  "**/.ipynb_checkpoints",
  "report/**/*.json",
  "report/*.html",
  "colabs/**/*.md",
]
# Notebook cells with shell escapes (`!pip`) do not lex as Python; they still render.
suppress_warnings = ["misc.highlighting_failure"]

autodoc_typehints = "signature"
autodoc_member_order = "bysource"
autodoc_mock_imports = []
autosummary_generate = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # "Attributes:" as a field list: no duplicates of NamedTuple fields
default_role = "py:obj"

html_theme = "sphinx_book_theme"
html_title = "jaxnn"
html_theme_options = {"show_toc_level": 2, "home_page_in_toc": True}

# Guides in reading order; index.md lists them, and a page not yet written is dropped from the
# list instead of becoming a broken link. A page not named here goes under "More".
GUIDES = [
  "getting_started",
  "usage",
  "engine",
  "coordconv",
  "intrinsic_dimension",
  "lca",
  "pplm",
  "lm",
  "distributed",
  "reliability",
  "dependencies",
  "performance",
  "report/report",
  "contributing",
]


def _existing(doc: str) -> bool:
  return (DOCS / f"{doc}.md").exists() or (DOCS / f"{doc}.ipynb").exists()


def _other_pages() -> list[str]:
  pages = []
  for path in sorted(DOCS.glob("*.md")) + sorted(DOCS.glob("report/*.md")):
    doc = str(path.relative_to(DOCS).with_suffix(""))
    if doc not in GUIDES and doc != "index":
      pages.append(doc)
  return pages


_LINK = re.compile(r"\]\(([\w/]+)\.(?:md|ipynb)\)|<([\w/]+)>`")


_GUIDE_LINK = re.compile(r"\[([^\]]+)\]\((?:\.\./)?([\w/]+)\.md(?:#[\w-]*)?\)")


def _unlink_planned_guides(text: str) -> str:
  """A link to a guide of `GUIDES` that is not written yet renders as its text.

  Only the guides named above are treated so; any other broken link stays a build error.
  """

  def replace(match):
    target = match.group(2)
    return match.group(1) if target in GUIDES and not _existing(target) else match.group(0)

  return _GUIDE_LINK.sub(replace, text)


def _prune_index(app, docname, source):
  """source-read: drop index.md's links to guides that do not exist; list unlisted pages."""
  if docname != "index":
    source[0] = _unlink_planned_guides(source[0])
    return
  lines = []
  for line in source[0].splitlines():
    target = _LINK.search(line)
    bare = line.strip()
    if target and not _existing(target.group(1) or target.group(2)):
      continue
    if bare in GUIDES and not _existing(bare):  # a toctree entry
      continue
    if bare == "<!-- more -->":
      if _other_pages():
        lines += ["## More", ""] + [f"- [{doc}]({doc}.md)" for doc in _other_pages()]
      continue
    if bare == "<!-- more-toctree -->":
      lines += _other_pages()
      continue
    lines.append(line)
  source[0] = "\n".join(lines) + "\n"


def setup(app):
  """Hooks of this site."""
  app.connect("source-read", _prune_index)

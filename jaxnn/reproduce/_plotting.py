"""Small, legible figures for the report (matplotlib's object API, no pyplot state)."""

from __future__ import annotations

import pathlib

SIZE = (6.0, 3.6)
DPI = 90


def figure():
  """A new (Figure, Axes) of the report's size."""
  from matplotlib.figure import Figure

  fig = Figure(figsize=SIZE, dpi=DPI)
  return fig, fig.add_subplot()


def save(fig, path: pathlib.Path) -> str:
  """Saves a PNG (deterministic metadata) and returns its file name."""
  fig.tight_layout()
  fig.savefig(path, format="png", metadata={"Software": None})
  return path.name


def line(ax, x, y, label: str, **kwargs):
  """A line with markers when there are few points (so single points stay visible)."""
  marker = "o" if len(x) <= 30 else None
  return ax.plot(x, y, marker=marker, markersize=4, label=label, **kwargs)


def legend(ax, count: int):
  """A legend outside the axes when it has many entries, so it never covers the data."""
  if count > 4:
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
  else:
    ax.legend(fontsize=8, frameon=False)

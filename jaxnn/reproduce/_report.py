"""The report: summary.json (every figure), report.md, and a self-contained report.html."""

from __future__ import annotations

import base64
import dataclasses
import html as html_lib
import pathlib
import re

from jaxnn.reproduce._config import ReproduceConfig
from jaxnn.reproduce._verdict import RULE, fmt

TITLES = {
  "coordconv": "CoordConv: convolution fails the coordinate transform, CoordConv solves it",
  "subspace": "Intrinsic dimension: far below the parameter count, stable as networks grow",
  "lca": "LCA: training is noisy",
  "pplm": "PPLM: steering a frozen language model",
}
PAPERS = {
  "coordconv": "Liu et al., NeurIPS 2018",
  "subspace": "Li et al., ICLR 2018",
  "lca": "Lan et al., NeurIPS 2019",
  "pplm": "Dathathri et al., ICLR 2020",
}


def full_command(stage: str) -> str:
  """The command that reruns one stage at the papers' settings."""
  return f"jaxnn reproduce --full --only {stage} --out runs/reproduce_full"


def summary(config: ReproduceConfig, results: dict) -> dict:
  """summary.json: the settings and every stage's result (no timings)."""
  return {
    "preset": config.preset,
    "command": config.command(),
    "settings": {k: v for k, v in dataclasses.asdict(config.sizes).items()},
    "verdict_rule": RULE,
    "stages": {
      stage: {**result, "title": TITLES[stage], "rerun_full": full_command(stage)}
      for stage, result in results.items()
    },
  }


def _headline_table(results: dict) -> str:
  rows = ["| finding | paper | this run | verdict | rerun at full size |", "|---|---|---|---|---|"]
  for stage, r in results.items():
    rows.append(
      f"| {TITLES[stage].split(':')[0]} ({PAPERS[stage]}) | {r['headline']['paper']} | "
      f"{r['headline']['this_run']} | **{r['verdict']}** | `{full_command(stage)}` |"
    )
  return "\n".join(rows) + "\n"


def _cell(text) -> str:
  """Text for a Markdown table cell: pipes escaped, on one line."""
  return str(text).replace("|", "\\|").replace("\n", " ")


def _checks_table(checks: list[dict]) -> str:
  rows = ["| claim | rule | this run | holds |", "|---|---|---|---|"]
  for c in checks:
    value = c["value"]
    if isinstance(value, list):
      value = " / ".join(fmt(v) for v in value) or "none"
    elif isinstance(value, dict):
      value = ", ".join(f"{k}: {fmt(v)}" for k, v in value.items())
    else:
      value = fmt(value)
    rows.append(
      f"| {_cell(c['claim'])} | {_cell(c['rule'])} | {_cell(value)} | "
      f"{'yes' if c['passed'] else 'no'} |"
    )
  return "\n".join(rows) + "\n"


def markdown(config: ReproduceConfig, results: dict, modules: dict, timings: dict) -> str:
  """report.md: the headline table, then one section per stage (tables, checks, plots)."""
  parts = [
    "# jaxnn reproduce: report",
    "",
    f"Command: `{config.command()}` (preset `{config.preset}`). Every number below is also in "
    "`summary.json`; rerun the command to reuse the finished stages.",
    "",
    _headline_table(results),
    RULE,
    "",
  ]
  for i, (stage, r) in enumerate(results.items(), 1):
    parts += [
      f"## {i}. {TITLES[stage]}",
      "",
      f"Paper: {PAPERS[stage]}. Verdict: "
      f"**{r['verdict']}**. Rerun at the papers' settings: `{full_command(stage)}`.",
      "",
      modules[stage].render(r),
      "### Checks",
      "",
      _checks_table(r["checks"]),
    ]
    parts += [f"![{name}]({stage}/{name})\n" for name in r["plots"]]
  parts += [
    "## Settings",
    "",
    "```",
    *(f"{k} = {v!r}" for k, v in dataclasses.asdict(config.sizes).items()),
    "```",
    "",
  ]
  known = {k: v for k, v in timings.items() if v is not None}
  if known:
    parts += [
      "Wall time of each stage when it ran (seconds; also in timings.json): "
      + ", ".join(f"{k} {v:.0f}" for k, v in known.items())
      + ".",
      "",
    ]
  return "\n".join(parts)


def _inline(text: str) -> str:
  text = html_lib.escape(text.replace("\\|", "|"), quote=False)
  text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
  return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def _to_html(md: str, out: pathlib.Path) -> str:
  """The small Markdown subset report.md uses -> HTML, images embedded as base64 PNG."""
  lines, body, i = md.splitlines(), [], 0
  while i < len(lines):
    line = lines[i]
    if line.startswith("```"):
      j = lines.index("```", i + 1)
      body.append("<pre>" + html_lib.escape("\n".join(lines[i + 1 : j])) + "</pre>")
      i = j + 1
      continue
    if line.startswith("|"):
      rows = []
      while i < len(lines) and lines[i].startswith("|"):
        rows.append([c.strip() for c in re.split(r"(?<!\\)\|", lines[i].strip()[1:-1])])
        i += 1
      head, data = rows[0], [r for r in rows[1:] if not set("".join(r)) <= set("-|")]
      body.append(
        "<table><tr>"
        + "".join(f"<th>{_inline(c)}</th>" for c in head)
        + "</tr>"
        + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in data)
        + "</table>"
      )
      continue
    image = re.fullmatch(r"!\[(.*)\]\((.*)\)", line)
    if image:
      png = base64.b64encode((out / image.group(2)).read_bytes()).decode("ascii")
      body.append(
        f'<p><img alt="{html_lib.escape(image.group(1))}" src="data:image/png;base64,{png}"></p>'
      )
    elif line.startswith("#"):
      level = len(line) - len(line.lstrip("#"))
      body.append(f"<h{level}>{_inline(line[level:].strip())}</h{level}>")
    elif line.startswith("> "):
      body.append(f"<blockquote>{_inline(line[2:])}</blockquote>")
    elif line.strip():
      body.append(f"<p>{_inline(line)}</p>")
    i += 1
  return "\n".join(body)


STYLE = (
  "body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em;line-height:1.4}"
  "table{border-collapse:collapse;margin:1em 0;font-size:90%}"
  "td,th{border:1px solid #ccc;padding:.3em .5em;vertical-align:top}"
  "th{background:#f4f4f4}code,pre{background:#f6f6f6}pre{padding:.5em;overflow-x:auto}"
  "img{max-width:100%}blockquote{color:#444;border-left:3px solid #ccc;margin:.5em 0;"
  "padding-left:.8em}"
)


def html(
  config: ReproduceConfig, results: dict, modules: dict, timings: dict, out: pathlib.Path
) -> str:
  """report.html: report.md rendered, with every plot embedded (no external files)."""
  body = _to_html(markdown(config, results, modules, timings), out)
  return (
    f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
    f"<title>jaxnn reproduce: report</title><style>{STYLE}</style></head>"
    f"<body>\n{body}\n</body></html>\n"
  )

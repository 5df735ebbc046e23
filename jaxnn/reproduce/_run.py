"""`run_reproduce`: the four stages, resumable, and the report.

Each stage writes `OUT/<stage>/` (the method's own resumable run folders,
`result.json` and its plots) and then `OUT/<stage>/DONE`, which holds the
preset's settings for that stage. Rerunning the same command reuses every
stage whose marker matches and resumes the others. The report files
(`report.md`, `report.html`, `summary.json`) are rewritten from the stage
results at the end of every run; wall times go to `timings.json` only, so
`summary.json` is the same on every run of the same command.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import sys
import time

from jaxnn._errors import JaxnnError
from jaxnn.reproduce import _report
from jaxnn.reproduce._config import STAGES, ReproduceConfig
from jaxnn.reproduce._verdict import VERDICTS, rounded

MARKER = "DONE"
# Preset fields read by each stage (their values are the stage's identity).
STAGE_FIELDS = {
  "coordconv": ("cc_", "deconv_", "reg_"),
  "subspace": ("id_",),
  "lca": ("lca_",),
  "pplm": ("pplm_",),
}


def stage_modules():
  """Stage name -> its module (`run(preset, out, progress, report)` and `render(result)`)."""
  from jaxnn.reproduce import _stage_coordconv, _stage_lca, _stage_pplm, _stage_subspace

  return {
    "coordconv": _stage_coordconv,
    "subspace": _stage_subspace,
    "lca": _stage_lca,
    "pplm": _stage_pplm,
  }


def stage_identity(config: ReproduceConfig, stage: str) -> dict:
  """The settings a stage's result depends on (what its completion marker records)."""
  fields = dataclasses.asdict(config.sizes)
  return {
    "stage": stage,
    "preset": config.preset,
    **{k: v for k, v in fields.items() if k.startswith(STAGE_FIELDS[stage])},
  }


def _normalized(value):
  return json.loads(json.dumps(value))


def load_stage(out: pathlib.Path, config: ReproduceConfig, stage: str) -> dict | None:
  """A finished stage's result, or None if it has not finished with these settings."""
  marker = out / stage / MARKER
  if not marker.exists():
    return None
  try:
    done = json.loads(marker.read_text())
    result = json.loads((out / stage / "result.json").read_text())
  except (OSError, ValueError) as e:
    raise JaxnnError(
      f"{out / stage} is damaged ({e}); delete that folder to rerun the stage"
    ) from None
  if done != _normalized(stage_identity(config, stage)):
    raise JaxnnError(
      f"{out / stage} holds a {stage} stage run with other settings (preset "
      f"{done.get('preset')!r}); use another --out, or delete that folder to rerun it"
    )
  return result


def _write_atomic(path: pathlib.Path, text: str) -> None:
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(text, encoding="utf-8")
  tmp.replace(path)


class _Progress:
  """One line per stage (and per run inside a stage) on stderr, with elapsed time."""

  def __init__(self, enabled: bool):
    self.enabled, self.t0 = enabled, time.perf_counter()

  def __call__(self, message: str) -> None:
    if self.enabled:
      print(
        f"[reproduce {time.perf_counter() - self.t0:6.0f}s] {message}", file=sys.stderr, flush=True
      )


def run_reproduce(config: ReproduceConfig, *, log: bool = True) -> dict:
  """Runs (or resumes) the selected stages and writes the report; returns summary.json's content.

  Args:
    config: where, which stages, which preset.
    log: print one progress line per stage and run to stderr.
  """
  out = pathlib.Path(config.out)
  if out.exists() and not out.is_dir():
    raise JaxnnError(f"--out {out} is a file; give a folder")
  out.mkdir(parents=True, exist_ok=True)
  report = _Progress(log)
  terminal_bars = config.progress and sys.stderr.isatty()
  modules = stage_modules()
  results, timings = {}, {}
  timings_path = out / "timings.json"
  previous = json.loads(timings_path.read_text()) if timings_path.exists() else {}
  for i, stage in enumerate(config.only):
    result = load_stage(out, config, stage)
    if result is not None:
      report(f"stage {i + 1}/{len(config.only)} {stage}: reused (finished earlier)")
      timings[stage] = previous.get("stages", {}).get(stage)
    else:
      report(f"stage {i + 1}/{len(config.only)} {stage}: running")
      t0 = time.perf_counter()
      folder = out / stage
      folder.mkdir(exist_ok=True)
      result = rounded(_normalized(modules[stage].run(config.sizes, folder, terminal_bars, report)))
      if result["verdict"] not in VERDICTS:
        raise AssertionError(f"stage {stage} returned verdict {result['verdict']!r}")
      _write_atomic(folder / "result.json", json.dumps(result, indent=1) + "\n")
      _write_atomic(folder / MARKER, json.dumps(stage_identity(config, stage)) + "\n")
      timings[stage] = round(time.perf_counter() - t0, 1)
      report(
        f"stage {i + 1}/{len(config.only)} {stage}: {result['verdict']} ({timings[stage]:.0f} s)"
      )
    results[stage] = result
  summary = _report.summary(config, results)
  _write_atomic(out / "summary.json", json.dumps(summary, indent=1) + "\n")
  _write_atomic(out / "report.md", _report.markdown(config, results, modules, timings))
  _write_atomic(out / "report.html", _report.html(config, results, modules, timings, out))
  _write_atomic(
    timings_path,
    json.dumps(
      {
        "stages": timings,
        "total_seconds_this_invocation": round(time.perf_counter() - report.t0, 1),
      },
      indent=1,
    )
    + "\n",
  )
  report(f"report: {out / 'report.md'}, {out / 'report.html'}, {out / 'summary.json'}")
  return summary


__all__ = ["STAGES", "run_reproduce"]

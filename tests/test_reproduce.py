"""`jaxnn reproduce`: the quick run end to end, the report's structure, reuse and determinism."""

import json
import re

import pytest

from jaxnn import cli
from jaxnn.reproduce import PRESETS, STAGES, VERDICTS, ReproduceConfig, parse_only, verdict
from jaxnn.reproduce._run import stage_identity

SECTIONS = ("CoordConv", "Intrinsic dimension", "LCA", "PPLM")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
  """`jaxnn reproduce --quick --out DIR` once for the module (all four stages)."""
  out = tmp_path_factory.mktemp("reproduce") / "report"
  assert cli.main(["reproduce", "--quick", "--out", str(out)]) == 0
  return out


@pytest.mark.slow
def test_quick_run_writes_every_section_and_figure(quick_run):
  summary = json.loads((quick_run / "summary.json").read_text())
  assert summary["preset"] == "quick" and list(summary["stages"]) == list(STAGES)
  for stage, result in summary["stages"].items():
    assert result["verdict"] in VERDICTS
    assert result["verdict"] == verdict(result["checks"])
    assert result["checks"] and all(
      set(c) == {"claim", "rule", "value", "passed"} for c in result["checks"]
    )
    assert result["headline"]["paper"] and result["headline"]["this_run"]
    assert (
      result["rerun_full"] == f"jaxnn reproduce --full --only {stage} --out runs/reproduce_full"
    )
    for plot in result["plots"]:
      assert (quick_run / stage / plot).read_bytes().startswith(b"\x89PNG")
  coordconv = summary["stages"]["coordconv"]["runs"]
  assert {r["held_out"] for r in coordconv.values()} == {None, "bottom-right", "top-left"}
  assert {"subspace", "lca", "pplm"} <= set(summary["stages"])
  assert set(summary["stages"]["subspace"]["networks"]) == {"fc_16", "fc_32x32"}
  assert summary["stages"]["lca"]["params"] == 64 * 100 + 100 + 100 * 50 + 50 + 50 * 10 + 10
  pplm = summary["stages"]["pplm"]["runs"]
  assert set(pplm) == {"paper_bow", "strong_bow"}
  assert all(0 <= r["steered"]["bag_word_rate"] <= 1 for r in pplm.values())

  report = (quick_run / "report.md").read_text()
  headings = re.findall(r"^## \d\. (.+)$", report, re.M)
  assert [h.split(":")[0] for h in headings] == list(SECTIONS)
  assert report.count("| **") >= 4  # the headline table's verdicts
  for stage in STAGES:
    assert f"jaxnn reproduce --full --only {stage}" in report


@pytest.mark.slow
def test_html_report_is_self_contained(quick_run):
  html = (quick_run / "report.html").read_text()
  images = re.findall(r'<img [^>]*src="([^"]+)"', html)
  summary = json.loads((quick_run / "summary.json").read_text())
  assert len(images) == sum(len(r["plots"]) for r in summary["stages"].values())
  assert all(src.startswith("data:image/png;base64,") for src in images)
  assert not re.search(r'(href|src)="(?!data:)', html)  # no file or web references
  assert "<table>" in html and "<h2>" in html


@pytest.mark.slow
def test_rerun_reuses_every_stage_and_gives_the_same_summary(quick_run, capsys):
  before = (quick_run / "summary.json").read_bytes()
  markers = {s: (quick_run / s / "DONE").stat().st_mtime_ns for s in STAGES}
  assert cli.main(["reproduce", "--quick", "--out", str(quick_run)]) == 0
  assert "reused" in capsys.readouterr().err
  assert {s: (quick_run / s / "DONE").stat().st_mtime_ns for s in STAGES} == markers
  assert (quick_run / "summary.json").read_bytes() == before
  assert "stages" in json.loads((quick_run / "timings.json").read_text())


@pytest.mark.slow
def test_a_stage_is_deterministic_and_rebuilt_after_an_interruption(tmp_path):
  summaries = []
  for name in ("a", "b"):
    out = tmp_path / name
    assert cli.main(["reproduce", "--quick", "--only", "lca", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["stages"]) == ["lca"]
    summaries.append({k: v for k, v in summary.items() if k != "command"})
  assert summaries[0] == summaries[1]  # two independent runs
  out = tmp_path / "a"
  (out / "lca" / "DONE").unlink()  # as if interrupted after the method's own run finished
  assert cli.main(["reproduce", "--quick", "--only", "lca", "--out", str(out)]) == 0
  rebuilt = json.loads((out / "summary.json").read_text())
  assert {k: v for k, v in rebuilt.items() if k != "command"} == summaries[0]


def test_other_settings_in_the_same_folder_are_refused(tmp_path, capsys):
  out = tmp_path / "r"
  (out / "lca").mkdir(parents=True)
  config = ReproduceConfig(out=str(out), preset="quick")
  (out / "lca" / "DONE").write_text(json.dumps(stage_identity(config, "lca")))
  (out / "lca" / "result.json").write_text("{}")
  assert cli.main(["reproduce", "--only", "lca", "--out", str(out)]) == 2
  assert "other settings" in capsys.readouterr().err


def _exit_status(argv) -> int:
  try:
    return cli.main(argv)
  except SystemExit as e:  # argparse's own exit
    return e.code


def test_bad_arguments_are_one_line_errors(capsys, tmp_path):
  assert _exit_status(["reproduce", "--only", "coordconv,nope", "--out", str(tmp_path)]) == 2
  assert "nope" in capsys.readouterr().err
  assert _exit_status(["reproduce", "--quick", "--full", "--out", str(tmp_path)]) == 2
  assert parse_only("pplm, coordconv") == ("coordconv", "pplm")


def test_verdict_rule():
  yes, no = {"passed": True}, {"passed": False}
  assert verdict([yes, yes]) == "reproduced"
  assert verdict([yes, no]) == "partly"
  assert verdict([no, no]) == "not"


def test_every_preset_is_valid():
  from jaxnn.data import registered_datasets
  from jaxnn.pplm import read_words

  datasets = registered_datasets()

  for name, preset in PRESETS.items():
    ReproduceConfig(out="x", preset=name)
    assert preset.id_dataset in datasets and preset.lca_dataset in datasets
    assert read_words(preset.pplm_bag)
  assert PRESETS["full"].cc_widths is None and PRESETS["full"].cc_epochs == 50
  assert PRESETS["full"].pplm_model == "gpt2-medium"

"""Builds README.md from the sections in docs/readme/ (run from the repo root).

Each part of the project keeps its README section in its own file, so that
engineers working on different methods do not edit one file at once.
"""

import pathlib

SECTIONS = [
  "00_intro.md",
  "02_status.md",
  "03_foundation.md",
  "04_foundation_results.md",
  "coordconv.md",
  "subspace_core.md",
  "subspace_sweep.md",
  "lca.md",
  "10_pplm_intro.md",
  "pplm_model.md",
  "pplm_steer.md",
  "99_development.md",
]

root = pathlib.Path(__file__).resolve().parent.parent
parts = [(root / "docs" / "readme" / name).read_text().rstrip() + "\n" for name in SECTIONS]
(root / "README.md").write_text("\n".join(parts))
print(f"README.md: {sum(p.count(chr(10)) for p in parts)} lines from {len(parts)} sections")

RESULTS = [
  "foundation.md",
  "coordconv.md",
  "subspace_core.md",
  "subspace_sweep.md",
  "lca.md",
  "pplm.md",
]
header = (
  "# Benchmark results\n\nSide-by-side ratios measured on this project's machines (2 CPU cores, "
  "no GPU), each with the command that produced it. Built from benchmarks/results/*.md by "
  "docs/build_readme.py.\n"
)
results = [header] + [
  (root / "benchmarks" / "results" / name).read_text().rstrip() + "\n" for name in RESULTS
]
(root / "benchmarks" / "RESULTS.md").write_text("\n".join(results))
print("benchmarks/RESULTS.md written")

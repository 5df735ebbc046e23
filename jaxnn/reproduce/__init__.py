"""`jaxnn reproduce`: the four papers' findings, reproduced offline, in one report.

`run_reproduce(ReproduceConfig(out="runs/reproduce"))` runs four stages and
writes `report.md`, a self-contained `report.html` and `summary.json`:

1. CoordConv (Liu et al. 2018): Not-so-Clevr classification and regression,
   CoordConv against the deconv/conv baselines, several seeds, both held-out
   quadrants;
2. intrinsic dimension (Li et al. 2018): d_int90 of FC networks and LeNet;
3. LCA (Lan et al. 2019): how noisy training is, on MNIST-FC;
4. PPLM (Dathathri et al. 2020): bag-of-words and discriminator steering.

Each finding gets the paper's number, this run's, and a verdict by an explicit
rule (`jaxnn.reproduce._verdict.RULE`). Presets: "quick" (the test's),
"default" (offline, a few minutes on 2 CPU cores), "full" (the papers').
"""

from jaxnn.reproduce._config import PRESETS, STAGES, Preset, ReproduceConfig, parse_only
from jaxnn.reproduce._run import run_reproduce
from jaxnn.reproduce._verdict import RULE, VERDICTS, verdict

__all__ = [
  "PRESETS",
  "RULE",
  "STAGES",
  "VERDICTS",
  "Preset",
  "ReproduceConfig",
  "parse_only",
  "run_reproduce",
  "verdict",
]

"""What `jaxnn reproduce` runs: its config and the three sizes (no JAX imported here).

`ReproduceConfig` says where, which stages and at which size; `Preset` holds
every setting of one size. `PRESETS["quick"]` is what the test suite runs (a
minute or two on 2 CPU cores), `"default"` the offline reproduction (a few
minutes on 2 CPU cores; docs/getting_started.md has the measured time), `"full"`
the papers' own settings (the datasets of the papers, downloaded; GPT-2 medium
from the Hugging Face hub; meant for a GPU or Colab).
"""

from __future__ import annotations

import dataclasses

from jaxnn._errors import JaxnnError

#: The stages of `jaxnn reproduce`, in the order they run (`--only` picks among them).
STAGES = ("coordconv", "subspace", "lca", "pplm")


@dataclasses.dataclass(frozen=True)
class Preset:
  """Every setting of one size of the reproduction (see `PRESETS`)."""

  # CoordConv (Liu et al. 2018), Not-so-Clevr.
  cc_widths: tuple[int, ...] | None = (8, 8)  # CoordConv classifier 1x1 widths; None: paper's
  cc_epochs: int = 2  # CoordConv classification epochs (Adam lr 1e-2, batch 16)
  cc_seeds: int = 3  # seeds of the CoordConv quadrant runs, per held-out quadrant
  cc_train_examples: int | None = None  # a subset of the training split (None: all)
  deconv_epochs: int = 2  # deconv baseline epochs (paper: 1,000)
  deconv_kernel: int = 2  # deconv baseline kernel (2: the paper's smallest, 46,465 params)
  deconv_train_examples: int | None = None
  reg_epochs: int = 3  # CoordConv regressor epochs (lr 1e-2, cosine decay)
  reg_conv_epochs: int = 2  # conv regressor baseline epochs (lr 1e-3)
  reg_train_examples: int | None = None
  # Intrinsic dimension (Li et al. 2018).
  id_dataset: str = "mnist5k"
  id_fc_widths: tuple[tuple[int, ...], ...] = ((50,), (200,), (200, 200))
  id_dims: tuple[int, ...] = (200, 400, 800, 1600)
  id_lenet: bool = True
  id_lenet_dims: tuple[int, ...] = (100, 200, 400)
  id_seeds: int = 1
  id_steps: int = 1000  # Adam steps per config (recorded with every result)
  id_lr: float = 3e-2  # Adam lr of theta_d (the direct baseline: 1e-3)
  id_projection: str = "sparse"
  id_max_train: int | None = None
  # LCA (Lan et al. 2019): MNIST-FC 784-100-50-10, SGD lr 0.01 momentum 0.9.
  lca_dataset: str = "mnist5k"
  lca_epochs: int = 6
  lca_batch_size: int = 250
  lca_max_train: int | None = None
  lca_shuffles: int = 1000  # shuffles of the synchronization test
  # PPLM (Dathathri et al. 2020).
  pplm_model: str = "offline"  # "offline": jaxnn's shipped LM; else a GPT-2 name or folder
  pplm_bag: str = "military"
  pplm_prompt: str = "The potato"
  pplm_length: int = 20
  pplm_samples: int = 4
  pplm_strong_stepsize: float = 1.0  # a step size far above the paper's, to show the trade-off
  pplm_multi_token: bool = False  # count multi-token bag words (slower: a pass per word piece)
  pplm_discriminator: bool = True  # also train and steer with a discriminator head
  pplm_discriminator_texts: int = 100  # synthetic labeled texts per class

  def __post_init__(self):
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if isinstance(value, int) and not isinstance(value, bool) and value < 1:
        raise JaxnnError(f"{field.name} must be a positive integer, got {value}")
    if self.id_projection not in ("dense", "sparse", "fastfood"):
      raise JaxnnError(
        f"unknown projection {self.id_projection!r}; choose dense, sparse or fastfood"
      )
    if not self.id_fc_widths or not self.id_dims or not self.pplm_strong_stepsize > 0:
      raise JaxnnError("a preset needs FC widths, subspace dims and a positive PPLM step size")


#: The run sizes by name ("quick", "default", "full"): a `Preset` each.
PRESETS = {
  "quick": Preset(
    cc_epochs=1,
    cc_seeds=1,
    cc_train_examples=512,
    deconv_epochs=1,
    deconv_train_examples=64,
    reg_epochs=1,
    reg_conv_epochs=1,
    reg_train_examples=256,
    id_dataset="digits",
    id_fc_widths=((16,), (32, 32)),
    id_dims=(8, 32),
    id_lenet=False,
    id_steps=60,
    lca_dataset="digits",
    lca_epochs=1,
    lca_batch_size=128,
    lca_shuffles=100,
    pplm_length=6,
    pplm_samples=2,
    pplm_discriminator=False,
  ),
  "default": Preset(),
  "full": Preset(
    cc_widths=None,
    cc_epochs=50,
    cc_seeds=5,
    deconv_epochs=1000,
    deconv_kernel=2,
    reg_epochs=50,
    reg_conv_epochs=50,
    id_dataset="mnist",
    id_fc_widths=((50,), (100,), (200,), (400,), (200, 200), (200, 200, 200), (200,) * 5),
    id_dims=(100, 200, 300, 400, 500, 600, 750, 1000, 1500),
    id_lenet_dims=(100, 150, 200, 250, 300, 400, 600),
    id_seeds=3,
    id_steps=43_000,
    id_lr=1e-3,
    id_projection="fastfood",
    lca_dataset="mnist",
    lca_epochs=10,
    pplm_model="gpt2-medium",
    pplm_length=50,
    pplm_samples=8,
    pplm_multi_token=True,
    pplm_discriminator_texts=500,
  ),
}


@dataclasses.dataclass(frozen=True)
class ReproduceConfig:
  """One `jaxnn reproduce` run."""

  out: str  # the report folder: report.md, report.html, summary.json, one folder per stage
  preset: str = "default"  # quick (the test's), default (offline, minutes), full (the papers')
  only: tuple[str, ...] = STAGES  # the stages to run, in this order
  progress: bool = True  # progress bars on a terminal (one line per stage otherwise)

  def __post_init__(self):
    if self.preset not in PRESETS:
      raise JaxnnError(f"unknown preset {self.preset!r}; choose from {', '.join(PRESETS)}")
    unknown = [s for s in self.only if s not in STAGES]
    if unknown or not self.only:
      raise JaxnnError(
        f"unknown stage(s) {', '.join(unknown) or '(none given)'}; --only takes a "
        f"comma-separated subset of {','.join(STAGES)}"
      )

  @property
  def sizes(self) -> Preset:
    """The settings of this run's preset."""
    return PRESETS[self.preset]

  def command(self, stages: tuple[str, ...] | None = None) -> str:
    """The command line that reruns (part of) this run."""
    flag = {"quick": " --quick", "full": " --full", "default": ""}[self.preset]
    only = stages if stages is not None else self.only
    only_flag = "" if tuple(only) == STAGES else f" --only {','.join(only)}"
    return f"jaxnn reproduce{flag}{only_flag} --out {self.out}"


def parse_only(text: str) -> tuple[str, ...]:
  """ "coordconv,lca" -> ("coordconv", "lca") in the canonical order; JaxnnError if unknown."""
  names = [s.strip() for s in text.split(",") if s.strip()]
  unknown = [s for s in names if s not in STAGES]
  if unknown or not names:
    raise JaxnnError(
      f"unknown stage(s) {', '.join(unknown) or '(none given)'} in --only; choose a "
      f"comma-separated subset of {','.join(STAGES)}"
    )
  return tuple(s for s in STAGES if s in names)

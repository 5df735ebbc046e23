"""PPLM's configs: `PPLMConfig` (steering), and the `jaxnn pplm` commands' (no JAX here)."""

from __future__ import annotations

from jaxnn._config import configclass, setting
from jaxnn._errors import JaxnnError


@configclass
class PPLMConfig:
  """Steering hyperparameters; the defaults are the original run_pplm.py's."""

  length: int = setting(100, "tokens generated after the prompt", positive=True)
  stepsize: float = setting(0.02, "step of each normalized gradient step on dH", nonnegative=True)
  temperature: float = setting(1.0, "divides the perturbed logits before fusion", positive=True)
  top_k: int = setting(10, "keep the k most likely tokens (0: all)", nonnegative=True)
  sample: bool = setting(False, "sample from the fused distribution instead of greedy decoding")
  num_iterations: int = setting(3, "gradient steps on dH per token", nonnegative=True)
  grad_length: int = setting(10000, "after this many tokens the stepsize is 0", nonnegative=True)
  window_length: int = setting(
    0, "perturb only a window of past positions (0: all)", nonnegative=True
  )
  window_position: str = setting(
    "first",
    "first: the original's mask over the oldest window_length positions; recent: the newest",
    choices=("first", "recent"),
  )
  horizon_length: int = setting(1, "soft future steps fed to the discriminator", nonnegative=True)
  decay: bool = setting(False, "scale the window by 1/w .. 1")
  gamma: float = setting(1.5, "gradient normalization exponent", finite=True)
  gm_scale: float = setting(
    0.9, "weight of the perturbed distribution in the fusion", fraction=True
  )
  kl_scale: float = setting(0.01, "weight of KL(p~ || p_unpert)", nonnegative=True)

  def __post_init__(self):
    if self.decay and self.window_length == 0:
      raise JaxnnError("decay scales a window: set window_length > 0 (e.g. 5) or drop decay")


MODEL_HELP = (
  "a local model folder, a hub id (GPT-2, Llama, Mistral, Qwen, Gemma, Phi-3, Pythia) or gpt2, "
  "gpt2-medium, ..."
)


@configclass
class GenerateConfig:
  """`jaxnn pplm generate`: steered samples and the unsteered baseline, evaluated."""

  model: str | None = setting(
    None, MODEL_HELP, none="gpt2-medium when it can be had, else jaxnn's offline LM"
  )
  prompt: str = setting("The lake", "conditioning text (cond_text)")
  prompts_file: str | None = setting(
    None,
    "a text file of prompts, one a line, steered together as one batch instead of --prompt",
    none="none",
    metavar="FILE",
  )
  bow: str | None = setting(
    None,
    "bags of words: shipped names (see --list-bags) or word-list files, separated by , or ;",
    none="none",
  )
  discriminator: str | None = setting(
    None, "a head from `jaxnn pplm train-discriminator` (.safetensors)", none="none"
  )
  class_label: str | None = setting(
    None, "target class of the discriminator (index or name)", none="none"
  )
  num_samples: int = setting(
    1, "samples of each prompt, all steered together as one batch", positive=True
  )
  seed: int = setting(0, "random seed of the sampling")
  single_token_words: bool = setting(
    False, "drop multi-token words from the bags, as the original does"
  )
  rank: bool = setting(
    False,
    "also pick the best sample by attribute score among those with mean Dist-n >= "
    "--min-dist (the paper's BR / BCR)",
  )
  min_dist: float = setting(0.5, "Dist-n floor of --rank", fraction=True)
  ppl_model: str | None = setting(
    None, "language model that scores perplexity", none="the generating model"
  )
  steering: PPLMConfig = setting(default_factory=PPLMConfig)

  def check(self) -> None:
    """What a run needs beyond valid fields: something to steer toward."""
    if not self.bow and not self.discriminator:
      raise JaxnnError(
        "give --bow NAME (see --list-bags) and/or --discriminator HEAD to steer toward"
      )
    if self.discriminator and self.class_label is None:
      raise JaxnnError("--discriminator needs --class-label (index or class name)")


@configclass
class DiscriminatorConfig:
  """`jaxnn pplm train-discriminator`: a linear head on mean hidden states."""

  dataset: str = setting("", "a file with one 'label<TAB>text' a line", metavar="FILE")
  model: str | None = setting(
    None, MODEL_HELP, none="gpt2-medium when it can be had, else jaxnn's offline LM"
  )
  epochs: int = setting(10, "passes over the data", positive=True)
  batch_size: int = setting(64, "examples per step", positive=True)
  learning_rate: float = setting(1e-4, "Adam learning rate", flag="--lr", positive=True)
  max_tokens: int = setting(100, "tokens of each text encoded", positive=True)
  cache_dir: str | None = setting(
    None, "where mean representations are cached", none="next to --out"
  )
  seed: int = setting(0, "random seed: initialization and batch order")
  progress: bool = setting(True, "no progress output")

  def check(self) -> None:
    """What a run needs beyond valid fields: a dataset."""
    if not self.dataset:
      raise JaxnnError("--dataset FILE is required (one 'label<TAB>text' a line)")

"""PPLM bag of words, the paper's BoW example settings, on the offline LM.

Reproduces: bag-of-words steering toward `military` of jaxnn's offline LM (4 layers, 128 wide),
  prompt "The potato", 40 tokens, 8 samples, sampling, seed 0, against the same LM
  unsteered with the same seeds; stepsize 0.03, window 5, gm_scale 0.99.
Paper: human-rated topic relevance 11.1% unsteered -> 46.9% steered (GPT-2 medium,
  7 topics); its BoW example uses stepsize 0.03, window 5, gm_scale 0.99.
Measured here: bag-word rate 0.000 steered / 0.000 unsteered; perplexity 37.1 / 32.0;
  Dist-1/2/3 0.75 / 0.95 / 0.99. The paper's step size moves nothing measurable on this
  small LM.
Runtime: about 20 s (compilation) plus 3 s of generation on one core of a 2-core CPU.
Command:
  jaxnn pplm generate --model "$(python -c 'import jaxnn.pplm as p; print(p.ensure_offline_lm())')" \
    --config experiments/pplm_military_paper.py --out runs/pplm_military_paper

Results of the measured run: experiments/results/pplm_military_paper/.
"""

from jaxnn.configs import GenerateConfig, PPLMConfig


def get_config():
  """The config of this experiment."""
  return GenerateConfig(
    prompt="The potato",
    bow="military",
    single_token_words=True,
    num_samples=8,
    seed=0,
    steering=PPLMConfig(
      length=40, stepsize=0.03, window_length=5, gm_scale=0.99, sample=True, kl_scale=0.01
    ),
  )

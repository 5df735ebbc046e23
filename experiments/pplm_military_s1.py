"""PPLM bag of words, stepsize 1.0, on the offline LM: steering shows.

Reproduces: bag-of-words steering toward `military` of jaxnn's offline LM (4 layers, 128 wide),
  prompt "The potato", 40 tokens, 8 samples, sampling, seed 0, against the same LM
  unsteered with the same seeds; stepsize 1.0, window 0, gm_scale 0.95.
Paper: human-rated topic relevance 11.1% unsteered -> 46.9% steered (GPT-2 medium,
  7 topics); its BoW example uses stepsize 0.03, window 5, gm_scale 0.99.
Measured here: bag-word rate 0.149 steered / 0.000 unsteered; perplexity 541 / 32.0 (fluency
  pays); Dist-1/2/3 0.53 / 0.92 / 0.98.
Runtime: about 20 s (compilation) plus 3 s of generation on one core of a 2-core CPU.
Command:
  jaxnn pplm generate --model "$(python -c 'import jaxnn.pplm as p; print(p.ensure_offline_lm())')" \
    --config experiments/pplm_military_s1.py --out runs/pplm_military_s1

Results of the measured run: experiments/results/pplm_military_s1/.
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
      length=40, stepsize=1.0, window_length=0, gm_scale=0.95, sample=True, kl_scale=0.01
    ),
  )

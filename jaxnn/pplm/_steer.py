"""PPLM steering: perturb a language model's key/value cache toward an attribute.

Dathathri et al., "Plug and Play Language Models: a Simple Approach to
Controlled Text Generation", ICLR 2020. At every generated token the past
keys/values H get a perturbation dH, built from zero by `num_iterations`
normalized gradient steps on

  loss = sum over bags of -log p(bag) + CE(discriminator(mean hidden), class)
         + kl_scale * KL(p~ || p_unpert),

then the next token is drawn from p ~ p~^gm_scale * p_unpert^(1 - gm_scale),
and the perturbed cache carries into the following steps.

Unlike the original (batch 1, the unperturbed distribution recomputed by a full
forward pass at every token), this loop keeps two fixed-size caches (perturbed
and unperturbed), steers B samples at once and runs under one `jax.jit`,
compiled once per (batch, max length) and structural hyperparameters (the
float ones are traced). It steers every family of `jaxnn.lm`: with
grouped-query attention the perturbation acts on the G shared key/value
heads the cache holds. With bfloat16 or float16 weights the caches, the
perturbation, its gradient and the distributions are float32.

Prompts of different lengths are steered together, left-padded (`KVCache.pad`):
each row's padding is masked in attention, excluded from the window over the
past, from the discriminator's mean of hidden states and from the gradient,
so each row is steered as its prompt would be alone. `diagnostics=True` also
returns, per token, the unperturbed distribution and each gradient step's
attribute loss, KL and per-layer gradient norms (`PPLMDiagnostics`).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from jaxnn._errors import JaxnnError
from jaxnn.configs import PPLMConfig
from jaxnn.lm import (
  KVCache,
  LMConfig,
  as_params,
  check_token_ids,
  init_cache,
  lm_config,
  lm_forward,
  lm_forward_layers,
)
from jaxnn.lm._generate import kth_largest, prepare_prompts
from jaxnn.lm._model import soft_embeddings

SMALL_CONST = 1e-15


class BagsOfWords(NamedTuple):
  """Several bags of words as token ids (see `jaxnn.pplm.bag_of_words`).

  single_NxV marks the one-token words of each of the N bags; a multi-token
  word m (tokens s1..sn, padded) belongs to bag multi_bag_M[m] and counts
  with probability p(s1) p(s2|s1) ... p(sn|s1..sn-1).
  """

  single_NxV: Float[Array, "N V"]
  multi_tokens_MxW: Int[Array, "M W"]
  multi_lengths_M: Int[Array, "M"]
  multi_bag_M: Int[Array, "M"]


class Discriminator(NamedTuple):
  """A linear head on mean-pooled final hidden states and the class to steer toward."""

  kernel_DxC: Float[Array, "D C"]
  bias_C: Float[Array, "C"]
  class_label: Int[Array, ""]


class Attributes(NamedTuple):
  """What to steer toward: bags of words, discriminators, or both (losses add up)."""

  bags: BagsOfWords | None = None
  discriminators: tuple[Discriminator, ...] = ()


_TRACED_FIELDS = ("stepsize", "temperature", "gamma", "gm_scale", "kl_scale")


class _Hyper(NamedTuple):
  """PPLMConfig inside the jit: the float fields traced, so changing them never recompiles."""

  length: int
  stepsize: Array
  temperature: Array
  top_k: int
  sample: bool
  num_iterations: int
  grad_length: int
  window_length: int
  window_position: str
  horizon_length: int
  decay: bool
  gamma: Array
  gm_scale: Array
  kl_scale: Array


class PPLMDiagnostics(NamedTuple):
  """What each steered token's perturbation saw (`steered_generate(..., diagnostics=True)`).

  N is the number of generated tokens, I `num_iterations` (the gradient steps
  per token), L the model's layers. Iteration i's values are taken at the
  perturbation before its step (iteration 0: dH = 0 on the past as the
  earlier tokens' steps left it; at the first token, the unperturbed model).
  Empty (I = 0) for the unsteered baseline. A row without a past token yet
  (a one-token prompt's first step) is not perturbed: its gradient norms are 0.

  Attributes:
    unpert_probs_BxNxV: the unperturbed model's next-token distribution at
      each step (softmax of its logits, before temperature and top-k).
    attribute_loss_BxNxI: the attribute loss (-log p(bag) summed over the
      bags, plus the discriminators' cross-entropies).
    kl_BxNxI: KL(p~ || p_unpert) (the loss adds `kl_scale` times it).
    grad_norms_BxNxIxL: per layer, the norm of the (windowed) gradient of
      the loss with respect to that layer's keys and values together, the
      norm PPLM's step is normalized by.
  """

  unpert_probs_BxNxV: Float[Array, "B N V"]
  attribute_loss_BxNxI: Float[Array, "B N I"]
  kl_BxNxI: Float[Array, "B N I"]
  grad_norms_BxNxIxL: Float[Array, "B N I L"]


class _Carry(NamedTuple):
  pert: KVCache  # perturbed past: every token but the last
  unpert: KVCache  # unperturbed cache: every token
  last_B: Int[Array, "B"]
  unpert_logits_BxV: Float[Array, "B V"]  # unperturbed logits after the last token
  hidden_sum_BxD: Float[Array, "B D"]  # unperturbed hidden states, all tokens but the last
  last_hidden_BxD: Float[Array, "B D"]  # unperturbed hidden state of the last token
  grad_norms_LxB: Float[Array, "L B"]  # running gradient norms (bags of words only)
  norms_started_B: Array  # whether a row's grad_norms_LxB holds a first value yet
  key: Array


def _window_mask_S(config: PPLMConfig, curr_length, max_len, pad_B=None):
  """The original's mask over past positions (ones at the FIRST window by default).

  S, or B x S with left padding `pad_B`: row b's past starts at slot pad_B[b]
  (its first window too), and its padding slots are 0.
  """
  pos_S = jnp.arange(max_len)
  first, past = 0, curr_length
  if pad_B is not None:  # B x S from here on
    pos_S, first = pos_S[None], pad_B[:, None]
    past = curr_length - first
  valid_S = (pos_S < curr_length) & (pos_S >= first)
  w = config.window_length
  if w == 0:
    return valid_S.astype(jnp.float32)
  start = first if config.window_position == "first" else curr_length - w
  rank_S = pos_S - start
  in_window_S = (rank_S >= 0) & (rank_S < w)
  weight_S = (rank_S + 1) / w if config.decay else jnp.ones(rank_S.shape)
  windowed_S = jnp.where(in_window_S, weight_S, 0.0)
  return jnp.where(past > w, windowed_S, 1.0) * valid_S


def _word_log_probs_BxM(params, lm: LMConfig, probs_BxV, after_last, bags: BagsOfWords):
  """log p(s1 .. sn) of every multi-token word under the (perturbed) model."""
  b = probs_BxV.shape[0]
  k_layers, v_layers, length, pad_B = after_last

  @jax.checkpoint
  def one_word(word):
    tokens_W, n = word
    inputs_BxT = jnp.broadcast_to(tokens_W[:-1], (b, tokens_W.shape[0] - 1))
    logits_BxTxV, _, _, _ = lm_forward_layers(
      params, lm, k_layers, v_layers, length, inputs_BxT, pad_B=pad_B
    )
    logp_BxTxV = jax.nn.log_softmax(logits_BxTxV.astype(probs_BxV.dtype), axis=-1)
    follow_BxT = logp_BxTxV[:, jnp.arange(tokens_W.shape[0] - 1), tokens_W[1:]]
    used_T = jnp.arange(1, tokens_W.shape[0]) < n
    return jnp.log(probs_BxV[:, tokens_W[0]]) + jnp.where(used_T[None], follow_BxT, 0.0).sum(-1)

  # Words run in chunks that copy the cache at most ~256 MB at a time.
  cache_bytes = 2 * sum(k.size * k.dtype.itemsize for k in k_layers)
  chunk = max(1, min(bags.multi_tokens_MxW.shape[0], 2**28 // cache_bytes))
  logp_MxB = jax.lax.map(one_word, (bags.multi_tokens_MxW, bags.multi_lengths_M), batch_size=chunk)
  return logp_MxB.T


def bag_probabilities(
  params, lm: LMConfig, probs_BxV, cache_after_last: KVCache, bags: BagsOfWords
) -> Float[Array, "B N"]:
  """Probability of each bag: its one-token words plus its multi-token words.

  Args:
    probs_BxV: next-token distribution after the last token.
    cache_after_last: the cache that includes the last token (what the
      multi-token words continue from); unused when all words are one token.
  """
  after_last = (
    [cache_after_last.k[i] for i in range(lm_config(lm).num_layers)],
    [cache_after_last.v[i] for i in range(lm_config(lm).num_layers)],
    cache_after_last.length,
    cache_after_last.pad,
  )
  return _bag_probabilities(params, lm, probs_BxV, after_last, bags)


def _bag_probabilities(params, lm, probs_BxV, after_last, bags: BagsOfWords):
  """`bag_probabilities` with the cache as (k_layers, v_layers, length, pad_B).

  The per-layer form of `lm_forward_layers`, so that the steering gradient
  through the multi-token words stays per layer too.
  """
  p_BxN = probs_BxV @ bags.single_NxV.T.astype(probs_BxV.dtype)
  if bags.multi_tokens_MxW.shape[0]:
    word_p_BxM = jnp.exp(_word_log_probs_BxM(params, lm, probs_BxV, after_last, bags))
    n = bags.single_NxV.shape[0]
    p_BxN = p_BxN + word_p_BxM @ jax.nn.one_hot(bags.multi_bag_M, n, dtype=word_p_BxM.dtype)
  return p_BxN


def _attribute_loss_B(
  params,
  lm,
  config,
  attributes,
  probs_BxV,
  hidden_BxD,
  after_last,
  unpert: KVCache,
  hidden_sum_BxD,
  curr_length,
):
  loss_B = jnp.zeros(probs_BxV.shape[:1], probs_BxV.dtype)
  if attributes.bags is not None:
    p_BxN = _bag_probabilities(params, lm, probs_BxV, after_last, attributes.bags)
    loss_B = loss_B - jnp.log(p_BxN).sum(-1)
  if attributes.discriminators:
    acc_BxD = hidden_sum_BxD + jax.lax.stop_gradient(hidden_BxD).astype(hidden_sum_BxD.dtype)
    embeds_Bx1xD = soft_embeddings(jax.lax.stop_gradient(params), lm, probs_BxV)
    k_layers = [unpert.k[i] for i in range(lm.num_layers)]
    v_layers = [unpert.v[i] for i in range(lm.num_layers)]
    for step in range(config.horizon_length):
      _, h_Bx1xD, k_layers, v_layers = lm_forward_layers(
        params,
        lm,
        k_layers,
        v_layers,
        unpert.length + step,
        embeds_BxTxD=embeds_Bx1xD,
        pad_B=unpert.pad,
      )
      acc_BxD = acc_BxD + h_Bx1xD[:, 0].astype(acc_BxD.dtype)
    past = curr_length if unpert.pad is None else (curr_length - unpert.pad)[:, None]
    mean_BxD = acc_BxD / (past + 1 + config.horizon_length)
    for head in attributes.discriminators:
      kernel_DxC, bias_C = (
        head.kernel_DxC.astype(mean_BxD.dtype),
        head.bias_C.astype(mean_BxD.dtype),
      )
      logp_BxC = jax.nn.log_softmax(mean_BxD @ kernel_DxC + bias_C[None], axis=-1)
      loss_B = loss_B - logp_BxC[:, head.class_label]
  return loss_B


def _kl_B(probs_BxV, unpert_logits_BxV):
  unpert_BxV = jax.nn.softmax(unpert_logits_BxV, axis=-1)
  unpert_BxV = unpert_BxV + SMALL_CONST * (unpert_BxV <= SMALL_CONST)
  corrected_BxV = probs_BxV + jax.lax.stop_gradient(SMALL_CONST * (probs_BxV <= SMALL_CONST))
  return (corrected_BxV * jnp.log(corrected_BxV / unpert_BxV)).sum(-1)


def perturb_past(
  params,
  lm: LMConfig,
  config: PPLMConfig,
  attributes: Attributes,
  pert: KVCache,
  unpert: KVCache,
  last_B,
  unpert_logits_BxV,
  hidden_sum_BxD,
  grad_norms_LxB,
  norms_started,
  stepsize,
  *,
  diagnostics: bool = False,
):
  """The accumulated perturbation (dk, dv) of the past for one token (PPLM step 2).

  A left-padded batch (`pert.pad`) perturbs each row's own past only.

  Args:
    pert: the past keys/values (all tokens but the last), perturbed at earlier steps.
    unpert: the unperturbed cache of all tokens (the discriminator's horizon runs on it).
    last_B: the last token, fed against the perturbed past.
    unpert_logits_BxV: unperturbed logits after the last token (the KL target).
    hidden_sum_BxD: sum of the unperturbed hidden states of all tokens but the last.
    grad_norms_LxB, norms_started: the running maxima of the per-layer gradient
      norms, used when steering with bags of words only, and per row (B) whether
      they hold a first value.
    stepsize: this token's step size (0 past grad_length).
    diagnostics: also return each iteration's attribute loss, KL and gradient
      norms (I x B, I x B, I x L x B).

  Returns:
    dk, dv (shaped like the cache), the new gradient norms and started flags,
    and with `diagnostics` the tuple (loss_IxB, kl_IxB, norms_IxLxB).
  """
  bow_only = attributes.bags is not None and not attributes.discriminators
  mask = _window_mask_S(config, pert.length, pert.max_len, pert.pad).astype(pert.k.dtype)
  if mask.ndim == 1:
    mask_1x1xSx1 = mask[None, None, :, None]
  else:  # B x S: each row's own past
    mask_1x1xSx1 = mask[:, None, :, None]
  layers = range(lm.num_layers)

  # The perturbation is held as one array per layer, so that its gradient is
  # too (see lm_forward_layers); it is stacked like the cache at the end.
  def loss_fn(delta):
    dk, dv = delta
    logits_Bx1xV, hidden_Bx1xD, k_after, v_after = lm_forward_layers(
      params,
      lm,
      [pert.k[i] + dk[i] for i in layers],
      [pert.v[i] + dv[i] for i in layers],
      pert.length,
      last_B[:, None],
      pad_B=pert.pad,
    )
    probs_BxV = jax.nn.softmax(logits_Bx1xV[:, -1].astype(pert.k.dtype), axis=-1)
    loss_B = _attribute_loss_B(
      params,
      lm,
      config,
      attributes,
      probs_BxV,
      hidden_Bx1xD[:, 0],
      (k_after, v_after, pert.length + 1, pert.pad),
      unpert,
      hidden_sum_BxD,
      pert.length,
    )
    kl_B = _kl_B(probs_BxV, unpert_logits_BxV)
    return (loss_B + config.kl_scale * kl_B).sum(), (loss_B, kl_B)

  def iteration(state, _):
    dk, dv, norms_LxB, started = state
    (gk, gv), (attribute_B, kl_B) = jax.grad(loss_fn, has_aux=True)((dk, dv))
    gk = [g_BxHxSxK * mask_1x1xSx1 for g_BxHxSxK in gk]
    gv = [g_BxHxSxK * mask_1x1xSx1 for g_BxHxSxK in gv]
    new_LxB = jnp.sqrt(
      jnp.stack(
        [jnp.sum(gk[i] ** 2, axis=(1, 2, 3)) + jnp.sum(gv[i] ** 2, axis=(1, 2, 3)) for i in layers]
      )
    )
    if bow_only:
      norms_LxB = jnp.where(started, jnp.maximum(norms_LxB, new_LxB), new_LxB + SMALL_CONST)
    else:
      norms_LxB = new_LxB + SMALL_CONST
    scale_LxBx1x1x1 = (stepsize / norms_LxB**config.gamma)[:, :, None, None, None]
    dk = tuple(dk[i] - scale_LxBx1x1x1[i] * gk[i] for i in layers)
    dv = tuple(dv[i] - scale_LxBx1x1x1[i] * gv[i] for i in layers)
    seen = (attribute_B, kl_B, new_LxB) if diagnostics else None
    return (dk, dv, norms_LxB, jnp.ones_like(started)), seen

  zeros = tuple(jnp.zeros_like(pert.k[0]) for _ in layers)
  (dk, dv, norms_LxB, started), seen = jax.lax.scan(
    iteration, (zeros, zeros, grad_norms_LxB, norms_started), length=config.num_iterations
  )
  has_past_B = pert.length > (0 if pert.pad is None else pert.pad)
  out = (
    jnp.stack(dk),
    jnp.stack(dv),
    jnp.where(has_past_B, norms_LxB, grad_norms_LxB),
    jnp.where(has_past_B, started, norms_started),
  )
  return (*out, seen) if diagnostics else out


def fused_probs(pert_logits_BxV, unpert_logits_BxV, config: PPLMConfig):
  """p ~ softmax(pert / T)^gm_scale * softmax(unpert)^(1 - gm_scale), top-k, renormalized."""
  pert_BxV = jax.nn.softmax(pert_logits_BxV / config.temperature, axis=-1)
  unpert_BxV = jax.nn.softmax(unpert_logits_BxV, axis=-1)
  p_BxV = pert_BxV**config.gm_scale * unpert_BxV ** (1 - config.gm_scale)
  if config.top_k:
    kth_Bx1 = kth_largest(p_BxV, config.top_k)
    p_BxV = jnp.where(p_BxV < kth_Bx1, 0.0, p_BxV)
  return p_BxV / p_BxV.sum(-1, keepdims=True)


def unsteered_probs(logits_BxV, config: PPLMConfig):
  """The plain model's distribution: temperature, top-k on the logits, softmax."""
  logits_BxV = logits_BxV / config.temperature
  if config.top_k:
    kth_Bx1 = kth_largest(logits_BxV, config.top_k)
    logits_BxV = jnp.where(logits_BxV < kth_Bx1, -1e10, logits_BxV)
  return jax.nn.softmax(logits_BxV, axis=-1)


def _choose(p_BxV, key, sample):
  if sample:
    return jax.random.categorical(key, jnp.log(p_BxV), axis=-1).astype(jnp.int32)
  return jnp.argmax(p_BxV, axis=-1).astype(jnp.int32)


def steering_dtype(param_dtype):
  """The dtype of the caches, perturbation, gradients and distributions: float32 or wider."""
  return jnp.promote_types(param_dtype, jnp.float32)


def check_attributes(attributes: Attributes, lm: LMConfig) -> None:
  """Raises a JaxnnError when bags or discriminators do not fit the model."""
  if not isinstance(attributes, Attributes):
    raise JaxnnError(f"attributes must be an Attributes, got {type(attributes).__name__}")
  bags = attributes.bags
  if bags is not None:
    if bags.single_NxV.ndim != 2 or bags.single_NxV.shape[1] != lm.vocab_size:
      raise JaxnnError(
        f"the bags of words are over {bags.single_NxV.shape[-1]} tokens but the model has "
        f"{lm.vocab_size}; build them with bag_of_words(..., vocab_size={lm.vocab_size})"
      )
    check_token_ids(bags.multi_tokens_MxW, lm.vocab_size, "the bags' multi-token words")
  for head in attributes.discriminators:
    kernel, bias = head.kernel_DxC, head.bias_C
    if kernel.ndim != 2 or kernel.shape[0] != lm.hidden_size:
      raise JaxnnError(
        f"the discriminator's kernel has shape {tuple(kernel.shape)} but the model's hidden "
        f"size is {lm.hidden_size}; train it on this model"
      )
    if bias.shape != (kernel.shape[1],):
      raise JaxnnError(
        f"the discriminator's bias has shape {tuple(bias.shape)} but its kernel has "
        f"{kernel.shape[1]} classes; the head file is corrupt"
      )
    label = head.class_label
    if not isinstance(label, jax.core.Tracer) and not 0 <= int(label) < kernel.shape[1]:
      raise JaxnnError(f"class_label {int(label)} is outside 0..{kernel.shape[1] - 1}")


def max_cache_len(prompt_len: int, config: PPLMConfig, attributes: Attributes) -> int:
  """Cache positions needed: prompt, generated tokens and the look-ahead of a step."""
  lookahead = config.horizon_length if attributes.discriminators else 0
  if attributes.bags is not None:
    lookahead = max(lookahead, attributes.bags.multi_tokens_MxW.shape[1] - 1)
  return prompt_len + config.length + lookahead


@functools.partial(
  jax.jit, static_argnames=("lm", "static", "perturb", "return_probs", "diagnostics")
)
def _generate(
  params,
  prompt_BxP,
  pad_B,
  attributes,
  key,
  floats,
  *,
  lm,
  static,
  perturb,
  return_probs,
  diagnostics,
):
  config = _Hyper(**{**dataclasses.asdict(static), **floats})
  b, p = prompt_BxP.shape
  max_len = max_cache_len(p, config, attributes)
  dtype = steering_dtype(params["wte"].dtype)
  empty = init_cache(lm, b, max_len, dtype, pad_B=pad_B)
  logits_BxPxV, hidden_BxPxD, unpert = lm_forward(params, lm, empty, prompt_BxP)
  hidden_BxPxD = hidden_BxPxD.astype(dtype)
  past_BxPxD = hidden_BxPxD[:, :-1]
  if pad_B is not None:  # the padding's hidden states are not part of the mean
    real_BxPx1 = (jnp.arange(p - 1)[None] >= pad_B[:, None])[:, :, None]
    past_BxPxD = jnp.where(real_BxPx1, past_BxPxD, 0.0)
  carry = _Carry(
    pert=unpert._replace(length=unpert.length - 1),
    unpert=unpert,
    last_B=prompt_BxP[:, -1].astype(jnp.int32),
    unpert_logits_BxV=logits_BxPxV[:, -1].astype(dtype),
    hidden_sum_BxD=past_BxPxD.sum(1),
    last_hidden_BxD=hidden_BxPxD[:, -1],
    grad_norms_LxB=jnp.zeros((lm.num_layers, b), dtype),
    norms_started_B=jnp.zeros((b,), bool),
    key=key,
  )
  no_iterations = (
    jnp.zeros((0, b), dtype),
    jnp.zeros((0, b), dtype),
    jnp.zeros((0, lm.num_layers, b), dtype),
  )

  def step(c: _Carry, i):
    key, sample_key = jax.random.split(c.key)
    pert = c.pert
    norms, started = c.grad_norms_LxB, c.norms_started_B
    seen = no_iterations
    if perturb:
      if config.num_iterations:
        stepsize = jnp.where(i < config.grad_length, config.stepsize, 0.0).astype(dtype)
        dk, dv, norms, started, *more = perturb_past(
          params,
          lm,
          config,
          attributes,
          pert,
          c.unpert,
          c.last_B,
          c.unpert_logits_BxV,
          c.hidden_sum_BxD,
          norms,
          started,
          stepsize,
          diagnostics=diagnostics,
        )
        seen = more[0] if diagnostics else seen
        pert = pert._replace(k=pert.k + dk, v=pert.v + dv)
      logits_Bx1xV, _, pert = lm_forward(params, lm, pert, c.last_B[:, None])
      p_BxV = fused_probs(logits_Bx1xV[:, -1].astype(dtype), c.unpert_logits_BxV, config)
    else:
      p_BxV = unsteered_probs(c.unpert_logits_BxV, config)
    next_B = _choose(p_BxV, sample_key, config.sample)
    logits_Bx1xV, hidden_Bx1xD, unpert = lm_forward(params, lm, c.unpert, next_B[:, None])
    new = _Carry(
      pert,
      unpert,
      next_B,
      logits_Bx1xV[:, -1].astype(dtype),
      c.hidden_sum_BxD + c.last_hidden_BxD,
      hidden_Bx1xD[:, -1].astype(dtype),
      norms,
      started,
      key,
    )
    diag = None
    if diagnostics:
      diag = (jax.nn.softmax(c.unpert_logits_BxV, axis=-1), *seen)
    return new, (next_B, p_BxV if return_probs else None, diag)

  _, (tokens_LxB, probs_LxBxV, diag) = jax.lax.scan(step, carry, jnp.arange(config.length))
  probs = None if probs_LxBxV is None else probs_LxBxV.transpose(1, 0, 2)
  if diagnostics:
    unpert_NxBxV, loss_NxIxB, kl_NxIxB, norms_NxIxLxB = diag
    diag = PPLMDiagnostics(
      unpert_NxBxV.transpose(1, 0, 2),
      loss_NxIxB.transpose(2, 0, 1),
      kl_NxIxB.transpose(2, 0, 1),
      norms_NxIxLxB.transpose(3, 0, 1, 2),
    )
  return tokens_LxB.T, probs, diag


def steered_generate(
  params,
  lm: LMConfig,
  prompt_BxP,
  attributes: Attributes = Attributes(),  # noqa: B008 (an immutable NamedTuple)
  config: PPLMConfig = PPLMConfig(),
  *,
  prompt_mask_BxP=None,
  key=None,
  perturb: bool = True,
  return_probs: bool = False,
  diagnostics: bool = False,
  timings: dict | None = None,
):
  """Generates `config.length` tokens for each of B prompts, steered by PPLM.

  B samples (e.g. one prompt repeated, or different prompts) are steered
  together in one jit-compiled loop. Prompts of different lengths are
  left-padded: each row is steered as its prompt alone would be (the same
  tokens; the probabilities to float rounding). `perturb=False` gives the
  unsteered baseline of the original (temperature, top-k, same sampling keys).

  Args:
    params: the language model's parameters (`jaxnn.lm.load_lm`, or
      `load_gpt2`); their dtype sets the computation's (float64 needs
      `jax.enable_x64`; with bfloat16 or float16 weights the caches, the
      perturbation and its gradient are float32).
    lm: the model's `LMConfig` (or `GPT2Config`).
    prompt_BxP: token ids in the model's vocabulary, at least one token each:
      a B x P array, or a list of B token lists of different lengths
      (left-padded here, `jaxnn.lm.left_pad`).
    attributes: bags of words and/or discriminators (`Attributes`).
    config: the hyperparameters (`PPLMConfig`, the original's defaults).
    prompt_mask_BxP: with a padded array, True (1) on each prompt's own tokens
      and False (0) on its left padding (`left_pad`'s mask).
    key: a `jax.random` key for sampling (default `jax.random.key(0)`).
    return_probs: also return the B x length x V distributions drawn from.
    diagnostics: also return a `PPLMDiagnostics` (unperturbed distributions,
      each gradient step's losses and gradient norms). Off, the compiled loop
      computes none of it.
    timings: a dict that gets compile_seconds, run_seconds and tokens_per_second
      (generated tokens of all B samples per second of the compiled loop).

  Returns:
    tokens_BxL (int32), then probs_BxLxV when `return_probs`, then the
    `PPLMDiagnostics` when `diagnostics` (a tuple when either is asked).

  References:
    Dathathri et al., Plug and Play Language Models, ICLR 2020, section 3 and
    the released run_pplm.py (whose window mask covers the first positions).
  """
  params = as_params(params)
  lm = lm_config(lm)
  prompt_BxP, pad_B = prepare_prompts(prompt_BxP, prompt_mask_BxP, lm.vocab_size)
  check_attributes(attributes, lm)
  if perturb and attributes.bags is None and not attributes.discriminators:
    raise JaxnnError(
      "nothing to steer toward: give a bag of words and/or a discriminator "
      "(or perturb=False for the unsteered model)"
    )
  needed = max_cache_len(prompt_BxP.shape[1], config, attributes)
  if needed > lm.max_positions:
    raise JaxnnError(
      f"prompt + length + look-ahead needs {needed} positions but the model has "
      f"{lm.max_positions}; generate fewer tokens or shorten the prompt"
    )
  key = jax.random.key(0) if key is None else key
  dtype = steering_dtype(params["wte"].dtype)
  floats = {f: jnp.asarray(getattr(config, f), dtype) for f in _TRACED_FIELDS}
  static = dataclasses.replace(config, **{f: getattr(PPLMConfig, f) for f in _TRACED_FIELDS})
  args = (params, prompt_BxP, pad_B, attributes, key, floats)
  static_args = dict(
    lm=lm, static=static, perturb=perturb, return_probs=return_probs, diagnostics=diagnostics
  )
  if timings is None:
    tokens, probs, diag = _generate(*args, **static_args)
  else:
    start = time.perf_counter()
    compiled = _generate.lower(*args, **static_args).compile()
    compiled_at = time.perf_counter()
    tokens, probs, diag = jax.block_until_ready(compiled(*args))
    run_seconds = time.perf_counter() - compiled_at
    timings.update(
      compile_seconds=compiled_at - start,
      run_seconds=run_seconds,
      tokens_per_second=tokens.size / run_seconds,
    )
  extra = (probs,) * return_probs + (diag,) * diagnostics
  return (tokens, *extra) if extra else tokens

"""An independent PyTorch implementation of PPLM steering, run like the original.

Written from the step-by-step description of the algorithm in
Dathathri et al., "Plug and Play Language Models: a Simple Approach to
Controlled Text Generation", ICLR 2020 (and the behaviour of its released
run_pplm.py), on any transformers causal LM (GPT-2, Llama, ...) with its
key/value cache: the past is a list of (k, v) per layer, B x G x S x K with
G the key/value heads, perturbed as the original perturbs GPT-2's.
It runs the way the original does: batch size 1, the unperturbed
distribution recomputed at every token by a full forward pass over the whole
sequence without a cache, bags of words restricted to single-token words.

The tests compare jaxnn's batched, cached steering loop against it (tokens and
fused probabilities, float64), and benchmarks/pplm_speed.py times it.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

SMALL_CONST = 1e-15


def _forward(model, past, input_ids=None, inputs_embeds=None):
  """One model call; `past` is a list of (k, v) per layer or None."""
  cache = DynamicCache(ddp_cache_data=[(k, v) for k, v in past]) if past else None
  out = model(
    input_ids=input_ids,
    inputs_embeds=inputs_embeds,
    cache=cache,
    use_cache=True,
    output_hidden_states=True,
  )
  new_past = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
  return out.logits, new_past, out.hidden_states[-1]


def _soft_embeddings(model, probs):
  """probs @ token embeddings, scaled as the model scales token embeddings (Gemma: sqrt(D))."""
  embedding = model.get_input_embeddings()
  scale = getattr(embedding, "embed_scale", None)
  embeds = torch.matmul(probs, embedding.weight.detach())
  return embeds if scale is None else embeds * scale.to(embeds.dtype)


def all_float64(model):
  """Makes a float64 Llama-style model compute RoPE's cos/sin and its RMSNorms in float64.

  transformers computes them (and the eager attention's softmax: load the
  model with attn_implementation="sdpa") in float32 whatever the model's
  dtype; for a comparison to ~1e-10 both sides compute in float64 (default
  RoPE: inverse frequencies theta^(-2i/d) over the whole head).
  """
  config = model.config
  head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
  theta = config.rope_parameters["rope_theta"]
  assert config.rope_parameters.get("rope_type", "default") == "default"
  inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
  rotary = model.model.rotary_emb

  def forward(x, position_ids):
    freqs = position_ids.to(torch.float64)[:, :, None] * inv_freq[None, None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(x.dtype), emb.sin().to(x.dtype)

  rotary.forward = forward

  def rms_forward(norm):
    def forward(x):
      variance = x.pow(2).mean(-1, keepdim=True)
      return norm.weight * (x * torch.rsqrt(variance + norm.variance_epsilon))

    return forward

  for module in model.modules():
    if type(module).__name__.endswith("RMSNorm"):
      module.forward = rms_forward(module)
  return model


def _window_mask(past, window_length, decay, recent):
  """Mask over the past positions: ones at the first (or most recent) window."""
  k0 = past[0][0]
  curr_length = k0.shape[-2]
  if not (curr_length > window_length and window_length > 0):
    return torch.ones_like(k0)
  if decay:
    weights = torch.arange(1, window_length + 1, dtype=k0.dtype) / window_length
  else:
    weights = torch.ones(window_length, dtype=k0.dtype)
  zeros = torch.zeros(curr_length - window_length, dtype=k0.dtype)
  per_position = torch.cat((zeros, weights)) if recent else torch.cat((weights, zeros))
  return per_position[:, None].expand(k0.shape).clone()


def perturb_past(
  model,
  past,
  last,
  unpert_past,
  unpert_logits,
  accumulated_hidden,
  grad_norms,
  stepsize,
  bow_ids,
  classifier,
  class_label,
  num_iterations,
  horizon_length,
  window_length,
  decay,
  gamma,
  kl_scale,
  recent_window=False,
):
  """Accumulates a perturbation of the past key/values (one generated token)."""
  accumulator = [(torch.zeros_like(k), torch.zeros_like(v)) for k, v in past]
  mask = _window_mask(past, window_length, decay, recent_window)
  curr_length = past[0][0].shape[-2]
  bow_only = bool(bow_ids) and classifier is None
  for _ in range(num_iterations):
    delta = [
      (dk.clone().requires_grad_(True), dv.clone().requires_grad_(True)) for dk, dv in accumulator
    ]
    perturbed = [(k + dk, v + dv) for (k, v), (dk, dv) in zip(past, delta)]
    logits, _, hidden = _forward(model, perturbed, input_ids=last)
    new_accumulated_hidden = accumulated_hidden + hidden.sum(dim=1).detach()
    probs = torch.softmax(logits[:, -1, :], dim=-1)
    loss = 0.0
    for ids in bow_ids:
      loss = loss - torch.log(probs[:, ids].sum())
    if classifier is not None:
      curr_unpert_past = unpert_past
      curr_probs = probs.unsqueeze(1)
      for _ in range(horizon_length):
        embeds = _soft_embeddings(model, curr_probs)
        _, curr_unpert_past, curr_hidden = _forward(model, curr_unpert_past, inputs_embeds=embeds)
        new_accumulated_hidden = new_accumulated_hidden + curr_hidden.sum(dim=1)
      prediction = classifier(new_accumulated_hidden / (curr_length + 1 + horizon_length))
      label = torch.tensor([class_label] * prediction.shape[0], dtype=torch.long)
      loss = loss + torch.nn.functional.cross_entropy(prediction, label)
    if kl_scale > 0.0:
      unpert_probs = torch.softmax(unpert_logits[:, -1, :], dim=-1)
      unpert_probs = unpert_probs + SMALL_CONST * (unpert_probs <= SMALL_CONST).to(probs.dtype)
      corrected = probs + SMALL_CONST * (probs <= SMALL_CONST).to(probs.dtype).detach()
      loss = loss + kl_scale * (corrected * (corrected / unpert_probs).log()).sum()
    grads = torch.autograd.grad(loss, [t for pair in delta for t in pair])
    grads = [(grads[2 * i] * mask, grads[2 * i + 1] * mask) for i in range(len(delta))]
    norms = [torch.sqrt((gk**2).sum() + (gv**2).sum()) for gk, gv in grads]
    if grad_norms is not None and bow_only:
      grad_norms = [torch.maximum(old, new) for old, new in zip(grad_norms, norms)]
    else:
      grad_norms = [n + SMALL_CONST for n in norms]
    accumulator = [
      (dk - stepsize * gk / grad_norms[i] ** gamma, dv - stepsize * gv / grad_norms[i] ** gamma)
      for i, ((dk, dv), (gk, gv)) in enumerate(zip(accumulator, grads))
    ]
  pert_past = [(k + dk, v + dv) for (k, v), (dk, dv) in zip(past, accumulator)]
  return pert_past, grad_norms


def top_k_filter_probs(probs, k):
  if k == 0:
    return probs
  kth = torch.topk(probs, k, dim=-1).values[:, -1:]
  return torch.where(probs < kth, torch.zeros_like(probs), probs)


def top_k_filter_logits(logits, k):
  if k == 0:
    return logits
  kth = torch.topk(logits, k, dim=-1).values[:, -1:]
  return torch.where(logits < kth, torch.full_like(logits, -1e10), logits)


@torch.no_grad()
def _no_grad_forward(model, *args, **kwargs):
  return _forward(model, *args, **kwargs)


def generate(
  model,
  context,
  *,
  length,
  bow_ids=(),
  classifier=None,
  class_label=None,
  perturb=True,
  stepsize=0.02,
  temperature=1.0,
  top_k=10,
  sample=False,
  num_iterations=3,
  grad_length=10000,
  window_length=0,
  horizon_length=1,
  decay=False,
  gamma=1.5,
  gm_scale=0.9,
  kl_scale=0.01,
  recent_window=False,
  generator=None,
):
  """Generates `length` tokens after `context` (a list of token ids), batch 1.

  Args:
    model: a transformers causal LM (eval mode, any dtype), e.g.
      `GPT2LMHeadModel` or `LlamaForCausalLM`.
    bow_ids: one list of single-token ids per bag of words.
    classifier: a `torch.nn.Linear(hidden, classes)` on mean hidden states.

  Returns:
    (generated token ids, list of the final next-token distributions (1, V)).
  """
  output = torch.tensor([context], dtype=torch.long)
  past, grad_norms, all_probs = None, None, []
  last = output[:, -1:]
  if output.shape[1] > 1:
    _, past, _ = _no_grad_forward(model, None, input_ids=output[:, :-1])
  for i in range(length):
    unpert_logits, unpert_past, unpert_hidden = _no_grad_forward(model, None, input_ids=output)
    current_stepsize = 0.0 if i >= grad_length else stepsize
    if perturb and num_iterations > 0 and past is not None:
      accumulated_hidden = unpert_hidden[:, :-1, :].sum(dim=1)
      pert_past, grad_norms = perturb_past(
        model,
        past,
        last,
        unpert_past,
        unpert_logits,
        accumulated_hidden,
        grad_norms,
        current_stepsize,
        list(bow_ids),
        classifier,
        class_label,
        num_iterations,
        horizon_length,
        window_length,
        decay,
        gamma,
        kl_scale,
        recent_window,
      )
    else:
      pert_past = past
    pert_logits, past, _ = _no_grad_forward(model, pert_past, input_ids=last)
    past = [(k.detach(), v.detach()) for k, v in past]
    pert_logits = pert_logits[:, -1, :] / temperature
    if perturb:
      pert_probs = torch.softmax(pert_logits, dim=-1)
      unpert_probs = torch.softmax(unpert_logits[:, -1, :], dim=-1)
      probs = pert_probs**gm_scale * unpert_probs ** (1 - gm_scale)
      probs = top_k_filter_probs(probs, top_k)
      probs = probs / probs.sum()
    else:
      probs = torch.softmax(top_k_filter_logits(pert_logits, top_k), dim=-1)
    all_probs.append(probs)
    if sample:
      last = torch.multinomial(probs, num_samples=1, generator=generator)
    else:
      last = torch.argmax(probs, dim=-1, keepdim=True)
    output = torch.cat((output, last), dim=1)
  return output[0, len(context) :].tolist(), all_probs

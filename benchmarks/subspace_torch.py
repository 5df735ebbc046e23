"""A PyTorch implementation of subspace training, to compare jaxnn against.

The same method as `jaxnn.subspace` on a fully connected ReLU network: theta_D
= theta_0 + P theta_d with a dense Gaussian P (unit columns) or the Fastfood
transform (unnormalized Walsh-Hadamard by the butterfly, backward = forward
because H is symmetric, the permutation's backward by its inverse), Adam on
theta_d. Written the way a careful PyTorch user would: preallocated P, no
resampling, autograd through `torch.autograd.Function`s.

Used by `benchmarks/subspace_core.py`; not part of the library.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def fwht(x: torch.Tensor) -> torch.Tensor:
  """Unnormalized Walsh-Hadamard transform along the last axis (power-of-2 length)."""
  lead, L = x.shape[:-1], x.shape[-1]
  h = 1
  while h < L:
    x_2h = x.reshape(*lead, L // (2 * h), 2, h)
    a, b = x_2h[..., 0, :], x_2h[..., 1, :]
    x = torch.stack((a + b, a - b), dim=-2).reshape(*lead, L)
    h *= 2
  return x


class _WHT(torch.autograd.Function):
  @staticmethod
  def forward(ctx, x):
    return fwht(x)

  @staticmethod
  def backward(ctx, g):
    return fwht(g)


class _Permute(torch.autograd.Function):
  @staticmethod
  def forward(ctx, x, perm, inv_perm):
    ctx.save_for_backward(inv_perm)
    return x[..., perm]

  @staticmethod
  def backward(ctx, g):
    (inv_perm,) = ctx.saved_tensors
    return g[..., inv_perm], None, None


class DenseProjection(torch.nn.Module):
  """P (D x d), i.i.d. N(0, 1) with unit-length columns, stored as (d, D)."""

  def __init__(self, D: int, d: int, generator: torch.Generator):
    super().__init__()
    P_dxD = torch.randn(d, D, generator=generator)
    self.register_buffer("P_dxD", P_dxD / P_dxD.norm(dim=1, keepdim=True))

  def forward(self, theta_d):
    return theta_d @ self.P_dxD


class FastfoodProjection(torch.nn.Module):
  """(H G Pi H B x)[:D] / (sqrt(L sum G^2) sqrt(D / L)), one block (d <= L)."""

  def __init__(self, D: int, d: int, generator: torch.Generator):
    super().__init__()
    L = 1 << (D - 1).bit_length()
    if d > L:
      raise ValueError(f"this reference supports one block (d <= {L}), got d={d}")
    self.D, self.L = D, L
    self.register_buffer("B", torch.randint(0, 2, (L,), generator=generator).float() * 2 - 1)
    perm = torch.randperm(L, generator=generator)
    self.register_buffer("perm", perm)
    self.register_buffer("inv_perm", torch.argsort(perm))
    G = torch.randn(L, generator=generator)
    self.register_buffer("G", G)
    self.scale = 1.0 / (math.sqrt(L * float(G.square().sum())) * math.sqrt(D / L))

  def forward(self, theta_d):
    x = F.pad(theta_d, (0, self.L - theta_d.shape[0]))
    v = _WHT.apply(self.B * x)
    v = _WHT.apply(self.G * _Permute.apply(v, self.perm, self.inv_perm))
    return v[: self.D] * self.scale


class SubspaceFC(torch.nn.Module):
  """A ReLU FC network trained in a random subspace of its D parameters.

  theta_0 comes from the `torch.nn.Linear` default initialization; only
  `theta_d` (zeros, d) is a parameter.
  """

  def __init__(self, sizes, d: int, projection: str, seed: int = 0):
    super().__init__()
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    layers = [torch.nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
    self.shapes = [t.shape for layer in layers for t in (layer.weight, layer.bias)]
    self.register_buffer(
      "theta0",
      torch.cat([t.detach().reshape(-1) for layer in layers for t in (layer.weight, layer.bias)]),
    )
    D = self.theta0.numel()
    self.projection = (DenseProjection if projection == "dense" else FastfoodProjection)(
      D, d, generator
    )
    self.theta_d = torch.nn.Parameter(torch.zeros(d))

  def full_params(self):
    theta_D = self.theta0 + self.projection(self.theta_d)
    return torch.split(theta_D, [math.prod(s) for s in self.shapes])

  def forward(self, x):
    """(logits, sum of squares of the full weight matrices), from one theta_D."""
    flat = self.full_params()
    weights = [w.view(s) for w, s in zip(flat[0::2], self.shapes[0::2])]
    h = x.reshape(x.shape[0], -1)
    for i, (w, b) in enumerate(zip(weights, flat[1::2])):
      h = F.linear(h, w, b)
      if i < len(weights) - 1:
        h = F.relu(h)
    return h, sum(w.square().sum() for w in weights)


class DirectFC(torch.nn.Module):
  """The same network trained directly."""

  def __init__(self, sizes, seed: int = 0):
    super().__init__()
    torch.manual_seed(seed)
    self.layers = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

  def forward(self, x):
    """(logits, sum of squares of the weight matrices)."""
    h = x.reshape(x.shape[0], -1)
    for i, layer in enumerate(self.layers):
      h = layer(h)
      if i < len(self.layers) - 1:
        h = F.relu(h)
    return h, sum(layer.weight.square().sum() for layer in self.layers)


def make_torch_step(model: torch.nn.Module, learning_rate: float = 1e-3, weight_decay: float = 0.0):
  """`step(x, y) -> loss`: one Adam step (beta2 0.99) on cross-entropy + L2 of the weights."""
  optimizer = torch.optim.Adam([p for p in model.parameters()], lr=learning_rate, betas=(0.9, 0.99))

  def step(x, y):
    optimizer.zero_grad(set_to_none=True)
    logits, l2 = model(x)
    loss = (
      F.cross_entropy(logits, y) + weight_decay * l2 if weight_decay else F.cross_entropy(logits, y)
    )
    loss.backward()
    optimizer.step()
    return loss

  return step

"""optax optimizers by name, with the papers' defaults."""

from __future__ import annotations

import optax

from jaxnn._errors import JaxnnError

#: Optimizer names `make_optimizer` accepts.
OPTIMIZERS = ("adam", "sgd", "momentum")


def make_optimizer(
  name: str, learning_rate: float, *, momentum: float = 0.9, b1: float = 0.9, b2: float = 0.99
) -> optax.GradientTransformation:
  """An optax optimizer by name.

  Args:
    name: "adam" (beta2 0.99 as in the intrinsic-dimension and CoordConv code),
      "momentum" (SGD with `momentum`, 0.9 as in the LCA paper) or "sgd"
      (plain, no momentum).
    learning_rate: step size.
    momentum: SGD momentum for "momentum".
    b1, b2: Adam's decay rates.
  """
  if not learning_rate > 0:
    raise JaxnnError(f"learning rate must be positive, got {learning_rate}")
  if name == "adam":
    if not (0 <= b1 < 1 and 0 <= b2 < 1):
      raise JaxnnError(f"Adam betas must be in [0, 1), got b1={b1}, b2={b2}")
    return optax.adam(learning_rate, b1=b1, b2=b2)
  if name == "momentum":
    if not 0 <= momentum < 1:
      raise JaxnnError(f"momentum must be in [0, 1), got {momentum}")
    return optax.sgd(learning_rate, momentum=momentum)
  if name == "sgd":
    return optax.sgd(learning_rate)
  raise JaxnnError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")

"""The papers' networks: exact parameter counts, shapes, train/eval modes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxnn import JaxnnError
from jaxnn.models import count_params, create_model, init_model


def fc_count(sizes):
  return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


@pytest.mark.parametrize(
  "name, shape, widths, expected",
  [
    ("fc", (28, 28, 1), (200, 200), 199_210),
    ("fc", (28, 28, 1), (100, 50), 84_060),
    ("fc", (32, 32, 3), (200, 200), 656_810),
    ("lenet", (28, 28, 1), None, 44_426),
    ("lenet", (32, 32, 3), None, 62_006),
    ("lca_lenet", (28, 28, 1), None, 808_970),
  ],
)
def test_paper_parameter_counts(name, shape, widths, expected):
  kwargs = {"widths": widths} if widths else {}
  model = create_model(name, shape, 10, **kwargs)
  assert count_params(nnx.state(model, nnx.Param)) == expected
  if name == "fc":
    assert expected == fc_count([int(np.prod(shape)), *widths, 10])


def test_fc_family_range():
  # Li et al.'s FC family: widths {50..400} x depths {1..5}: 39,760 .. 959,610.
  counts = [
    count_params(nnx.state(create_model("fc", (28, 28, 1), 10, widths=(w,) * depth), nnx.Param))
    for w in (50, 400)
    for depth in (1, 5)
  ]
  assert min(counts) == 39_760 and max(counts) == 959_610


def test_resnet20_count_matches_architecture_formula():
  conv = lambda k, a, b: k * k * a * b
  bn = lambda c: 2 * c
  total = conv(3, 3, 16) + bn(16)
  c_in = 16
  for c in (16, 32, 64):
    for _ in range(3):
      total += conv(3, c_in, c) + bn(c) + conv(3, c, c) + bn(c)
      if c_in != c:
        total += conv(1, c_in, c) + bn(c)
      c_in = c
  total += 64 * 10 + 10
  model = create_model("resnet20", (32, 32, 3), 10)
  assert count_params(nnx.state(model, nnx.Param)) == total == 272_474


@pytest.mark.parametrize(
  "name, shape",
  [("fc", (8, 8, 1)), ("lenet", (16, 16, 1)), ("lca_lenet", (16, 16, 1)), ("resnet20", (8, 8, 3))],
)
def test_compiled_initialization_equals_eager_create_model(name, shape):
  compiled = init_model(name, shape, 10, seed=3, widths=(12,))
  eager = create_model(name, shape, 10, seed=3, widths=(12,))
  assert nnx.graphdef(compiled) == nnx.graphdef(eager)
  jax.tree.map(
    np.testing.assert_array_equal,
    nnx.state(compiled).to_pure_dict(),
    nnx.state(eager).to_pure_dict(),
  )


def test_forward_shapes_and_modes():
  x = jnp.ones((4, 28, 28, 1))
  for name in ("fc", "lenet", "lca_lenet"):
    assert create_model(name, (28, 28, 1), 10)(x).shape == (4, 10)
  lca = create_model("lca_lenet", (28, 28, 1), 10)
  np.testing.assert_array_equal(lca(x), lca(x))  # eval mode: dropout off
  a = lca(x, train=True, rngs=nnx.Rngs(dropout=0))
  b = lca(x, train=True, rngs=nnx.Rngs(dropout=1))
  assert not np.allclose(a, b)
  resnet = create_model("resnet20", (32, 32, 3), 10)
  xr = jax.random.normal(jax.random.key(0), (4, 32, 32, 3))
  stats = lambda: [np.array(v) for v in jax.tree.leaves(nnx.state(resnet, nnx.BatchStat))]
  before = stats()
  out_eval = resnet(xr)
  assert all(np.array_equal(u, v) for u, v in zip(before, stats()))  # eval: statistics kept
  resnet(xr, train=True)
  assert not all(np.allclose(u, v) for u, v in zip(before, stats()))
  assert not np.allclose(out_eval, resnet(xr))


def test_bad_model_inputs():
  with pytest.raises(JaxnnError, match="unknown model"):
    create_model("vgg", (28, 28, 1), 10)
  with pytest.raises(JaxnnError, match="fc model"):
    create_model("lenet", (8, 8, 1), 10)
  with pytest.raises(JaxnnError, match="positive"):
    create_model("fc", (28, 28, 1), 10, widths=(0,))
  with pytest.raises(JaxnnError, match="initializer"):
    create_model("fc", (28, 28, 1), 10, init="zeros")

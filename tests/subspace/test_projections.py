"""Exact checks of the projections: WHT vs scipy, unit columns, P^T g, nesting."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from jaxnn import JaxnnError
from jaxnn._native import NativeLibrary
from jaxnn.subspace import (
  PROJECTIONS,
  _fastfood_kernel,
  _projections,
  dense_projection,
  fastfood_projection,
  get_projection,
  walsh_hadamard,
)

# The two implementations of the transforms: the C++ CPU kernel (what runs on
# CPU by default) and XLA ops (what runs elsewhere). Both are held to the same
# exact checks. `walsh_hadamard` itself runs the kernel on CPU.
WHTS = {"native": walsh_hadamard, "xla": _projections._wht_xla}


def materialize(projection, state, d):
  """P (D x d), column j = apply(state, e_j)."""
  columns = jax.jit(jax.vmap(projection.apply, in_axes=(None, 0)))(state, jnp.eye(d))
  return np.asarray(columns).T


def init(projection, key, D, d):
  return jax.jit(projection.init, static_argnums=(1, 2))(key, D, d)


def test_walsh_hadamard_paper_example():
  x = jnp.array([1, 0, 1, 0, 0, 1, 1, 0], jnp.float32)
  np.testing.assert_array_equal(walsh_hadamard(x), [4, 2, 0, -2, 0, 2, 0, 2])


def test_the_cpu_kernel_builds():
  assert _fastfood_kernel.available(), _fastfood_kernel.error()


def test_an_edited_kernel_source_is_rebuilt(monkeypatch, tmp_path):
  """The cache key covers the source and the flags: an edit never loads a stale library."""
  monkeypatch.setenv("JAXNN_CACHE_DIR", str(tmp_path))
  library = _fastfood_kernel._LIBRARY
  path = library.library_path("c++")
  assert path.startswith(str(tmp_path))
  assert path == library.library_path("c++")
  assert path != library.library_path("clang++")
  edited = NativeLibrary(library.name, library.source + "\n// edited\n", library.targets)
  assert path != edited.library_path("c++")
  reflagged = NativeLibrary(library.name, library.source, library.targets, library.flags + ("-O2",))
  assert path != reflagged.library_path("c++")


def test_a_kernel_that_does_not_compile_says_why(monkeypatch, tmp_path):
  monkeypatch.setenv("JAXNN_CACHE_DIR", str(tmp_path))
  broken = NativeLibrary("broken", "this is not C++", {"jaxnn_broken": "Broken"})
  assert not broken.available()
  assert "compiling the broken CPU kernel" in broken.error()


@pytest.mark.parametrize("kernel", WHTS)
@pytest.mark.parametrize("L", [1, 2, 4, 8, 32, 256, 4096, 16384, 65536])
def test_walsh_hadamard_equals_scipy(kernel, L):
  # 16384 and 65536 span 2 and 8 of the kernel's 8192-entry cache blocks.
  x_3xL = np.random.default_rng(L).normal(size=(3, L)).astype(np.float32)
  # H_{mn} = H_m kron H_n (Sylvester), so H_L x = vec(H_m X H_n^T) for x = vec(X).
  m = 1 if L <= 256 else 128
  H_m, H_n = scipy.linalg.hadamard(m), scipy.linalg.hadamard(L // m)
  X_3xmxn = x_3xL.astype(np.float64).reshape(3, m, L // m)
  expected = (H_m @ X_3xmxn @ H_n.T).reshape(3, L)
  np.testing.assert_allclose(
    jax.jit(WHTS[kernel])(x_3xL), expected, rtol=1e-5, atol=1e-5 * np.sqrt(L)
  )


@pytest.mark.parametrize("kernel", WHTS)
def test_walsh_hadamard_backward_is_forward(kernel):
  x = np.random.default_rng(0).normal(size=64).astype(np.float32)
  g = np.random.default_rng(1).normal(size=64).astype(np.float32)
  _, vjp = jax.jit(lambda x: jax.vjp(WHTS[kernel], x))(jnp.asarray(x))
  np.testing.assert_allclose(
    vjp(jnp.asarray(g))[0], scipy.linalg.hadamard(64).T @ g, rtol=1e-5, atol=1e-4
  )


# The kernel's paths by L (its blocks hold 8,192 entries): L = 128 (one
# block), 2^14 (one radix-2 pass above the blocks; d = 20,000 makes two
# Fastfood blocks of K = L, the second accumulated), 2^15 (one radix-4 pass)
# and 2^18 (radix 4, 4, 2: the benchmark's MNIST FC). D is never a multiple
# of 8,192, so a block straddles D.
@pytest.mark.parametrize("D,d", [(100, 20), (100, 300), (9000, 20000), (20000, 700), (199210, 750)])
def test_fastfood_kernels_agree_forward_backward_and_vmapped(D, d):
  """The CPU kernel and the XLA ops give the same P theta and P^T g, also vmapped over configs."""
  native, xla = fastfood_projection("native"), fastfood_projection("xla")
  keys = jax.random.split(jax.random.PRNGKey(7), 3)
  states = jax.jit(jax.vmap(lambda k: native.init(k, D, d)))(keys)
  rng = np.random.default_rng(D)
  theta_3xd = jnp.asarray(rng.normal(size=(3, d)), jnp.float32)
  g_3xD = jnp.asarray(rng.normal(size=(3, D)), jnp.float32)

  def offset_and_grad(projection):
    def one(state, theta, g):
      offset, vjp = jax.vjp(lambda t: projection.apply(state, t), theta)
      return offset, vjp(g)[0]

    return jax.jit(jax.vmap(one))(states, theta_3xd, g_3xD)

  for got, expected in zip(offset_and_grad(native), offset_and_grad(xla)):
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
  one_state = jax.tree.map(lambda x: x[1], states)
  np.testing.assert_allclose(
    jax.jit(native.apply)(one_state, theta_3xd[1]), offset_and_grad(xla)[0][1], rtol=1e-4, atol=1e-5
  )


def test_walsh_hadamard_rejects_non_power_of_two():
  with pytest.raises(JaxnnError, match="power-of-2"):
    walsh_hadamard(jnp.ones(6))


@pytest.mark.parametrize(
  "name,D,d",
  [(name, 1000, 40) for name in PROJECTIONS] + [("dense", 300, 700), ("fastfood", 300, 700)],
)
def test_columns_have_unit_length(name, D, d):
  projection = get_projection(name)
  P = materialize(projection, init(projection, jax.random.PRNGKey(0), D, d), d)
  assert P.shape == (D, d)
  norms2 = np.sum(P**2, axis=0)
  assert abs(norms2.mean() - 1) < 0.02
  if name != "fastfood":
    np.testing.assert_allclose(norms2, 1, rtol=1e-5)


@pytest.mark.parametrize("name", PROJECTIONS)
def test_gradient_is_P_transpose_g(name):
  D, d = 300, 50
  projection = get_projection(name)
  state = init(projection, jax.random.PRNGKey(1), D, d)
  P = materialize(projection, state, d)
  theta = jnp.asarray(np.random.default_rng(0).normal(size=d), jnp.float32)
  g = jnp.asarray(np.random.default_rng(1).normal(size=D), jnp.float32)
  offset, vjp = jax.jit(lambda s, t: jax.vjp(lambda t: projection.apply(s, t), t))(state, theta)
  np.testing.assert_allclose(vjp(g)[0], P.T @ np.asarray(g), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(offset, P @ np.asarray(theta), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", PROJECTIONS)
def test_projections_are_nested(name):
  projection = get_projection(name)
  D, k, d = 200, 37, 600  # Fastfood: L = 256, so d spans 3 blocks and k one.
  key = jax.random.PRNGKey(3)
  small, large = init(projection, key, D, k), init(projection, key, D, d)
  theta_k = np.random.default_rng(0).normal(size=k).astype(np.float32)
  theta_d = np.zeros(d, np.float32)
  theta_d[:k] = theta_k
  apply = jax.jit(projection.apply)
  np.testing.assert_allclose(apply(large, theta_d), apply(small, theta_k), rtol=1e-5, atol=1e-6)


def test_fastfood_kernel_inside_shard_map_over_devices():
  """Configs sharded over 2 devices (as the sweep does): the kernel's P^T g equals XLA's, for
  `apply` and for `apply_leaves` (gradients w.r.t. theta and the base)."""
  mesh = jax.make_mesh((2,), ("data",))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  shapes = ((10, 100), (), (209,))
  grads = {}
  for kernel in ("native", "xla"):
    projection = fastfood_projection(kernel)
    states = jax.vmap(lambda k: projection.init(k, 1210, 50))(
      jax.random.split(jax.random.PRNGKey(0), 4)
    )
    theta_4xd = jnp.asarray(np.random.default_rng(0).normal(size=(4, 50)), jnp.float32)
    base_4xD = jnp.asarray(np.random.default_rng(1).normal(size=(4, 1210)), jnp.float32)

    def grad(states, theta_4xd, base_4xD):
      loss = lambda s, t: jnp.sum(jnp.square(projection.apply(s, t)))
      leaves_loss = lambda s, t, b: sum(
        jnp.sum(jnp.square(l)) for l in projection.apply_leaves(s, t, b, shapes)
      )
      return (
        jax.vmap(jax.grad(loss, argnums=1))(states, theta_4xd),
        jax.vmap(jax.grad(leaves_loss, argnums=(1, 2)))(states, theta_4xd, base_4xD),
      )

    spec = jax.sharding.PartitionSpec("data")
    grads[kernel] = jax.jit(jax.shard_map(grad, mesh=mesh, in_specs=(spec,) * 3, out_specs=spec))(
      *jax.device_put((states, theta_4xd, base_4xD), sharding)
    )
  chex.assert_trees_all_close(grads["native"], grads["xla"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kernel", ["native", "xla"])
@pytest.mark.parametrize("D,d", [(100, 20), (100, 128), (100, 300)])
def test_fastfood_equals_the_reference_formula(D, d, kernel):
  """P = sum over blocks of (H G Pi H B)[:D, block columns] / (sqrt(L sum G^2) sqrt(D / L))."""
  projection = fastfood_projection(kernel)
  state = init(projection, jax.random.PRNGKey(5), D, d)
  n, L = state.B.shape
  H = scipy.linalg.hadamard(L).astype(np.float64)
  blocks = []
  for b in range(n):
    Pi = np.eye(L)[np.asarray(state.perm[b])]  # (Pi v)_i = v[perm_i]
    M = H @ np.diag(state.G[b]) @ Pi @ H @ np.diag(state.B[b])
    G2 = np.sum(np.square(np.asarray(state.G[b], np.float64)))
    blocks.append(M[:D] / (np.sqrt(L * G2) * np.sqrt(D / L)))
  expected = np.concatenate(blocks, axis=1)[:, :d]
  np.testing.assert_allclose(materialize(projection, state, d), expected, rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(
    np.asarray(state.perm)[np.arange(n)[:, None], state.inv_perm],
    np.broadcast_to(np.arange(L), (n, L)),
  )


def test_fastfood_blocks_are_independent_and_never_truncated():
  projection = fastfood_projection()
  D, d = 100, 300  # L = 128: 3 blocks, the last one partly used.
  state = init(projection, jax.random.PRNGKey(0), D, d)
  assert state.B.shape == (3, 128)
  P = materialize(projection, state, d)
  # Every coordinate of theta_d moves theta_D (nothing silently dropped) ...
  assert np.all(np.linalg.norm(P, axis=0) > 0.5)
  # ... and the blocks are different draws: P has full row rank D.
  assert np.linalg.matrix_rank(P) == D
  assert not np.allclose(P[:, :128], P[:, 128:256])
  # Columns within one block are orthogonal in R^L, so on R^D nearly so.
  gram = P[:, :128].T @ P[:, :128]
  assert np.abs(gram - np.diag(np.diag(gram))).max() < 0.5


@pytest.mark.parametrize("name", PROJECTIONS)
def test_deterministic_by_seed_and_vmappable(name):
  projection = get_projection(name)
  keys = jax.random.split(jax.random.PRNGKey(0), 2)
  first, second = init(projection, keys[0], 150, 20), init(projection, keys[1], 150, 20)
  chex.assert_trees_all_equal(init(projection, keys[0], 150, 20), first)
  batched = jax.jit(jax.vmap(lambda k: projection.init(k, 150, 20)))(keys)
  chex.assert_trees_all_close(jax.tree.map(lambda x: x[1], batched), second)
  apply = jax.jit(projection.apply)
  assert not np.allclose(apply(first, jnp.ones(20)), apply(second, jnp.ones(20)))


def test_orthonormal_dense_projection():
  projection = dense_projection(orthonormal=True)
  P = materialize(projection, init(projection, jax.random.PRNGKey(0), 64, 64), 64)
  np.testing.assert_allclose(P.T @ P, np.eye(64), atol=1e-5)
  with pytest.raises(JaxnnError, match="d <= D"):
    projection.init(jax.random.PRNGKey(0), 10, 11)


def test_clear_errors():
  with pytest.raises(JaxnnError, match="unknown projection 'fast'"):
    get_projection("fast")
  with pytest.raises(JaxnnError, match="choose auto, native or xla"):
    fastfood_projection("cuda")
  for name in PROJECTIONS:
    with pytest.raises(JaxnnError, match="d must be >= 1"):
      get_projection(name).init(jax.random.PRNGKey(0), 100, 0)
    with pytest.raises(JaxnnError, match="D >= 1"):
      get_projection(name).init(jax.random.PRNGKey(0), 0, 5)


def leaf_shapes(D):
  """Leaves of D entries in all: a scalar, an empty leaf, a 3-d one, a vector, the rest 2-d."""
  rest = D - 1 - 3 * 5 * 2 - 7
  return ((), (0, 4), (3, 5, 2), (7,), (rest // 3, 3), (rest % 3,))


# apply_leaves over the kernel's paths by L (as above): leaf boundaries fall
# inside blocks and inside the passes' streams.
@pytest.mark.parametrize("D,d", [(100, 20), (9000, 20000), (20000, 700), (199210, 750)])
def test_fastfood_apply_leaves_equals_base_plus_apply(D, d):
  """The fused kernel: theta_0 + P theta cut into leaves, P^T of the leaves' cotangents and the
  theta_0 cotangent (their concatenation) equal the flat path, also vmapped over configs."""
  projection = fastfood_projection("native")
  shapes = leaf_shapes(D)
  states = jax.jit(jax.vmap(lambda k: projection.init(k, D, d)))(
    jax.random.split(jax.random.PRNGKey(2), 3)
  )
  rng = np.random.default_rng(D)
  theta_3xd, base_3xD, g_3xD = (
    jnp.asarray(rng.normal(size=(3, n)), jnp.float32) for n in (d, D, D)
  )

  def run(fused):
    def one(state, theta, base, g):
      if fused:
        f = lambda t, b: projection.apply_leaves(state, t, b, shapes)
      else:
        f = lambda t, b: _projections._split(b + projection.apply(state, t), shapes)
      leaves, vjp = jax.vjp(f, theta, base)
      return leaves, vjp(_projections._split(g, shapes))

    return jax.jit(jax.vmap(one))(states, theta_3xd, base_3xD, g_3xD)

  (leaves, (d_theta, d_base)), (leaves_flat, (d_theta_flat, d_base_flat)) = run(True), run(False)
  assert [l.shape[1:] for l in leaves] == list(shapes)
  for got, expected in zip(leaves, leaves_flat):
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(d_theta, d_theta_flat, rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(d_base, g_3xD)
  np.testing.assert_array_equal(d_base_flat, g_3xD)
  one = jax.tree.map(lambda x: x[0], states)
  unbatched = jax.jit(lambda s, t, b: projection.apply_leaves(s, t, b, shapes))(
    one, theta_3xd[0], base_3xD[0]
  )
  for got, expected in zip(unbatched, leaves_flat):
    np.testing.assert_allclose(got, expected[0], rtol=1e-5, atol=1e-6)


def test_fastfood_apply_leaves_checks_the_shapes():
  projection = fastfood_projection()
  state = init(projection, jax.random.PRNGKey(0), 100, 20)
  with pytest.raises(JaxnnError, match="do not hold"):
    projection.apply_leaves(state, jnp.zeros(20), jnp.zeros(100), ((10, 9),))

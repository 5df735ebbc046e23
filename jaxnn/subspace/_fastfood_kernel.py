"""A CPU kernel for the Walsh-Hadamard and Fastfood transforms (XLA FFI).

XLA compiles the transform of `_projections` into one fused pass over memory
per radix-4 butterfly stage plus a matmul for the lowest bits (about 1 ms for
L = 2^18 on one core), and the Fastfood permutation into gathers over all L
entries. This kernel does in one call what the projection needs:

- `wht`: the unnormalized Walsh-Hadamard transform, cache-blocked: the three
  lowest levels in registers, the levels inside 32 KB blocks while the block
  sits in L1, the remaining levels by radix-4 passes over the whole vector.
- `fastfood_fwd`: `sum_b scale_b (H G_b Pi_b tile(H_K (B_b x_b)))[:D]` per
  block b, the permutation read as a gather from the K-entry vector.
- `fastfood_bwd`: its transpose, the permutation as a scatter-add into K
  entries (so no inverse permutation is read; K = L with several blocks).

The source is compiled on first use with the system C++ compiler (`$CXX`,
else `c++`) against the XLA FFI headers that ship with jaxlib, and cached in
`$JAXNN_CACHE_DIR` (default `~/.cache/jaxnn`) under a hash of the source,
flags and jaxlib version. It is plain C++17; on x86-64 with GCC the hot loops
are compiled for AVX2 and for baseline x86-64, picked at run time, so the
cached library is portable across machines of the same OS. Every entry point
handles leading batch axes (`vmap_method="broadcast_all"`).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading

import jax
import jax.numpy as jnp

from jaxnn._errors import JaxnnError

_SOURCE = r"""
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define JAXNN_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define JAXNN_CLONES
#endif
// Helpers are inlined into each clone, so they are compiled for its target.
#define JAXNN_INLINE inline __attribute__((always_inline))

namespace {

// One radix-4 pass (levels h and 2h) over x[0, n); a fixed h lets the
// compiler unroll and vectorize the inner loop.
template <int64_t H>
JAXNN_INLINE void Radix4(float* x, int64_t n, int64_t dynamic_h = 0) {
  const int64_t h = H ? H : dynamic_h;
  for (int64_t i = 0; i < n; i += 4 * h) {
    float* __restrict a = x + i;
    float* __restrict b = a + h;
    float* __restrict c = b + h;
    float* __restrict d = c + h;
    for (int64_t j = 0; j < h; ++j) {
      const float p = a[j] + b[j], q = a[j] - b[j], u = c[j] + d[j], v = c[j] - d[j];
      a[j] = p + u;
      b[j] = q + v;
      c[j] = p - u;
      d[j] = q - v;
    }
  }
}

JAXNN_INLINE void Radix2(float* x, int64_t n, int64_t h) {
  for (int64_t i = 0; i < n; i += 2 * h) {
    float* __restrict a = x + i;
    float* __restrict b = a + h;
    for (int64_t j = 0; j < h; ++j) {
      const float p = a[j] + b[j], q = a[j] - b[j];
      a[j] = p;
      b[j] = q;
    }
  }
}

// Butterflies of levels [h, end) on x[0, n): radix 4 while two levels fit.
JAXNN_INLINE void Levels(float* x, int64_t n, int64_t h, int64_t end) {
  while (h < end) {
    if (4 * h > end) {
      Radix2(x, n, h);
      h *= 2;
      continue;
    }
    switch (h) {
      case 8: Radix4<8>(x, n); break;
      case 32: Radix4<32>(x, n); break;
      case 128: Radix4<128>(x, n); break;
      case 512: Radix4<512>(x, n); break;
      case 2048: Radix4<2048>(x, n); break;
      default: Radix4<0>(x, n, h);
    }
    h *= 4;
  }
}

typedef float Float8 __attribute__((vector_size(32)));
typedef int32_t Int8 __attribute__((vector_size(32)));

// Levels 1, 2 and 4 inside each run of 8 entries: per level, a lane shuffle
// and a signed add.
JAXNN_INLINE void Lowest3(float* x, int64_t n) {
  const Int8 m1 = {1, 0, 3, 2, 5, 4, 7, 6}, m2 = {2, 3, 0, 1, 6, 7, 4, 5};
  const Int8 m4 = {4, 5, 6, 7, 0, 1, 2, 3};
  const Float8 s1 = {1, -1, 1, -1, 1, -1, 1, -1}, s2 = {1, 1, -1, -1, 1, 1, -1, -1};
  const Float8 s4 = {1, 1, 1, 1, -1, -1, -1, -1};
  for (int64_t i = 0; i < n; i += 8) {
    Float8 v;
    std::memcpy(&v, x + i, sizeof(v));
    v = __builtin_shuffle(v, m1) + v * s1;
    v = __builtin_shuffle(v, m2) + v * s2;
    v = __builtin_shuffle(v, m4) + v * s4;
    std::memcpy(x + i, &v, sizeof(v));
  }
}

// The levels below kBlock of x[0, n), n <= kBlock: the whole block stays in
// L1 (32 KB).
constexpr int64_t kBlock = 8192;

JAXNN_INLINE void BlockLevels(float* x, int64_t n) {
  int64_t h = 1;
  if (n >= 8) {
    Lowest3(x, n);
    h = 8;
  }
  Levels(x, n, h, n);
}

// In place: x <- H_n x, n a power of 2 (Sylvester order, unnormalized): the
// levels below kBlock block by block, then the others over the whole vector.
JAXNN_CLONES void Wht(float* x, int64_t n) {
  const int64_t block = std::min(n, kBlock);
  for (int64_t s = 0; s < n; s += block) BlockLevels(x + s, block);
  Levels(x, n, block, n);
}

// y[i] = g[i] h[perm[i] & mask]. Baseline code on purpose: AVX2's vgatherdps
// is slower than scalar loads from the L1-resident h on some CPUs (AMD EPYC).
void GatherScale(const float* h, const float* g, const int32_t* perm, int64_t mask, int64_t n,
                 float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = g[i] * h[perm[i] & mask];
}

// tmp[c K + (perm[i] & mask)] += g[i] w[i] with c = i mod 4 (n a multiple of
// 4): 4 interleaved copies of the K sums, so that consecutive adds do not
// wait on each other.
void ScatterScale(const float* w, const float* g, const int32_t* perm, int64_t mask, int64_t n,
                  float* tmp) {
  const int64_t K = mask + 1;
  for (int64_t i = 0; i < n; i += 4) {
    tmp[perm[i] & mask] += g[i] * w[i];
    tmp[K + (perm[i + 1] & mask)] += g[i + 1] * w[i + 1];
    tmp[2 * K + (perm[i + 2] & mask)] += g[i + 2] * w[i + 2];
    tmp[3 * K + (perm[i + 3] & mask)] += g[i + 3] * w[i + 3];
  }
}

// y <- H_L (g * h[perm & mask]), the gather done block by block just before
// the block's levels, so y is written once before the global levels.
JAXNN_CLONES void GatherWht(const float* h, const float* g, const int32_t* perm, int64_t mask,
                            int64_t L, float* y) {
  const int64_t block = std::min(L, kBlock);
  for (int64_t s = 0; s < L; s += block) {
    GatherScale(h, g + s, perm + s, mask, block, y + s);
    BlockLevels(y + s, block);
  }
  Levels(y, L, block, L);
}

// u <- tile^T Pi^T (g * H_L w) (K = mask + 1 entries; w is overwritten).
JAXNN_CLONES void WhtScatter(float* w, const float* g, const int32_t* perm, int64_t mask, int64_t L,
                             float* tmp, float* u) {
  const int64_t K = mask + 1;
  Wht(w, L);
  std::fill(tmp, tmp + 4 * K, 0.0f);
  const int64_t head = L & ~int64_t{3};
  ScatterScale(w, g, perm, mask, head, tmp);
  for (int64_t i = head; i < L; ++i) tmp[perm[i] & mask] += g[i] * w[i];
  for (int64_t k = 0; k < K; ++k) u[k] = (tmp[k] + tmp[K + k]) + (tmp[2 * K + k] + tmp[3 * K + k]);
}

// Per-thread scratch, kept between calls: a fresh 1 MB vector per call would
// be a fresh mmap, page-faulted in on every step.
float* Scratch(size_t index, int64_t size) {
  thread_local std::vector<float> buffers[2];
  if (buffers[index].size() < static_cast<size_t>(size)) buffers[index].resize(size);
  return buffers[index].data();
}

int64_t Rows(ffi::Span<const int64_t> dims, size_t trailing) {
  int64_t rows = 1;
  for (size_t i = 0; i + trailing < dims.size(); ++i) rows *= dims[i];
  return rows;
}

ffi::Error WhtImpl(ffi::Buffer<ffi::F32> x, ffi::ResultBuffer<ffi::F32> out) {
  const auto dims = x.dimensions();
  if (dims.size() == 0) return ffi::Error::InvalidArgument("wht: needs at least one axis");
  const int64_t n = dims.back();
  if (n < 1 || (n & (n - 1))) return ffi::Error::InvalidArgument("wht: length not a power of 2");
  const int64_t rows = Rows(dims, 1);
  float* o = out->typed_data();
  std::memcpy(o, x.typed_data(), sizeof(float) * rows * n);
  for (int64_t r = 0; r < rows; ++r) Wht(o + r * n, n);
  return ffi::Error::Success();
}

// x: (..., nb, K), B/G/perm: (..., nb, L), scale: (..., nb), out: (..., D).
ffi::Error FwdImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> B, ffi::Buffer<ffi::F32> G,
                   ffi::Buffer<ffi::S32> perm, ffi::Buffer<ffi::F32> scale,
                   ffi::ResultBuffer<ffi::F32> out) {
  const auto xd = x.dimensions(), bd = B.dimensions();
  if (xd.size() < 2 || bd.size() != xd.size())
    return ffi::Error::InvalidArgument("fastfood_fwd: bad ranks");
  const int64_t nb = xd[xd.size() - 2], K = xd.back(), L = bd.back();
  const int64_t D = out->dimensions().back(), rows = Rows(xd, 2);
  if ((K & (K - 1)) || (L & (L - 1)) || K > L || D > L || (nb > 1 && K != L))
    return ffi::Error::InvalidArgument("fastfood_fwd: bad sizes");
  float* h = Scratch(0, K);
  float* y = Scratch(1, L);
  for (int64_t r = 0; r < rows; ++r) {
    float* o = out->typed_data() + r * D;
    std::fill(o, o + D, 0.0f);
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t blk = r * nb + b;
      const float* xb = x.typed_data() + blk * K;
      const float* Bb = B.typed_data() + blk * L;
      for (int64_t k = 0; k < K; ++k) h[k] = Bb[k] * xb[k];
      Wht(h, K);
      GatherWht(h, G.typed_data() + blk * L, perm.typed_data() + blk * L, K - 1, L, y);
      const float s = scale.typed_data()[blk];
      for (int64_t i = 0; i < D; ++i) o[i] += s * y[i];
    }
  }
  return ffi::Error::Success();
}

// g: (..., D), B/G/perm: (..., nb, L), scale: (..., nb), out: (..., nb, K).
ffi::Error BwdImpl(ffi::Buffer<ffi::F32> g, ffi::Buffer<ffi::F32> B, ffi::Buffer<ffi::F32> G,
                   ffi::Buffer<ffi::S32> perm, ffi::Buffer<ffi::F32> scale,
                   ffi::ResultBuffer<ffi::F32> out) {
  const auto od = out->dimensions(), bd = B.dimensions();
  if (od.size() < 2 || bd.size() != od.size())
    return ffi::Error::InvalidArgument("fastfood_bwd: bad ranks");
  const int64_t nb = od[od.size() - 2], K = od.back(), L = bd.back();
  const int64_t D = g.dimensions().back(), rows = Rows(od, 2);
  if ((K & (K - 1)) || (L & (L - 1)) || K > L || D > L || (nb > 1 && K != L))
    return ffi::Error::InvalidArgument("fastfood_bwd: bad sizes");
  float* w = Scratch(0, L);
  for (int64_t r = 0; r < rows; ++r) {
    const float* gr = g.typed_data() + r * D;
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t blk = r * nb + b;
      const float s = scale.typed_data()[blk];
      for (int64_t i = 0; i < D; ++i) w[i] = s * gr[i];
      std::fill(w + D, w + L, 0.0f);
      float* u = out->typed_data() + blk * K;
      WhtScatter(w, G.typed_data() + blk * L, perm.typed_data() + blk * L, K - 1, L,
                 Scratch(1, 4 * K), u);
      Wht(u, K);
      const float* Bb = B.typed_data() + blk * L;
      for (int64_t k = 0; k < K; ++k) u[k] *= Bb[k];
    }
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxnnWht, WhtImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

// Both Fastfood directions take (input, B, G, perm, scale) and return one array.
static auto FastfoodBinding() {
  return ffi::Ffi::Bind()
      .Arg<ffi::Buffer<ffi::F32>>()
      .Arg<ffi::Buffer<ffi::F32>>()
      .Arg<ffi::Buffer<ffi::F32>>()
      .Arg<ffi::Buffer<ffi::S32>>()
      .Arg<ffi::Buffer<ffi::F32>>()
      .Ret<ffi::Buffer<ffi::F32>>();
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxnnFastfoodFwd, FwdImpl, FastfoodBinding());

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxnnFastfoodBwd, BwdImpl, FastfoodBinding());
"""

_FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC", "-fno-math-errno")
_TARGETS = {"jaxnn_wht": "JaxnnWht", "jaxnn_fastfood_fwd": "JaxnnFastfoodFwd",
            "jaxnn_fastfood_bwd": "JaxnnFastfoodBwd"}
_lock = threading.Lock()
_status: dict = {}


def _cache_dir() -> str:
  return os.environ.get("JAXNN_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache",
                                                           "jaxnn")


def _build() -> str:
  """Compiles the kernel into the cache (atomically) and returns its path."""
  import jaxlib

  compiler = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
  if not compiler:
    raise JaxnnError("no C++ compiler found (set $CXX or install g++)")
  key = hashlib.sha256("\0".join((_SOURCE, *_FLAGS, compiler, jaxlib.__version__,
                                  sys.platform)).encode()).hexdigest()[:16]
  path = os.path.join(_cache_dir(), f"fastfood_{key}.so")
  if os.path.exists(path):
    return path
  os.makedirs(_cache_dir(), exist_ok=True)
  with tempfile.TemporaryDirectory(dir=_cache_dir()) as tmp:
    source = os.path.join(tmp, "fastfood.cc")
    with open(source, "w") as f:
      f.write(_SOURCE)
    built = os.path.join(tmp, "fastfood.so")
    result = subprocess.run([compiler, *_FLAGS, f"-I{jax.ffi.include_dir()}", source, "-o", built],
                            capture_output=True, text=True)
    if result.returncode:
      raise JaxnnError(f"compiling the Fastfood CPU kernel with {compiler} failed:\n"
                       f"{result.stderr[-2000:]}")
    os.replace(built, path)  # atomic: concurrent builders all end with a complete file
  return path


def available() -> bool:
  """Builds and registers the kernel once; False (with the reason in `error()`) if it cannot."""
  with _lock:
    if "ok" not in _status:
      try:
        library = ctypes.cdll.LoadLibrary(_build())
        for target, symbol in _TARGETS.items():
          jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(library, symbol)),
                                      platform="cpu")
        _status["ok"] = True
      except (JaxnnError, OSError) as e:
        _status.update(ok=False, error=str(e))
    return _status["ok"]


def error() -> str:
  """Why `available()` is False ("" if it is not)."""
  return _status.get("error", "")


def wht(x):
  """H x along the last axis (CPU only; `available()` must be True)."""
  return jax.ffi.ffi_call("jaxnn_wht", jax.ShapeDtypeStruct(x.shape, jnp.float32),
                          vmap_method="broadcast_all")(x)


def fastfood_fwd(x_nxK, B_nxL, G_nxL, perm_nxL, scale_n, D: int):
  """`sum_b scale_b (H G_b Pi_b tile(H_K (B_b[:K] x_b)))[:D]` (CPU only)."""
  out = jax.ShapeDtypeStruct(x_nxK.shape[:-2] + (D,), jnp.float32)
  return jax.ffi.ffi_call("jaxnn_fastfood_fwd", out, vmap_method="broadcast_all")(
      x_nxK, B_nxL, G_nxL, perm_nxL, scale_n)


def fastfood_bwd(g_D, B_nxL, G_nxL, perm_nxL, scale_n, K: int):
  """The transpose of `fastfood_fwd`: (D,) -> (n, K) (CPU only)."""
  out = jax.ShapeDtypeStruct(B_nxL.shape[:-1] + (K,), jnp.float32)
  return jax.ffi.ffi_call("jaxnn_fastfood_bwd", out, vmap_method="broadcast_all")(
      g_D, B_nxL, G_nxL, perm_nxL, scale_n)

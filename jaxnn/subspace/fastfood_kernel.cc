// The Walsh-Hadamard and Fastfood transforms as XLA FFI CPU handlers.
// Built and registered on first use by jaxnn/subspace/_fastfood_kernel.py (see its docstring
// for the algorithm) through jaxnn/_native.py, which caches the library by a hash of this file.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define JAXNN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
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
      // The strides that BlockLevels leaves to radix 4 (after Lowest3 / Lowest7 and Radix8).
      case 8: Radix4<8>(x, n); break;
      case 128: Radix4<128>(x, n); break;
      case 1024: Radix4<1024>(x, n); break;
      default: Radix4<0>(x, n, h);
    }
    h *= 4;
  }
}

// One radix-8 pass (levels h, 2h, 4h), in registers.
template <int64_t H>
JAXNN_INLINE void Radix8(float* x, int64_t n) {
  for (int64_t i = 0; i < n; i += 8 * H) {
    float* __restrict p0 = x + i;
    float* __restrict p1 = p0 + H;
    float* __restrict p2 = p1 + H;
    float* __restrict p3 = p2 + H;
    float* __restrict p4 = p3 + H;
    float* __restrict p5 = p4 + H;
    float* __restrict p6 = p5 + H;
    float* __restrict p7 = p6 + H;
    for (int64_t j = 0; j < H; ++j) {
      const float a0 = p0[j] + p1[j], a1 = p0[j] - p1[j], a2 = p2[j] + p3[j], a3 = p2[j] - p3[j];
      const float a4 = p4[j] + p5[j], a5 = p4[j] - p5[j], a6 = p6[j] + p7[j], a7 = p6[j] - p7[j];
      const float b0 = a0 + a2, b1 = a1 + a3, b2 = a0 - a2, b3 = a1 - a3;
      const float b4 = a4 + a6, b5 = a5 + a7, b6 = a4 - a6, b7 = a5 - a7;
      p0[j] = b0 + b4;
      p1[j] = b1 + b5;
      p2[j] = b2 + b6;
      p3[j] = b3 + b7;
      p4[j] = b0 - b4;
      p5[j] = b1 - b5;
      p6[j] = b2 - b6;
      p7[j] = b3 - b7;
    }
  }
}

// Levels [h, end) of x[0, n) inside L1 (n <= kBlock): radix 8 while three
// levels fit (8 strided streams would conflict in L1 over a larger vector).
JAXNN_INLINE void Levels8(float* x, int64_t n, int64_t h, int64_t end) {
  while (8 * h <= end) {
    switch (h) {
      case 8: Radix8<8>(x, n); break;
      case 128: Radix8<128>(x, n); break;
      case 1024: Radix8<1024>(x, n); break;
      default: Levels(x, n, h, end); return;
    }
    h *= 8;
  }
  Levels(x, n, h, end);
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

typedef float Float16 __attribute__((vector_size(64)));
typedef int32_t Int16 __attribute__((vector_size(64)));

// Levels 1, 2, 4 and 8 of v's 16 entries: per level, a lane shuffle and a signed add.
JAXNN_INLINE Float16 Lowest4(Float16 v) {
  const Int16 m1 = {1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14};
  const Int16 m2 = {2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13};
  const Int16 m4 = {4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11};
  const Int16 m8 = {8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7};
  const Float16 s1 = {1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1};
  const Float16 s2 = {1, 1, -1, -1, 1, 1, -1, -1, 1, 1, -1, -1, 1, 1, -1, -1};
  const Float16 s4 = {1, 1, 1, 1, -1, -1, -1, -1, 1, 1, 1, 1, -1, -1, -1, -1};
  const Float16 s8 = {1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1, -1};
  v = __builtin_shuffle(v, m1) + v * s1;
  v = __builtin_shuffle(v, m2) + v * s2;
  v = __builtin_shuffle(v, m4) + v * s4;
  return __builtin_shuffle(v, m8) + v * s8;
}

// out[0:128) <- levels 1 to 64 of the run v[0..8) (16 entries each) in
// registers: Lowest4 in each vector, then a radix-8 butterfly across them.
JAXNN_INLINE void Run128(Float16* v, float* out) {
  for (int k = 0; k < 8; ++k) v[k] = Lowest4(v[k]);
  const Float16 a0 = v[0] + v[1], a1 = v[0] - v[1], a2 = v[2] + v[3], a3 = v[2] - v[3];
  const Float16 a4 = v[4] + v[5], a5 = v[4] - v[5], a6 = v[6] + v[7], a7 = v[6] - v[7];
  const Float16 b0 = a0 + a2, b1 = a1 + a3, b2 = a0 - a2, b3 = a1 - a3;
  const Float16 b4 = a4 + a6, b5 = a5 + a7, b6 = a4 - a6, b7 = a5 - a7;
  const Float16 r[8] = {b0 + b4, b1 + b5, b2 + b6, b3 + b7, b0 - b4, b1 - b5, b2 - b6, b3 - b7};
  std::memcpy(out, r, sizeof(r));
}

// Levels 1 to 64 inside each run of 128 entries (n a multiple of 128), in one pass.
JAXNN_INLINE void Lowest7(float* x, int64_t n) {
  for (int64_t i = 0; i < n; i += 128) {
    Float16 v[8];
    std::memcpy(v, x + i, sizeof(v));
    Run128(v, x + i);
  }
}

// The levels below kBlock run block by block while the block sits in L1
// (32 KB); the levels above run as radix-4 passes over the whole vector
// (at most 4 strided streams: more would map to the same L1 sets), the
// first of which reads the input (backward) or the last of which writes the
// output (forward).
constexpr int64_t kBlock = 8192;

// All levels of x[0, n), n <= kBlock: 3 passes over a block of 8,192
// (levels 1-64 in registers, then two radix-8 passes).
JAXNN_INLINE void BlockLevels(float* x, int64_t n) {
  int64_t h = 1;
  if (n >= 128) {
    Lowest7(x, n);
    h = 128;
  } else if (n >= 8) {
    Lowest3(x, n);
    h = 8;
  }
  Levels8(x, n, h, n);
}

// y[i] <- load(i) for i < n, with the butterflies of levels h (and 2h if
// 4h <= end) applied on the way.
template <class Load>
JAXNN_INLINE int64_t LoadLevels(float* y, int64_t n, int64_t h, int64_t end, Load load) {
  if (h >= end) {
    for (int64_t i = 0; i < n; ++i) y[i] = load(i);
    return h;
  }
  if (4 * h > end) {
    for (int64_t i = 0; i < n; i += 2 * h) {
      float* __restrict a = y + i;
      float* __restrict b = a + h;
      for (int64_t j = 0; j < h; ++j) {
        const float p = load(i + j), q = load(i + h + j);
        a[j] = p + q;
        b[j] = p - q;
      }
    }
    return 2 * h;
  }
  for (int64_t i = 0; i < n; i += 4 * h) {
    float* __restrict a = y + i;
    float* __restrict b = a + h;
    float* __restrict c = b + h;
    float* __restrict d = c + h;
    for (int64_t j = 0; j < h; ++j) {
      const float a0 = load(i + j), b0 = load(i + h + j), c0 = load(i + 2 * h + j),
                  d0 = load(i + 3 * h + j);
      const float p = a0 + b0, q = a0 - b0, u = c0 + d0, v = c0 - d0;
      a[j] = p + u;
      b[j] = q + v;
      c[j] = p - u;
      d[j] = q - v;
    }
  }
  return 4 * h;
}

// The butterflies of levels [h, end) of y[0, n), the last pass (one or two
// levels) giving each result to store(i, value) instead of writing y.
template <class Store>
JAXNN_INLINE void StoreLevels(float* y, int64_t n, int64_t h, int64_t end, Store store) {
  if (h >= end) {
    for (int64_t i = 0; i < n; ++i) store(i, y[i]);
    return;
  }
  int64_t last = h;  // the last pass does levels [last, end): end = 2 last or 4 last
  while (4 * last < end) last *= 4;
  Levels(y, n, h, last);
  if (2 * last == end) {
    for (int64_t i = 0; i < n; i += 2 * last) {
      const float* __restrict a = y + i;
      const float* __restrict b = a + last;
      for (int64_t j = 0; j < last; ++j) {
        store(i + j, a[j] + b[j]);
        store(i + last + j, a[j] - b[j]);
      }
    }
    return;
  }
  for (int64_t i = 0; i < n; i += 4 * last) {
    const float* __restrict a = y + i;
    const float* __restrict b = a + last;
    const float* __restrict c = b + last;
    const float* __restrict d = c + last;
    for (int64_t j = 0; j < last; ++j) {
      const float p = a[j] + b[j], q = a[j] - b[j], u = c[j] + d[j], v = c[j] - d[j];
      store(i + j, p + u);
      store(i + last + j, q + v);
      store(i + 2 * last + j, p - u);
      store(i + 3 * last + j, q - v);
    }
  }
}

// y <- H_n (load(i))_i, then visit(s, y + s, m) for every block [s, s + m).
template <class Load, class Visit>
JAXNN_INLINE void LoadWhtVisit(float* y, int64_t n, Load load, Visit visit) {
  const int64_t block = std::min(n, kBlock);
  const int64_t h = LoadLevels(y, n, block, n, load);
  Levels(y, n, h, n);
  for (int64_t s = 0; s < n; s += block) {
    BlockLevels(y + s, block);
    visit(s, y + s, block);
  }
}

// y <- H_n x, n a power of 2 (Sylvester order, unnormalized; y != x).
JAXNN_CLONES void Wht(const float* x, int64_t n, float* y) {
  LoadWhtVisit(y, n, [x](int64_t i) { return x[i]; }, [](int64_t, float*, int64_t) {});
}

// h <- H_K (B x) (the forward's first transform; h != x).
JAXNN_CLONES void HeadFwd(const float* x, const float* B, int64_t K, float* h) {
  LoadWhtVisit(h, K, [=](int64_t i) { return B[i] * x[i]; }, [](int64_t, float*, int64_t) {});
}

// u <- B H_K (sum of the 4 copies of tmp) (the backward's last transform).
JAXNN_CLONES void HeadBwd(const float* tmp, const float* B, int64_t K, float* u) {
  LoadWhtVisit(
      u, K,
      [=](int64_t k) { return (tmp[k] + tmp[K + k]) + (tmp[2 * K + k] + tmp[3 * K + k]); },
      [=](int64_t s, float* chunk, int64_t n) {
        for (int64_t i = 0; i < n; ++i) chunk[i] *= B[s + i];
      });
}

// y[0:n) <- g * h[perm & mask].
JAXNN_INLINE void GatherScale(const float* h, const float* g, const int32_t* perm, int64_t mask,
                              int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = g[i] * h[perm[i] & mask];
}

// y[0:n) <- H_n (g * h[perm & mask]), n <= kBlock. From n = 128 on, each run
// of 128 is gathered by scalar loads from the L1-resident h, two indices per
// 64-bit load, into a buffer, and multiplied by g as Run128 loads it (on AMD
// Zen 4 the gathers are 1.6x faster than the AVX-512 gathers that GCC makes
// of GatherScale's loop, and the block saves a pass).
JAXNN_INLINE void GatherBlockLevels(const float* h, const float* g, const int32_t* perm,
                                    int64_t mask, int64_t n, float* y) {
  if (n < 128) {
    GatherScale(h, g, perm, mask, n, y);
    return BlockLevels(y, n);
  }
  alignas(64) float t[128];
  for (int64_t s = 0; s < n; s += 128) {
    int64_t i = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    for (; i < 128; i += 2) {
      uint64_t pair;
      std::memcpy(&pair, perm + s + i, sizeof(pair));
      t[i] = h[static_cast<uint32_t>(pair) & mask];
      t[i + 1] = h[(pair >> 32) & mask];
    }
#endif
    for (; i < 128; ++i) t[i] = h[perm[s + i] & mask];
    Float16 v[8], gv[8];
    std::memcpy(v, t, sizeof(v));
    std::memcpy(gv, g + s, sizeof(gv));
    for (int k = 0; k < 8; ++k) v[k] *= gv[k];
    Run128(v, y + s);
  }
  Levels8(y, n, 128, n);
}

// o[:D] (+)= scale (H_L (g * h[perm & mask]))[:D]; y: L entries of scratch.
// The gather block by block just before the block's levels, then the levels
// above kBlock by passes over y, the last of which writes o.
JAXNN_CLONES void FwdBlock(const float* h, const float* g, const int32_t* perm, int64_t mask,
                           int64_t L, float scale, int64_t D, bool accumulate, float* y,
                           float* o) {
  const int64_t block = std::min(L, kBlock);
  for (int64_t s = 0; s < L; s += block) {
    GatherBlockLevels(h, g + s, perm + s, mask, block, y + s);
  }
  const auto store = [=](int64_t i, float v) {
    if (i < D) o[i] = accumulate ? o[i] + scale * v : scale * v;
  };
  StoreLevels(y, L, block, L, store);
}

// tmp[c K + (perm[i] & mask)] += g[i] w[i] with c = i mod 4 (n a multiple of
// 4): 4 interleaved copies of the K sums, so that consecutive adds do not
// wait on each other.
JAXNN_INLINE void ScatterScale(const float* w, const float* g, const int32_t* perm, int64_t mask,
                               int64_t n, float* tmp) {
  const int64_t K = mask + 1;
  for (int64_t i = 0; i < n; i += 4) {
    tmp[perm[i] & mask] += g[i] * w[i];
    tmp[K + (perm[i + 1] & mask)] += g[i + 1] * w[i + 1];
    tmp[2 * K + (perm[i + 2] & mask)] += g[i + 2] * w[i + 2];
    tmp[3 * K + (perm[i + 3] & mask)] += g[i + 3] * w[i + 3];
  }
}

// tmp[0:4K] += the scatter of g * (H_L (scale x[:D], zero-padded to L)) by
// perm & mask; w: L entries of scratch.
JAXNN_CLONES void BwdBlock(const float* x, int64_t D, float scale, const float* g,
                           const int32_t* perm, int64_t mask, int64_t L, float* w, float* tmp) {
  LoadWhtVisit(
      w, L, [=](int64_t i) { return i < D ? scale * x[i] : 0.0f; },
      [=](int64_t s, const float* chunk, int64_t n) {
        if (n >= 4) {
          ScatterScale(chunk, g + s, perm + s, mask, n, tmp);
        } else {
          for (int64_t i = 0; i < n; ++i) tmp[perm[s + i] & mask] += g[s + i] * chunk[i];
        }
      });
}

// Flat indices [0, D) of one row stored by segments (the model's parameter
// leaves): segment s holds [start[s], start[s + 1]) at ptr[s]; start[count] = D.
struct Segments {
  int64_t count;
  const int64_t* start;
  float* const* ptr;
};

// Pieces [j0, j0 + m) of [0, n) over which each of the S streams of flat
// indices first[k] + j stays inside one segment: at[k][j - j0] stores index
// first[k] + j for the first `present` streams; the others lie beyond D
// (first[k] grows with k).
struct Piece {
  int present;
  int64_t j0, m;
  float* at[4];
};

// The next piece after p (start with p.j0 = p.m = 0); false at the end.
template <int S>
JAXNN_INLINE bool NextPiece(const Segments& seg, const int64_t* first, int64_t n, Piece& p) {
  const int64_t j0 = p.j0 + p.m, D = seg.start[seg.count];
  if (j0 >= n) return false;
  int64_t j1 = n;
  p.present = 0;
  for (int k = 0; k < S && first[k] + j0 < D; ++k) {
    const int64_t i = first[k] + j0;
    const int64_t s = std::upper_bound(seg.start, seg.start + seg.count + 1, i) - seg.start - 1;
    p.at[k] = seg.ptr[s] + (i - seg.start[s]);
    j1 = std::min(j1, seg.start[s + 1] - first[k]);
    p.present = k + 1;
  }
  for (int k = p.present; k < 4; ++k) p.at[k] = nullptr;
  p.j0 = j0;
  p.m = j1 - j0;
  return true;
}

// The S-point butterfly (S = 1, 2 or 4: no level, one level, two levels).
template <int S>
JAXNN_INLINE void Butterfly(float* v) {
  if (S == 2) {
    const float a = v[0], b = v[1];
    v[0] = a + b;
    v[1] = a - b;
  } else if (S == 4) {
    const float p = v[0] + v[1], q = v[0] - v[1], u = v[2] + v[3], w = v[2] - v[3];
    v[0] = p + u;
    v[1] = q + w;
    v[2] = p - u;
    v[3] = q - w;
  }
}

// One piece of the forward's last pass: v = the S-point butterfly of x[k
// stride + j], then o_k[j] = (Acc ? o_k[j] : t_k[j]) + scale v_k for the
// first P streams. Restrict-qualified parameters (not arrays of pointers)
// let GCC vectorize without alias checks.
template <int S, int P, bool Acc>
JAXNN_INLINE void StoreRun(const float* __restrict x, int64_t stride, int64_t m, float scale,
                           float* __restrict o0, float* __restrict o1, float* __restrict o2,
                           float* __restrict o3, const float* __restrict t0,
                           const float* __restrict t1, const float* __restrict t2,
                           const float* __restrict t3) {
  for (int64_t j = 0; j < m; ++j) {
    float v[S];
    for (int k = 0; k < S; ++k) v[k] = x[k * stride + j];
    Butterfly<S>(v);
    if constexpr (P > 0) o0[j] = (Acc ? o0[j] : t0[j]) + scale * v[0];
    if constexpr (P > 1) o1[j] = (Acc ? o1[j] : t1[j]) + scale * v[1];
    if constexpr (P > 2) o2[j] = (Acc ? o2[j] : t2[j]) + scale * v[2];
    if constexpr (P > 3) o3[j] = (Acc ? o3[j] : t3[j]) + scale * v[3];
  }
}

template <int S, bool Acc>
JAXNN_INLINE void StorePiece(const float* x, int64_t stride, float scale, const Piece& p,
                             const float* const* t) {
  const int64_t m = p.m;
  float* const* o = p.at;
  switch (p.present) {
    case 1: StoreRun<S, 1, Acc>(x, stride, m, scale, o[0], o[1], o[2], o[3], t[0], t[1], t[2], t[3]); break;
    case 2: StoreRun<S, 2, Acc>(x, stride, m, scale, o[0], o[1], o[2], o[3], t[0], t[1], t[2], t[3]); break;
    case 3: StoreRun<S, 3, Acc>(x, stride, m, scale, o[0], o[1], o[2], o[3], t[0], t[1], t[2], t[3]); break;
    case 4: StoreRun<S, 4, Acc>(x, stride, m, scale, o[0], o[1], o[2], o[3], t[0], t[1], t[2], t[3]); break;
    default: break;
  }
}

// The last pass over y (S streams `stride` apart from each i; the levels
// below already applied) stored by segments: o = base + scale * v, base the
// flat t0 or (accumulate) o itself; streams beyond D are dropped.
template <int S>
JAXNN_INLINE void StorePassSeg(const float* y, int64_t n, int64_t stride, const Segments& seg,
                               const float* t0, float scale, bool accumulate) {
  for (int64_t i = 0; i < n; i += S * stride) {
    int64_t first[S];
    for (int k = 0; k < S; ++k) first[k] = i + k * stride;
    Piece p{0, 0, 0, {}};
    while (NextPiece<S>(seg, first, stride, p)) {
      const float* t[4] = {};
      for (int k = 0; k < p.present; ++k) t[k] = t0 + first[k] + p.j0;
      if (accumulate) {
        StorePiece<S, true>(y + i + p.j0, stride, scale, p, t);
      } else {
        StorePiece<S, false>(y + i + p.j0, stride, scale, p, t);
      }
    }
  }
}

// The levels [h, end) of y[0, n), the last pass (none, one or two levels)
// storing base + scale * y[:D] by segments (see StorePassSeg).
JAXNN_INLINE void StoreLevelsSeg(float* y, int64_t n, int64_t h, int64_t end, const Segments& seg,
                                 const float* t0, float scale, bool accumulate) {
  if (h >= end) return StorePassSeg<1>(y, n, n, seg, t0, scale, accumulate);
  int64_t last = h;
  while (4 * last < end) last *= 4;
  Levels(y, n, h, last);
  if (2 * last == end) return StorePassSeg<2>(y, n, last, seg, t0, scale, accumulate);
  StorePassSeg<4>(y, n, last, seg, t0, scale, accumulate);
}

// One piece of the backward's first pass: x[k stride + j] <- the S-point
// butterfly of scale g_k[j] (zero for streams k >= P).
template <int S, int P>
JAXNN_INLINE void LoadRun(float* __restrict x, int64_t stride, int64_t m, float scale,
                          const float* __restrict g0, const float* __restrict g1,
                          const float* __restrict g2, const float* __restrict g3) {
  for (int64_t j = 0; j < m; ++j) {
    float v[S];
    if constexpr (S > 0) v[0] = P > 0 ? scale * g0[j] : 0.0f;
    if constexpr (S > 1) v[1] = P > 1 ? scale * g1[j] : 0.0f;
    if constexpr (S > 2) v[2] = P > 2 ? scale * g2[j] : 0.0f;
    if constexpr (S > 3) v[3] = P > 3 ? scale * g3[j] : 0.0f;
    Butterfly<S>(v);
    for (int k = 0; k < S; ++k) x[k * stride + j] = v[k];
  }
}

// The backward's first pass with S streams `stride` apart (see LoadLevelsSeg).
template <int S>
JAXNN_INLINE void LoadPassSeg(float* y, int64_t n, int64_t stride, const Segments& seg,
                              float scale) {
  for (int64_t i = 0; i < n; i += S * stride) {
    int64_t first[S];
    for (int k = 0; k < S; ++k) first[k] = i + k * stride;
    Piece p{0, 0, 0, {}};
    while (NextPiece<S>(seg, first, stride, p)) {
      float* x = y + i + p.j0;
      float* const* g = p.at;
      switch (p.present) {
        case 0: LoadRun<S, 0>(x, stride, p.m, scale, g[0], g[1], g[2], g[3]); break;
        case 1: LoadRun<S, 1>(x, stride, p.m, scale, g[0], g[1], g[2], g[3]); break;
        case 2: LoadRun<S, 2>(x, stride, p.m, scale, g[0], g[1], g[2], g[3]); break;
        case 3: LoadRun<S, 3>(x, stride, p.m, scale, g[0], g[1], g[2], g[3]); break;
        default: LoadRun<S, 4>(x, stride, p.m, scale, g[0], g[1], g[2], g[3]); break;
      }
    }
  }
}

// y[0, n) <- the first pass (levels h and 2h while 4h <= end, or h alone, or
// none) of scale * g, g read by segments and zero beyond D; returns the next
// level.
JAXNN_INLINE int64_t LoadLevelsSeg(float* y, int64_t n, int64_t h, int64_t end,
                                   const Segments& seg, float scale) {
  if (h >= end) {
    LoadPassSeg<1>(y, n, n, seg, scale);
    return h;
  }
  if (4 * h > end) {
    LoadPassSeg<2>(y, n, h, seg, scale);
    return 2 * h;
  }
  LoadPassSeg<4>(y, n, h, seg, scale);
  return 4 * h;
}

// FwdBlock with the output stored by segments: o = (accumulate ? o : t0) +
// scale (H_L (g * h[perm & mask]))[:D].
JAXNN_CLONES void FwdBlockSeg(const float* h, const float* g, const int32_t* perm, int64_t mask,
                              int64_t L, float scale, const Segments& seg, const float* t0,
                              bool accumulate, float* y) {
  const int64_t block = std::min(L, kBlock);
  for (int64_t s = 0; s < L; s += block) {
    GatherBlockLevels(h, g + s, perm + s, mask, block, y + s);
  }
  StoreLevelsSeg(y, L, block, L, seg, t0, scale, accumulate);
}

// BwdBlock with the cotangent read by segments.
JAXNN_CLONES void BwdBlockSeg(const Segments& seg, float scale, const float* g,
                              const int32_t* perm, int64_t mask, int64_t L, float* w,
                              float* tmp) {
  const int64_t block = std::min(L, kBlock);
  const int64_t h = LoadLevelsSeg(w, L, block, L, seg, scale);
  Levels(w, L, h, L);
  for (int64_t s = 0; s < L; s += block) {
    BlockLevels(w + s, block);
    if (block >= 4) {
      ScatterScale(w + s, g + s, perm + s, mask, block, tmp);
    } else {
      for (int64_t i = 0; i < block; ++i) tmp[perm[s + i] & mask] += g[s + i] * w[s + i];
    }
  }
}

// Per-thread scratch, kept between calls (a fresh 1 MB vector per call would
// be a fresh mmap, page-faulted in on every step): kBig holds the L-entry
// intermediate of either direction, kSmall the K-entry ones, so that both
// directions reuse the same memory.
enum ScratchIndex { kBig = 0, kSmall = 1 };

float* Scratch(ScratchIndex index, int64_t size) {
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
  for (int64_t r = 0; r < rows; ++r) Wht(x.typed_data() + r * n, n, out->typed_data() + r * n);
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
  float* h = Scratch(kSmall, K);
  float* y = Scratch(kBig, L);
  for (int64_t r = 0; r < rows; ++r) {
    float* o = out->typed_data() + r * D;
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t blk = r * nb + b;
      const float* xb = x.typed_data() + blk * K;
      const float* Bb = B.typed_data() + blk * L;
      HeadFwd(xb, Bb, K, h);
      FwdBlock(h, G.typed_data() + blk * L, perm.typed_data() + blk * L, K - 1, L,
               scale.typed_data()[blk], D, b > 0, y, o);
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
  float* w = Scratch(kBig, L);
  float* tmp = Scratch(kSmall, 4 * K);
  for (int64_t r = 0; r < rows; ++r) {
    const float* gr = g.typed_data() + r * D;
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t blk = r * nb + b;
      std::fill(tmp, tmp + 4 * K, 0.0f);
      BwdBlock(gr, D, scale.typed_data()[blk], G.typed_data() + blk * L,
               perm.typed_data() + blk * L, K - 1, L, w, tmp);
      HeadBwd(tmp, B.typed_data() + blk * L, K, out->typed_data() + blk * K);
    }
  }
  return ffi::Error::Success();
}

// The segments of row r: leaf l of `sizes` (elements per row) at base[l] + r sizes[l].
struct RowSegments {
  std::vector<int64_t> start, sizes;
  std::vector<float*> base, ptr;

  ffi::Error Init(int64_t D) {
    start.assign(1, 0);
    for (size_t l = 0; l < base.size(); ++l) {
      if (sizes[l] < 0) return ffi::Error::InvalidArgument("fastfood leaves: a leaf lacks the rows");
      start.push_back(start.back() + sizes[l]);
    }
    ptr.resize(base.size());
    if (start.back() != D) return ffi::Error::InvalidArgument("fastfood leaves: sizes do not add up to D");
    return ffi::Error::Success();
  }

  Segments Row(int64_t r) {
    for (size_t l = 0; l < base.size(); ++l) ptr[l] = base[l] + r * sizes[l];
    return Segments{static_cast<int64_t>(base.size()), start.data(), ptr.data()};
  }
};

// Elements per row of a buffer with `rows` leading rows (-1 if it does not split).
int64_t PerRow(int64_t count, int64_t rows) { return count % rows ? -1 : count / rows; }

// x: (..., nb, K), B/G/perm: (..., nb, L), scale: (..., nb), t0: (..., D);
// outs: (..., leaf shape) per leaf, whose sizes add up to D: t0 + the forward.
ffi::Error FwdLeavesImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> B, ffi::Buffer<ffi::F32> G,
                         ffi::Buffer<ffi::S32> perm, ffi::Buffer<ffi::F32> scale,
                         ffi::Buffer<ffi::F32> t0, ffi::RemainingRets outs) {
  const auto xd = x.dimensions(), bd = B.dimensions();
  if (xd.size() < 2 || bd.size() != xd.size())
    return ffi::Error::InvalidArgument("fastfood_fwd_leaves: bad ranks");
  const int64_t nb = xd[xd.size() - 2], K = xd.back(), L = bd.back();
  const int64_t D = t0.dimensions().back(), rows = Rows(xd, 2);
  if ((K & (K - 1)) || (L & (L - 1)) || K > L || D > L || (nb > 1 && K != L) ||
      static_cast<int64_t>(t0.element_count()) != rows * D)
    return ffi::Error::InvalidArgument("fastfood_fwd_leaves: bad sizes");
  if (rows == 0) return ffi::Error::Success();
  RowSegments seg;
  for (size_t l = 0; l < outs.size(); ++l) {
    auto out = outs.get<ffi::Buffer<ffi::F32>>(l);
    if (out.has_error()) return out.error();
    seg.base.push_back((*out)->typed_data());
    seg.sizes.push_back(PerRow((*out)->element_count(), rows));
  }
  if (auto e = seg.Init(D); e.failure()) return e;
  float* h = Scratch(kSmall, K);
  float* y = Scratch(kBig, L);
  for (int64_t r = 0; r < rows; ++r) {
    const Segments row = seg.Row(r);
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t blk = r * nb + b;
      HeadFwd(x.typed_data() + blk * K, B.typed_data() + blk * L, K, h);
      FwdBlockSeg(h, G.typed_data() + blk * L, perm.typed_data() + blk * L, K - 1, L,
                  scale.typed_data()[blk], row, t0.typed_data() + r * D, b > 0, y);
    }
  }
  return ffi::Error::Success();
}

// B/G/perm: (..., nb, L), scale: (..., nb), gs: (..., leaf shape) per leaf,
// the cotangent by leaves; out: (..., nb, K).
ffi::Error BwdLeavesImpl(ffi::Buffer<ffi::F32> B, ffi::Buffer<ffi::F32> G,
                         ffi::Buffer<ffi::S32> perm, ffi::Buffer<ffi::F32> scale,
                         ffi::RemainingArgs gs, ffi::ResultBuffer<ffi::F32> out) {
  const auto od = out->dimensions(), bd = B.dimensions();
  if (od.size() < 2 || bd.size() != od.size())
    return ffi::Error::InvalidArgument("fastfood_bwd_leaves: bad ranks");
  const int64_t nb = od[od.size() - 2], K = od.back(), L = bd.back(), rows = Rows(od, 2);
  if (rows == 0) return ffi::Error::Success();
  RowSegments seg;
  int64_t D = 0;
  for (size_t l = 0; l < gs.size(); ++l) {
    auto g = gs.get<ffi::Buffer<ffi::F32>>(l);
    if (g.has_error()) return g.error();
    seg.base.push_back(const_cast<float*>(g->typed_data()));  // read only
    seg.sizes.push_back(PerRow(g->element_count(), rows));
    D += std::max<int64_t>(seg.sizes.back(), 0);
  }
  if ((K & (K - 1)) || (L & (L - 1)) || K > L || D > L || (nb > 1 && K != L))
    return ffi::Error::InvalidArgument("fastfood_bwd_leaves: bad sizes");
  if (auto e = seg.Init(D); e.failure()) return e;
  float* w = Scratch(kBig, L);
  float* tmp = Scratch(kSmall, 4 * K);
  for (int64_t r = 0; r < rows; ++r) {
    const Segments row = seg.Row(r);
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t blk = r * nb + b;
      std::fill(tmp, tmp + 4 * K, 0.0f);
      BwdBlockSeg(row, scale.typed_data()[blk], G.typed_data() + blk * L,
                  perm.typed_data() + blk * L, K - 1, L, w, tmp);
      HeadBwd(tmp, B.typed_data() + blk * L, K, out->typed_data() + blk * K);
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

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxnnFastfoodFwdLeaves, FwdLeavesImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .RemainingRets());

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxnnFastfoodBwdLeaves, BwdLeavesImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .RemainingArgs()
                                  .Ret<ffi::Buffer<ffi::F32>>());

// Products of a few rows with weights streamed from memory, as XLA FFI CPU handlers.
// Built and registered on first use by jaxnn/lm/_matmul_kernel.py (see its docstring for
// the algorithm) through jaxnn/_native.py, which caches the library by a hash of this file.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define JAXNN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define JAXNN_CLONES
#endif
#define JAXNN_INLINE inline __attribute__((always_inline))

namespace {

typedef float V16 __attribute__((vector_size(64)));
typedef int32_t I16 __attribute__((vector_size(64)));

JAXNN_INLINE V16 Load(const float* p) {
  V16 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

JAXNN_INLINE void Store(float* p, V16 v) { std::memcpy(p, &v, sizeof(v)); }

// Hides p from the optimizer, so that loads through it are not hoisted out of
// a loop (the broadcasts of x stay memory operands instead of 64 registers).
template <class T>
JAXNN_INLINE T* Opaque(T* p) {
  asm("" : "+r"(p));
  return p;
}

constexpr int64_t kRows = 8;  // rows of W per block in `matmul`

// y[m, n0:n0 + 16 NV] += sum_{r < rows} xt[r M + m] W[r, n0:...] for NV
// vectors of 16 columns; xt holds x[m, k0 + r] at r M + m.
template <int M, int NV, int ROWS>
JAXNN_INLINE void KnChunk(const float* xt, const float* W, int64_t N, int64_t rows, float* y,
                          int64_t n0, const char* ahead) {
  for (int i = 0; i < 8 * NV; ++i) __builtin_prefetch(ahead + 64 * i, 0, 1);
  V16 acc[M][NV];
  for (int m = 0; m < M; ++m)
    for (int v = 0; v < NV; ++v) acc[m][v] = Load(y + m * N + n0 + 16 * v);
  const float* xs = Opaque(xt);
  const int64_t count = ROWS ? ROWS : rows;
  for (int64_t r = 0; r < count; ++r) {
    V16 w[NV];
    for (int v = 0; v < NV; ++v) w[v] = Load(W + r * N + n0 + 16 * v);
    for (int m = 0; m < M; ++m) {
      const float s = xs[r * M + m];
      for (int v = 0; v < NV; ++v) acc[m][v] += s * w[v];
    }
  }
  for (int m = 0; m < M; ++m)
    for (int v = 0; v < NV; ++v) Store(y + m * N + n0 + 16 * v, acc[m][v]);
}

// y[M, N] += x[:, k0:k0 + rows] @ W[k0:k0 + rows, :] (W points at row k0).
template <int M, int ROWS>
JAXNN_INLINE void KnBlock(const float* xt, const float* W, int64_t N, int64_t rows, float* y) {
  // The next block, prefetched into L2 linearly as the columns advance (8
  // rows x 16 columns = 8 lines per 16 columns); past the end of W this
  // fetches nothing useful, but prefetches never fault.
  const char* ahead = reinterpret_cast<const char*>(W + kRows * N);
  int64_t n = 0;
  for (; n + 32 <= N; n += 32) KnChunk<M, 2, ROWS>(xt, W, N, rows, y, n, ahead + 8 * 4 * n);
  for (; n + 16 <= N; n += 16) KnChunk<M, 1, ROWS>(xt, W, N, rows, y, n, ahead + 8 * 4 * n);
  for (; n < N; ++n)
    for (int64_t r = 0; r < rows; ++r)
      for (int m = 0; m < M; ++m) y[m * N + n] += xt[r * M + m] * W[r * N + n];
}

// y[M, N] = x[M, K] @ W[K, N]; x rows ldx apart, y contiguous.
template <int M>
JAXNN_INLINE void MatmulKn(const float* x, int64_t ldx, const float* W, int64_t K, int64_t N,
                           float* y) {
  std::fill(y, y + M * N, 0.0f);
  float xt[kRows * M];
  for (int64_t k0 = 0; k0 < K; k0 += kRows) {
    const int64_t rows = std::min(kRows, K - k0);
    for (int64_t r = 0; r < rows; ++r)
      for (int m = 0; m < M; ++m) xt[r * M + m] = x[m * ldx + k0 + r];
    if (rows == kRows) {
      KnBlock<M, kRows>(xt, W + k0 * N, N, rows, y);
    } else {
      KnBlock<M, 0>(xt, W + k0 * N, N, rows, y);
    }
  }
}

// Sums each of the 16 vectors a[i] into one lane of the result, lane
// kLaneOf[i] (a butterfly: each level adds halves of pairs, 15 shuffle pairs
// in all).
JAXNN_INLINE V16 ReduceLanes16(const V16* a) {
  const I16 lo8 = {0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23};
  const I16 hi8 = {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31};
  const I16 lo4 = {0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27};
  const I16 hi4 = {4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31};
  const I16 lo2 = {0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29};
  const I16 hi2 = {2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31};
  const I16 lo1 = {0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30};
  const I16 hi1 = {1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31};
  // Level 1: b[j] lanes 0-7 hold a[2j]'s halves summed, lanes 8-15 a[2j+1]'s.
  V16 b[8], c[4], d[2];
  for (int j = 0; j < 8; ++j)
    b[j] = __builtin_shuffle(a[2 * j], a[2 * j + 1], lo8) +
           __builtin_shuffle(a[2 * j], a[2 * j + 1], hi8);
  // Levels 2-4 likewise with quarters, eighths and single lanes.
  for (int j = 0; j < 4; ++j)
    c[j] = __builtin_shuffle(b[2 * j], b[2 * j + 1], lo4) +
           __builtin_shuffle(b[2 * j], b[2 * j + 1], hi4);
  for (int j = 0; j < 2; ++j)
    d[j] = __builtin_shuffle(c[2 * j], c[2 * j + 1], lo2) +
           __builtin_shuffle(c[2 * j], c[2 * j + 1], hi2);
  return __builtin_shuffle(d[0], d[1], lo1) + __builtin_shuffle(d[0], d[1], hi1);
}

// Lane of ReduceLanes16's result that holds the sum of a[i].
constexpr int kLaneOf[16] = {0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15};

// y[m, n0 + r] (+)= x[m, :K] . W[n0 + r, :K] for r < R, m < M (W points at
// row n0, rows ldw apart).
template <int M, int R>
JAXNN_INLINE void NkRows(const float* x, int64_t ldx, const float* W, int64_t ldw, int64_t K,
                         bool accumulate, float* y, int64_t ldy) {
  static_assert(M * R <= 16, "at most 16 accumulators");
  V16 acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = V16{};
  const int64_t K16 = K - K % 16;
  for (int64_t k = 0; k < K16; k += 16) {
    V16 xv[M];
    for (int m = 0; m < M; ++m) xv[m] = Load(x + m * ldx + k);
    for (int r = 0; r < R; ++r) {
      __builtin_prefetch(W + (r + R) * ldw + k, 0, 1);  // the next R rows
      const V16 w = Load(W + r * ldw + k);
      for (int m = 0; m < M; ++m) acc[r * M + m] += xv[m] * w;
    }
  }
  const V16 sums = ReduceLanes16(acc);
  for (int r = 0; r < R; ++r) {
    for (int m = 0; m < M; ++m) {
      float s = sums[kLaneOf[r * M + m]];
      for (int64_t k = K16; k < K; ++k) s += x[m * ldx + k] * W[r * ldw + k];
      y[m * ldy + r] = accumulate ? y[m * ldy + r] + s : s;
    }
  }
}

// y[M, N] = x[M, K] @ W[N, K]^T; x rows ldx apart, y contiguous. The columns
// of x go in chunks of at most 24 KB (so they stay in L1 while every row of
// W passes them), each chunk adding its partial dot products into y.
template <int M>
JAXNN_INLINE void MatmulNk(const float* x, int64_t ldx, const float* W, int64_t K, int64_t N,
                           float* y) {
  constexpr int R = 16 / M;
  constexpr int64_t kChunk = (6144 / M) / 16 * 16;
  for (int64_t k0 = 0; k0 < K || k0 == 0; k0 += kChunk) {
    const int64_t kc = std::min(kChunk, K - k0);
    int64_t n = 0;
    for (; n + R <= N; n += R) NkRows<M, R>(x + k0, ldx, W + n * K + k0, K, kc, k0 > 0, y + n, N);
    for (; n < N; ++n) NkRows<M, 1>(x + k0, ldx, W + n * K + k0, K, kc, k0 > 0, y + n, N);
  }
}

// One clone set per row count, so that the templates are compiled for each target.
#define JAXNN_DEFINE_ROWS(M)                                                              \
  JAXNN_CLONES void Kn##M(const float* x, const float* W, int64_t K, int64_t N, float* y) { \
    MatmulKn<M>(x, K, W, K, N, y);                                                        \
  }                                                                                       \
  JAXNN_CLONES void Nk##M(const float* x, const float* W, int64_t K, int64_t N, float* y) { \
    MatmulNk<M>(x, K, W, K, N, y);                                                        \
  }
JAXNN_DEFINE_ROWS(1)
JAXNN_DEFINE_ROWS(2)
JAXNN_DEFINE_ROWS(3)
JAXNN_DEFINE_ROWS(4)
JAXNN_DEFINE_ROWS(5)
JAXNN_DEFINE_ROWS(6)
JAXNN_DEFINE_ROWS(7)
JAXNN_DEFINE_ROWS(8)
#undef JAXNN_DEFINE_ROWS

typedef void (*Product)(const float*, const float*, int64_t, int64_t, float*);
constexpr Product kKn[8] = {Kn1, Kn2, Kn3, Kn4, Kn5, Kn6, Kn7, Kn8};
constexpr Product kNk[8] = {Nk1, Nk2, Nk3, Nk4, Nk5, Nk6, Nk7, Nk8};

// x[rows, K] against W in groups of at most 8 rows (each group one pass over W).
void ForRowGroups(const Product* products, const float* x, int64_t rows, const float* W,
                  int64_t K, int64_t N, float* y) {
  for (int64_t m0 = 0; m0 < rows; m0 += 8)
    products[std::min<int64_t>(8, rows - m0) - 1](x + m0 * K, W, K, N, y + m0 * N);
}

// x (B..., ..., K) against W (B..., K, N) (transposed: W (B..., N, K)) into
// out (B..., ..., N), where the n = rank(W) - 2 batch axes B... of x and W
// are each either out's or 1 (broadcast): what `vmap` with
// vmap_method="expand_dims" passes (n = 0 without vmap).
ffi::Error Batched(const char* name, const Product* products, bool transposed,
                   ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> W,
                   ffi::ResultBuffer<ffi::F32> out) {
  const auto xd = x.dimensions(), wd = W.dimensions(), od = out->dimensions();
  const size_t n = wd.size() < 2 ? 0 : wd.size() - 2;
  if (wd.size() < 2 || xd.size() < n + 1 || od.size() != xd.size())
    return ffi::Error::InvalidArgument(std::string(name) + ": bad ranks");
  const int64_t K = transposed ? wd[n + 1] : wd[n], N = transposed ? wd[n] : wd[n + 1];
  if (xd.back() != K || od.back() != N)
    return ffi::Error::InvalidArgument(std::string(name) + ": x and W do not match");
  int64_t rows = 1, batches = 1;
  for (size_t i = n; i + 1 < xd.size(); ++i) rows *= xd[i];
  for (size_t i = 0; i < n; ++i) {
    batches *= od[i];
    if ((xd[i] != od[i] && xd[i] != 1) || (wd[i] != od[i] && wd[i] != 1))
      return ffi::Error::InvalidArgument(std::string(name) + ": bad batch axes");
  }
  for (int64_t b = 0; b < batches; ++b) {
    int64_t xb = 0, wb = 0;  // b's index in x's and W's batch axes (0 where broadcast)
    for (size_t i = 0, rest = b, stride = batches; i < n; ++i) {
      stride /= od[i];
      const int64_t index = rest / stride;
      rest %= stride;
      xb = xb * xd[i] + (xd[i] == 1 ? 0 : index);
      wb = wb * wd[i] + (wd[i] == 1 ? 0 : index);
    }
    ForRowGroups(products, x.typed_data() + xb * rows * K, rows, W.typed_data() + wb * K * N, K,
                 N, out->typed_data() + b * rows * N);
  }
  return ffi::Error::Success();
}

ffi::Error KnImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> W,
                  ffi::ResultBuffer<ffi::F32> out) {
  return Batched("jaxnn matmul", kKn, false, x, W, out);
}

ffi::Error NkImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> W,
                  ffi::ResultBuffer<ffi::F32> out) {
  return Batched("jaxnn matmul_t", kNk, true, x, W, out);
}

}  // namespace

static auto Binding() {
  return ffi::Ffi::Bind()
      .Arg<ffi::Buffer<ffi::F32>>()
      .Arg<ffi::Buffer<ffi::F32>>()
      .Ret<ffi::Buffer<ffi::F32>>();
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxnnMatmulKn, KnImpl, Binding());

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxnnMatmulNk, NkImpl, Binding());

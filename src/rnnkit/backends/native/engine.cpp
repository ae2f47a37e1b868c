// rnnkit's native CPU engine: the time loops of the LSTM and the GRU in C++.
//
// The maths is that of rnnkit/functional/lstm.py and gru.py (same equations, same cache,
// same hand-derived backward); only the loop moves out of Python. Per time step there is
// one matrix product (h_{t-1} @ W_hh^T forward, dgates @ W_hh backward), called straight
// into the BLAS that torch ships (MKL's sgemm_/dgemm_, resolved at load time; at::mm when
// the torch build has none), and one pass of fused pointwise gate math over the rows still
// running. Everything else (input projections, weight gradients) is whole-sequence matrix
// products done by the Python side.
//
// Layout: time-major buffers [T, B, *], contiguous, rows sorted by length longest first
// when batch_sizes is given (the packed layout: step t works on rows [0, batch_sizes[t])).
// The ops write into buffers the caller allocates, and are registered as torch.ops.rnnkit.*.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "denormals.h"

extern "C" {
// Weak: a torch build without an exported BLAS still loads, and uses at::mm instead.
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*,
            const float*, const int*, const float*, const int*, const float*, float*,
            const int*) __attribute__((weak));
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*,
            const double*, const int*, const double*, const int*, const double*, double*,
            const int*) __attribute__((weak));
}

namespace {

using Sizes = c10::IntArrayRef;

// ---------------------------------------------------------------- the matrix products
//
// The recurrent product is small (a few rows of h against W_hh) and repeated T times with
// the same W_hh, so W_hh is packed once per sequence into 32-column panels, each a
// contiguous [k, 32] block: a step then streams W_hh front to back, which the hardware
// prefetcher follows at full speed (the row-major matrix, read 32 columns at a time with a
// stride of n, runs at about two thirds of that here). The micro kernel keeps MR rows x 32
// columns of C in registers (MR <= 3: 12 accumulators of the 16 AVX registers).

constexpr int64_t kPanel = 32;

struct Packed {
  std::vector<float> panels;  // [n / 32][k][32]
  const float* W;             // the original, for the last n % 32 columns
  int64_t k, n, ldw;
  bool transposed;            // W is stored [n, k] (torch's weight layout) rather than [k, n]
  int64_t full() const { return n / kPanel * kPanel; }
  float at(int64_t q, int64_t j) const { return transposed ? W[j * ldw + q] : W[q * ldw + j]; }
};

// The [k, n] matrix W (row stride ldw), or the transpose of the [n, k] matrix W when
// `transposed`, packed into panels. Packing from torch's [4H, H] weight directly saves
// the transposed copy, which costs more than a whole forward at batch 1 (4 ms at H = 512).
Packed pack(const float* W, int64_t k, int64_t n, int64_t ldw, bool transposed = false) {
  Packed p{std::vector<float>(static_cast<size_t>(n / kPanel * kPanel * k)), W, k, n, ldw,
           transposed};
  for (int64_t j = 0; j < p.full(); j += kPanel) {
    float* dst = p.panels.data() + j * k;
    if (transposed) {  // read rows of W front to back, write the panel's columns
      for (int64_t jj = 0; jj < kPanel; ++jj) {
        const float* src = W + (j + jj) * ldw;
        for (int64_t q = 0; q < k; ++q) dst[q * kPanel + jj] = src[q];
      }
    } else {
      for (int64_t q = 0; q < k; ++q) {
        std::copy(W + q * ldw + j, W + q * ldw + j + kPanel, dst + q * kPanel);
      }
    }
  }
  return p;
}

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
constexpr bool kHaveKernel = true;

inline void store_row(float* c, bool accumulate, __m256 v0, __m256 v1, __m256 v2, __m256 v3) {
  if (accumulate) {
    v0 = _mm256_add_ps(v0, _mm256_loadu_ps(c));
    v1 = _mm256_add_ps(v1, _mm256_loadu_ps(c + 8));
    v2 = _mm256_add_ps(v2, _mm256_loadu_ps(c + 16));
    v3 = _mm256_add_ps(v3, _mm256_loadu_ps(c + 24));
  }
  _mm256_storeu_ps(c, v0);
  _mm256_storeu_ps(c + 8, v1);
  _mm256_storeu_ps(c + 16, v2);
  _mm256_storeu_ps(c + 24, v3);
}

// C[MR rows, 32 columns] (+)= A[MR rows, k] @ panel[k, 32]. The accumulators are named
// variables, not an array: gcc spills an array to the stack on every iteration.
template <int MR>
inline void micro(int64_t k, const float* A, int64_t lda, const float* panel, bool accumulate,
                  float* C, int64_t ldc) {
  const __m256 z = _mm256_setzero_ps();
  __m256 a0 = z, a1 = z, a2 = z, a3 = z, b0 = z, b1 = z, b2 = z, b3 = z;
  __m256 c0 = z, c1 = z, c2 = z, c3 = z;
  const float* A1 = A + lda;
  const float* A2 = A + 2 * lda;
  for (int64_t q = 0; q < k; ++q) {
    const float* w = panel + q * kPanel;
    const __m256 w0 = _mm256_loadu_ps(w), w1 = _mm256_loadu_ps(w + 8);
    const __m256 w2 = _mm256_loadu_ps(w + 16), w3 = _mm256_loadu_ps(w + 24);
    const __m256 x0 = _mm256_broadcast_ss(A + q);
    a0 = _mm256_fmadd_ps(x0, w0, a0);
    a1 = _mm256_fmadd_ps(x0, w1, a1);
    a2 = _mm256_fmadd_ps(x0, w2, a2);
    a3 = _mm256_fmadd_ps(x0, w3, a3);
    if constexpr (MR >= 2) {
      const __m256 x1 = _mm256_broadcast_ss(A1 + q);
      b0 = _mm256_fmadd_ps(x1, w0, b0);
      b1 = _mm256_fmadd_ps(x1, w1, b1);
      b2 = _mm256_fmadd_ps(x1, w2, b2);
      b3 = _mm256_fmadd_ps(x1, w3, b3);
    }
    if constexpr (MR >= 3) {
      const __m256 x2 = _mm256_broadcast_ss(A2 + q);
      c0 = _mm256_fmadd_ps(x2, w0, c0);
      c1 = _mm256_fmadd_ps(x2, w1, c1);
      c2 = _mm256_fmadd_ps(x2, w2, c2);
      c3 = _mm256_fmadd_ps(x2, w3, c3);
    }
  }
  store_row(C, accumulate, a0, a1, a2, a3);
  if constexpr (MR >= 2) store_row(C + ldc, accumulate, b0, b1, b2, b3);
  if constexpr (MR >= 3) store_row(C + 2 * ldc, accumulate, c0, c1, c2, c3);
}

// Panels [p0, p1) (and, for the last thread, the tail columns) of C[m, n] (+)= A @ W.
void panels_gemm(int64_t m, int64_t p0, int64_t p1, bool tail, const float* A, int64_t lda,
                 const Packed& W, bool accumulate, float* C, int64_t ldc) {
  const int64_t k = W.k;
  for (int64_t p = p0; p < p1; ++p) {
    const float* panel = W.panels.data() + p * kPanel * k;
    const int64_t j = p * kPanel;
    int64_t i = 0;
    for (; i + 3 <= m; i += 3) micro<3>(k, A + i * lda, lda, panel, accumulate, C + i * ldc + j, ldc);
    if (m - i == 2) micro<2>(k, A + i * lda, lda, panel, accumulate, C + i * ldc + j, ldc);
    if (m - i == 1) micro<1>(k, A + i * lda, lda, panel, accumulate, C + i * ldc + j, ldc);
  }
  if (!tail) return;
  for (int64_t i = 0; i < m; ++i) {  // the last n % 32 columns
    for (int64_t j = W.full(); j < W.n; ++j) {
      float s = 0;
      for (int64_t q = 0; q < k; ++q) s += A[i * lda + q] * W.at(q, j);
      C[i * ldc + j] = accumulate ? C[i * ldc + j] + s : s;
    }
  }
}

// C[m, n] (+)= A[m, k] @ W; the panels are split over the threads (each streams its own
// share of W) when the product is large enough to pay for waking them.
void packed_gemm(int64_t m, const float* A, int64_t lda, const Packed& W, bool accumulate,
                 float* C, int64_t ldc) {
  const int64_t panels = W.n / kPanel;
  const int threads = at::get_num_threads();
  if (threads <= 1 || m * W.n * W.k < (int64_t{1} << 17) || panels < 2) {
    panels_gemm(m, 0, panels, true, A, lda, W, accumulate, C, ldc);
    return;
  }
  const int64_t per = (panels + threads - 1) / threads;
  at::parallel_for(0, threads, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      const int64_t a = std::min(panels, t * per), b = std::min(panels, (t + 1) * per);
      panels_gemm(m, a, b, t == threads - 1, A, lda, W, accumulate, C, ldc);
    }
  });
}
inline float hsum(__m256 v) {
  __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  x = _mm_add_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}

// Outputs [j0, j1) of C[i, j] (+)= dot(A[i, :], W[j, :]), W [n, k] row-major: torch's own
// weight layout, read front to back, four weight rows at a time.
void rowdot_range(int64_t m, int64_t j0, int64_t j1, int64_t k, const float* A, const float* W,
                  bool accumulate, float* C, int64_t ldc) {
  const int64_t k8 = k / 8 * 8;
  for (int64_t i = 0; i < m; ++i) {
    const float* a = A + i * k;
    float* c = C + i * ldc;
    int64_t j = j0;
    for (; j + 4 <= j1; j += 4) {
      const float* w = W + j * k;
      __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
      for (int64_t q = 0; q < k8; q += 8) {
        const __m256 x = _mm256_loadu_ps(a + q);
        s0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(w + q), s0);
        s1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(w + k + q), s1);
        s2 = _mm256_fmadd_ps(x, _mm256_loadu_ps(w + 2 * k + q), s2);
        s3 = _mm256_fmadd_ps(x, _mm256_loadu_ps(w + 3 * k + q), s3);
      }
      float out[4] = {hsum(s0), hsum(s1), hsum(s2), hsum(s3)};
      for (int r = 0; r < 4; ++r) {
        for (int64_t q = k8; q < k; ++q) out[r] += a[q] * w[r * k + q];
        c[j + r] = accumulate ? c[j + r] + out[r] : out[r];
      }
    }
    for (; j < j1; ++j) {
      float sum = 0;
      for (int64_t q = 0; q < k; ++q) sum += a[q] * W[j * k + q];
      c[j] = accumulate ? c[j] + sum : sum;
    }
  }
}

// C[m, n] (+)= A[m, k] @ W^T for the few rows of a single step, split over threads by
// output when there is enough of W to stream.
void rowdot_gemm(int64_t m, int64_t n, int64_t k, const float* A, const float* W, bool accumulate,
                 float* C, int64_t ldc) {
  const int threads = at::get_num_threads();
  if (threads <= 1 || m * n * k < (int64_t{1} << 17)) {
    rowdot_range(m, 0, n, k, A, W, accumulate, C, ldc);
    return;
  }
  const int64_t per = (n / 4 + threads - 1) / threads * 4;
  at::parallel_for(0, threads, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      const int64_t a = std::min(n, t * per), b = t == threads - 1 ? n : std::min(n, (t + 1) * per);
      if (a < b) rowdot_range(m, a, b, k, A, W, accumulate, C, ldc);
    }
  });
}
#else
constexpr bool kHaveKernel = false;
void packed_gemm(int64_t, const float*, int64_t, const Packed&, bool, float*, int64_t) {}
void rowdot_gemm(int64_t, int64_t, int64_t, const float*, const float*, bool, float*, int64_t) {}
void rowdot_range(int64_t, int64_t, int64_t, int64_t, const float*, const float*, bool, float*,
                  int64_t) {}
#endif

// C[m, n] = beta * C + A[m, k] @ op(Bm), all row-major with the given row strides.
// op(Bm) is Bm [k, n] when !trans_b, and Bm^T when Bm is [n, k] (trans_b).
template <typename T>
void gemm(int64_t m, int64_t n, int64_t k, const T* A, int64_t lda, const T* Bm, int64_t ldb,
          bool trans_b, T beta, T* C, int64_t ldc) {
  if (m == 0 || n == 0) return;
  const int M = static_cast<int>(n), N = static_cast<int>(m), K = static_cast<int>(k);
  const int LA = static_cast<int>(ldb), LB = static_cast<int>(lda), LC = static_cast<int>(ldc);
  const char ta = trans_b ? 'T' : 'N', tb = 'N';
  const T one = 1;
  // Row-major C = A op(B) is column-major C^T = op(B)^T A^T: swap the operands.
  if constexpr (std::is_same_v<T, float>) {
    if (sgemm_ != nullptr) {
      sgemm_(&ta, &tb, &M, &N, &K, &one, Bm, &LA, A, &LB, &beta, C, &LC);
      return;
    }
  } else {
    if (dgemm_ != nullptr) {
      dgemm_(&ta, &tb, &M, &N, &K, &one, Bm, &LA, A, &LB, &beta, C, &LC);
      return;
    }
  }
  auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  at::Tensor a = at::from_blob(const_cast<T*>(A), {m, k}, {lda, 1}, opts);
  at::Tensor b = trans_b ? at::from_blob(const_cast<T*>(Bm), {n, k}, {ldb, 1}, opts).t()
                         : at::from_blob(const_cast<T*>(Bm), {k, n}, {ldb, 1}, opts);
  at::Tensor c = at::from_blob(C, {m, n}, {ldc, 1}, opts);
  if (beta == T(0)) {
    at::mm_out(c, a, b);
  } else {
    c.addmm_(a, b, beta);
  }
}

// Rows of a step up to which the packed kernel beats MKL's sgemm for the recurrent product;
// above, sgemm's own blocking wins. Measured on the forward loop (H = 256, 512; 2 cores):
// packed 30% faster at 16 rows, even at 24, MKL 10-25% faster from 32 rows up (the GRU
// at 128 rows: 1.4 against 1.9-2.2 ms a step).
constexpr int64_t kPackedRows = 24;

// C[m, n] (+)= A[m, k] @ W[k, n] for one W used at every step of a sequence: packed once
// for the AVX2 kernel in float at a few rows, the BLAS otherwise (more rows, float64,
// other CPUs).
template <typename T>
struct RecurrentProduct {
  const T* W;
  int64_t k, n;
  bool transposed;  // W stored [n, k]
  bool kernel;
  Packed packed;

  RecurrentProduct(const T* W_, int64_t k_, int64_t n_, bool transposed_ = false)
      : W(W_), k(k_), n(n_), transposed(transposed_),
        kernel(kHaveKernel && std::is_same_v<T, float>) {
    if constexpr (std::is_same_v<T, float>) {
      if (kernel) packed = pack(W_, k_, n_, transposed_ ? k_ : n_, transposed_);
    }
  }

  void operator()(int64_t m, const T* A, int64_t lda, bool accumulate, T* C, int64_t ldc) const {
    if (m == 0) return;
    if constexpr (std::is_same_v<T, float>) {
      if (kernel && m <= kPackedRows) {
        packed_gemm(m, A, lda, packed, accumulate, C, ldc);
        return;
      }
    }
    gemm<T>(m, n, k, A, lda, W, transposed ? k : n, transposed, accumulate ? T(1) : T(0), C, ldc);
  }
};

// sigmoid(x) from e = exp(-|x|), which lies in (0, 1]: 1 / (1 + e) for x >= 0 and
// e / (1 + e) below. exp never overflows and the divisor stays in [1, 2], so a saturated
// gate (x far below -88 in float32, where 1 / (1 + exp(-x)) meets exp(-x) = inf) reads 0,
// not NaN, even where -ffast-math turns the division into a reciprocal estimate and a
// Newton step (inf * 0 = NaN). A NaN input stays NaN.
template <typename T>
inline T sigmoid(T x) {
  const T e = std::exp(-std::abs(x));
  const T r = T(1) / (T(1) + e);
  return x >= T(0) ? r : e * r;
}

// Rows [0, n) of a step, split over threads when there is enough work per row block.
template <typename F>
void for_rows(int64_t n, int64_t width, const F& body) {
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(width, 1));
  if (n <= grain) {
    body(0, n);
  } else {
    at::parallel_for(0, n, grain, [&](int64_t lo, int64_t hi) {
      rnnkit_native::FlushDenormals flush;  // each worker thread (denormals.h)
      body(lo, hi);
    });
  }
}

// The rows each step runs: B for all T steps, or batch_sizes, checked to stay in [0, B] and
// never grow (every buffer row a step touches exists, and rows past a sequence's end are
// never read back as running).
std::vector<int64_t> step_sizes(Sizes batch_sizes, int64_t T, int64_t B) {
  if (batch_sizes.empty()) return std::vector<int64_t>(T, B);
  TORCH_CHECK(static_cast<int64_t>(batch_sizes.size()) == T, "batch_sizes: expected ", T,
              " entries (one per time step), got ", batch_sizes.size());
  int64_t prev = B;
  for (int64_t n : batch_sizes) {
    TORCH_CHECK(n >= 0 && n <= prev, "batch_sizes: expected non-increasing counts in [0, ", B,
                "], got ", batch_sizes);
    prev = n;
  }
  return std::vector<int64_t>(batch_sizes.begin(), batch_sizes.end());
}

// t has exactly the shape `expected`: every pointer offset below is computed from these sizes.
void check_shape(const at::Tensor& t, std::initializer_list<int64_t> expected, const char* op,
                 const char* name) {
  TORCH_CHECK(t.sizes().equals(expected), op, ": ", name, ": expected shape ",
              c10::IntArrayRef(expected), ", got ", t.sizes());
}

void check_buffer(const at::Tensor& t, const at::Tensor& like, const char* name) {
  TORCH_CHECK(t.is_contiguous(), name, ": expected a contiguous tensor");
  TORCH_CHECK(t.device().is_cpu(), name, ": expected a CPU tensor");
  TORCH_CHECK(t.scalar_type() == like.scalar_type(), name, ": expected dtype ",
              like.scalar_type(), ", got ", t.scalar_type());
}

void check_buffers(std::initializer_list<const at::Tensor*> tensors, const at::Tensor& like,
                   const char* name) {
  for (const at::Tensor* t : tensors) check_buffer(*t, like, name);
}

// dh[:n] += dy_t[:n]; norms_t[b] = ||dh[b]|| when recording (the total dL/dh_t).
template <typename T>
void add_output_grad(T* dh, const T* dy_t, T* norms_t, int64_t n, int64_t H) {
  for (int64_t b = 0; b < n; ++b) {
    T* d = dh + b * H;
    if (dy_t != nullptr) {
      const T* y = dy_t + b * H;
      for (int64_t j = 0; j < H; ++j) d[j] += y[j];
    }
    if (norms_t != nullptr) {
      T s = 0;
      for (int64_t j = 0; j < H; ++j) s += d[j] * d[j];
      norms_t[b] = std::sqrt(s);
    }
  }
}

// ---------------------------------------------------------------- every cell, one loop
//
// The cells are written once, as a row of pointwise maths forward and a row of
// hand-derived maths backward (cell_row_forward / cell_row_backward below, one `if
// constexpr` branch per cell); the time loops around them (cell_forward_impl,
// cell_backward_impl) are the same for all and are instantiated per cell and dtype by the
// template. What differs between cells is described by CellTraits: the gate blocks, the
// states, where the recurrent product lands and which buffers the cache holds.
//
// The loops carry the two regularisers every cell has (rnnkit/functional/sequence.py):
// variational recurrent dropout (the product reads h_{t-1} * m, kept in `h_in` for dW_hh)
// and zoneout (s_t = s~_t + m_t (s_{t-1} - s~_t) after the cell's step; backward, the kept
// share m_t dL/ds_t skips the cell).

enum CellKind : int64_t {
  kRnnTanh = 0,
  kRnnRelu = 1,
  kLstm = 2,
  kCarryLstm = 3,
  kGru = 4,
  kLnLstm = 5,
  kLnGru = 6,
  kNumKinds = 7,
};

template <int K>
struct CellTraits {
  static constexpr bool rnn = K == kRnnTanh || K == kRnnRelu;
  static constexpr bool gru = K == kGru || K == kLnGru;
  static constexpr bool layer_norm = K == kLnLstm || K == kLnGru;
  static constexpr int gates = rnn ? 1 : gru ? 3 : K == kCarryLstm ? 5 : 4;
  static constexpr int states = (rnn || gru) ? 1 : 2;
  // The recurrent product goes to its own buffer (the GRU's gh, the layer norms' r) rather
  // than being added to the input projection.
  static constexpr bool own_product = gru || layer_norm;
};

// The cache each cell keeps beside the activations and states, in units of H per row:
// [0] tanh(c_t) (LSTMs) or gh (GRUs); [1] the normalised recurrent product (layer norms);
// [2] the normalised cell state (ln-lstm); [3] 1/std of each layer norm, in units of 1.
struct CacheShape {
  int64_t widths[3];  // 0 = absent
  int64_t norms;      // number of 1/std values per row
};

CacheShape cache_shape(int64_t kind) {
  switch (kind) {
    case kRnnTanh:
    case kRnnRelu: return {{0, 0, 0}, 0};
    case kLstm: return {{1, 0, 0}, 0};
    case kCarryLstm: return {{1, 0, 0}, 0};
    case kGru: return {{3, 0, 0}, 0};
    case kLnLstm: return {{1, 4, 1}, 2};
    case kLnGru: return {{3, 3, 0}, 1};
    default: TORCH_CHECK(false, "cell kind: expected 0..", kNumKinds - 1, ", got ", kind);
  }
  return {{0, 0, 0}, 0};
}

// Calls f(std::integral_constant<int, K>) for the kind's compile-time K.
template <typename F>
void dispatch_kind(int64_t kind, const F& f) {
  switch (kind) {
    case kRnnTanh: f(std::integral_constant<int, kRnnTanh>{}); break;
    case kRnnRelu: f(std::integral_constant<int, kRnnRelu>{}); break;
    case kLstm: f(std::integral_constant<int, kLstm>{}); break;
    case kCarryLstm: f(std::integral_constant<int, kCarryLstm>{}); break;
    case kGru: f(std::integral_constant<int, kGru>{}); break;
    case kLnLstm: f(std::integral_constant<int, kLnLstm>{}); break;
    case kLnGru: f(std::integral_constant<int, kLnGru>{}); break;
    default: TORCH_CHECK(false, "cell kind: expected 0..", kNumKinds - 1, ", got ", kind);
  }
}

// CellTraits of a kind known only at run time.
struct KindFacts {
  int64_t gates, states;
  bool gru, layer_norm;
};

KindFacts facts_of(int64_t kind) {
  KindFacts out{};
  dispatch_kind(kind, [&](auto k) {
    using Tr = CellTraits<decltype(k)::value>;
    out = {Tr::gates, Tr::states, Tr::gru, Tr::layer_norm};
  });
  return out;
}

// v[0, W) -> (v - mean) / sqrt(var + eps) in place (biased variance, as torch's layer norm);
// returns 1/std. Two passes, so a large mean does not cost the variance its precision.
template <typename T>
inline T normalise(T* v, int64_t W) {
  T mean = 0;
  for (int64_t j = 0; j < W; ++j) mean += v[j];
  mean /= T(W);
  T var = 0;
  for (int64_t j = 0; j < W; ++j) {
    const T d = v[j] - mean;
    var += d * d;
  }
  const T rstd = T(1) / std::sqrt(var / T(W) + T(1e-5));
  for (int64_t j = 0; j < W; ++j) v[j] = (v[j] - mean) * rstd;
  return rstd;
}

// The gradient reaching a layer norm's input x from g, the one reaching y = x_hat * w (+ b):
// u = g w, dx = rstd (u - mean(u) - x_hat mean(u x_hat)); written, or added to dx.
template <typename T>
inline void normalise_backward(const T* g, const T* xhat, const T* w, T rstd, T* dx, int64_t W,
                               bool accumulate) {
  T su = 0, sux = 0;
  for (int64_t j = 0; j < W; ++j) {
    const T u = g[j] * w[j];
    su += u;
    sux += u * xhat[j];
  }
  su /= T(W);
  sux /= T(W);
  for (int64_t j = 0; j < W; ++j) {
    const T v = rstd * (g[j] * w[j] - su - xhat[j] * sux);
    dx[j] = accumulate ? dx[j] + v : v;
  }
}

// What one step of the loops works on: rows [0, n) of time step t of every buffer.
template <typename T>
struct StepView {
  T* xp;             // [B, G]: pre-activations, overwritten with the activations
  const T* h_prev;   // [B, H] h_{t-1}
  const T* c_prev;   // [B, H] c_{t-1} (two-state cells)
  T* h_out;          // [B, H] h_t
  T* c_out;          // [B, H] c_t
  T* cache0;         // tanh(c^_t) [B, H] or gh [B, 3H]
  T* cache1;         // normalised W_hh h_in [B, G] (layer norms)
  T* cache2;         // normalised c_t [B, H] (ln-lstm)
  T* rstd;           // [B, norms]
  int64_t norms;
  const T* b_hh;     // GRU: [3H] or null (the other cells fold it into xp)
  const T* w_h;      // layer norms: the recurrent norm's gain [G]
  const T* w_c;      // ln-lstm: the cell norm's gain and bias [H]
  const T* b_c;
};

// The extra parameters each kind reads, by position in `extra`: ln-lstm (w_h, w_c, b_c),
// ln-gru (w_h).
template <typename T>
void extra_pointers(int64_t kind, at::TensorList extra, StepView<T>& v) {
  v.w_h = v.w_c = v.b_c = nullptr;
  if (kind == kLnLstm) {
    v.w_h = extra[0].data_ptr<T>();
    v.w_c = extra[1].data_ptr<T>();
    v.b_c = extra[2].data_ptr<T>();
  } else if (kind == kLnGru) {
    v.w_h = extra[0].data_ptr<T>();
  }
}

// Forward maths of row b (the recurrent product already in xp or in its own buffer), for
// hidden units [j0, j1) of every gate block (the whole row by default). The cells without
// layer norms can take a part of the units, which is how a streaming step splits a row
// over the cores; the layer norms need the whole row.
template <typename T, int K>
inline void cell_row_forward(const StepView<T>& v, int64_t b, int64_t H, int64_t j0 = 0,
                             int64_t j1 = -1) {
  using Tr = CellTraits<K>;
  constexpr int64_t NG = Tr::gates;
  const int64_t G = NG * H;
  if (j1 < 0 || Tr::layer_norm) {
    j0 = 0;
    j1 = H;
  }
  T* g = v.xp + b * G;
  T* hn = v.h_out + b * H;
  if constexpr (Tr::rnn) {
    for (int64_t j = j0; j < j1; ++j) {
      const T a = g[j];
      const T h = K == kRnnTanh ? std::tanh(a) : (a > T(0) ? a : T(0));
      g[j] = h;  // the activation is what the backward reads (before any zoneout)
      hn[j] = h;
    }
  } else if constexpr (Tr::gru) {
    T* gh = v.cache0 + b * G;
    const T* hp = v.h_prev + b * H;
    if constexpr (K == kLnGru) {
      T* r = v.cache1 + b * G;
      v.rstd[b * v.norms] = normalise(r, G);
      for (int64_t j = 0; j < G; ++j) {
        gh[j] = r[j] * v.w_h[j] + (v.b_hh != nullptr ? v.b_hh[j] : T(0));
      }
    } else if (v.b_hh != nullptr) {
      for (int64_t q = 0; q < 3; ++q) {
        for (int64_t j = q * H + j0; j < q * H + j1; ++j) gh[j] += v.b_hh[j];
      }
    }
    for (int64_t j = j0; j < j1; ++j) g[j] = sigmoid(g[j] + gh[j]);  // r
    for (int64_t j = H + j0; j < H + j1; ++j) g[j] = sigmoid(g[j] + gh[j]);  // z
    for (int64_t j = j0; j < j1; ++j) g[2 * H + j] = std::tanh(g[2 * H + j] + g[j] * gh[2 * H + j]);
    for (int64_t j = j0; j < j1; ++j) {
      const T nj = g[2 * H + j];
      hn[j] = nj + g[H + j] * (hp[j] - nj);  // (1 - z) n + z h_{t-1}
    }
  } else {  // the LSTMs
    if constexpr (K == kLnLstm) {
      T* r = v.cache1 + b * G;
      v.rstd[b * v.norms] = normalise(r, G);
      for (int64_t j = 0; j < G; ++j) g[j] += r[j] * v.w_h[j];
    }
    for (int64_t q = 0; q < NG; ++q) {  // i, f, g, o (and the carry gate): tanh for g only
      if (q == 2) {
        for (int64_t j = 2 * H + j0; j < 2 * H + j1; ++j) g[j] = std::tanh(g[j]);
      } else {
        for (int64_t j = q * H + j0; j < q * H + j1; ++j) g[j] = sigmoid(g[j]);
      }
    }
    const T* cp = v.c_prev + b * H;
    T* cn = v.c_out + b * H;
    T* tc = v.cache0 + b * H;
    for (int64_t j = j0; j < j1; ++j) cn[j] = g[H + j] * cp[j] + g[j] * g[2 * H + j];
    if constexpr (K == kLnLstm) {
      T* ch = v.cache2 + b * H;
      std::copy(cn, cn + H, ch);
      v.rstd[b * v.norms + 1] = normalise(ch, H);
      for (int64_t j = 0; j < H; ++j) tc[j] = std::tanh(ch[j] * v.w_c[j] + v.b_c[j]);
    } else {
      for (int64_t j = j0; j < j1; ++j) tc[j] = std::tanh(cn[j]);
    }
    for (int64_t j = j0; j < j1; ++j) hn[j] = g[3 * H + j] * tc[j];
    if constexpr (K == kCarryLstm) {
      const T* hp = v.h_prev + b * H;
      for (int64_t j = j0; j < j1; ++j) hn[j] += g[4 * H + j] * hp[j];  // + beta h_{t-1}
    }
  }
}

// s_t = s~_t + m (s_{t-1} - s~_t) for rows [lo, hi), as torch.lerp computes it: from the
// nearer end, so that a unit with m = 1 keeps s_{t-1} exactly (s~ + (s - s~) need not
// round to s).
template <typename T>
inline void zoneout_rows(T* out, const T* prev, const T* mask, int64_t lo, int64_t hi, int64_t H) {
  for (int64_t i = lo * H; i < hi * H; ++i) {
    const T m = mask[i], d = prev[i] - out[i];
    out[i] = m < T(0.5) ? out[i] + m * d : prev[i] - d * (T(1) - m);
  }
}

// The buffers of a whole sequence, as the forward and backward loops index them.
template <typename T>
struct SequenceBuffers {
  int64_t T_, B, H, G;
  T* xp;                   // [T, B, G]
  T* states[2];            // [T+1, B, H]
  T* cache[3];             // [T, B, w * H]
  int64_t cache_w[3];
  T* rstd;                 // [T, B, norms]
  int64_t norms;
  const T* mask;           // [B, H] recurrent dropout, or null
  T* h_in;                 // [T, B, H] h_{t-1} * mask, or null
  const T* zoneout[2];     // [T, B, H] per state, or null
};

template <typename T>
StepView<T> step_view(const SequenceBuffers<T>& s, int64_t t) {
  const int64_t BH = s.B * s.H;
  StepView<T> v{};
  v.xp = s.xp + t * s.B * s.G;
  v.h_prev = s.states[0] + t * BH;
  v.h_out = s.states[0] + (t + 1) * BH;
  if (s.states[1] != nullptr) {
    v.c_prev = s.states[1] + t * BH;
    v.c_out = s.states[1] + (t + 1) * BH;
  }
  v.cache0 = s.cache[0] ? s.cache[0] + t * s.B * s.cache_w[0] * s.H : nullptr;
  v.cache1 = s.cache[1] ? s.cache[1] + t * s.B * s.cache_w[1] * s.H : nullptr;
  v.cache2 = s.cache[2] ? s.cache[2] + t * s.B * s.cache_w[2] * s.H : nullptr;
  v.rstd = s.rstd ? s.rstd + t * s.B * s.norms : nullptr;
  v.norms = s.norms;
  return v;
}

template <typename T, int K>
void cell_forward_impl(SequenceBuffers<T>& s, const T* w_hh, const T* b_hh, at::TensorList extra,
                       const std::vector<int64_t>& sizes) {
  using Tr = CellTraits<K>;
  const int64_t B = s.B, H = s.H, G = s.G;
  const RecurrentProduct<T> product(w_hh, H, G, true);
  for (int64_t t = 0; t < s.T_; ++t) {
    const int64_t n = sizes[t];
    if (n == 0) continue;
    StepView<T> v = step_view(s, t);
    v.b_hh = b_hh;
    extra_pointers<T>(K, extra, v);
    const T* hin = v.h_prev;
    if (s.mask != nullptr) {  // variational recurrent dropout: the product reads h_{t-1} * m
      T* hi = s.h_in + t * B * H;
      for (int64_t i = 0; i < n * H; ++i) hi[i] = v.h_prev[i] * s.mask[i];
      hin = hi;
    }
    if constexpr (Tr::own_product) {
      product(n, hin, H, false, Tr::layer_norm ? v.cache1 : v.cache0, G);
    } else {
      product(n, hin, H, true, v.xp, G);  // += h_in W_hh^T
    }
    const T* zh = s.zoneout[0] ? s.zoneout[0] + t * B * H : nullptr;
    const T* zc = s.zoneout[1] ? s.zoneout[1] + t * B * H : nullptr;
    for_rows(n, G, [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b) cell_row_forward<T, K>(v, b, H);
      if (zh != nullptr) zoneout_rows<T>(v.h_out, v.h_prev, zh, lo, hi, H);
      if (zc != nullptr) zoneout_rows<T>(v.c_out, v.c_prev, zc, lo, hi, H);
    });
  }
}

// What one backward step writes: the gate gradients of row b, and the gradients carried to
// step t-1 (dh holds the part that does not go through W_hh: the GRU's z, the carry gate).
template <typename T>
struct GradView {
  T* dh;      // [B, H]
  T* dc;      // [B, H]
  T* dgx;     // [B, G] gradient of the pre-activations (input side)
  T* dgh;     // [B, G] GRUs: of the hidden side
  T* dr;      // [B, G] layer norms: of W_hh h_in
  T* dcache;  // [B, H] ln-lstm: of the normalised cell state's output (for w_c, b_c)
};

template <typename T, int K>
inline void cell_row_backward(const StepView<T>& v, const GradView<T>& d, int64_t b, int64_t H) {
  using Tr = CellTraits<K>;
  constexpr int64_t NG = Tr::gates;
  const int64_t G = NG * H;
  const T* g = v.xp + b * G;  // the activations
  T* dh = d.dh + b * H;
  T* dx = d.dgx + b * G;
  if constexpr (Tr::rnn) {
    for (int64_t j = 0; j < H; ++j) {
      const T h = g[j];
      dx[j] = dh[j] * (K == kRnnTanh ? T(1) - h * h : (h > T(0) ? T(1) : T(0)));
      dh[j] = 0;
    }
  } else if constexpr (Tr::gru) {
    const T* ghn = v.cache0 + b * G + 2 * H;
    const T* hp = v.h_prev + b * H;
    T* dhg = d.dgh + b * G;
    for (int64_t j = 0; j < H; ++j) {
      const T r = g[j], z = g[H + j], nn = g[2 * H + j], dj = dh[j];
      const T dn = dj * (T(1) - z) * (T(1) - nn * nn);
      const T dz = dj * (hp[j] - nn) * z * (T(1) - z);
      const T dr = dn * ghn[j] * r * (T(1) - r);
      dx[j] = dr;
      dx[H + j] = dz;
      dx[2 * H + j] = dn;
      dhg[j] = dr;
      dhg[H + j] = dz;
      dhg[2 * H + j] = dn * r;
      dh[j] = dj * z;  // the direct path; the product adds dgh W_hh
    }
    if constexpr (K == kLnGru) {
      normalise_backward(dhg, v.cache1 + b * G, v.w_h, v.rstd[b * v.norms], d.dr + b * G, G,
                         false);
    }
  } else {  // the LSTMs
    const T* cp = v.c_prev + b * H;
    const T* tc = v.cache0 + b * H;
    T* dc = d.dc + b * H;
    if constexpr (K == kLnLstm) {  // through h = o tanh(LN(c)) to c, by the cell norm
      T* dch = d.dcache + b * H;
      for (int64_t j = 0; j < H; ++j) dch[j] = dh[j] * g[3 * H + j] * (T(1) - tc[j] * tc[j]);
      normalise_backward(dch, v.cache2 + b * H, v.w_c, v.rstd[b * v.norms + 1], dc, H, true);
    }
    for (int64_t j = 0; j < H; ++j) {
      const T i = g[j], f = g[H + j], gg = g[2 * H + j], o = g[3 * H + j];
      const T dhj = dh[j], tcj = tc[j];
      const T dcj = K == kLnLstm ? dc[j] : dc[j] + dhj * o * (T(1) - tcj * tcj);  // dc_t
      dx[j] = dcj * gg * i * (T(1) - i);
      dx[H + j] = dcj * cp[j] * f * (T(1) - f);
      dx[2 * H + j] = dcj * i * (T(1) - gg * gg);
      dx[3 * H + j] = dhj * tcj * o * (T(1) - o);
      dc[j] = dcj * f;  // carried to c_{t-1}
    }
    if constexpr (K == kCarryLstm) {
      const T* hp = v.h_prev + b * H;
      for (int64_t j = 0; j < H; ++j) {
        const T beta = g[4 * H + j];
        dx[4 * H + j] = dh[j] * hp[j] * beta * (T(1) - beta);
        dh[j] *= beta;  // the carry path
      }
    } else {
      std::fill(dh, dh + H, T(0));
    }
    if constexpr (K == kLnLstm) {
      normalise_backward(dx, v.cache1 + b * G, v.w_h, v.rstd[b * v.norms], d.dr + b * G, G, false);
    }
  }
}

template <typename T, int K>
void cell_backward_impl(SequenceBuffers<T>& s, const T* w_hh, at::TensorList extra, const T* dy,
                        T* dh, T* dc, T* dgx, T* dgh, T* dr, T* dcache,
                        const std::vector<int64_t>& sizes, T* norms) {
  using Tr = CellTraits<K>;
  const int64_t B = s.B, H = s.H, G = s.G;
  const RecurrentProduct<T> product(w_hh, G, H);
  // The zoneout shares kept aside while the cell's backward runs, and the product's result
  // before the recurrent mask.
  std::vector<T> kept_h(s.zoneout[0] ? B * H : 0), kept_c(s.zoneout[1] ? B * H : 0);
  std::vector<T> masked(s.mask ? B * H : 0);
  for (int64_t t = s.T_ - 1; t >= 0; --t) {
    const int64_t n = sizes[t];
    if (n == 0) continue;
    add_output_grad<T>(dh, dy == nullptr ? nullptr : dy + t * B * H,
                       norms == nullptr ? nullptr : norms + t * B, n, H);
    StepView<T> v = step_view(s, t);
    extra_pointers<T>(K, extra, v);
    GradView<T> d{dh, dc, dgx + t * B * G, dgh ? dgh + t * B * G : nullptr,
                  dr ? dr + t * B * G : nullptr, dcache ? dcache + t * B * H : nullptr};
    const T* zh = s.zoneout[0] ? s.zoneout[0] + t * B * H : nullptr;
    const T* zc = s.zoneout[1] ? s.zoneout[1] + t * B * H : nullptr;
    for_rows(n, G, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo * H; zh != nullptr && i < hi * H; ++i) {
        kept_h[i] = dh[i] * zh[i];
        dh[i] -= kept_h[i];
      }
      for (int64_t i = lo * H; zc != nullptr && i < hi * H; ++i) {
        kept_c[i] = dc[i] * zc[i];
        dc[i] -= kept_c[i];
      }
      for (int64_t b = lo; b < hi; ++b) cell_row_backward<T, K>(v, d, b, H);
      for (int64_t i = lo * H; zh != nullptr && i < hi * H; ++i) dh[i] += kept_h[i];
      for (int64_t i = lo * H; zc != nullptr && i < hi * H; ++i) dc[i] += kept_c[i];
    });
    const T* src = Tr::layer_norm ? d.dr : Tr::gru ? d.dgh : d.dgx;
    if (s.mask == nullptr) {
      product(n, src, G, true, dh, H);  // dh_{t-1} += dgates W_hh
    } else {
      product(n, src, G, false, masked.data(), H);
      for (int64_t i = 0; i < n * H; ++i) dh[i] += masked[i] * s.mask[i];
    }
  }
}

// The tensors of a sequence, checked against the shapes the loops index with, and their
// pointers. states: one or two [T+1, B, H]; cache: as cache_shape(kind), then the 1/std
// buffer [T, B, norms] when the cell has layer norms.
template <typename T>
SequenceBuffers<T> sequence_buffers(int64_t kind, const at::Tensor& xp, const at::Tensor& w_hh,
                                    at::TensorList extra, at::TensorList states,
                                    at::TensorList cache, const std::optional<at::Tensor>& mask,
                                    const std::optional<at::Tensor>& h_in,
                                    const c10::List<std::optional<at::Tensor>>& zoneout,
                                    const char* op) {
  TORCH_CHECK(kind >= 0 && kind < kNumKinds, op, ": cell kind: expected 0..", kNumKinds - 1,
              ", got ", kind);
  TORCH_CHECK(xp.dim() == 3 && w_hh.dim() == 2, op, ": expected 3-D xp and 2-D w_hh, got ",
              xp.sizes(), " and ", w_hh.sizes());
  const int64_t steps = xp.size(0), B = xp.size(1), H = w_hh.size(1), G = facts_of(kind).gates * H;
  check_buffers({&xp, &w_hh}, xp, op);
  check_shape(xp, {steps, B, G}, op, "xp");
  check_shape(w_hh, {G, H}, op, "w_hh");
  const int64_t n_states = facts_of(kind).states;
  TORCH_CHECK(static_cast<int64_t>(states.size()) == n_states, op, ": expected ", n_states,
              " state buffers, got ", states.size());
  for (const auto& st : states) {
    check_buffer(st, xp, op);
    check_shape(st, {steps + 1, B, H}, op, "states");
  }
  const CacheShape shape = cache_shape(kind);
  int64_t n_cache = 0;
  for (int64_t w : shape.widths) n_cache += w > 0;
  const int64_t want = n_cache + (shape.norms > 0);
  TORCH_CHECK(static_cast<int64_t>(cache.size()) == want, op, ": expected ", want,
              " cache buffers, got ", cache.size());
  const int64_t n_extra = kind == kLnLstm ? 3 : kind == kLnGru ? 1 : 0;
  TORCH_CHECK(static_cast<int64_t>(extra.size()) == n_extra, op, ": expected ", n_extra,
              " extra parameters, got ", extra.size());
  if (n_extra > 0) {
    check_buffer(extra[0], xp, op);
    check_shape(extra[0], {G}, op, "w_h");
  }
  for (int64_t e = 1; e < n_extra; ++e) {
    check_buffer(extra[e], xp, op);
    check_shape(extra[e], {H}, op, "cell norm");
  }
  SequenceBuffers<T> s{};
  s.T_ = steps;
  s.B = B;
  s.H = H;
  s.G = G;
  s.xp = xp.data_ptr<T>();
  s.states[0] = states[0].data_ptr<T>();
  s.states[1] = n_states > 1 ? states[1].data_ptr<T>() : nullptr;
  int64_t k = 0;
  for (int64_t c = 0; c < 3; ++c) {
    s.cache_w[c] = shape.widths[c];
    s.cache[c] = nullptr;
    if (shape.widths[c] == 0) continue;
    check_buffer(cache[k], xp, op);
    check_shape(cache[k], {steps, B, shape.widths[c] * H}, op, "cache");
    s.cache[c] = cache[k++].data_ptr<T>();
  }
  s.norms = shape.norms;
  s.rstd = nullptr;
  if (shape.norms > 0) {
    check_buffer(cache[k], xp, op);
    check_shape(cache[k], {steps, B, shape.norms}, op, "rstd");
    s.rstd = cache[k].data_ptr<T>();
  }
  TORCH_CHECK(mask.has_value() == h_in.has_value(), op,
              ": expected a recurrent mask and an h_in buffer together, or neither");
  s.mask = nullptr;
  s.h_in = nullptr;
  if (mask) {
    check_buffers({&*mask, &*h_in}, xp, op);
    check_shape(*mask, {B, H}, op, "recurrent_mask");
    check_shape(*h_in, {steps, B, H}, op, "h_in");
    s.mask = mask->data_ptr<T>();
    s.h_in = h_in->data_ptr<T>();
  }
  TORCH_CHECK(static_cast<int64_t>(zoneout.size()) <= n_states, op, ": expected at most ",
              n_states, " zoneout masks, got ", zoneout.size());
  s.zoneout[0] = s.zoneout[1] = nullptr;
  for (size_t z = 0; z < zoneout.size(); ++z) {
    const std::optional<at::Tensor> m = zoneout.get(z);
    if (!m) continue;
    check_buffer(*m, xp, op);
    check_shape(*m, {steps, B, H}, op, "zoneout");
    s.zoneout[z] = m->data_ptr<T>();
  }
  return s;
}

// The forward of cell `kind` over a sequence. xp [T, B, G]: the input projections (both
// biases for the cells that fold b_hh, b_ih only for the GRUs), overwritten with the
// activations; w_hh [G, H] (torch.nn's layout); b_hh [G] for the GRUs (else None); extra:
// ln-lstm (w_h [4H], w_c [H], b_c [H]), ln-gru (w_h [3H]); states: h (and c) [T+1, B, H]
// with the initial state at index 0; cache as cache_shape; recurrent_mask [B, H] with
// h_in [T, B, H], or neither; zoneout: a [T, B, H] mask per state, or None.
void cell_forward(int64_t kind, at::Tensor xp, const at::Tensor& w_hh,
                  const std::optional<at::Tensor>& b_hh, at::TensorList extra,
                  at::TensorList states, at::TensorList cache,
                  const std::optional<at::Tensor>& recurrent_mask,
                  const std::optional<at::Tensor>& h_in,
                  const c10::List<std::optional<at::Tensor>>& zoneout, Sizes batch_sizes) {
  rnnkit_native::FlushDenormals flush;  // the calling thread too (denormals.h)
  AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "cell_forward", [&] {
    using T = scalar_t;
    auto s = sequence_buffers<T>(kind, xp, w_hh, extra, states, cache, recurrent_mask, h_in,
                                 zoneout, "cell_forward");
    const bool gru = facts_of(kind).gru;
    TORCH_CHECK(gru || !b_hh.has_value(), "cell_forward: b_hh: expected None (this cell folds "
                "it into xp)");
    if (b_hh) {
      check_buffer(*b_hh, xp, "cell_forward b_hh");
      check_shape(*b_hh, {s.G}, "cell_forward", "b_hh");
    }
    const auto sizes = step_sizes(batch_sizes, s.T_, s.B);
    const T* bh = b_hh ? b_hh->data_ptr<T>() : nullptr;
    dispatch_kind(kind, [&](auto k) {
      cell_forward_impl<T, decltype(k)::value>(s, w_hh.data_ptr<T>(), bh, extra, sizes);
    });
  });
}

// The hand-derived backward of cell_forward: the same buffers (xp now the activations),
// dy [T, B, H] or None; drec: dh (and dc) [B, H], the final states' gradients on entry and
// the initial states' on exit; dgx [T, B, G] receives the pre-activations' gradient, dgh
// [T, B, G] the hidden side's (GRUs), dr [T, B, G] that of W_hh h_in (layer norms), dcache
// [T, B, H] that of the normalised cell state's output (ln-lstm); zero them all when
// batch_sizes is given (rows past a sequence's end are not written); norms [T, B] or None.
void cell_backward(int64_t kind, const at::Tensor& acts, const at::Tensor& w_hh,
                   at::TensorList extra, at::TensorList states, at::TensorList cache,
                   const std::optional<at::Tensor>& recurrent_mask,
                   const std::optional<at::Tensor>& h_in,
                   const c10::List<std::optional<at::Tensor>>& zoneout,
                   const std::optional<at::Tensor>& dy, at::TensorList drec, at::Tensor dgx,
                   const std::optional<at::Tensor>& dgh, const std::optional<at::Tensor>& dr,
                   const std::optional<at::Tensor>& dcache, Sizes batch_sizes,
                   const std::optional<at::Tensor>& norms) {
  rnnkit_native::FlushDenormals flush;  // the calling thread too (denormals.h)
  AT_DISPATCH_FLOATING_TYPES(acts.scalar_type(), "cell_backward", [&] {
    using T = scalar_t;
    auto s = sequence_buffers<T>(kind, acts, w_hh, extra, states, cache, recurrent_mask, h_in,
                                 zoneout, "cell_backward");
    const int64_t T_ = s.T_, B = s.B, H = s.H, G = s.G;
    const char* op = "cell_backward";
    TORCH_CHECK(static_cast<int64_t>(drec.size()) == facts_of(kind).states, op, ": expected ",
                facts_of(kind).states, " state gradients, got ", drec.size());
    for (const auto& g : drec) {
      check_buffer(g, acts, op);
      check_shape(g, {B, H}, op, "drec");
    }
    check_buffer(dgx, acts, op);
    check_shape(dgx, {T_, B, G}, op, "dgx");
    if (dy) {
      check_buffer(*dy, acts, op);
      check_shape(*dy, {T_, B, H}, op, "dy");
    }
    if (norms) {
      check_buffer(*norms, acts, op);
      check_shape(*norms, {T_, B}, op, "norms");
    }
    const KindFacts facts = facts_of(kind);
    const bool gru = facts.gru, ln = facts.layer_norm;
    TORCH_CHECK(dgh.has_value() == gru, op, ": dgh: expected it for the GRUs only");
    TORCH_CHECK(dr.has_value() == ln, op, ": dr: expected it for the layer-norm cells only");
    TORCH_CHECK(dcache.has_value() == (kind == kLnLstm), op, ": dcache: expected it for "
                "ln-lstm only");
    for (const auto* g : {&dgh, &dr}) {
      if (!g->has_value()) continue;
      check_buffer(**g, acts, op);
      check_shape(**g, {T_, B, G}, op, "dgh/dr");
    }
    if (dcache) {
      check_buffer(*dcache, acts, op);
      check_shape(*dcache, {T_, B, H}, op, "dcache");
    }
    const auto sizes = step_sizes(batch_sizes, T_, B);
    auto p = [](const std::optional<at::Tensor>& t) { return t ? t->data_ptr<T>() : nullptr; };
    T* dh = drec[0].data_ptr<T>();
    T* dc = drec.size() > 1 ? drec[1].data_ptr<T>() : nullptr;
    dispatch_kind(kind, [&](auto k) {
      cell_backward_impl<T, decltype(k)::value>(s, w_hh.data_ptr<T>(), extra, p(dy), dh, dc,
                                                dgx.data_ptr<T>(), p(dgh), p(dr), p(dcache),
                                                sizes, p(norms));
    });
  });
}

// ---------------------------------------------------------------- single steps (inference)

// gates[b, :] = bias + x[b] W_ih^T + h[b] W_hh^T, rows of width G.
template <typename T>
void project_step(T* out, const at::Tensor& x, const at::Tensor& w, const T* bias, int64_t n,
                  int64_t G, bool accumulate) {
  const int64_t K = x.size(1);
  if (!accumulate) {
    for (int64_t b = 0; b < n; ++b) {
      T* o = out + b * G;
      if (bias == nullptr) {
        std::fill(o, o + G, T(0));
      } else {
        std::copy(bias, bias + G, o);
      }
    }
  } else if (bias != nullptr) {
    for (int64_t b = 0; b < n; ++b) {
      for (int64_t j = 0; j < G; ++j) out[b * G + j] += bias[j];
    }
  }
  if constexpr (std::is_same_v<T, float>) {
    if (kHaveKernel && n <= 4) {  // a few rows: dot products over torch's weight rows
      rowdot_gemm(n, G, K, x.data_ptr<T>(), w.data_ptr<T>(), true, out, G);
      return;
    }
  }
  gemm<T>(n, G, K, x.data_ptr<T>(), K, w.data_ptr<T>(), K, true, T(1), out, G);
}

// Units [u0, u1) of one layer's single step, for the few rows of a streaming batch: the
// gate rows of those units from both products (dot products over torch's weight rows),
// then their gate math. Threads take disjoint units, so a layer is one parallel region
// with nothing shared but the inputs.
template <typename F>
void for_units(int64_t B, int64_t H, int64_t width, const F& body) {
  const int threads = at::get_num_threads();
  if (threads <= 1 || B * width < (int64_t{1} << 16) || H < 8 * threads) {
    body(0, H);
    return;
  }
  const int64_t per = (H / threads + 3) / 4 * 4;
  at::parallel_for(0, threads, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      const int64_t a = std::min(H, t * per), b = t == threads - 1 ? H : std::min(H, (t + 1) * per);
      if (a < b) body(a, b);
    }
  });
}

// Rows of a streaming batch up to which a step takes the unit-parallel path below.
constexpr int64_t kStepRows = 4;

// One layer's single step of a cell without layer norms, for the few rows of a streaming
// batch (float, AVX2): the gate rows of units [u0, u1) from both products (dot products
// over torch's weight rows), then their gate math. Threads take disjoint units, so a layer
// is one parallel region with nothing shared but the inputs. `v` holds the step's buffers,
// with v.b_hh set for the GRU (the other cells fold b_hh here).
template <int K>
void unit_parallel_step(int64_t B, int64_t I, int64_t H, const float* x, const float* w_ih,
                        const float* w_hh, const float* b_ih, const float* b_hh,
                        const StepView<float>& v) {
  using Tr = CellTraits<K>;
  static_assert(!Tr::layer_norm, "a layer norm needs the whole row");
  const int64_t G = Tr::gates * H;
  float* hidden = Tr::gru ? v.cache0 : v.xp;  // where W_hh h goes
  for_units(B, H, G * (I + H), [&](int64_t u0, int64_t u1) {
    for (int64_t q = 0; q < Tr::gates; ++q) {
      const int64_t r0 = q * H + u0, r1 = q * H + u1;
      rowdot_range(B, r0, r1, I, x, w_ih, false, v.xp, G);
      rowdot_range(B, r0, r1, H, v.h_prev, w_hh, !Tr::gru, hidden, G);
      if (b_ih != nullptr) {
        for (int64_t b = 0; b < B; ++b) {
          for (int64_t j = r0; j < r1; ++j) v.xp[b * G + j] += b_ih[j] + (Tr::gru ? 0.f : b_hh[j]);
        }
      }
    }
    for (int64_t b = 0; b < B; ++b) cell_row_forward<float, K>(v, b, H, u0, u1);
  });
}

// xp = W_ih x and target (+)= W_hh h for the B rows of one step (target may be xp, then
// added). A few rows in float: one parallel region, each thread the same gate rows of both
// weights (dot products over torch's weight rows); otherwise two products.
template <typename T>
void step_products(int64_t B, int64_t G, const at::Tensor& input, const T* h_prev,
                   const at::Tensor& w_ih, const at::Tensor& w_hh, T* xp, T* target,
                   bool accumulate) {
  const int64_t I = input.size(1), H = w_hh.size(1);
  if constexpr (std::is_same_v<T, float>) {
    if (kHaveKernel && B <= kStepRows) {
      const float* in = input.data_ptr<float>();
      const float* wi = w_ih.data_ptr<float>();
      const float* wh = w_hh.data_ptr<float>();
      for_units(B, G, G * (I + H), [&](int64_t j0, int64_t j1) {
        rowdot_range(B, j0, j1, I, in, wi, false, xp, G);
        rowdot_range(B, j0, j1, H, h_prev, wh, accumulate, target, G);
      });
      return;
    }
  }
  project_step<T>(xp, input, w_ih, nullptr, B, G, false);
  const at::Tensor h = at::from_blob(const_cast<T*>(h_prev), {B, H}, input.options());
  project_step<T>(target, h, w_hh, nullptr, B, G, accumulate);
}

// One step of a stack of `layers` layers of cell `kind` without gradients: the streaming
// step of every cell, one call for the whole stack. x [B, I]; states: none (zeros) or one
// [layers, B, H] per state; weights, per layer: w_ih [G, I_l] (I_0 = x's width, then H),
// w_hh [G, H], b_ih and b_hh [G] with has_bias, then the cell's extra parameters as the
// layer holds them (ln-lstm: w_x [G], w_h [G], w_c [H], b_c [H]; ln-gru: w_x [G], w_h [G]).
// zoneout: per state, the probability (evaluation: each unit takes its expectation), or
// empty. Returns the top layer's h_t [B, H] and the new states, each [layers, B, H]. At a
// few rows in float, the cells without layer norms take unit_parallel_step; the others, and
// more rows, make the two products, then run the sequence loop's cell_row_forward.
std::tuple<at::Tensor, std::vector<at::Tensor>> cell_step(int64_t kind, const at::Tensor& x,
                                                          at::TensorList states,
                                                          at::TensorList weights, int64_t layers,
                                                          bool has_bias,
                                                          c10::ArrayRef<double> zoneout) {
  rnnkit_native::FlushDenormals flush;  // the calling thread too (denormals.h)
  const char* op = "cell_step";
  TORCH_CHECK(kind >= 0 && kind < kNumKinds, op, ": cell kind: expected 0..", kNumKinds - 1,
              ", got ", kind);
  const int64_t n_extra = kind == kLnLstm ? 4 : kind == kLnGru ? 2 : 0;
  const int64_t per = (has_bias ? 4 : 2) + n_extra;
  TORCH_CHECK(layers >= 1 && static_cast<int64_t>(weights.size()) == per * layers, op,
              ": expected ", per * layers, " weights (", per, " per layer), got ", weights.size());
  check_buffer(x, x, op);
  TORCH_CHECK(x.dim() == 2 && weights[1].dim() == 2, op, ": expected 2-D x and w_hh, got ",
              x.sizes(), " and ", weights[1].sizes());
  for (const auto& w : weights) check_buffer(w, x, op);
  const int64_t n_states = facts_of(kind).states;
  TORCH_CHECK(states.empty() || static_cast<int64_t>(states.size()) == n_states, op,
              ": expected no states (zeros) or ", n_states, ", got ", states.size());
  const int64_t B = x.size(0), H = weights[1].size(1), G = facts_of(kind).gates * H;
  for (int64_t l = 0; l < layers; ++l) {
    const at::Tensor* w = weights.data() + per * l;
    check_shape(w[0], {G, l == 0 ? x.size(1) : H}, op, "w_ih");
    check_shape(w[1], {G, H}, op, "w_hh");
    if (has_bias) {
      check_shape(w[2], {G}, op, "b_ih");
      check_shape(w[3], {G}, op, "b_hh");
    }
    for (int64_t e = 0; e < n_extra; ++e) {
      check_shape(w[per - n_extra + e], {e < 2 ? G : H}, op, "layer-norm parameter");
    }
  }
  for (const auto& st : states) {
    check_buffer(st, x, op);
    check_shape(st, {layers, B, H}, op, "state");
  }
  TORCH_CHECK(static_cast<int64_t>(zoneout.size()) <= n_states, op, ": expected at most ",
              n_states, " zoneout probabilities, got ", zoneout.size());
  for (double p : zoneout) {
    TORCH_CHECK(p >= 0 && p <= 1, op, ": zoneout: expected probabilities in [0, 1], got ", p);
  }
  std::vector<at::Tensor> out;
  for (int64_t k = 0; k < n_states; ++k) out.push_back(at::empty({layers, B, H}, x.options()));
  const CacheShape shape = cache_shape(kind);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "cell_step", [&] {
    using T = scalar_t;
    std::vector<T> zeros(states.empty() ? B * H : 0, T(0));
    std::vector<T> xp(B * G), c0(B * std::max<int64_t>(shape.widths[0], 1) * H),
        c1(B * G), c2(B * H), rstd(B * 2);
    at::Tensor input = x;
    dispatch_kind(kind, [&](auto k) {
      constexpr int K = decltype(k)::value;
      using Tr = CellTraits<K>;
      for (int64_t l = 0; l < layers; ++l) {
        const at::Tensor* w = weights.data() + per * l;
        const T* b_ih = has_bias ? w[2].data_ptr<T>() : nullptr;
        const T* b_hh = has_bias ? w[3].data_ptr<T>() : nullptr;
        const T* h_prev = states.empty() ? zeros.data() : states[0].data_ptr<T>() + l * B * H;
        const T* c_prev = nullptr;
        if (n_states > 1) c_prev = states.empty() ? zeros.data() : states[1].data_ptr<T>() + l * B * H;
        T* h_out = out[0].data_ptr<T>() + l * B * H;
        T* c_out = n_states > 1 ? out[1].data_ptr<T>() + l * B * H : nullptr;
        const int64_t I = input.size(1);
        const T* in = input.data_ptr<T>();
        StepView<T> v{};
        v.xp = xp.data();
        v.h_prev = h_prev;
        v.c_prev = c_prev;
        v.h_out = h_out;
        v.c_out = c_out;
        v.cache0 = c0.data();
        v.cache1 = c1.data();
        v.cache2 = c2.data();
        v.rstd = rstd.data();
        v.norms = std::max<int64_t>(shape.norms, 1);
        v.b_hh = Tr::gru ? b_hh : nullptr;
        v.w_h = n_extra > 0 ? w[per - n_extra + 1].data_ptr<T>() : nullptr;
        v.w_c = n_extra > 2 ? w[per - n_extra + 2].data_ptr<T>() : nullptr;
        v.b_c = n_extra > 2 ? w[per - n_extra + 3].data_ptr<T>() : nullptr;
        bool done = false;
        if constexpr (std::is_same_v<T, float> && !Tr::layer_norm) {
          if (kHaveKernel && B <= kStepRows) {
            unit_parallel_step<K>(B, I, H, in, w[0].data_ptr<T>(), w[1].data_ptr<T>(), b_ih,
                                  b_hh, v);
            done = true;
          }
        }
        if (!done) {
          T* target = Tr::layer_norm ? c1.data() : Tr::gru ? c0.data() : xp.data();
          step_products<T>(B, G, input, h_prev, w[0], w[1], xp.data(), target,
                           !Tr::own_product);  // W_ih x, and W_hh h into target
          const T* w_x = n_extra > 0 ? w[per - n_extra].data_ptr<T>() : nullptr;
          for (int64_t b = 0; b < B; ++b) {
            T* row = xp.data() + b * G;
            if (w_x != nullptr) {  // the input layer norm
              normalise(row, G);
              for (int64_t j = 0; j < G; ++j) row[j] *= w_x[j];
            }
            for (int64_t j = 0; b_ih != nullptr && j < G; ++j) {
              row[j] += b_ih[j] + (Tr::gru ? T(0) : b_hh[j]);
            }
          }
          for_rows(B, G, [&](int64_t lo, int64_t hi) {
            for (int64_t b = lo; b < hi; ++b) cell_row_forward<T, K>(v, b, H);
          });
        }
        // Zoneout in evaluation: each unit takes its expectation, s = p s_{t-1} + (1 - p) s~,
        // before the next layer reads h.
        for (size_t z = 0; z < zoneout.size(); ++z) {
          if (zoneout[z] == 0) continue;
          const T p = static_cast<T>(zoneout[z]);
          T* s_out = z == 0 ? h_out : c_out;
          const T* s_prev = z == 0 ? h_prev : c_prev;
          for (int64_t i = 0; i < B * H; ++i) {
            const T d = s_prev[i] - s_out[i];
            s_out[i] = p < T(0.5) ? s_out[i] + p * d : s_prev[i] - d * (T(1) - p);
          }
        }
        input = out[0][l];
      }
    });
  });
  return {out[0][layers - 1], out};
}

// a [m, k] @ w [k, n] (w [n, k] and its transpose when `transposed`) (+ bias [n]), all
// contiguous, through the packed kernel the loops use (in float with AVX2; at::addmm
// otherwise), with the rows taken in blocks that stay in L2 while every panel passes over
// them. The engine's whole-sequence products stay with MKL, which this ties with at those
// sizes; the op is how the kernel is tested and measured on its own
// (benchmarks/engine_split.py).
at::Tensor matmul(const at::Tensor& a, const at::Tensor& w, const std::optional<at::Tensor>& bias,
                  bool transposed) {
  check_buffers({&a, &w}, a, "matmul");
  if (bias) check_buffer(*bias, a, "matmul bias");
  TORCH_CHECK(a.dim() == 2 && w.dim() == 2 && a.size(1) == w.size(transposed ? 1 : 0),
              "matmul: shapes ", a.sizes(), " and ", w.sizes(), " do not chain");
  const int64_t m = a.size(0), k = a.size(1), n = w.size(transposed ? 0 : 1);
  if (bias) check_shape(*bias, {n}, "matmul", "bias");
  if (!kHaveKernel || a.scalar_type() != at::kFloat || m == 0) {
    const at::Tensor wk = transposed ? w.t() : w;
    return bias ? at::addmm(*bias, a, wk) : at::mm(a, wk);
  }
  // A fresh buffer: expand(...).contiguous() would alias the bias itself when m == 1.
  at::Tensor out = bias ? at::empty({m, n}, a.options()).copy_(bias->expand({m, n}))
                        : at::zeros({m, n}, a.options());
  const Packed packed = pack(w.data_ptr<float>(), k, n, transposed ? k : n, transposed);
  constexpr int64_t kBlock = 96;  // rows of a per block: 96 x k floats stay in L2
  const float* A = a.data_ptr<float>();
  float* C = out.data_ptr<float>();
  for (int64_t i = 0; i < m; i += kBlock) {
    packed_gemm(std::min(kBlock, m - i), A + i * k, k, packed, true, C + i * n, n);
  }
  return out;
}

}  // namespace

TORCH_LIBRARY(rnnkit, m) {
  m.def("cell_forward(int kind, Tensor(a!) xp, Tensor w_hh, Tensor? b_hh, Tensor[] extra, "
        "Tensor(b!)[] states, Tensor(c!)[] cache, Tensor? recurrent_mask, Tensor(d!)? h_in, "
        "Tensor?[] zoneout, int[] batch_sizes) -> ()", &cell_forward);
  m.def("cell_backward(int kind, Tensor acts, Tensor w_hh, Tensor[] extra, Tensor[] states, "
        "Tensor[] cache, Tensor? recurrent_mask, Tensor? h_in, Tensor?[] zoneout, Tensor? dy, "
        "Tensor(a!)[] drec, Tensor(b!) dgx, Tensor(c!)? dgh, Tensor(d!)? dr, Tensor(e!)? dcache, "
        "int[] batch_sizes, Tensor(f!)? norms) -> ()", &cell_backward);
  m.def("cell_step(int kind, Tensor x, Tensor[] states, Tensor[] weights, int layers, "
        "bool has_bias, float[] zoneout) -> (Tensor, Tensor[])", &cell_step);
  m.def("matmul(Tensor a, Tensor w, Tensor? bias, bool transposed) -> Tensor", &matmul);
}

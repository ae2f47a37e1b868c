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

// C[m, n] (+)= A[m, k] @ W[k, n] for one W used at every step of a sequence: packed once
// for the AVX2 kernel in float, the BLAS otherwise (float64, other CPUs).
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
      if (kernel) {
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
    at::parallel_for(0, n, grain, body);
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

// ---------------------------------------------------------------- LSTM (gates i, f, g, o)

// One step's gate math, rows [lo, hi): pre-activations -> activations in place, new c and h.
template <typename T>
void lstm_pointwise(T* gates, const T* c_prev, T* c_out, T* h_out, T* tanh_c, int64_t lo,
                    int64_t hi, int64_t H, int64_t j0 = 0, int64_t j1 = -1) {
  if (j1 < 0) j1 = H;  // units [j0, j1) of rows [lo, hi)
  for (int64_t b = lo; b < hi; ++b) {
    T* g = gates + b * 4 * H;
    for (int64_t j = j0; j < j1; ++j) g[j] = sigmoid(g[j]);  // i
    for (int64_t j = H + j0; j < H + j1; ++j) g[j] = sigmoid(g[j]);  // f
    for (int64_t j = 2 * H + j0; j < 2 * H + j1; ++j) g[j] = std::tanh(g[j]);  // g
    for (int64_t j = 3 * H + j0; j < 3 * H + j1; ++j) g[j] = sigmoid(g[j]);  // o
    const T* cp = c_prev + b * H;
    T* cn = c_out + b * H;
    T* hn = h_out + b * H;
    for (int64_t j = j0; j < j1; ++j) cn[j] = g[H + j] * cp[j] + g[j] * g[2 * H + j];
    for (int64_t j = j0; j < j1; ++j) {
      const T t = std::tanh(cn[j]);
      if (tanh_c != nullptr) tanh_c[b * H + j] = t;  // the cache (none for a single step)
      hn[j] = g[3 * H + j] * t;
    }
  }
}

template <typename T>
void lstm_forward_impl(at::Tensor& xp, const at::Tensor& w_hh, at::Tensor& h, at::Tensor& c,
                       at::Tensor& tanh_c, Sizes batch_sizes) {
  const int64_t T_ = xp.size(0), B = xp.size(1), H = h.size(2), G = 4 * H;
  const auto sizes = step_sizes(batch_sizes, T_, B);
  T* xpp = xp.data_ptr<T>();
  const RecurrentProduct<T> product(w_hh.data_ptr<T>(), H, G, true);
  T* hp = h.data_ptr<T>();
  T* cp = c.data_ptr<T>();
  T* tcp = tanh_c.data_ptr<T>();
  for (int64_t t = 0; t < T_; ++t) {
    const int64_t n = sizes[t];
    T* g = xpp + t * B * G;
    product(n, hp + t * B * H, H, true, g, G);  // += h_{t-1} W_hh^T
    T* c_prev = cp + t * B * H;
    T* c_out = cp + (t + 1) * B * H;
    T* h_out = hp + (t + 1) * B * H;
    T* tc = tcp + t * B * H;
    for_rows(n, G, [&](int64_t lo, int64_t hi) {
      lstm_pointwise<T>(g, c_prev, c_out, h_out, tc, lo, hi, H);
    });
  }
}

// xp [T, B, 4H]: W_ih x + b_ih + b_hh, overwritten with the activations (i, f, g, o).
// w_hh [4H, H] (torch.nn's layout); h, c [T+1, B, H] with the initial state at index 0; tanh_c [T, B, H].
void lstm_forward(at::Tensor xp, const at::Tensor& w_hh, at::Tensor h, at::Tensor c,
                  at::Tensor tanh_c, Sizes batch_sizes) {
  check_buffers({&w_hh, &h, &c, &tanh_c}, xp, "lstm_forward");
  check_buffer(xp, xp, "lstm_forward");
  TORCH_CHECK(xp.dim() == 3 && h.dim() == 3, "lstm_forward: expected 3-D xp and h");
  const int64_t T = xp.size(0), B = xp.size(1), H = h.size(2);
  check_shape(xp, {T, B, 4 * H}, "lstm_forward", "xp");
  check_shape(w_hh, {4 * H, H}, "lstm_forward", "w_hh");
  check_shape(h, {T + 1, B, H}, "lstm_forward", "h");
  check_shape(c, {T + 1, B, H}, "lstm_forward", "c");
  check_shape(tanh_c, {T, B, H}, "lstm_forward", "tanh_c");
  AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "lstm_forward", [&] {
    lstm_forward_impl<scalar_t>(xp, w_hh, h, c, tanh_c, batch_sizes);
  });
}

template <typename T>
void lstm_backward_impl(const at::Tensor& acts, const at::Tensor& c, const at::Tensor& tanh_c,
                        const at::Tensor& w_hh, const T* dy, at::Tensor& dh, at::Tensor& dc,
                        at::Tensor& dgates, Sizes batch_sizes, T* norms) {
  const int64_t T_ = acts.size(0), B = acts.size(1), H = dh.size(1), G = 4 * H;
  const auto sizes = step_sizes(batch_sizes, T_, B);
  const T* a = acts.data_ptr<T>();
  const T* cs = c.data_ptr<T>();
  const T* tcs = tanh_c.data_ptr<T>();
  const RecurrentProduct<T> product(w_hh.data_ptr<T>(), G, H);
  T* dhp = dh.data_ptr<T>();
  T* dcp = dc.data_ptr<T>();
  T* dg = dgates.data_ptr<T>();
  for (int64_t t = T_ - 1; t >= 0; --t) {
    const int64_t n = sizes[t];
    add_output_grad<T>(dhp, dy == nullptr ? nullptr : dy + t * B * H,
                       norms == nullptr ? nullptr : norms + t * B, n, H);
    const T* a_t = a + t * B * G;
    const T* c_prev = cs + t * B * H;
    const T* tc_t = tcs + t * B * H;
    T* dg_t = dg + t * B * G;
    for_rows(n, G, [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b) {
        const T* g = a_t + b * G;
        const T* cp = c_prev + b * H;
        const T* tc = tc_t + b * H;
        T* d = dg_t + b * G;
        T* dhb = dhp + b * H;
        T* dcb = dcp + b * H;
        for (int64_t j = 0; j < H; ++j) {
          const T i = g[j], f = g[H + j], gg = g[2 * H + j], o = g[3 * H + j];
          const T dhj = dhb[j], tcj = tc[j];
          const T dcj = dcb[j] + dhj * o * (T(1) - tcj * tcj);  // dc_t
          d[j] = dcj * gg * i * (T(1) - i);
          d[H + j] = dcj * cp[j] * f * (T(1) - f);
          d[2 * H + j] = dcj * i * (T(1) - gg * gg);
          d[3 * H + j] = dhj * tcj * o * (T(1) - o);
          dcb[j] = dcj * f;  // carried to c_{t-1}
        }
      }
    });
    product(n, dg_t, G, false, dhp, H);  // dh_{t-1} = dgates W_hh
  }
}

// acts [T, B, 4H] and tanh_c [T, B, H] from lstm_forward; c [T+1, B, H]; w_hh [4H, H];
// dy [T, B, H] or None; dh, dc [B, H]: the final states' gradients on entry, the initial
// states' on exit; dgates [T, B, 4H] receives the pre-activation gradients (zero it when
// batch_sizes is given: rows past a sequence's end are not written); norms [T, B] or None.
void lstm_backward(const at::Tensor& acts, const at::Tensor& c, const at::Tensor& tanh_c,
                   const at::Tensor& w_hh, const std::optional<at::Tensor>& dy, at::Tensor dh,
                   at::Tensor dc, at::Tensor dgates, Sizes batch_sizes,
                   const std::optional<at::Tensor>& norms) {
  check_buffers({&acts, &c, &tanh_c, &w_hh, &dh, &dc, &dgates}, acts, "lstm_backward");
  if (dy) check_buffer(*dy, acts, "lstm_backward dy");
  if (norms) check_buffer(*norms, acts, "lstm_backward norms");
  TORCH_CHECK(acts.dim() == 3 && dh.dim() == 2, "lstm_backward: expected 3-D acts and 2-D dh");
  const int64_t T = acts.size(0), B = acts.size(1), H = dh.size(1);
  check_shape(acts, {T, B, 4 * H}, "lstm_backward", "acts");
  check_shape(c, {T + 1, B, H}, "lstm_backward", "c");
  check_shape(tanh_c, {T, B, H}, "lstm_backward", "tanh_c");
  check_shape(w_hh, {4 * H, H}, "lstm_backward", "w_hh");
  if (dy) check_shape(*dy, {T, B, H}, "lstm_backward", "dy");
  check_shape(dh, {B, H}, "lstm_backward", "dh");
  check_shape(dc, {B, H}, "lstm_backward", "dc");
  check_shape(dgates, {T, B, 4 * H}, "lstm_backward", "dgates");
  if (norms) check_shape(*norms, {T, B}, "lstm_backward", "norms");
  AT_DISPATCH_FLOATING_TYPES(acts.scalar_type(), "lstm_backward", [&] {
    lstm_backward_impl<scalar_t>(acts, c, tanh_c, w_hh, dy ? dy->data_ptr<scalar_t>() : nullptr,
                                 dh, dc, dgates, batch_sizes,
                                 norms ? norms->data_ptr<scalar_t>() : nullptr);
  });
}

// ---------------------------------------------------------------- GRU (gates r, z, n)

template <typename T>
void gru_pointwise(T* gx, T* gh, const T* b_hh, const T* h_prev, T* h_out, int64_t lo, int64_t hi,
                   int64_t H, int64_t j0 = 0, int64_t j1 = -1) {
  if (j1 < 0) j1 = H;  // units [j0, j1) of rows [lo, hi)
  for (int64_t b = lo; b < hi; ++b) {
    T* x = gx + b * 3 * H;
    T* r = gh + b * 3 * H;
    if (b_hh != nullptr) {
      for (int64_t q = 0; q < 3; ++q) {
        for (int64_t j = q * H + j0; j < q * H + j1; ++j) r[j] += b_hh[j];
      }
    }
    for (int64_t j = j0; j < j1; ++j) x[j] = sigmoid(x[j] + r[j]);  // r
    for (int64_t j = H + j0; j < H + j1; ++j) x[j] = sigmoid(x[j] + r[j]);  // z
    for (int64_t j = j0; j < j1; ++j) x[2 * H + j] = std::tanh(x[2 * H + j] + x[j] * r[2 * H + j]);
    const T* hp = h_prev + b * H;
    T* hn = h_out + b * H;
    for (int64_t j = j0; j < j1; ++j) {
      const T nj = x[2 * H + j];
      hn[j] = nj + x[H + j] * (hp[j] - nj);  // (1 - z) n + z h_{t-1}
    }
  }
}

template <typename T>
void gru_forward_impl(at::Tensor& xp, const at::Tensor& w_hh, const T* b_hh, at::Tensor& h,
                      at::Tensor& gh, Sizes batch_sizes) {
  const int64_t T_ = xp.size(0), B = xp.size(1), H = h.size(2), G = 3 * H;
  const auto sizes = step_sizes(batch_sizes, T_, B);
  T* xpp = xp.data_ptr<T>();
  const RecurrentProduct<T> product(w_hh.data_ptr<T>(), H, G, true);
  T* hp = h.data_ptr<T>();
  T* ghp = gh.data_ptr<T>();
  for (int64_t t = 0; t < T_; ++t) {
    const int64_t n = sizes[t];
    T* gh_t = ghp + t * B * G;
    const T* h_prev = hp + t * B * H;
    product(n, h_prev, H, false, gh_t, G);  // W_hh h_{t-1}
    T* x_t = xpp + t * B * G;
    T* h_out = hp + (t + 1) * B * H;
    for_rows(n, G, [&](int64_t lo, int64_t hi) {
      gru_pointwise<T>(x_t, gh_t, b_hh, h_prev, h_out, lo, hi, H);
    });
  }
}

// xp [T, B, 3H]: W_ih x + b_ih, overwritten with (r, z, n); w_hh [3H, H]; b_hh [3H] or
// None; h [T+1, B, H] with h_0 at index 0; gh [T, B, 3H] receives W_hh h_{t-1} + b_hh.
void gru_forward(at::Tensor xp, const at::Tensor& w_hh, const std::optional<at::Tensor>& b_hh,
                 at::Tensor h, at::Tensor gh, Sizes batch_sizes) {
  check_buffers({&xp, &w_hh, &h, &gh}, xp, "gru_forward");
  if (b_hh) check_buffer(*b_hh, xp, "gru_forward b_hh");
  TORCH_CHECK(xp.dim() == 3 && h.dim() == 3, "gru_forward: expected 3-D xp and h");
  const int64_t T = xp.size(0), B = xp.size(1), H = h.size(2);
  check_shape(xp, {T, B, 3 * H}, "gru_forward", "xp");
  check_shape(w_hh, {3 * H, H}, "gru_forward", "w_hh");
  if (b_hh) check_shape(*b_hh, {3 * H}, "gru_forward", "b_hh");
  check_shape(h, {T + 1, B, H}, "gru_forward", "h");
  check_shape(gh, {T, B, 3 * H}, "gru_forward", "gh");
  AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "gru_forward", [&] {
    gru_forward_impl<scalar_t>(xp, w_hh, b_hh ? b_hh->data_ptr<scalar_t>() : nullptr, h, gh,
                               batch_sizes);
  });
}

template <typename T>
void gru_backward_impl(const at::Tensor& acts, const at::Tensor& gh, const at::Tensor& h,
                       const at::Tensor& w_hh, const T* dy, at::Tensor& dh, at::Tensor& dgx,
                       at::Tensor& dgh, Sizes batch_sizes, T* norms) {
  const int64_t T_ = acts.size(0), B = acts.size(1), H = dh.size(1), G = 3 * H;
  const auto sizes = step_sizes(batch_sizes, T_, B);
  const T* a = acts.data_ptr<T>();
  const T* ghp = gh.data_ptr<T>();
  const T* hs = h.data_ptr<T>();
  const RecurrentProduct<T> product(w_hh.data_ptr<T>(), G, H);
  T* dhp = dh.data_ptr<T>();
  T* dxp = dgx.data_ptr<T>();
  T* dhh = dgh.data_ptr<T>();
  for (int64_t t = T_ - 1; t >= 0; --t) {
    const int64_t n = sizes[t];
    add_output_grad<T>(dhp, dy == nullptr ? nullptr : dy + t * B * H,
                       norms == nullptr ? nullptr : norms + t * B, n, H);
    const T* a_t = a + t * B * G;
    const T* gh_t = ghp + t * B * G;
    const T* h_prev = hs + t * B * H;
    T* dx_t = dxp + t * B * G;
    T* dh_t = dhh + t * B * G;
    for_rows(n, G, [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b) {
        const T* g = a_t + b * G;
        const T* ghn = gh_t + b * G + 2 * H;
        const T* hp = h_prev + b * H;
        T* dx = dx_t + b * G;
        T* dhg = dh_t + b * G;
        T* dhb = dhp + b * H;
        for (int64_t j = 0; j < H; ++j) {
          const T r = g[j], z = g[H + j], nn = g[2 * H + j], d = dhb[j];
          const T dn = d * (T(1) - z) * (T(1) - nn * nn);
          const T dz = d * (hp[j] - nn) * z * (T(1) - z);
          const T dr = dn * ghn[j] * r * (T(1) - r);
          dx[j] = dr;
          dx[H + j] = dz;
          dx[2 * H + j] = dn;
          dhg[j] = dr;
          dhg[H + j] = dz;
          dhg[2 * H + j] = dn * r;
          dhb[j] = d * z;  // the direct path; the product below adds dgh W_hh
        }
      }
    });
    product(n, dh_t, G, true, dhp, H);  // += dgh W_hh
  }
}

// acts [T, B, 3H] and gh [T, B, 3H] from gru_forward; h [T+1, B, H]; w_hh [3H, H]; dy
// [T, B, H] or None; dh [B, H]: the final state's gradient on entry, the initial state's on
// exit; dgx, dgh [T, B, 3H] receive the input-side and hidden-side pre-activation gradients
// (zero them when batch_sizes is given); norms [T, B] or None.
void gru_backward(const at::Tensor& acts, const at::Tensor& gh, const at::Tensor& h,
                  const at::Tensor& w_hh, const std::optional<at::Tensor>& dy, at::Tensor dh,
                  at::Tensor dgx, at::Tensor dgh, Sizes batch_sizes,
                  const std::optional<at::Tensor>& norms) {
  check_buffers({&acts, &gh, &h, &w_hh, &dh, &dgx, &dgh}, acts, "gru_backward");
  if (dy) check_buffer(*dy, acts, "gru_backward dy");
  if (norms) check_buffer(*norms, acts, "gru_backward norms");
  TORCH_CHECK(acts.dim() == 3 && dh.dim() == 2, "gru_backward: expected 3-D acts and 2-D dh");
  const int64_t T = acts.size(0), B = acts.size(1), H = dh.size(1);
  check_shape(acts, {T, B, 3 * H}, "gru_backward", "acts");
  check_shape(gh, {T, B, 3 * H}, "gru_backward", "gh");
  check_shape(h, {T + 1, B, H}, "gru_backward", "h");
  check_shape(w_hh, {3 * H, H}, "gru_backward", "w_hh");
  if (dy) check_shape(*dy, {T, B, H}, "gru_backward", "dy");
  check_shape(dh, {B, H}, "gru_backward", "dh");
  check_shape(dgx, {T, B, 3 * H}, "gru_backward", "dgx");
  check_shape(dgh, {T, B, 3 * H}, "gru_backward", "dgh");
  if (norms) check_shape(*norms, {T, B}, "gru_backward", "norms");
  AT_DISPATCH_FLOATING_TYPES(acts.scalar_type(), "gru_backward", [&] {
    gru_backward_impl<scalar_t>(acts, gh, h, w_hh, dy ? dy->data_ptr<scalar_t>() : nullptr, dh,
                                dgx, dgh, batch_sizes,
                                norms ? norms->data_ptr<scalar_t>() : nullptr);
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

template <typename T>
const T* ptr_or_null(const std::optional<at::Tensor>& t) {
  return t ? t->data_ptr<T>() : nullptr;
}

void check_step(const at::Tensor& x, const at::Tensor& h, const at::Tensor& w_ih,
                const at::Tensor& w_hh, const std::optional<at::Tensor>& b_ih,
                const std::optional<at::Tensor>& b_hh, const char* name) {
  for (auto* t : {&x, &h, &w_ih, &w_hh}) check_buffer(*t, x, name);
  if (b_ih) check_buffer(*b_ih, x, name);
  if (b_hh) check_buffer(*b_hh, x, name);
}

// Every layer's weights and the states of a stacked single step have the shapes the loops
// index with: w_ih [G, I_l] (I_0 = x's width, then H), w_hh [G, H], biases [G], states
// [layers, B, H].
void check_step_shapes(const at::Tensor& x, const std::optional<at::Tensor>& h0,
                       const std::optional<at::Tensor>& c0, at::TensorList weights,
                       int64_t layers, bool has_bias, int64_t gates, const char* op) {
  const int64_t per = has_bias ? 4 : 2;
  const int64_t B = x.size(0), H = weights[1].size(1), G = gates * H;
  for (int64_t l = 0; l < layers; ++l) {
    const int64_t in = l == 0 ? x.size(1) : H;
    check_shape(weights[per * l], {G, in}, op, "w_ih");
    check_shape(weights[per * l + 1], {G, H}, op, "w_hh");
    if (has_bias) {
      check_shape(weights[per * l + 2], {G}, op, "b_ih");
      check_shape(weights[per * l + 3], {G}, op, "b_hh");
    }
  }
  if (h0) check_shape(*h0, {layers, B, H}, op, "h0");
  if (c0) check_shape(*c0, {layers, B, H}, op, "c0");
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

void lstm_layer_step(int64_t B, int64_t I, int64_t H, const float* x, const float* h_prev,
                     const float* c_prev, const float* w_ih, const float* w_hh, const float* b_ih,
                     const float* b_hh, float* g, float* h_out, float* c_out) {
  const int64_t G = 4 * H;
  for_units(B, H, G * (I + H), [&](int64_t u0, int64_t u1) {
    for (int64_t q = 0; q < 4; ++q) {
      const int64_t r0 = q * H + u0, r1 = q * H + u1;
      rowdot_range(B, r0, r1, I, x, w_ih, false, g, G);
      rowdot_range(B, r0, r1, H, h_prev, w_hh, true, g, G);
      if (b_ih != nullptr) {
        for (int64_t b = 0; b < B; ++b) {
          for (int64_t j = r0; j < r1; ++j) g[b * G + j] += b_ih[j] + b_hh[j];
        }
      }
    }
    lstm_pointwise<float>(g, c_prev, c_out, h_out, nullptr, 0, B, H, u0, u1);
  });
}

void gru_layer_step(int64_t B, int64_t I, int64_t H, const float* x, const float* h_prev,
                    const float* w_ih, const float* w_hh, const float* b_ih, const float* b_hh,
                    float* gx, float* gh, float* h_out) {
  const int64_t G = 3 * H;
  for_units(B, H, G * (I + H), [&](int64_t u0, int64_t u1) {
    for (int64_t q = 0; q < 3; ++q) {
      const int64_t r0 = q * H + u0, r1 = q * H + u1;
      rowdot_range(B, r0, r1, I, x, w_ih, false, gx, G);
      rowdot_range(B, r0, r1, H, h_prev, w_hh, false, gh, G);
      if (b_ih != nullptr) {
        for (int64_t b = 0; b < B; ++b) {
          for (int64_t j = r0; j < r1; ++j) gx[b * G + j] += b_ih[j];
        }
      }
    }
    gru_pointwise<float>(gx, gh, b_hh, h_prev, h_out, 0, B, H, u0, u1);
  });
}

// Rows of a streaming batch up to which a step takes the unit-parallel path above.
constexpr int64_t kStepRows = 4;

// The unit-parallel path where it applies (float, AVX2, few rows); false otherwise.
template <typename T>
bool lstm_layer_step_fast(int64_t, int64_t, int64_t, const T*, const T*, const T*, const T*,
                          const T*, const T*, const T*, T*, T*, T*) {
  return false;
}

template <>
bool lstm_layer_step_fast<float>(int64_t B, int64_t I, int64_t H, const float* x,
                                 const float* h_prev, const float* c_prev, const float* w_ih,
                                 const float* w_hh, const float* b_ih, const float* b_hh,
                                 float* g, float* h_out, float* c_out) {
  if (!kHaveKernel || B > kStepRows) return false;
  lstm_layer_step(B, I, H, x, h_prev, c_prev, w_ih, w_hh, b_ih, b_hh, g, h_out, c_out);
  return true;
}

template <typename T>
bool gru_layer_step_fast(int64_t, int64_t, int64_t, const T*, const T*, const T*, const T*,
                         const T*, const T*, T*, T*, T*) {
  return false;
}

template <>
bool gru_layer_step_fast<float>(int64_t B, int64_t I, int64_t H, const float* x,
                                const float* h_prev, const float* w_ih, const float* w_hh,
                                const float* b_ih, const float* b_hh, float* gx, float* gh,
                                float* h_out) {
  if (!kHaveKernel || B > kStepRows) return false;
  gru_layer_step(B, I, H, x, h_prev, w_ih, w_hh, b_ih, b_hh, gx, gh, h_out);
  return true;
}

// One step of a stack of `layers` LSTM layers without gradients. x [B, I]; h0, c0
// [layers, B, H] or None (zeros); weights: per layer w_ih, w_hh (and b_ih, b_hh when
// has_bias), torch.nn's layout. Returns the top layer's h_t [B, H] and the new h, c
// [layers, B, H]: the whole step is one call, so a streaming caller pays one dispatch.
std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm_step(
    const at::Tensor& x, const std::optional<at::Tensor>& h0, const std::optional<at::Tensor>& c0,
    at::TensorList weights, int64_t layers, bool has_bias) {
  const int64_t per = has_bias ? 4 : 2;
  TORCH_CHECK(layers >= 1 && static_cast<int64_t>(weights.size()) == per * layers,
              "lstm_step: expected ", per * layers, " weights, got ", weights.size());
  check_buffer(x, x, "lstm_step");
  for (const auto& w : weights) check_buffer(w, x, "lstm_step weights");
  if (h0) check_buffer(*h0, x, "lstm_step h0");
  if (c0) check_buffer(*c0, x, "lstm_step c0");
  TORCH_CHECK(x.dim() == 2 && weights[1].dim() == 2, "lstm_step: expected 2-D x and w_hh");
  const int64_t B = x.size(0), H = weights[1].size(1), G = 4 * H;
  check_step_shapes(x, h0, c0, weights, layers, has_bias, 4, "lstm_step");
  at::Tensor h = at::empty({layers, B, H}, x.options());
  at::Tensor c = at::empty({layers, B, H}, x.options());
  at::Tensor gates = at::empty({B, G}, x.options());
  at::Tensor zeros = (h0 && c0) ? at::Tensor() : at::zeros({B, H}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstm_step", [&] {
    using T = scalar_t;
    at::Tensor input = x;
    T* g = gates.data_ptr<T>();
    for (int64_t l = 0; l < layers; ++l) {
      const at::Tensor& w_ih = weights[per * l];
      const at::Tensor& w_hh = weights[per * l + 1];
      const T* b_ih = has_bias ? weights[per * l + 2].data_ptr<T>() : nullptr;
      const T* b_hh = has_bias ? weights[per * l + 3].data_ptr<T>() : nullptr;
      at::Tensor h_prev = h0 ? (*h0)[l] : zeros;
      const T* c_prev = c0 ? c0->data_ptr<T>() + l * B * H : zeros.data_ptr<T>();
      if (lstm_layer_step_fast<T>(B, input.size(1), H, input.data_ptr<T>(), h_prev.data_ptr<T>(),
                                  c_prev, w_ih.data_ptr<T>(), w_hh.data_ptr<T>(), b_ih, b_hh, g,
                                  h.data_ptr<T>() + l * B * H, c.data_ptr<T>() + l * B * H)) {
        input = h[l];
        continue;
      }
      project_step<T>(g, input, w_ih, b_ih, B, G, false);
      project_step<T>(g, h_prev, w_hh, b_hh, B, G, true);
      T* c_out = c.data_ptr<T>() + l * B * H;
      T* h_out = h.data_ptr<T>() + l * B * H;
      for_rows(B, G, [&](int64_t lo, int64_t hi) {
        lstm_pointwise<T>(g, c_prev, c_out, h_out, nullptr, lo, hi, H);
      });
      input = h[l];
    }
  });
  return {h[layers - 1], h, c};
}

// One step of a stack of GRU layers without gradients; as lstm_step, with h only.
std::tuple<at::Tensor, at::Tensor> gru_step(const at::Tensor& x,
                                            const std::optional<at::Tensor>& h0,
                                            at::TensorList weights, int64_t layers,
                                            bool has_bias) {
  const int64_t per = has_bias ? 4 : 2;
  TORCH_CHECK(layers >= 1 && static_cast<int64_t>(weights.size()) == per * layers,
              "gru_step: expected ", per * layers, " weights, got ", weights.size());
  check_buffer(x, x, "gru_step");
  for (const auto& w : weights) check_buffer(w, x, "gru_step weights");
  if (h0) check_buffer(*h0, x, "gru_step h0");
  TORCH_CHECK(x.dim() == 2 && weights[1].dim() == 2, "gru_step: expected 2-D x and w_hh");
  const int64_t B = x.size(0), H = weights[1].size(1), G = 3 * H;
  check_step_shapes(x, h0, std::nullopt, weights, layers, has_bias, 3, "gru_step");
  at::Tensor h = at::empty({layers, B, H}, x.options());
  at::Tensor gx = at::empty({B, G}, x.options());
  at::Tensor gh = at::empty({B, G}, x.options());
  at::Tensor zeros = h0 ? at::Tensor() : at::zeros({B, H}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gru_step", [&] {
    using T = scalar_t;
    at::Tensor input = x;
    for (int64_t l = 0; l < layers; ++l) {
      const at::Tensor& w_ih = weights[per * l];
      const at::Tensor& w_hh = weights[per * l + 1];
      const T* b_ih = has_bias ? weights[per * l + 2].data_ptr<T>() : nullptr;
      const T* b_hh = has_bias ? weights[per * l + 3].data_ptr<T>() : nullptr;
      at::Tensor h_prev = h0 ? (*h0)[l] : zeros;
      if (gru_layer_step_fast<T>(B, input.size(1), H, input.data_ptr<T>(), h_prev.data_ptr<T>(),
                                 w_ih.data_ptr<T>(), w_hh.data_ptr<T>(), b_ih, b_hh,
                                 gx.data_ptr<T>(), gh.data_ptr<T>(), h.data_ptr<T>() + l * B * H)) {
        input = h[l];
        continue;
      }
      project_step<T>(gx.data_ptr<T>(), input, w_ih, b_ih, B, G, false);
      project_step<T>(gh.data_ptr<T>(), h_prev, w_hh, nullptr, B, G, false);
      T* h_out = h.data_ptr<T>() + l * B * H;
      for_rows(B, G, [&](int64_t lo, int64_t hi) {
        gru_pointwise<T>(gx.data_ptr<T>(), gh.data_ptr<T>(), b_hh, h_prev.data_ptr<T>(), h_out,
                         lo, hi, H);
      });
      input = h[l];
    }
  });
  return {h[layers - 1], h};
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
  m.def("lstm_forward(Tensor(a!) xp, Tensor w_hh, Tensor(b!) h, Tensor(c!) c, "
        "Tensor(d!) tanh_c, int[] batch_sizes) -> ()", &lstm_forward);
  m.def("lstm_backward(Tensor acts, Tensor c, Tensor tanh_c, Tensor w_hh, Tensor? dy, "
        "Tensor(a!) dh, Tensor(b!) dc, Tensor(c!) dgates, int[] batch_sizes, "
        "Tensor(d!)? norms) -> ()", &lstm_backward);
  m.def("gru_forward(Tensor(a!) xp, Tensor w_hh, Tensor? b_hh, Tensor(b!) h, Tensor(c!) gh, "
        "int[] batch_sizes) -> ()", &gru_forward);
  m.def("gru_backward(Tensor acts, Tensor gh, Tensor h, Tensor w_hh, Tensor? dy, Tensor(a!) dh, "
        "Tensor(b!) dgx, Tensor(c!) dgh, int[] batch_sizes, Tensor(d!)? norms) -> ()",
        &gru_backward);
  m.def("lstm_step(Tensor x, Tensor? h0, Tensor? c0, Tensor[] weights, int layers, "
        "bool has_bias) -> (Tensor, Tensor, Tensor)", &lstm_step);
  m.def("gru_step(Tensor x, Tensor? h0, Tensor[] weights, int layers, bool has_bias) "
        "-> (Tensor, Tensor)", &gru_step);
  m.def("matmul(Tensor a, Tensor w, Tensor? bias, bool transposed) -> Tensor", &matmul);
}

// rnnkit's native loop for the minimal cells (minGRU, minLSTM): rnnkit/functional/minimal.py
// in C++, the same equations and the same hand-derived backward.
//
// A minimal cell's step is element-wise, h_t = a_t * h_{t-1} + b_t with a_t and b_t
// functions of the projection p_t alone, so every (sequence, hidden unit) is its own
// recurrence: the loop runs in parallel over sequences, each thread walking time over
// its own rows with their states in a small buffer. The gate maps are fused into that walk: the forward reads
// the projections once and writes h once; the backward reads the projections, h and dh
// once and writes dproj once (the work is memory-bound: a pass over [T, B, H] costs more
// than the arithmetic). No scan is needed on a CPU: the time loop is already parallel
// over B * H units.
//
// Layout: proj [T, B, G] with G = gates * H (blocks z, h for minGRU; f, i, h for minLSTM),
// h and dh [T, B, H], h0 [B, H], all contiguous and of one floating dtype; lengths int64
// [B] in 1..T on the CPU, or undefined. Past a sequence's length the state carries on and
// the projections get no gradient. Every assumption is checked at the boundary.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "denormals.h"

namespace {

// sigmoid(x) and sigmoid(-x) from one exp(-|x|) in (0, 1]: never overflows, never NaN
// for a finite x (as engine.cpp's sigmoid).
template <typename T>
inline void sigmoid_pair(T x, T& s, T& s_neg) {
  const T e = std::exp(-std::abs(x));
  const T r = T(1) / (T(1) + e);
  s = x >= T(0) ? r : e * r;
  s_neg = x >= T(0) ? e * r : r;
}

// log(1 + e^x), exact over the whole range.
template <typename T>
inline T softplus(T x) {
  return std::max(x, T(0)) + std::log(T(1) + std::exp(-std::abs(x)));
}

// -log sigmoid(k) = softplus(-k) and sigmoid(-k), from one exp(-|k|).
template <typename T>
inline void gate_log(T k, T& softplus_neg, T& s_neg) {
  const T e = std::exp(-std::abs(k));
  const T r = T(1) / (T(1) + e);
  softplus_neg = std::max(-k, T(0)) + std::log(T(1) + e);
  s_neg = k >= T(0) ? e * r : r;
}

// The candidate act(u) and its derivative: g (act = 0) or the identity (act = 1).
template <typename T, int ACT>
inline void candidate(T u, T& c, T& dc) {
  if constexpr (ACT == 1) {
    c = u;
    dc = T(1);
  } else {
    T s, sn;
    sigmoid_pair(u, s, sn);
    c = u >= T(0) ? u + T(0.5) : s;
    dc = u >= T(0) ? T(1) : s * sn;
  }
}

// a, b of one unit's step from its row p of the projections (unit j of H).
template <typename T, int CELL, int ACT>
inline void coefficients(const T* p, int64_t H, int64_t j, T& a, T& b) {
  T c, dc;
  if constexpr (CELL == 0) {  // minGRU: a = sigmoid(-k), b = sigmoid(k) act(u)
    T z;
    sigmoid_pair(p[j], z, a);
    candidate<T, ACT>(p[H + j], c, dc);
    b = z * c;
  } else {  // minLSTM: d = softplus(-k_i) - softplus(-k_f), a = sigmoid(d), b = sigmoid(-d) act(u)
    T spf, spi, unused;
    gate_log(p[j], spf, unused);
    gate_log(p[H + j], spi, unused);
    const T d = spi - spf;
    T ip;
    sigmoid_pair(d, a, ip);
    candidate<T, ACT>(p[2 * H + j], c, dc);
    b = ip * c;
  }
}

// Work split: each thread takes a contiguous range of rows (sequences) and walks time
// over all of them, so each step reads and writes one contiguous span per buffer (walking
// time per unit block instead touches a new page at every step, and runs at half the
// memory speed). `body(b0, b1)` runs rows [b0, b1).
template <typename F>
void for_rows(int64_t B, int64_t T, int64_t H, const F& body) {
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(T * H, 1));
  at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) {
    rnnkit_native::FlushDenormals flush;  // each worker thread, for its rows
    body(b0, b1);
  });
}

template <typename T, int CELL, int ACT>
void forward_impl(const T* P, const T* h0, const int64_t* lengths, T* out, int64_t Tn,
                  int64_t B, int64_t H) {
  const int64_t G = (CELL == 0 ? 2 : 3) * H;
  for_rows(B, Tn, H, [&](int64_t b0, int64_t b1) {
    std::vector<T> state(h0 + b0 * H, h0 + b1 * H);  // [b1 - b0, H]
    for (int64_t t = 0; t < Tn; ++t) {
      for (int64_t b = b0; b < b1; ++b) {
        T* __restrict__ h = state.data() + (b - b0) * H;
        T* __restrict__ o = out + (t * B + b) * H;
        if (lengths && t >= lengths[b]) {  // the state carries on past the end
          std::copy(h, h + H, o);
          continue;
        }
        const T* __restrict__ p = P + (t * B + b) * G;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          T a, bb;
          coefficients<T, CELL, ACT>(p, H, j, a, bb);
          h[j] = a * h[j] + bb;
          o[j] = h[j];
        }
      }
    }
  });
}

template <typename T, int CELL, int ACT>
void backward_impl(const T* P, const T* h0, const int64_t* lengths, const T* out,
                   const T* dout, T* dP, T* dh0, int64_t Tn, int64_t B, int64_t H) {
  const int64_t G = (CELL == 0 ? 2 : 3) * H;
  for_rows(B, Tn, H, [&](int64_t b0, int64_t b1) {
    const int64_t rows = b1 - b0;
    std::vector<T> acc(rows * H, T(0)), a_next(rows * H, T(1));  // delta_{t+1}, a_{t+1}
    for (int64_t t = Tn - 1; t >= 0; --t) {
      for (int64_t b = b0; b < b1; ++b) {
        T* __restrict__ ac = acc.data() + (b - b0) * H;
        T* __restrict__ an = a_next.data() + (b - b0) * H;
        const T* __restrict__ g = dout + (t * B + b) * H;
        T* __restrict__ d = dP + (t * B + b) * G;
        if (lengths && t >= lengths[b]) {  // padded: a = 1, no gradient to proj
          for (int64_t j = 0; j < H; ++j) ac[j] += g[j];
          std::fill(d, d + G, T(0));
          continue;
        }
        const T* __restrict__ p = P + (t * B + b) * G;
        const T* __restrict__ hp = t > 0 ? out + ((t - 1) * B + b) * H : h0 + b * H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const T delta = g[j] + an[j] * ac[j];
          T c, dc;
          if constexpr (CELL == 0) {
            T z, a;
            sigmoid_pair(p[j], z, a);
            candidate<T, ACT>(p[H + j], c, dc);
            d[j] = delta * z * a * (c - hp[j]);
            d[H + j] = delta * z * dc;
            an[j] = a;
          } else {
            T spf, sfn, spi, sin;  // softplus(-k) and sigmoid(-k) of k_f and of k_i
            gate_log(p[j], spf, sfn);
            gate_log(p[H + j], spi, sin);
            T fp, ip;
            sigmoid_pair(spi - spf, fp, ip);
            candidate<T, ACT>(p[2 * H + j], c, dc);
            const T dd = delta * fp * ip * (hp[j] - c);
            d[j] = dd * sfn;
            d[H + j] = -dd * sin;
            d[2 * H + j] = delta * ip * dc;
            an[j] = fp;
          }
          ac[j] = delta;
        }
      }
    }
    for (int64_t i = 0; i < rows * H; ++i) dh0[b0 * H + i] = a_next[i] * acc[i];
  });
}

// ---------------------------------------------------------------- the boundary

void check(bool ok, const std::string& msg) {
  TORCH_CHECK(ok, "rnnkit.ops.min_forward/min_backward: ", msg);
}

int64_t gates_of(int64_t cell) {
  check(cell == 0 || cell == 1, "cell: expected 0 (minGRU) or 1 (minLSTM), got " +
                                    std::to_string(cell));
  return cell == 0 ? 2 : 3;
}

void check_tensor(const at::Tensor& t, const char* name, at::IntArrayRef shape,
                  const at::Tensor& like) {
  check(t.defined(), std::string(name) + ": expected a tensor");
  check(t.sizes() == shape, std::string(name) + ": expected shape " + c10::str(shape) +
                                ", got " + c10::str(t.sizes()));
  check(t.scalar_type() == like.scalar_type(),
        std::string(name) + ": expected dtype " + c10::str(like.scalar_type()) + ", got " +
            c10::str(t.scalar_type()));
  check(t.device().is_cpu(), std::string(name) + ": expected a CPU tensor");
  check(t.is_contiguous(), std::string(name) + ": expected a contiguous tensor");
}

// Checks proj, h0 and lengths; returns (T, B, H).
std::tuple<int64_t, int64_t, int64_t> check_inputs(int64_t cell, int64_t act,
                                                   const at::Tensor& proj,
                                                   const at::Tensor& h0,
                                                   const c10::optional<at::Tensor>& lengths) {
  const int64_t gates = gates_of(cell);
  check(act == 0 || act == 1, "activation: expected 0 (g) or 1 (identity), got " +
                                  std::to_string(act));
  check(proj.dim() == 3, "proj: expected [T, B, gates * H], got " + c10::str(proj.sizes()));
  check(proj.scalar_type() == at::kFloat || proj.scalar_type() == at::kDouble,
        "proj: expected float32 or float64, got " + c10::str(proj.scalar_type()));
  check(h0.dim() == 2, "h0: expected [B, H], got " + c10::str(h0.sizes()));
  const int64_t T = proj.size(0), B = proj.size(1), H = h0.size(1);
  check(proj.size(2) == gates * H, "proj: expected last size " + std::to_string(gates * H) +
                                       " (gates * H), got " + std::to_string(proj.size(2)));
  check_tensor(proj, "proj", {T, B, gates * H}, proj);
  check_tensor(h0, "h0", {B, H}, proj);
  if (lengths.has_value() && lengths->defined()) {
    const at::Tensor& len = *lengths;
    check(len.scalar_type() == at::kLong && len.dim() == 1 && len.size(0) == B &&
              len.device().is_cpu() && len.is_contiguous(),
          "lengths: expected a contiguous int64 CPU tensor of shape [" + std::to_string(B) +
              "]");
    const int64_t* l = len.data_ptr<int64_t>();
    for (int64_t b = 0; b < B; ++b) {
      check(l[b] >= 1 && l[b] <= T, "lengths: expected every length in 1.." +
                                        std::to_string(T) + ", got " + std::to_string(l[b]));
    }
  }
  return {T, B, H};
}

template <typename F>
void dispatch(int64_t cell, int64_t act, const F& f) {
  if (cell == 0 && act == 0) f(std::integral_constant<int, 0>{}, std::integral_constant<int, 0>{});
  else if (cell == 0) f(std::integral_constant<int, 0>{}, std::integral_constant<int, 1>{});
  else if (act == 0) f(std::integral_constant<int, 1>{}, std::integral_constant<int, 0>{});
  else f(std::integral_constant<int, 1>{}, std::integral_constant<int, 1>{});
}

const int64_t* lengths_ptr(const c10::optional<at::Tensor>& lengths) {
  return lengths.has_value() && lengths->defined() ? lengths->data_ptr<int64_t>() : nullptr;
}

at::Tensor min_forward(int64_t cell, int64_t act, const at::Tensor& proj, const at::Tensor& h0,
                       const c10::optional<at::Tensor>& lengths) {
  auto [T, B, H] = check_inputs(cell, act, proj, h0, lengths);
  rnnkit_native::FlushDenormals flush;  // the calling thread too (denormals.h)
  at::Tensor out = at::empty({T, B, H}, proj.options());
  if (T == 0 || B == 0 || H == 0) return out;
  const int64_t* len = lengths_ptr(lengths);
  AT_DISPATCH_FLOATING_TYPES(proj.scalar_type(), "min_forward", [&] {
    dispatch(cell, act, [&](auto C, auto A) {
      forward_impl<scalar_t, decltype(C)::value, decltype(A)::value>(
          proj.data_ptr<scalar_t>(), h0.data_ptr<scalar_t>(), len, out.data_ptr<scalar_t>(),
          T, B, H);
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> min_backward(int64_t cell, int64_t act, const at::Tensor& proj,
                                                const at::Tensor& h0,
                                                const c10::optional<at::Tensor>& lengths,
                                                const at::Tensor& h, const at::Tensor& dh) {
  auto [T, B, H] = check_inputs(cell, act, proj, h0, lengths);
  check_tensor(h, "h", {T, B, H}, proj);
  check_tensor(dh, "dh", {T, B, H}, proj);
  rnnkit_native::FlushDenormals flush;  // the calling thread too (denormals.h)
  at::Tensor dproj = at::empty_like(proj);
  at::Tensor dh0 = at::empty_like(h0);
  if (T == 0 || B == 0 || H == 0) {
    dproj.zero_();
    dh0.zero_();
    return {dproj, dh0};
  }
  const int64_t* len = lengths_ptr(lengths);
  AT_DISPATCH_FLOATING_TYPES(proj.scalar_type(), "min_backward", [&] {
    dispatch(cell, act, [&](auto C, auto A) {
      backward_impl<scalar_t, decltype(C)::value, decltype(A)::value>(
          proj.data_ptr<scalar_t>(), h0.data_ptr<scalar_t>(), len, h.data_ptr<scalar_t>(),
          dh.data_ptr<scalar_t>(), dproj.data_ptr<scalar_t>(), dh0.data_ptr<scalar_t>(), T, B,
          H);
    });
  });
  return {dproj, dh0};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(rnnkit, m) {
  m.def("min_forward(int cell, int activation, Tensor proj, Tensor h0, Tensor? lengths) -> Tensor",
        &min_forward);
  m.def("min_backward(int cell, int activation, Tensor proj, Tensor h0, Tensor? lengths, "
        "Tensor h, Tensor dh) -> (Tensor, Tensor)",
        &min_backward);
}

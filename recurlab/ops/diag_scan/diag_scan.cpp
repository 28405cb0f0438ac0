// Compiled CPU kernels for the diagonal gated recurrence
//
//     h_t = exp(log_a_t) * h_{t-1} + b_t          over (B, T, D), batch first,
//
// and its reverse-scan backward. Time is walked sequentially (the recurrence is
// memory bound, so a sequential walk that reads every input once is optimal);
// the channels of one block are updated together in a loop the compiler
// vectorises, and (batch, channel block) pairs are spread over threads.
// Accumulation is float32 for float32/float16/bfloat16 inputs and float64 for
// float64 inputs. The gate check (finite and <= 0) is fused into the forward
// walk so that validating the input costs no extra pass over memory. Empty
// inputs (B, T or D = 0) are valid: the state passes through, nothing divides
// by a zero size.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <atomic>
#include <cstring>
#include <limits>

namespace recurlab {
namespace {

// exp(x) for x <= 0, accurate to about 1 ulp, written so that the compiler can
// vectorise loops that call it (no libm call, no branches). Cody-Waite range
// reduction x = n ln2 + r, |r| <= ln2 / 2, then a degree-7 polynomial for
// exp(r) (the Cephes expf coefficients) and 2^n built from its exponent bits.
// Results below the smallest normal float (x < -87.33) flush to zero.
inline float exp_nonpositive(float x) {
  const float xc = x < -88.0f ? -88.0f : x;
  const float n = __builtin_floorf(xc * 1.44269504088896341f + 0.5f);
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  const float result = p * scale;
  return x < -87.33654475f ? 0.0f : result;
}

inline double exp_nonpositive(double x) { return std::exp(x); }

// 1 for NaN, +-inf and positive values, else 0 (no short-circuit, so that
// the check vectorises).
template <typename acc_t>
inline int gate_bad(acc_t x) {
  return static_cast<int>(!(x <= acc_t(0))) | static_cast<int>(x < -std::numeric_limits<acc_t>::max());
}

template <typename acc_t>
struct AccType { using type = float; };
template <>
struct AccType<double> { using type = double; };

constexpr int64_t kMaxBlock = 256;  // channels per task

// Channels per task: whole rows when there is enough batch parallelism,
// otherwise split rows so every thread has several tasks. At least 1, so that
// callers may divide by it even when D = 0.
int64_t channel_block(int64_t B, int64_t D) {
  const int64_t threads = at::get_num_threads();
  int64_t block = std::max<int64_t>(1, std::min<int64_t>(D, kMaxBlock));
  while (block > 16 && B * ((D + block - 1) / block) < 4 * threads) {
    block /= 2;
  }
  return block;
}

template <typename scalar_t>
bool diag_scan_forward_impl(const scalar_t* log_a, const scalar_t* b,
                            const typename AccType<scalar_t>::type* h0,
                            scalar_t* h,
                            typename AccType<scalar_t>::type* h_last,
                            int64_t B, int64_t T, int64_t D) {
  using acc_t = typename AccType<scalar_t>::type;
  const int64_t block = channel_block(B, D);
  const int64_t nblk = (D + block - 1) / block;
  std::atomic<bool> all_ok{true};
  at::parallel_for(0, B * nblk, 1, [&](int64_t begin, int64_t end) {
    acc_t state[kMaxBlock];
    int bad = 0;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t bi = task / nblk;
      const int64_t d0 = (task % nblk) * block;
      const int64_t n = std::min(block, D - d0);
      for (int64_t j = 0; j < n; ++j) {
        state[j] = h0 ? h0[bi * D + d0 + j] : acc_t(0);
      }
      const int64_t base = bi * T * D + d0;
      for (int64_t t = 0; t < T; ++t) {
        const scalar_t* la = log_a + base + t * D;
        const scalar_t* bt = b + base + t * D;
        scalar_t* ht = h + base + t * D;
        int row_bad = 0;
#pragma omp simd reduction(| : row_bad)
        for (int64_t j = 0; j < n; ++j) {
          const acc_t x = static_cast<acc_t>(la[j]);
          row_bad |= gate_bad(x);
          const acc_t s = exp_nonpositive(x) * state[j] + static_cast<acc_t>(bt[j]);
          state[j] = s;
          ht[j] = static_cast<scalar_t>(s);
        }
        bad |= row_bad;
      }
      for (int64_t j = 0; j < n; ++j) {
        h_last[bi * D + d0 + j] = state[j];
      }
    }
    if (bad) all_ok.store(false);
  });
  return all_ok.load();
}

template <typename scalar_t>
void diag_scan_backward_impl(const scalar_t* grad_h,
                             const typename AccType<scalar_t>::type* grad_last,
                             const scalar_t* log_a, const scalar_t* h,
                             const typename AccType<scalar_t>::type* h0,
                             scalar_t* grad_log_a, scalar_t* grad_b,
                             typename AccType<scalar_t>::type* grad_h0,
                             int64_t B, int64_t T, int64_t D) {
  using acc_t = typename AccType<scalar_t>::type;
  const int64_t block = channel_block(B, D);
  const int64_t nblk = (D + block - 1) / block;
  at::parallel_for(0, B * nblk, 1, [&](int64_t begin, int64_t end) {
    acc_t carry[kMaxBlock];
    for (int64_t task = begin; task < end; ++task) {
      const int64_t bi = task / nblk;
      const int64_t d0 = (task % nblk) * block;
      const int64_t n = std::min(block, D - d0);
      for (int64_t j = 0; j < n; ++j) {
        carry[j] = grad_last ? grad_last[bi * D + d0 + j] : acc_t(0);
      }
      const int64_t base = bi * T * D + d0;
      for (int64_t t = T - 1; t >= 0; --t) {
        const int64_t off = base + t * D;
        const scalar_t* gh = grad_h + off;
        const scalar_t* la = log_a + off;
        scalar_t* gla = grad_log_a + off;
        scalar_t* gb = grad_b + off;
        if (t > 0) {
          const scalar_t* hp = h + off - D;
#pragma omp simd
          for (int64_t j = 0; j < n; ++j) {
            const acc_t g = carry[j] + static_cast<acc_t>(gh[j]);
            const acc_t a = exp_nonpositive(static_cast<acc_t>(la[j]));
            gb[j] = static_cast<scalar_t>(g);
            gla[j] = static_cast<scalar_t>(g * a * static_cast<acc_t>(hp[j]));
            carry[j] = g * a;
          }
        } else {
#pragma omp simd
          for (int64_t j = 0; j < n; ++j) {
            const acc_t g = carry[j] + static_cast<acc_t>(gh[j]);
            const acc_t a = exp_nonpositive(static_cast<acc_t>(la[j]));
            const acc_t hp = h0 ? h0[bi * D + d0 + j] : acc_t(0);
            gb[j] = static_cast<scalar_t>(g);
            gla[j] = static_cast<scalar_t>(g * a * hp);
            carry[j] = g * a;
          }
        }
      }
      for (int64_t j = 0; j < n; ++j) {
        grad_h0[bi * D + d0 + j] = carry[j];
      }
    }
  });
}

at::ScalarType acc_dtype(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

// log_a, b: (B, T, D); h0: (B, D) in the accumulation dtype or absent.
// Returns h: (B, T, D) in the input dtype and h_last: (B, D) in the
// accumulation dtype.
std::tuple<at::Tensor, at::Tensor> diag_scan_fwd(const at::Tensor& log_a_in,
                                                 const at::Tensor& b_in,
                                                 const std::optional<at::Tensor>& h0_in) {
  TORCH_CHECK_VALUE(log_a_in.dim() == 3 && b_in.sizes() == log_a_in.sizes(),
                    "diag_scan_fwd: log_a and b must both be (B, T, D)");
  const auto log_a = log_a_in.contiguous();
  const auto b = b_in.contiguous();
  const int64_t B = log_a.size(0), T = log_a.size(1), D = log_a.size(2);
  const auto acc = acc_dtype(log_a.scalar_type());
  at::Tensor h0;
  if (h0_in.has_value() && h0_in->defined()) {
    h0 = h0_in->to(acc).contiguous();
  }
  TORCH_CHECK_VALUE(!h0.defined() || (h0.dim() == 2 && h0.size(0) == B && h0.size(1) == D),
                    "diag_scan_fwd: h0 must be (B, D)");
  auto h = at::empty_like(log_a);
  if (B == 0 || T == 0 || D == 0) {  // nothing to scan: the state passes through (a copy, never an alias)
    return {h, h0.defined() ? h0.clone() : at::zeros({B, D}, log_a.options().dtype(acc))};
  }
  auto h_last = at::empty({B, D}, log_a.options().dtype(acc));
  bool ok = true;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, log_a.scalar_type(), "diag_scan_fwd", [&] {
    using acc_t = typename AccType<scalar_t>::type;
    ok = diag_scan_forward_impl<scalar_t>(
        log_a.data_ptr<scalar_t>(), b.data_ptr<scalar_t>(),
        h0.defined() ? h0.data_ptr<acc_t>() : nullptr, h.data_ptr<scalar_t>(),
        h_last.data_ptr<acc_t>(), B, T, D);
  });
  TORCH_CHECK_VALUE(ok, "diag_scan: log_a must be finite and <= 0 (the gate a = exp(log_a) lies in (0, 1]); "
                        "found a NaN, an infinity or a positive value");
  return {h, h_last};
}

// Gradients of diag_scan_fwd. grad_h (B, T, D) and grad_last (B, D) may be
// absent (zero). Returns (grad_log_a, grad_b, grad_h0).
std::tuple<at::Tensor, at::Tensor, at::Tensor> diag_scan_bwd(
    const std::optional<at::Tensor>& grad_h_in, const std::optional<at::Tensor>& grad_last_in,
    const at::Tensor& log_a_in, const at::Tensor& h_in, const std::optional<at::Tensor>& h0_in) {
  TORCH_CHECK_VALUE(log_a_in.dim() == 3 && h_in.sizes() == log_a_in.sizes(),
                    "diag_scan_bwd: log_a and h must both be (B, T, D)");
  const auto log_a = log_a_in.contiguous();
  const auto h = h_in.contiguous();
  const int64_t B = log_a.size(0), T = log_a.size(1), D = log_a.size(2);
  const auto acc = acc_dtype(log_a.scalar_type());
  if (B == 0 || T == 0 || D == 0) {  // nothing was scanned: h_last was h0, so dL/dh0 = dL/dh_last
    const bool has_last = grad_last_in.has_value() && grad_last_in->defined();
    return {at::zeros_like(log_a), at::zeros_like(log_a),
            has_last ? grad_last_in->to(acc).clone() : at::zeros({B, D}, log_a.options().dtype(acc))};
  }
  at::Tensor grad_h, grad_last, h0;
  // An absent grad_h (only h_last was used) is rare enough to pay for zeros.
  grad_h = (grad_h_in.has_value() && grad_h_in->defined())
               ? grad_h_in->to(log_a.scalar_type()).contiguous()
               : at::zeros_like(log_a);
  if (grad_last_in.has_value() && grad_last_in->defined()) grad_last = grad_last_in->to(acc).contiguous();
  if (h0_in.has_value() && h0_in->defined()) h0 = h0_in->to(acc).contiguous();
  auto grad_log_a = at::empty_like(log_a);
  auto grad_b = at::empty_like(log_a);
  auto grad_h0 = at::empty({B, D}, log_a.options().dtype(acc));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, log_a.scalar_type(), "diag_scan_bwd", [&] {
    using acc_t = typename AccType<scalar_t>::type;
    diag_scan_backward_impl<scalar_t>(
        grad_h.data_ptr<scalar_t>(),
        grad_last.defined() ? grad_last.data_ptr<acc_t>() : nullptr,
        log_a.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(),
        h0.defined() ? h0.data_ptr<acc_t>() : nullptr,
        grad_log_a.data_ptr<scalar_t>(), grad_b.data_ptr<scalar_t>(),
        grad_h0.data_ptr<acc_t>(), B, T, D);
  });
  return {grad_log_a, grad_b, grad_h0};
}

// Element-wise exp of non-positive inputs with the kernel's own exp, so the
// tests can check its accuracy against torch.exp directly.
at::Tensor exp_nonpositive_op(const at::Tensor& x_in) {
  const auto x = x_in.contiguous().to(at::kFloat);
  auto y = at::empty_like(x);
  const float* xp = x.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  const int64_t n = x.numel();
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) yp[i] = exp_nonpositive(xp[i]);
  return y;
}

}  // namespace

TORCH_LIBRARY(recurlab, m) {
  m.def("diag_scan_fwd(Tensor log_a, Tensor b, Tensor? h0) -> (Tensor, Tensor)");
  m.def("diag_scan_bwd(Tensor? grad_h, Tensor? grad_last, Tensor log_a, Tensor h, Tensor? h0) -> (Tensor, Tensor, Tensor)");
  m.def("exp_nonpositive(Tensor x) -> Tensor");
}

TORCH_LIBRARY_IMPL(recurlab, CPU, m) {
  m.impl("diag_scan_fwd", &diag_scan_fwd);
  m.impl("diag_scan_bwd", &diag_scan_bwd);
  m.impl("exp_nonpositive", &exp_nonpositive_op);
}

}  // namespace recurlab

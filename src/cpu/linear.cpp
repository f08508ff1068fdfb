// Linear layers on the CPU: Eigen GEMMs on row-major maps. Threads split the rows of each output
// (N for out and dinp, O for dW and db), so no two threads write the same element.
//   forward:  out[N,O] = inp[N,I]·Wᵀ + b
//   backward: dinp[N,I] = dout[N,O]·W[O,I];  dW[O,I] += doutᵀ·inp;  db[O] += Σ_n dout[n,:]
#include <Eigen/Core>
#include <algorithm>

#include <omp.h>

#include "cpu/ops.h"

namespace cairn::cpu {
namespace {
using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Map = Eigen::Map<RowMat>;
using CMap = Eigen::Map<const RowMat>;
using CStrided = Eigen::Map<const RowMat, 0, Eigen::OuterStride<>>;

// Calls fn(begin, end) on contiguous chunks of [0, n), one per thread, chunk edges aligned to `align`.
template <class Fn>
void split_rows(int n, int align, const Fn& fn) {
  const int T = std::max(1, std::min(omp_get_max_threads(), (n + align - 1) / align));
  if (T == 1) return fn(0, n);
#pragma omp parallel num_threads(T)
  {
    const int t = omp_get_thread_num();
    const int blocks = (n + align - 1) / align;
    const int b0 = blocks * t / T, b1 = blocks * (t + 1) / T;
    const int r0 = std::min(n, b0 * align), r1 = std::min(n, b1 * align);
    if (r1 > r0) fn(r0, r1);
  }
}
}  // namespace

void linear_forward(float* out, const float* inp, const float* W, const float* b, int N, int I, int O) {
  CMap w(W, O, I);
  split_rows(N, 16, [&](int r0, int r1) {
    Map y(out + static_cast<size_t>(r0) * O, r1 - r0, O);
    CMap x(inp + static_cast<size_t>(r0) * I, r1 - r0, I);
    y.noalias() = x * w.transpose();
    if (b) y.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(b, O);
  });
}

void linear_backward(float* dinp, float* dW, float* db, const float* dout, const float* inp, const float* W, int N,
                     int I, int O) {
  if (dinp) {
    CMap w(W, O, I);
    split_rows(N, 16, [&](int r0, int r1) {
      Map dx(dinp + static_cast<size_t>(r0) * I, r1 - r0, I);
      CMap dy(dout + static_cast<size_t>(r0) * O, r1 - r0, O);
      dx.noalias() = dy * w;
    });
  }
  CMap x(inp, N, I);
  split_rows(O, 8, [&](int o0, int o1) {
    CStrided dy(dout + o0, N, o1 - o0, Eigen::OuterStride<>(O));
    Map dw(dW + static_cast<size_t>(o0) * I, o1 - o0, I);
    dw.noalias() += dy.transpose() * x;
    if (db) {
      Eigen::Map<Eigen::RowVectorXf> dbias(db + o0, o1 - o0);
      dbias += dy.colwise().sum();
    }
  });
}

}  // namespace cairn::cpu

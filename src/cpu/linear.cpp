// Linear layers on the CPU: Eigen GEMMs on row-major maps, threaded by Eigen itself (OpenMP): Eigen
// splits each product's result into per-thread blocks, so every element is computed by one thread
// with a fixed blocking — deterministic for a given thread count.
//   forward:  out[N,O] = inp[N,I]·Wᵀ + b
//   backward: dinp[N,I] = dout[N,O]·W[O,I];  dW[O,I] += doutᵀ·inp;  db[O] += Σ_n dout[n,:]
#include <Eigen/Core>

#include "cpu/ops.h"

namespace cairn::cpu {
namespace {
using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Map = Eigen::Map<RowMat>;
using CMap = Eigen::Map<const RowMat>;
}  // namespace

void linear_forward(float* out, const float* inp, const float* W, const float* b, int N, int I, int O) {
  Map y(out, N, O);
  y.noalias() = CMap(inp, N, I) * CMap(W, O, I).transpose();
  if (b) y.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(b, O);
}

void linear_backward(float* dinp, float* dW, float* db, const float* dout, const float* inp, const float* W, int N,
                     int I, int O) {
  CMap dy(dout, N, O);
  if (dinp) Map(dinp, N, I).noalias() = dy * CMap(W, O, I);
  Map(dW, O, I).noalias() += dy.transpose() * CMap(inp, N, I);
  if (db) Eigen::Map<Eigen::RowVectorXf>(db, O) += dy.colwise().sum();
}

}  // namespace cairn::cpu

// Linear layers on the CPU: Eigen GEMMs on row-major maps.
//   forward:  out[N,O] = inp[N,I]·Wᵀ + b
//   backward: dinp[N,I] = dout[N,O]·W[O,I];  dW[O,I] += doutᵀ·inp;  db[O] += Σ_n dout[n,:]
//
// The forward is invariant to the row count (docs/model.md#numerics-and-determinism): row n of out
// depends on row n of inp alone, not on N, on n or on the thread count. One Eigen product over all
// N rows would not be. Eigen picks its kernel by shape: a matrix-vector product when N = 1, a
// coefficient loop when N + I + O < 20. It sets its k-blocking, and so the order of the k-summation,
// by whether it threads, which it decides from N·I·O. And it runs the last N mod 4 rows through
// another micro-kernel than the groups of 4 (GeneralBlockPanelKernel.h, "remaining columns").
//
// So the forward runs on tiles of kRowTile rows × kColBlock outputs. Every tile is the same
// single-threaded product [kRowTile, I]·[I, oc], with oc fixed by the column block; the last row tile
// runs on a zero-padded copy. The same shape gets the same kernel and blocking: Eigen's
// computeProductBlockingSizes sees only (I, oc, kRowTile), the cache sizes and one thread. Inside a
// tile every row is treated alike. kRowTile is a multiple of Eigen's register block nr = 4 (its
// column blocks are multiples of nr, so no row is a remainder). It is also a multiple of the 8-row
// groups of Eigen's matrix-vector product, which runs when oc = 1. OpenMP threads take whole tiles,
// no more threads than tiles; which thread computes a tile does not change its bits.
//
// The backward products stay single Eigen products threaded by Eigen itself (it splits each result
// into per-thread blocks with a fixed blocking): deterministic for a given thread count.
#include <Eigen/Core>
#include <algorithm>
#include <vector>

#include <omp.h>

#include "cpu/ops.h"
#include "util/threads.h"

namespace cairn::cpu {
namespace {
using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Map = Eigen::Map<RowMat>;
using CMap = Eigen::Map<const RowMat>;
using StridedMap = Eigen::Map<RowMat, 0, Eigen::OuterStride<>>;

constexpr int kRowTile = 64;    // rows per product: a multiple of 8 (see above)
constexpr int kColBlock = 256;  // outputs per product

// y[kRowTile, oc] (row stride ldy) = x[kRowTile, I]·W[o0 : o0+oc]ᵀ (+ b[o0 : o0+oc]): the one product
// shape of column block o0.
void tile_product(float* y, int ldy, const float* x, const float* W, const float* b, int I, int o0, int oc) {
  StridedMap Y(y, kRowTile, oc, Eigen::OuterStride<>(ldy));
  Y.noalias() = CMap(x, kRowTile, I) * CMap(W + static_cast<size_t>(o0) * I, oc, I).transpose();
  if (b) Y.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(b + o0, oc);
}
}  // namespace

void linear_forward(float* out, const float* inp, const float* W, const float* b, int N, int I, int O) {
  const int tiles = (N + kRowTile - 1) / kRowTile, blocks = (O + kColBlock - 1) / kColBlock;
  const long items = static_cast<long>(tiles) * blocks;
#pragma omp parallel num_threads(static_cast<int>(std::min<long>(items, omp_get_max_threads())))
  {
    ThreadScope alone(1);  // Eigen threads a product by this count: each tile runs on its thread alone
    std::vector<float> pad_in, pad_out;
#pragma omp for schedule(static)
    for (long w = 0; w < items; ++w) {
      const int r0 = static_cast<int>(w / blocks) * kRowTile, rows = std::min(kRowTile, N - r0);
      const int o0 = static_cast<int>(w % blocks) * kColBlock, oc = std::min(kColBlock, O - o0);
      const float* x = inp + static_cast<size_t>(r0) * I;
      float* y = out + static_cast<size_t>(r0) * O + o0;
      if (rows == kRowTile) {
        tile_product(y, O, x, W, b, I, o0, oc);
        continue;
      }
      pad_in.assign(static_cast<size_t>(kRowTile) * I, 0.0f);
      std::copy_n(x, static_cast<size_t>(rows) * I, pad_in.begin());
      pad_out.resize(static_cast<size_t>(kRowTile) * oc);
      tile_product(pad_out.data(), oc, pad_in.data(), W, b, I, o0, oc);
      for (int r = 0; r < rows; ++r)
        std::copy_n(pad_out.data() + static_cast<size_t>(r) * oc, oc, y + static_cast<size_t>(r) * O);
    }
  }
}

void linear_backward(float* dinp, float* dW, float* db, const float* dout, const float* inp, const float* W, int N,
                     int I, int O) {
  CMap dy(dout, N, O);
  if (dinp) Map(dinp, N, I).noalias() = dy * CMap(W, O, I);
  Map(dW, O, I).noalias() += dy.transpose() * CMap(inp, N, I);
  if (db) bias_backward(db, dout, N, O);
}

void bias_backward(float* db, const float* dout, int N, int O) {
  Eigen::Map<Eigen::RowVectorXf>(db, O) += CMap(dout, N, O).colwise().sum();
}

}  // namespace cairn::cpu

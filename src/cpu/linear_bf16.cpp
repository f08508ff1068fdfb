// Linear layers in bf16 on the CPU (--cpu-math bf16): oneDNN matmuls on bf16 copies of the operands,
// fp32 accumulation, fp32 results. The same contract as linear.cpp, the same formulas:
//   forward:  out[N,O] = inp[N,I]·Wᵀ + b
//   backward: dinp[N,I] = dout[N,O]·W[O,I];  dW[O,I] += doutᵀ·inp;  db[O] += Σ_n dout[n,:]
// Operands are rounded to bf16 (round to nearest even; NaN stays NaN), products and sums are fp32,
// so the only error against fp32 is the rounding of the inputs: a relative 2⁻⁹ per factor. The bias,
// db, the master weights, their gradients and everything outside the linear layers stay fp32 (as
// --cuda-math bf16 on the GPU). oneDNN picks its kernel for the CPU: AMX tiles on Sapphire Rapids
// and later, AVX512-BF16 dot products before them.
//
// Forward rows are independent of the row count, as in linear.cpp: every call runs the same
// [kRowTile, I]·[I, O] product on each tile of kRowTile rows (the last one on a zero-padded copy),
// from a primitive made for one thread, so its blocking (and the order of the k-summation) is fixed
// by (I, O) alone. OpenMP threads take whole tiles; oneDNN runs sequentially inside an OpenMP
// parallel region. The weights are converted and packed into oneDNN's blocked layout once per call.
//
// Backward: one threaded matmul per product, made for the backend's thread count: deterministic for a
// given count. Primitives live in a per-thread cache keyed by shape (and thread count), with
// user-managed scratchpads, so concurrent backends never share a buffer.
#include "cpu/ops.h"

#ifdef CAIRN_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include <omp.h>

#include "util/threads.h"

namespace cairn::cpu {
namespace {
using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;
using dims = dnnl::memory::dims;

constexpr int kRowTile = 64;  // rows per forward product: a multiple of AMX's 16-row tiles

dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}
dnnl::stream& stream() {  // streams are not shared between threads
  thread_local dnnl::stream s(engine());
  return s;
}

uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
void convert(uint16_t* dst, const float* src, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = to_bf16(src[i]);
}
// Threaded conversion of a whole operand (each element by one thread: the bits do not depend on it).
void convert_parallel(std::vector<uint16_t>& dst, const float* src, size_t n) {
  if (dst.size() < n) dst.resize(n);
  constexpr size_t kChunk = 1 << 16;
  const long chunks = static_cast<long>((n + kChunk - 1) / kChunk);
#pragma omp parallel for schedule(static) num_threads(static_cast<int>(std::min<long>(chunks, omp_get_max_threads())))
  for (long c = 0; c < chunks; ++c) {
    const size_t b = static_cast<size_t>(c) * kChunk;
    convert(dst.data() + b, src + b, std::min(kChunk, n - b));
  }
}

dnnl::memory::desc md(dims d, dt type, dims strides) { return dnnl::memory::desc(d, type, strides); }

// A matmul and a user scratchpad for it (one per thread that executes it).
struct Matmul {
  dnnl::matmul::primitive_desc pd;
  dnnl::matmul prim;
  Matmul(const dnnl::memory::desc& src, const dnnl::memory::desc& wei, const std::optional<dnnl::memory::desc>& bias,
         const dnnl::memory::desc& dst, bool accumulate) {
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    if (accumulate) {
      dnnl::post_ops po;
      po.append_sum(1.0f);
      attr.set_post_ops(po);
    }
    dnnl::matmul::desc d = bias ? dnnl::matmul::desc(src, wei, *bias, dst) : dnnl::matmul::desc(src, wei, dst);
    pd = dnnl::matmul::primitive_desc(d, attr, engine());
    prim = dnnl::matmul(pd);
  }
  void run(void* src, void* wei, const float* bias, void* dst) const {
    thread_local std::vector<char> scratch;
    const size_t need = pd.scratchpad_desc().get_size();
    if (scratch.size() < need) scratch.resize(need);
    std::unordered_map<int, dnnl::memory> args{
        {DNNL_ARG_SRC, dnnl::memory(pd.src_desc(), engine(), src)},
        {DNNL_ARG_WEIGHTS, dnnl::memory(pd.weights_desc(), engine(), wei)},
        {DNNL_ARG_DST, dnnl::memory(pd.dst_desc(), engine(), dst)},
        {DNNL_ARG_SCRATCHPAD, dnnl::memory(pd.scratchpad_desc(), engine(), scratch.data())}};
    if (bias) args.emplace(DNNL_ARG_BIAS, dnnl::memory(pd.bias_desc(), engine(), const_cast<float*>(bias)));
    prim.execute(stream(), args);
  }
};

// The forward of one (I, O): the tile product (made for one thread) and the packing of W into the
// layout it wants.
struct Forward {
  Matmul tile;
  dnnl::memory packed;  // W in bf16, oneDNN's blocked layout
  dnnl::reorder pack;
  Forward(int I, int O, bool bias)
      : tile(md({kRowTile, I}, dt::bf16, {I, 1}),
             dnnl::memory::desc({I, O}, dt::bf16, tag::any),  // let the kernel choose the weights' layout
             bias ? std::optional(md({1, O}, dt::f32, {O, 1})) : std::nullopt, md({kRowTile, O}, dt::f32, {O, 1}),
             false),
        packed(tile.pd.weights_desc(), engine()),
        pack(dnnl::reorder::primitive_desc(engine(), md({I, O}, dt::f32, {1, I}), engine(), tile.pd.weights_desc())) {}
};

// Per-thread caches (a backend's ops run on its calling thread). Backward shapes change with the
// batch's row count, so that cache is bounded.
template <class Key, class Value, class... Args>
Value& cached(std::map<Key, std::unique_ptr<Value>>& cache, const Key& key, Args&&... args) {
  auto it = cache.find(key);
  if (it != cache.end()) return *it->second;
  if (cache.size() >= 64) cache.clear();
  try {
    return *cache.emplace(key, std::make_unique<Value>(std::forward<Args>(args)...)).first->second;
  } catch (const dnnl::error& e) {
    throw std::runtime_error(std::string("--cpu-math bf16: oneDNN cannot make a bf16 matmul here (") + e.what() + ")");
  }
}

Forward& forward_for(int I, int O, bool bias) {
  thread_local std::map<std::tuple<int, int, bool>, std::unique_ptr<Forward>> cache;
  ThreadScope one(1);  // the tile's blocking is chosen for one thread, whatever the backend's count
  return cached(cache, std::make_tuple(I, O, bias), I, O, bias);
}

// kind 0: dinp = dout·W;  kind 1: dW += doutᵀ·inp
Matmul& backward_for(int kind, int N, int I, int O) {
  thread_local std::map<std::tuple<int, int, int, int, int>, std::unique_ptr<Matmul>> cache;
  const auto key = std::make_tuple(kind, N, I, O, omp_get_max_threads());
  if (kind == 0)
    return cached(cache, key, md({N, O}, dt::bf16, {O, 1}), md({O, I}, dt::bf16, {I, 1}), std::nullopt,
                  md({N, I}, dt::f32, {I, 1}), false);
  return cached(cache, key, md({O, N}, dt::bf16, {1, O}), md({N, I}, dt::bf16, {I, 1}), std::nullopt,
                md({O, I}, dt::f32, {I, 1}), true);
}
}  // namespace

std::string bf16_gemm_unavailable() {
  try {
    const Forward& f = forward_for(64, 64, false);
    const std::string impl = f.tile.pd.impl_info_str();
    if (impl.rfind("ref", 0) == 0) return "oneDNN has only its reference bf16 matmul for this CPU (" + impl + ")";
    return "";
  } catch (const std::exception& e) {
    return e.what();
  }
}

std::string bf16_gemm_impl() {
  try {
    return forward_for(64, 64, false).tile.pd.impl_info_str();
  } catch (const std::exception&) {
    return "none";
  }
}

void linear_forward_bf16(float* out, const float* inp, const float* W, const float* b, int N, int I, int O) {
  if (N <= 0) return;
  Forward& f = forward_for(I, O, b != nullptr);
  {
    dnnl::memory src(md({I, O}, dt::f32, {1, I}), engine(), const_cast<float*>(W));
    f.pack.execute(stream(), src, f.packed);
  }
  void* packed = f.packed.get_data_handle();
  const int tiles = (N + kRowTile - 1) / kRowTile;
#pragma omp parallel num_threads(std::min(tiles, omp_get_max_threads()))
  {
    thread_local std::vector<uint16_t> x;
    thread_local std::vector<float> pad_out;
    x.resize(static_cast<size_t>(kRowTile) * I);
#pragma omp for schedule(static)
    for (int t = 0; t < tiles; ++t) {
      const int r0 = t * kRowTile, rows = std::min(kRowTile, N - r0);
      convert(x.data(), inp + static_cast<size_t>(r0) * I, static_cast<size_t>(rows) * I);
      std::fill(x.begin() + static_cast<size_t>(rows) * I, x.end(), uint16_t{0});
      float* y = out + static_cast<size_t>(r0) * O;
      if (rows < kRowTile) {
        pad_out.resize(static_cast<size_t>(kRowTile) * O);
        y = pad_out.data();
      }
      f.tile.run(x.data(), packed, b, y);
      if (rows < kRowTile) std::copy_n(pad_out.data(), static_cast<size_t>(rows) * O, out + static_cast<size_t>(r0) * O);
    }
  }
}

void linear_backward_bf16(float* dinp, float* dW, float* db, const float* dout, const float* inp, const float* W, int N,
                          int I, int O) {
  if (N <= 0) return;
  thread_local std::vector<uint16_t> dy, x, w;
  convert_parallel(dy, dout, static_cast<size_t>(N) * O);
  if (dinp) {
    convert_parallel(w, W, static_cast<size_t>(O) * I);
    backward_for(0, N, I, O).run(dy.data(), w.data(), nullptr, dinp);
  }
  convert_parallel(x, inp, static_cast<size_t>(N) * I);
  backward_for(1, N, I, O).run(dy.data(), x.data(), nullptr, dW);
  if (db) bias_backward(db, dout, N, O);  // from the fp32 gradient, as linear.cpp
}

}  // namespace cairn::cpu

#else  // built without oneDNN

#include <stdexcept>
#include <string>

namespace cairn::cpu {
std::string bf16_gemm_unavailable() { return "this cairn was built without oneDNN (scripts/setup.sh installs libdnnl-dev)"; }
std::string bf16_gemm_impl() { return "none"; }
void linear_forward_bf16(float*, const float*, const float*, const float*, int, int, int) {
  throw std::logic_error("linear_forward_bf16: built without oneDNN");
}
void linear_backward_bf16(float*, float*, float*, const float*, const float*, const float*, int, int, int) {
  throw std::logic_error("linear_backward_bf16: built without oneDNN");
}
}  // namespace cairn::cpu
#endif

// Helpers shared by the kernels: warp reductions, the sm_80+ tensor-core primitives (ldmatrix,
// mma.sync m16n8k16 bf16 → fp32) the attention kernels are built from, and on the host side the
// per-device state the launchers need (PerDevice, sm_count).
//
// Fragment layouts of mma.sync.m16n8k16 (PTX ISA), with g = lane / 4 and t = lane % 4:
//   A (16×16, row):  a0 = (row g,   k 2t..2t+1)   a1 = (row g+8, k 2t..2t+1)
//                    a2 = (row g,   k 2t+8..+9)   a3 = (row g+8, k 2t+8..+9)     (two bf16 per register)
//   B (16×8, col):   b0 = (k 2t..2t+1, col g)     b1 = (k 2t+8..+9, col g)
//   C (16×8, fp32):  c0,c1 = (row g, cols 2t, 2t+1)   c2,c3 = (row g+8, cols 2t, 2t+1)
// The C layout of two adjacent 16×8 tiles is the A layout of one 16×16 tile, so a softmax computed in
// C registers feeds the next MMA as its A operand without touching shared memory (FlashAttention-2).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <mutex>

#include "kernels/kernels.h"

namespace cairn::cuda {

using bf16 = __nv_bfloat16;

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ double warp_sum(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Two floats → one register of two bf16 (lo in the low half, as the MMA fragments expect).
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// Two adjacent 16×8 fp32 accumulator tiles (columns k..k+7 and k+8..k+15) as the bf16 A operand of
// a 16×16 MMA step: the layouts line up register for register (see the table above).
__device__ __forceinline__ void acc_to_a(uint32_t a[4], const float lo[4], const float hi[4]) {
  a[0] = pack_bf16(lo[0], lo[1]);
  a[1] = pack_bf16(lo[2], lo[3]);
  a[2] = pack_bf16(hi[0], hi[1]);
  a[3] = pack_bf16(hi[2], hi[3]);
}

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Four 8×8 bf16 matrices from shared memory; lane l gives the address of row l%8 of matrix l/8.
// Register i receives, per thread, row g of matrix i, elements 2t and 2t+1.
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
// The same, transposed: register i receives rows 2t and 2t+1 of matrix i, element g.
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

// c (16×8 fp32) += a (16×16 bf16) · b (16×8 bf16)
__device__ __forceinline__ void mma_bf16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// 16-byte asynchronous global → shared copy; src_bytes 0 writes zeros (rows past the sequence end).
__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(smem)), "l"(gmem), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// ---- host ----

// One value per CUDA device, computed by compute(device) the first time it is asked for on that device
// (the current one, cudaGetDevice) and returned as is after that: state that belongs to a device, not
// the process, such as a kernel's shared-memory opt-in or the SM count. Thread safe (std::call_once per
// device); devices past kSlots are not cached but recomputed on every call.
template <class V>
class PerDevice {
 public:
  template <class F>
  V get(F&& compute) {
    int dev = 0;
    check(cudaGetDevice(&dev), "cudaGetDevice");
    if (dev < 0 || dev >= kSlots) return compute(dev);
    std::call_once(once_[dev], [&] { value_[dev] = compute(dev); });
    return value_[dev];
  }

 private:
  static constexpr int kSlots = 64;
  std::once_flag once_[kSlots];
  V value_[kSlots]{};
};

// Streaming multiprocessors of the current device: the grid size of grid-stride loops is a multiple of it.
inline int sm_count() {
  static PerDevice<int> sms;
  return sms.get([](int dev) {
    int n = 0;
    check(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev), "cudaDeviceGetAttribute(SM count)");
    return n;
  });
}

}  // namespace cairn::cuda

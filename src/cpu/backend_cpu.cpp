// CpuBackend: the Backend interface over the CPU kernels of src/cpu (linear layers in fp32 on Eigen, or
// in bf16 on oneDNN with --cpu-math bf16). Buffers are plain host memory
// (64-byte aligned). Every op runs inside an Op scope: the backend's OpenMP thread count for that op
// only (src/cpu/threads.h; nothing process-wide changes), and with profiling on its wall time summed
// under its name.
#include "cpu/backend_cpu.h"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <new>
#include <stdexcept>
#include <string>

#include "cpu/ops.h"
#include "util/threads.h"

namespace cairn {
namespace {

class CpuBackend final : public Backend {
 public:
  CpuBackend(int threads, cpu::AttnImpl attn, bool bf16)
      : attn_(attn), threads_(resolve_threads(threads)), bf16_(bf16) {}
  bool host_memory() const override { return true; }
  std::string name() const override {
    return "cpu (" + std::to_string(threads_) + " threads, attention " + cpu::attn_impl_name(attn_) +
           (bf16_ ? ", GEMMs bf16 " + cpu::bf16_gemm_impl() : "") + ")";
  }

  void* alloc_bytes(size_t bytes) override {
    void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
    if (!p) throw std::bad_alloc();
    return p;
  }
  void free_bytes(void* p) override { std::free(p); }
  void to_device(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void to_host(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void fill(float* x, float value, size_t n) override { std::fill_n(x, n, value); }

  void set_profiling(bool on) override {
    profiling_ = on;
    prof_.clear();
  }
  std::vector<std::pair<std::string, double>> op_profile() const override { return {prof_.begin(), prof_.end()}; }

  void embedding_forward(float* out, const int32_t* ids, const int32_t* pos, const float* wte, const float* wpe, int N,
                         int C) override {
    Op op(this, "embedding");
    cpu::embedding_forward(out, ids, pos, wte, wpe, N, C);
  }
  void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* ids, const int32_t* pos, int N,
                          int C) override {
    Op op(this, "embedding_bwd");
    cpu::embedding_backward(dwte, dwpe, dout, ids, pos, N, C);
  }
  void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* w, const float* b, int N,
                         int C) override {
    Op op(this, "layernorm");
    cpu::layernorm_forward(out, mean, rstd, inp, w, b, N, C);
  }
  void layernorm_backward(float* dinp, float* dw, float* db, const float* dout, const float* inp, const float* w,
                          const float* mean, const float* rstd, int N, int C) override {
    Op op(this, "layernorm_bwd");
    cpu::layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, N, C);
  }
  void linear_forward(float* out, const float* inp, const float* W, const float* b, int N, int I, int O) override {
    Op op(this, "linear");
    (bf16_ ? cpu::linear_forward_bf16 : cpu::linear_forward)(out, inp, W, b, N, I, O);
  }
  void linear_backward(float* dinp, float* dW, float* db, const float* dout, const float* inp, const float* W, int N,
                       int I, int O) override {
    Op op(this, "linear_bwd");
    (bf16_ ? cpu::linear_backward_bf16 : cpu::linear_backward)(dinp, dW, db, dout, inp, W, N, I, O);
  }
  void gelu_forward(float* out, const float* inp, size_t n) override {
    Op op(this, "gelu");
    cpu::gelu_forward(out, inp, n);
  }
  void gelu_backward(float* dinp, const float* inp, const float* dout, size_t n) override {
    Op op(this, "gelu_bwd");
    cpu::gelu_backward(dinp, inp, dout, n);
  }
  void add_inplace(float* x, const float* y, size_t n) override {
    Op op(this, "residual");
    cpu::add_inplace(x, y, n);
  }
  void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* w, int N, int C, float eps) override {
    Op op(this, "rmsnorm");
    cpu::rmsnorm_forward(out, rstd, inp, w, N, C, eps);
  }
  void rmsnorm_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w, const float* rstd,
                        int N, int C) override {
    Op op(this, "rmsnorm_bwd");
    cpu::rmsnorm_backward(dinp, dw, dout, inp, w, rstd, N, C);
  }
  void swiglu_forward(float* out, const float* inp, int N, int F) override {
    Op op(this, "swiglu");
    cpu::swiglu_forward(out, inp, N, F);
  }
  void swiglu_backward(float* dinp, const float* inp, const float* dout, int N, int F) override {
    Op op(this, "swiglu_bwd");
    cpu::swiglu_backward(dinp, inp, dout, N, F);
  }
  void rope_forward(float* qkv, const int32_t* pos, int N, int NH, int NKV, int HS, float theta) override {
    Op op(this, "rope");
    cpu::rope_forward(qkv, pos, N, NH, NKV, HS, theta);
  }
  void rope_backward(float* dqkv, const int32_t* pos, int N, int NH, int NKV, int HS, float theta) override {
    Op op(this, "rope_bwd");
    cpu::rope_backward(dqkv, pos, N, NH, NKV, HS, theta);
  }
  void attention_forward(float* out, float* lse, const float* qkv, const SeqLayout& s, int NH, int NKV,
                         int HS) override {
    Op op(this, "attention");
    cpu::attention_forward(attn_, out, lse, qkv, s.host_cu_seqlens, s.n_seqs, NH, NKV, HS, true, s.host_prefix_of);
  }
  void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* out, const float* lse,
                          const SeqLayout& s, int NH, int NKV, int HS) override {
    Op op(this, "attention_bwd");
    cpu::attention_backward(attn_, dqkv, dout, qkv, out, lse, s.host_cu_seqlens, s.n_seqs, NH, NKV, HS, true,
                            s.host_prefix_of);
  }
  void attention_last_forward(float* out, float* lse, const float* qkv, const SeqLayout& s, int NH, int NKV,
                              int HS) override {
    Op op(this, "attention");
    cpu::attention_last_forward(out, lse, qkv, s.host_cu_seqlens, s.n_seqs, NH, NKV, HS, s.host_prefix_of);
  }
  void attention_last_backward(float* dqkv, const float* dout, const float* qkv, const float* out, const float* lse,
                               const SeqLayout& s, int NH, int NKV, int HS) override {
    Op op(this, "attention_bwd");
    cpu::attention_last_backward(dqkv, dout, qkv, out, lse, s.host_cu_seqlens, s.n_seqs, NH, NKV, HS, s.host_prefix_of);
  }
  void gather_rows(float* out, const float* inp, const int32_t* rows, int R, int C) override {
    Op op(this, "gather");
    cpu::gather_rows(out, inp, rows, R, C);
  }
  void scatter_add_rows(float* dinp, const float* dout, const int32_t* rows, int R, int C) override {
    Op op(this, "gather");
    cpu::scatter_add_rows(dinp, dout, rows, R, C);
  }
  LossStats bt_loss(float* drewards, const float* rewards, const PairTarget* pairs, int P, int H,
                    const float* head_weights, float center_coef) override {
    Op op(this, "loss");
    return cpu::bt_loss(drewards, rewards, pairs, P, H, head_weights, center_coef);
  }
  double sum_squares(const float* x, size_t n) override {
    Op op(this, "optimizer");
    return cpu::sum_squares(x, n);
  }
  void adamw_update(float* p, const float* g, float* m, float* v, size_t n, const AdamWHyper& h) override {
    Op op(this, "optimizer");
    cpu::adamw_update(p, g, m, v, n, h);
  }

 private:
  struct Op {
    CpuBackend* be;
    const char* name;
    ThreadScope threads;
    std::chrono::steady_clock::time_point t0;
    Op(CpuBackend* b, const char* op_name) : be(b), name(op_name), threads(b->threads_) {
      if (be->profiling_) t0 = std::chrono::steady_clock::now();
    }
    ~Op() {
      if (be->profiling_)
        be->prof_[name] += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    }
  };
  cpu::AttnImpl attn_;
  int threads_;
  bool bf16_;  // linear layers on bf16 operands (--cpu-math bf16)
  bool profiling_ = false;
  std::map<std::string, double> prof_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int threads, cpu::AttnImpl attn, CpuMath math) {
  if (math == CpuMath::BF16) {
    const std::string why = cpu::bf16_gemm_unavailable();
    if (!why.empty()) throw std::runtime_error("--cpu-math bf16: " + why);
  }
  return std::make_unique<CpuBackend>(threads, attn, math == CpuMath::BF16);
}

CpuMath parse_cpu_math(const std::string& s) {
  if (s == "fp32") return CpuMath::FP32;
  if (s == "bf16") return CpuMath::BF16;
  throw std::invalid_argument("unknown CPU math '" + s + "' (expected fp32 or bf16)");
}

}  // namespace cairn

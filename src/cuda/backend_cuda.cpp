// CudaBackend: the Backend interface on one CUDA device and one stream. GEMMs go to cuBLASLt (plans
// cached per shape and pointer alignment, bias fused as an epilogue); every other op is one of our
// kernels (kernels/kernels.h). Scratch buffers grow on demand and are reused. With profiling on,
// each op is bracketed by CUDA events and summed under its name.
#include "cuda/backend_cuda.h"

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <tuple>
#include <vector>

#include "kernels/kernels.h"

namespace cairn {
namespace {

using cuda::check;

void check_cublas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string("cuBLAS error in ") + what + ": status " + std::to_string(static_cast<int>(s)));
}

// Largest power of two (≤ 256) dividing the address: what cuBLASLt may assume about a pointer.
uint32_t alignment_of(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint32_t al = 256;
  while (al > 4 && (a % al)) al /= 2;
  return al;
}

// A device buffer that only grows.
class Scratch {
 public:
  ~Scratch() { cudaFree(p_); }
  void* get(size_t bytes) {
    if (bytes > cap_) {
      if (p_) check(cudaFree(p_), "scratch free");
      p_ = nullptr;
      cap_ = std::max(bytes, cap_ * 3 / 2);
      check(cudaMalloc(&p_, cap_), "scratch allocation");
    }
    return p_;
  }
  template <class T>
  T* as(size_t n) {
    return static_cast<T*>(get(std::max<size_t>(n, 1) * sizeof(T)));
  }

 private:
  void* p_ = nullptr;
  size_t cap_ = 0;
};

class CudaBackend final : public Backend {
 public:
  CudaBackend(int device, CudaMath math, bool verbose) : device_(device), math_(math), verbose_(verbose) {
    check(cudaSetDevice(device), "cudaSetDevice");
    cudaDeviceProp prop{};
    check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
    if (prop.major < 8)
      throw std::runtime_error(std::string("--device cuda: ") + prop.name + " (sm_" + std::to_string(prop.major) +
                               std::to_string(prop.minor) + ") is too old: the kernels need sm_80 or newer");
    device_name_ = prop.name;
    sm_ = std::to_string(prop.major) + std::to_string(prop.minor);
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    check_cublas(cublasLtCreate(&lt_), "cublasLtCreate");
    check(cudaMalloc(&gemm_ws_, kGemmWorkspace), "cuBLASLt workspace");
  }
  ~CudaBackend() override {
    cudaStreamSynchronize(stream_);
    for (auto& [k, plan] : plans_) plan.destroy();
    for (auto& e : events_) cudaEventDestroy(std::get<1>(e)), cudaEventDestroy(std::get<2>(e));
    cudaFree(gemm_ws_);
    cublasLtDestroy(lt_);
    cudaStreamDestroy(stream_);
  }

  void* native_stream() override { return stream_; }
  std::string name() const override {
    const char* m = math_ == CudaMath::BF16 ? "bf16" : math_ == CudaMath::TF32 ? "tf32" : "fp32";
    return "cuda (" + device_name_ + ", sm_" + sm_ + ", " + m + " GEMMs, bf16 attention MMA)";
  }

  // ---- memory ----
  void* alloc_bytes(size_t bytes) override {
    void* p = nullptr;
    check(cudaMalloc(&p, std::max<size_t>(bytes, 4)), "cudaMalloc");
    return p;
  }
  void free_bytes(void* p) override {
    if (!p) return;
    cudaStreamSynchronize(stream_);
    cudaFree(p);
  }
  void to_device(void* dst, const void* src, size_t bytes) override {
    if (bytes) check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_), "copy to device");
    check(cudaStreamSynchronize(stream_), "copy to device");  // the caller may reuse src at once
  }
  void to_host(void* dst, const void* src, size_t bytes) override {
    if (bytes) check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_), "copy to host");
    check(cudaStreamSynchronize(stream_), "copy to host");
  }
  void fill(float* x, float value, size_t n) override { cuda::fill(x, value, n, stream_); }
  void synchronize() override { check(cudaStreamSynchronize(stream_), "synchronize"); }

  // ---- profiling ----
  void set_profiling(bool on) override {
    synchronize();
    for (auto& e : events_) cudaEventDestroy(std::get<1>(e)), cudaEventDestroy(std::get<2>(e));
    events_.clear();
    profiling_ = on;
  }
  std::vector<std::pair<std::string, double>> op_profile() const override {
    check(cudaStreamSynchronize(stream_), "profile");
    std::map<std::string, double> ms;
    for (const auto& [name, a, b] : events_) {
      float t = 0;
      check(cudaEventElapsedTime(&t, a, b), "cudaEventElapsedTime");
      ms[name] += t;
    }
    return {ms.begin(), ms.end()};
  }

  // ---- ops ----
  void embedding_forward(float* out, const int32_t* ids, const int32_t* pos, const float* wte, const float* wpe, int N,
                         int C) override {
    Timed t(this, "embedding");
    cuda::embedding_forward(out, ids, pos, wte, wpe, N, C, stream_);
  }
  void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* ids, const int32_t* pos, int N,
                          int C) override {
    Timed t(this, "embedding_bwd");
    cuda::embedding_backward(dwte, dwpe, dout, ids, pos, N, C, stream_);
  }
  void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* w, const float* b, int N,
                         int C) override {
    Timed t(this, "layernorm");
    cuda::layernorm_forward(out, mean, rstd, inp, w, b, N, C, stream_);
  }
  void layernorm_backward(float* dinp, float* dw, float* db, const float* dout, const float* inp, const float* w,
                          const float* mean, const float* rstd, int N, int C) override {
    Timed t(this, "layernorm_bwd");
    float* scratch = col_scratch_.as<float>(cuda::layernorm_scratch_floats(N, C));
    cuda::layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, N, C, scratch, stream_);
  }
  // Row-major out[N,O] = inp[N,I]·Wᵀ is, column-major, outᵀ[O,N] = W[I,O]ᵀ·inpᵀ[I,N].
  void linear_forward(float* out, const float* inp, const float* W, const float* b, int N, int I, int O) override {
    Timed t(this, "linear");
    gemm(true, false, O, N, I, W, I, inp, I, out, O, 0.0f, b);
  }
  void linear_backward(float* dinp, float* dW, float* db, const float* dout, const float* inp, const float* W, int N,
                       int I, int O) override {
    if (dinp) {
      Timed t(this, "linear_bwd_dx");
      gemm(false, false, I, N, O, W, I, dout, O, dinp, I, 0.0f, nullptr);  // dinpᵀ[I,N] = W[I,O]·doutᵀ
    }
    {
      Timed t(this, "linear_bwd_dw");
      gemm(false, true, I, O, N, inp, I, dout, O, dW, I, 1.0f, nullptr);  // dWᵀ[I,O] += inpᵀ·dout
    }
    if (db) {
      Timed t(this, "linear_bwd_db");
      cuda::column_sum_add(db, dout, N, O, col_scratch_.as<float>(cuda::layernorm_scratch_floats(N, O)), stream_);
    }
  }
  void gelu_forward(float* out, const float* inp, size_t n) override {
    Timed t(this, "gelu");
    cuda::gelu_forward(out, inp, n, stream_);
  }
  void gelu_backward(float* dinp, const float* inp, const float* dout, size_t n) override {
    Timed t(this, "gelu_bwd");
    cuda::gelu_backward(dinp, inp, dout, n, stream_);
  }
  void add_inplace(float* x, const float* y, size_t n) override {
    Timed t(this, "residual");
    cuda::add_inplace(x, y, n, stream_);
  }

  // ---- the llama family ----
  void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* w, int N, int C, float eps) override {
    Timed t(this, "rmsnorm");
    cuda::rmsnorm_forward(out, rstd, inp, w, N, C, eps, stream_);
  }
  void rmsnorm_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w, const float* rstd,
                        int N, int C) override {
    Timed t(this, "rmsnorm_bwd");
    float* scratch = col_scratch_.as<float>(cuda::layernorm_scratch_floats(N, C));
    cuda::rmsnorm_backward(dinp, dw, dout, inp, w, rstd, N, C, scratch, stream_);
  }
  void swiglu_forward(float* out, const float* inp, int N, int F) override {
    Timed t(this, "swiglu");
    cuda::swiglu_forward(out, inp, N, F, stream_);
  }
  void swiglu_backward(float* dinp, const float* inp, const float* dout, int N, int F) override {
    Timed t(this, "swiglu_bwd");
    cuda::swiglu_backward(dinp, inp, dout, N, F, stream_);
  }
  void rope_forward(float* qkv, const int32_t* pos, int N, int NH, int NKV, int HS, float theta) override {
    Timed t(this, "rope");
    cuda::rope_forward(qkv, pos, N, NH, NKV, HS, theta, stream_);
  }
  void rope_backward(float* dqkv, const int32_t* pos, int N, int NH, int NKV, int HS, float theta) override {
    Timed t(this, "rope_bwd");
    cuda::rope_backward(dqkv, pos, N, NH, NKV, HS, theta, stream_);
  }

  // ---- attention (grouped-query; qkv rows [q heads | k heads | v heads], AttnShape::k_col / v_col) ----
  // Shared prefixes (SeqLayout::prefix_of) go to the kernels as they are; their layout is checked on
  // the host copy first (the kernels trust it).
  static const int32_t* prefixes(const SeqLayout& s) {
    if (s.prefix_of) cuda::check_prefix_layout(s.host_prefix_of, s.n_seqs);
    return s.prefix_of;
  }
  void attention_forward(float* out, float* lse, const float* qkv, const SeqLayout& s, int NH, int NKV,
                         int HS) override {
    Timed t(this, "attention");
    const cuda::AttnShape sh = shape(s, NH, NKV, HS);
    const long C = long(NH) * HS, W = sh.qkv_cols();
    cuda::AttnFwd a{qkv, qkv + sh.k_col(), qkv + sh.v_col(), W, W, W, out, C, lse};
    cuda::attention_forward(cuda::kAttnBest, cuda::AttnDtype::F32, sh, a, stream_);
  }
  void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* out, const float* lse,
                          const SeqLayout& s, int NH, int NKV, int HS) override {
    Timed t(this, "attention_bwd");
    const cuda::AttnShape sh = shape(s, NH, NKV, HS);
    const long C = long(NH) * HS, W = sh.qkv_cols();
    cuda::AttnBwd a{qkv, qkv + sh.k_col(), qkv + sh.v_col(), out, dout, W, W, W, C, C, lse,
                    dqkv, dqkv + sh.k_col(), dqkv + sh.v_col(), W, W, W,
                    attn_scratch_.as<float>(cuda::attention_bwd_workspace_floats(sh))};
    cuda::attention_backward(cuda::kAttnBest, cuda::AttnDtype::F32, sh, a, stream_);
  }
  void attention_last_forward(float* out, float* lse, const float* qkv, const SeqLayout& s, int NH, int NKV,
                              int HS) override {
    Timed t(this, "attention");
    cuda::attention_last_forward(out, lse, qkv, s.cu_seqlens, prefixes(s), s.n_seqs, NH, NKV, HS, stream_);
  }
  void attention_last_backward(float* dqkv, const float* dout, const float* qkv, const float* out, const float* lse,
                               const SeqLayout& s, int NH, int NKV, int HS) override {
    Timed t(this, "attention_bwd");
    cuda::attention_last_backward(dqkv, dout, qkv, out, lse, s.cu_seqlens, prefixes(s), s.n_seqs, s.n_tokens, NH, NKV,
                                  HS, stream_);
  }
  void gather_rows(float* out, const float* inp, const int32_t* rows, int R, int C) override {
    cuda::gather_rows(out, inp, rows, R, C, stream_);
  }
  void scatter_add_rows(float* dinp, const float* dout, const int32_t* rows, int R, int C) override {
    cuda::scatter_add_rows(dinp, dout, rows, R, C, stream_);
  }

  LossStats bt_loss(float* drewards, const float* rewards, const PairTarget* pairs, int P, int H,
                    const float* head_weights, float center_coef) override {
    if (P <= 0) throw std::invalid_argument("bt_loss: no pairs or non-positive total weight");
    double* stats = loss_stats_.as<double>(cuda::kLossStatsDoubles);
    cuda::bt_loss(drewards, stats, loss_scratch_.as<double>(4 * size_t(P)), rewards, pairs, P, H, head_weights,
                  center_coef, stream_);
    double h[cuda::kLossStatsDoubles];
    to_host(h, stats, sizeof h);
    if (!(h[4] > 0)) throw std::invalid_argument("bt_loss: no pairs or non-positive total weight");
    LossStats st;
    st.loss = h[0], st.bt_loss = h[1], st.n_correct = static_cast<int>(h[2]), st.n_decided = static_cast<int>(h[3]);
    return st;
  }
  double sum_squares(const float* x, size_t n) override {
    Timed t(this, "optimizer");
    double* part = norm_partials_.as<double>(cuda::kSumSquaresBlocks);
    cuda::sum_squares_partials(part, x, n, stream_);
    std::vector<double> h(cuda::kSumSquaresBlocks);
    to_host(h.data(), part, h.size() * sizeof(double));
    double s = 0;
    for (double v : h) s += v;
    return s;
  }
  void adamw_update(float* p, const float* g, float* m, float* v, size_t n, const AdamWHyper& h) override {
    Timed t(this, "optimizer");
    cuda::adamw_update(p, g, m, v, n, h, stream_);
  }

 private:
  static constexpr size_t kGemmWorkspace = 32u << 20;
  static constexpr size_t kMaxPlans = 1024;

  static cuda::AttnShape shape(const SeqLayout& s, int NH, int NKV, int HS) {
    cuda::AttnShape sh;
    sh.cu_seqlens = s.cu_seqlens, sh.prefix_of = prefixes(s), sh.B = s.n_seqs, sh.NH = NH, sh.NKV = NKV, sh.HS = HS, sh.max_len = s.max_len;
    sh.n_tokens = s.n_tokens, sh.causal = true;
    return sh;
  }

  // ---- cuBLASLt ----
  struct GemmPlan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
    void destroy() {
      if (op) cublasLtMatmulDescDestroy(op);
      if (a) cublasLtMatrixLayoutDestroy(a);
      if (b) cublasLtMatrixLayoutDestroy(b);
      if (c) cublasLtMatrixLayoutDestroy(c);
    }
  };
  using GemmKey = std::tuple<bool, bool, int, int, int, int, int, int, bool, uint32_t, uint32_t, uint32_t, uint32_t>;

  // Column-major C[m,n] = op(A)·op(B) + beta·C (+ bias[m] per column), fp32 storage.
  void gemm(bool ta, bool tb, int m, int n, int k, const float* A, int lda, const float* B, int ldb, float* C, int ldc,
            float beta, const float* bias) {
    if (m == 0 || n == 0) return;
    if (k == 0) {  // nothing to multiply: C = beta·C (+ bias) never arises in the model
      if (beta == 0.0f) cuda::fill(C, 0.0f, size_t(ldc) * n, stream_);
      return;
    }
    const GemmKey key{ta, tb, m, n, k, lda, ldb, ldc, bias != nullptr, alignment_of(A), alignment_of(B),
                      alignment_of(C), bias ? alignment_of(bias) : 256u};
    auto it = plans_.find(key);
    if (it == plans_.end()) {
      // Packed batches of real data have a new token count almost every step, so the cache is
      // bounded: past kMaxPlans it starts over (descriptors are read by cublasLtMatmul on the host
      // at call time only, so nothing in flight refers to them).
      if (plans_.size() >= kMaxPlans) {
        for (auto& [k, plan] : plans_) plan.destroy();
        plans_.clear();
      }
      it = plans_.emplace(key, make_plan(key)).first;
    }
    GemmPlan& p = it->second;
    if (bias)
      check_cublas(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)),
                   "bias pointer");
    const float alpha = 1.0f;
    check_cublas(cublasLtMatmul(lt_, p.op, &alpha, A, p.a, B, p.b, &beta, C, p.c, C, p.c, &p.algo, gemm_ws_,
                                kGemmWorkspace, stream_),
                 "cublasLtMatmul");
  }

  GemmPlan make_plan(const GemmKey& key) {
    const auto [ta, tb, m, n, k, lda, ldb, ldc, has_bias, al_a, al_b, al_c, al_bias] = key;
    std::vector<cublasComputeType_t> computes;
    if (math_ == CudaMath::BF16) computes.push_back(CUBLAS_COMPUTE_32F_FAST_16BF);
    if (math_ != CudaMath::FP32) computes.push_back(CUBLAS_COMPUTE_32F_FAST_TF32);
    computes.push_back(CUBLAS_COMPUTE_32F);
    for (cublasComputeType_t ct : computes) {
      GemmPlan p;
      check_cublas(cublasLtMatmulDescCreate(&p.op, ct, CUDA_R_32F), "matmul desc");
      const cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
      check_cublas(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa), "transa");
      check_cublas(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb), "transb");
      const cublasLtEpilogue_t epi = has_bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
      check_cublas(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi), "epilogue");
      check_cublas(cublasLtMatrixLayoutCreate(&p.a, CUDA_R_32F, ta ? k : m, ta ? m : k, lda), "layout A");
      check_cublas(cublasLtMatrixLayoutCreate(&p.b, CUDA_R_32F, tb ? n : k, tb ? k : n, ldb), "layout B");
      check_cublas(cublasLtMatrixLayoutCreate(&p.c, CUDA_R_32F, m, n, ldc), "layout C");
      cublasLtMatmulPreference_t pref;
      check_cublas(cublasLtMatmulPreferenceCreate(&pref), "preference");
      const size_t ws = kGemmWorkspace;
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof al_a);
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof al_b);
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof al_c);
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c, sizeof al_c);
      cublasLtMatmulHeuristicResult_t res{};
      int found = 0;
      const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(lt_, p.op, p.a, p.b, p.c, p.c, pref, 1, &res, &found);
      cublasLtMatmulPreferenceDestroy(pref);
      if (st == CUBLAS_STATUS_SUCCESS && found > 0) {
        p.algo = res.algo;
        if (verbose_)
          std::fprintf(stderr, "cairn cuda: GEMM plan %c%c m %d n %d k %d%s -> compute %s\n", ta ? 'T' : 'N',
                       tb ? 'T' : 'N', m, n, k, has_bias ? " +bias" : "",
                       ct == CUBLAS_COMPUTE_32F_FAST_16BF ? "32F_FAST_16BF"
                       : ct == CUBLAS_COMPUTE_32F_FAST_TF32 ? "32F_FAST_TF32" : "32F");
        return p;
      }
      p.destroy();
    }
    throw std::runtime_error("cuBLASLt has no algorithm for a " + std::to_string(m) + "x" + std::to_string(n) + "x" +
                             std::to_string(k) + " GEMM");
  }

  // ---- profiling ----
  struct Timed {
    CudaBackend* be;
    cudaEvent_t end = nullptr;
    Timed(CudaBackend* b, const char* name) : be(b) {
      if (!be->profiling_) return;
      cudaEvent_t start;
      check(cudaEventCreate(&start), "event");
      check(cudaEventCreate(&end), "event");
      check(cudaEventRecord(start, be->stream_), "event record");
      be->events_.emplace_back(name, start, end);
    }
    ~Timed() {
      if (end) cudaEventRecord(end, be->stream_);
    }
  };

  int device_;
  CudaMath math_;
  bool verbose_;  // print each GEMM plan made
  std::string device_name_, sm_;
  cudaStream_t stream_ = nullptr;
  cublasLtHandle_t lt_ = nullptr;
  void* gemm_ws_ = nullptr;
  std::map<GemmKey, GemmPlan> plans_;
  Scratch col_scratch_, attn_scratch_, loss_scratch_, loss_stats_, norm_partials_;
  bool profiling_ = false;
  std::vector<std::tuple<std::string, cudaEvent_t, cudaEvent_t>> events_;
};

}  // namespace

bool cuda_built() { return true; }

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver / no device" error
    return 0;
  }
  return n;
}

std::unique_ptr<Backend> make_cuda_backend(int device, CudaMath math, bool verbose) {
  return std::make_unique<CudaBackend>(device, math, verbose);
}

}  // namespace cairn

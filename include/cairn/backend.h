// The backend interface: every op the model needs, on raw buffers that live on the backend's device.
// The model (src/model) is written once against this interface; src/cpu and src/cuda implement it.
//
// Conventions (all fp32, row-major):
//   N tokens packed back to back (no padding); sequence s owns rows [cu_seqlens[s], cu_seqlens[s+1]).
//   Parameter gradients are ACCUMULATED (+=). Activation gradients are ASSIGNED (=), except
//   layernorm_backward, rmsnorm_backward and scatter_add_rows, which add into the residual-stream
//   gradient (+=), and rope_backward, which works in place.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace cairn {

// A packed batch of variable-length segments as the backend sees it.
// Shared prefixes (docs/model.md#prefix-sharing): a segment s with prefix_of[s] = g ≥ 0 continues
// segment g — its queries see every row of g, then their own rows causally — so a pair packed as
// [prefix | chosen rest | rejected rest] computes the prompt once. A group is a segment with
// prefix_of = −1 followed by the segments that continue it; nothing else is allowed (one level, the
// branches right after their prefix). A null prefix_of: every segment is an independent sequence.
struct SeqLayout {
  int n_seqs = 0;                        // B segments
  int n_tokens = 0;                      // N = cu_seqlens[B]
  int max_len = 0;                       // longest segment
  const int32_t* cu_seqlens = nullptr;   // (B+1) on the device
  const int32_t* host_cu_seqlens = nullptr;  // (B+1) the same, on the host (launch planning)
  const int32_t* prefix_of = nullptr;        // (B) on the device, or null
  const int32_t* host_prefix_of = nullptr;   // (B) the same, on the host
  int max_prefix = 0;                        // longest prefix a segment reads (0 without prefixes)
};

// One Bradley–Terry pair inside a batch. chosen/rejected index sequences (rows of rewards).
struct PairTarget {
  int32_t chosen = 0;
  int32_t rejected = 0;
  float label = 1.0f;   // P(chosen ≻ rejected)
  float margin = 0.0f;
  float weight = 1.0f;
  int32_t head = -1;    // reward head trained by this pair; -1 = the composite
};

struct LossStats {
  double loss = 0;       // weighted mean BT loss + centering term
  double bt_loss = 0;    // weighted mean BT loss alone
  int n_correct = 0;     // pairs ranked as their label says (ties are wrong)
  int n_decided = 0;     // pairs whose label is not 0.5
};

struct AdamWHyper {
  float lr = 1e-4f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.0f;
  float grad_scale = 1.0f;  // multiplies every gradient (global-norm clipping)
  int step = 1;             // 1-based, for bias correction
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // ---- memory ----
  virtual void* alloc_bytes(size_t bytes) = 0;
  virtual void free_bytes(void* p) = 0;
  virtual void to_device(void* dst, const void* src, size_t bytes) = 0;
  virtual void to_host(void* dst, const void* src, size_t bytes) = 0;
  virtual void fill(float* x, float value, size_t n) = 0;
  virtual void synchronize() {}
  // Whether device pointers are host memory (the CPU backend): host collectives can use them in place.
  virtual bool host_memory() const { return false; }
  // The backend's CUDA stream (a cudaStream_t), for work that must order with its kernels (NCCL); null: none.
  virtual void* native_stream() { return nullptr; }

  // Optional per-op timing (milliseconds, summed since enabled); backends may leave it empty.
  virtual void set_profiling(bool /*on*/) {}
  virtual std::vector<std::pair<std::string, double>> op_profile() const { return {}; }

  // ---- forward / backward pairs ----
  // out[N,C] = wte[ids[n]] + wpe[pos[n]]   (wpe may be null: no learned positions, the llama family)
  virtual void embedding_forward(float* out, const int32_t* ids, const int32_t* pos, const float* wte,
                                 const float* wpe, int N, int C) = 0;
  // dwte[V,C] +=, dwpe[T,C] += scatter of dout[N,C]   (dwpe may be null)
  virtual void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* ids,
                                  const int32_t* pos, int N, int C) = 0;
  // out[N,C] = (inp - mean) * rstd * w + b; mean[N], rstd[N] saved for backward (eps 1e-5)
  virtual void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* w,
                                 const float* b, int N, int C) = 0;
  // dinp[N,C] +=, dw[C] +=, db[C] +=
  virtual void layernorm_backward(float* dinp, float* dw, float* db, const float* dout, const float* inp,
                                  const float* w, const float* mean, const float* rstd, int N, int C) = 0;
  // RMSNorm (llama): out[N,C] = inp · rstd · w, rstd[N] = 1/√(mean_c inp² + eps) saved for backward
  virtual void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* w, int N, int C,
                               float eps) = 0;
  // dinp[N,C] +=, dw[C] +=
  virtual void rmsnorm_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w,
                                const float* rstd, int N, int C) = 0;
  // out[N,O] = inp[N,I] · W[O,I]ᵀ + b[O]   (b may be null)
  virtual void linear_forward(float* out, const float* inp, const float* W, const float* b, int N, int I,
                              int O) = 0;
  // dinp[N,I] = dout·W; dW[O,I] += doutᵀ·inp; db[O] += Σ_n dout   (dinp, db may be null)
  virtual void linear_backward(float* dinp, float* dW, float* db, const float* dout, const float* inp,
                               const float* W, int N, int I, int O) = 0;
  // tanh-approximated GELU, elementwise over n values
  virtual void gelu_forward(float* out, const float* inp, size_t n) = 0;
  virtual void gelu_backward(float* dinp, const float* inp, const float* dout, size_t n) = 0;
  // SwiGLU (llama MLP): out[N,F] = silu(g) ∘ u with inp[N,2F] = [g | u] per row, silu(g) = g·σ(g).
  // Backward assigns dinp[N,2F].
  virtual void swiglu_forward(float* out, const float* inp, int N, int F) = 0;
  virtual void swiglu_backward(float* dinp, const float* inp, const float* dout, int N, int F) = 0;
  // x[n] += y[n]
  virtual void add_inplace(float* x, const float* y, size_t n) = 0;
  // Rotary position embedding (llama, Hugging Face's rotate-half layout), IN PLACE on the q and k
  // heads of qkv[N, (NH+2·NKV)·HS]: for each head and i < HS/2, with a = pos[n]·θ^(−2i/HS) (fp32 as
  // HF computes it), (x_i, x_{i+HS/2}) ← (x_i·cos a − x_{i+HS/2}·sin a, x_{i+HS/2}·cos a + x_i·sin a).
  // v is untouched. Backward rotates the gradient by −a, in place (a rotation's transpose).
  virtual void rope_forward(float* qkv, const int32_t* pos, int N, int NH, int NKV, int HS, float theta) = 0;
  virtual void rope_backward(float* dqkv, const int32_t* pos, int N, int NH, int NKV, int HS, float theta) = 0;
  // Causal multi-head attention within each segment (and its shared prefix, if any), grouped-query: NH query heads read NKV key/value
  // heads (query head h reads h / (NH/NKV); NKV = NH is plain multi-head attention).
  // qkv[N, (NH+2·NKV)·HS] (q heads | k heads | v heads, head h at columns h·HS..), out[N, NH·HS],
  // lse[N,NH] (log-sum-exp of scaled scores).
  virtual void attention_forward(float* out, float* lse, const float* qkv, const SeqLayout& seqs, int NH, int NKV,
                                 int HS) = 0;
  // dqkv (same layout as qkv) = gradient w.r.t. qkv (assigned)
  virtual void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* out,
                                  const float* lse, const SeqLayout& seqs, int NH, int NKV, int HS) = 0;
  // Attention of ONE query per segment, its last token (the EOS), over all its keys (its prefix's
  // included) — the last block of a reward model needs nothing else. out[B, NH·HS], lse[B,NH]; backward assigns all of dqkv
  // (q rows other than the last are zero).
  virtual void attention_last_forward(float* out, float* lse, const float* qkv, const SeqLayout& seqs, int NH,
                                      int NKV, int HS) = 0;
  virtual void attention_last_backward(float* dqkv, const float* dout, const float* qkv, const float* out,
                                       const float* lse, const SeqLayout& seqs, int NH, int NKV, int HS) = 0;
  // out[R,C] = inp[rows[r]]  /  dinp[rows[r]] += dout[r]
  virtual void gather_rows(float* out, const float* inp, const int32_t* rows, int R, int C) = 0;
  virtual void scatter_add_rows(float* dinp, const float* dout, const int32_t* rows, int R, int C) = 0;

  // ---- loss ----
  // rewards[B,H] → drewards[B,H] (assigned) for the mean loss over pairs (docs/model.md#loss).
  // pairs lives on the device; head_weights[H] on the device. Stats return to the host.
  virtual LossStats bt_loss(float* drewards, const float* rewards, const PairTarget* pairs, int P, int H,
                            const float* head_weights, float center_coef) = 0;

  // ---- optimizer ----
  virtual double sum_squares(const float* x, size_t n) = 0;
  // p -= lr·(m̂/(√v̂+eps) + wd·p) with g·grad_scale, bias-corrected moments
  virtual void adamw_update(float* p, const float* g, float* m, float* v, size_t n, const AdamWHyper& h) = 0;
};

// What make_backend builds. Every setting is passed here; no backend reads the environment.
struct BackendOptions {
  std::string device = "cpu";      // "cpu" | "cuda"
  int threads = 0;                 // cpu: OpenMP threads of this backend's ops (≤ 0: all cores)
  std::string cuda_math = "bf16";  // cuda: GEMM precision, "bf16" | "tf32" | "fp32" (attention is bf16 MMA)
  std::string cpu_math = "fp32";   // cpu: precision of the linear layers' GEMMs, "fp32" | "bf16" (oneDNN)
  bool verbose = false;            // cuda: print each cuBLASLt plan as it is made
};

// Throws std::invalid_argument on an unknown device or math mode, std::runtime_error when the device
// is unavailable (no GPU, or a build without the CUDA backend).
std::unique_ptr<Backend> make_backend(const BackendOptions& options);
std::unique_ptr<Backend> make_backend(const std::string& device, int threads = 0);
bool cuda_available();  // a CUDA backend was built and a device is present

}  // namespace cairn

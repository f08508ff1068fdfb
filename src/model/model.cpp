// The reward model, written once over Backend (docs/model.md#architecture). Dimension letters: B sequences, N packed
// tokens, C d_model, NH heads, HS head size, F d_ff, H reward heads, L layers.
//
// Forward, per block l (res[l] is the residual stream entering block l):
//   ln1 = LN1(res[l]); qkv = ln1·Wqkvᵀ + bqkv; att = attention(qkv); mid = res[l] + att·Wprojᵀ + bproj
//   ln2 = LN2(mid); fc = ln2·Wfcᵀ + bfc; gelu = GELU(fc); res[l+1] = mid + gelu·Wmpᵀ + bmp
// Head: eos = res[L][eos_rows]; lnf = LN_f(eos); rewards = lnf·Wheadᵀ + bhead.
// Backward walks the same graph in reverse with ONE residual-gradient buffer dres: each residual
// branch's input gradient is added into it (layernorm_backward and scatter_add_rows accumulate).
#include "cairn/model.h"

#include <algorithm>
#include <cstddef>
#include <stdexcept>
#include <type_traits>

namespace cairn {

void TokenBatch::clear() {
  tokens.clear();
  positions.clear();
  cu_seqlens.assign(1, 0);
}

void TokenBatch::add(const std::vector<int32_t>& seq) {
  if (cu_seqlens.empty()) cu_seqlens.push_back(0);
  if (seq.empty()) throw std::invalid_argument("TokenBatch::add: empty sequence");
  tokens.insert(tokens.end(), seq.begin(), seq.end());
  for (size_t i = 0; i < seq.size(); ++i) positions.push_back(static_cast<int32_t>(i));
  cu_seqlens.push_back(cu_seqlens.back() + static_cast<int32_t>(seq.size()));
}

// Activation buffers: ONE device allocation (the arena), carved by a size table. Per-layer buffers
// exist once per layer when activations are kept for backward, and once in all (reused) for
// inference-only forwards. carve() walks the table twice: first to size the arena (base == null,
// pointers stay null), then to hand out pointers into it; every buffer starts on a 256-byte boundary.
struct Model::Acts {
  int N_cap = 0, B_cap = 0;
  bool kept = false;
  DeviceArray<std::byte> arena;

  struct Layer {
    float *ln1, *ln1_mean, *ln1_rstd;  // (N,C) (N) (N)
    float *qkv;                        // (N,3C)
    float *att, *lse;                  // (N,C) (N,NH)
    float *mid;                        // (N,C)
    float *ln2, *ln2_mean, *ln2_rstd;  // (N,C) (N) (N)
    float *fc, *gelu;                  // (N,F) (N,F)
  };
  std::vector<float*> res;  // (N,C) each: L+1 when kept, 2 (ping-pong) otherwise
  std::vector<Layer> layers;
  float *eos_in, *eos_x, *lnf, *lnf_mean, *lnf_rstd, *rewards;  // (B,C) (B,C) (B,C) (B) (B) (B,H)
  // backward scratch (kept only)
  float *dres, *d_ln, *d_att, *d_qkv, *d_gelu, *d_fc;  // (N,C) (N,C) (N,C) (N,3C) (N,F) (N,F)
  float *d_lnf, *d_eos, *drewards;                     // (B,C) (B,C) (B,H)
  int32_t *ids, *pos, *cu_seqlens, *eos_rows;          // (N) (N) (B+1) (B)
  std::vector<int32_t> host_cu, host_eos;

  // Lays out every buffer for N tokens and B sequences from `base` (null: only measure); returns bytes.
  size_t carve(const ModelConfig& c, size_t n, size_t B, bool keep, std::byte* base) {
    size_t used = 0;
    auto take = [&](auto*& p, size_t count) {
      using T = std::remove_reference_t<decltype(*p)>;
      used = (used + 255) / 256 * 256;
      p = base ? reinterpret_cast<T*>(base + used) : nullptr;
      used += std::max<size_t>(count, 1) * sizeof(T);
    };
    const size_t C = c.d_model, F = c.d_ff, NH = c.n_heads, H = c.n_heads_out;
    res.assign(keep ? c.n_layers + 1 : 2, nullptr);
    for (auto& r : res) take(r, n * C);
    layers.resize(keep ? c.n_layers : std::min(c.n_layers, 1));
    for (auto& l : layers) {
      take(l.ln1, n * C), take(l.ln1_mean, n), take(l.ln1_rstd, n);
      take(l.qkv, n * 3 * C);
      take(l.att, n * C), take(l.lse, n * NH);
      take(l.mid, n * C);
      take(l.ln2, n * C), take(l.ln2_mean, n), take(l.ln2_rstd, n);
      take(l.fc, n * F), take(l.gelu, n * F);
    }
    take(eos_in, B * C), take(eos_x, B * C), take(lnf, B * C), take(lnf_mean, B), take(lnf_rstd, B);
    take(rewards, B * H);
    if (keep) {
      take(dres, n * C), take(d_ln, n * C), take(d_att, n * C);
      take(d_qkv, n * 3 * C), take(d_gelu, n * F), take(d_fc, n * F);
      take(d_lnf, B * C), take(d_eos, B * C), take(drewards, B * H);
    } else {
      dres = d_ln = d_att = d_qkv = d_gelu = d_fc = d_lnf = d_eos = drewards = nullptr;
    }
    take(ids, n), take(pos, n), take(cu_seqlens, B + 1), take(eos_rows, B);
    return used;
  }
  void allocate(Backend& be, const ModelConfig& c, int N, int B, bool keep) {
    arena.reset();
    arena = DeviceArray<std::byte>(be, carve(c, N, B, keep, nullptr));
    carve(c, N, B, keep, arena.data());
    N_cap = N, B_cap = B, kept = keep;
  }
};

Model::Model(const ModelConfig& cfg, Backend& backend)
    : cfg_((cfg.validate(), cfg)),
      be_(backend),
      table_(cfg_),
      params_(be_, table_.total()),
      grads_(be_, table_.total()),
      acts_(std::make_unique<Acts>()) {
  be_.fill(params_.data(), 0.0f, table_.total());
  be_.fill(grads_.data(), 0.0f, table_.total());
}

Model::~Model() = default;

void Model::init(uint64_t seed) {
  std::vector<float> host(table_.total());
  init_params(table_, cfg_.n_layers, seed, host.data());
  set_params(host.data());
}

void Model::set_params(const float* host) { be_.to_device(params_.data(), host, table_.total() * sizeof(float)); }
void Model::get_params(float* host) const { be_.to_host(host, params_.data(), table_.total() * sizeof(float)); }
void Model::get_grads(float* host) const { be_.to_host(host, grads_.data(), table_.total() * sizeof(float)); }
void Model::zero_grads() { be_.fill(grads_.data(), 0.0f, table_.total()); }

void Model::upload(const TokenBatch& batch) {
  const int N = batch.n_tokens(), B = batch.n_seqs();
  if (B <= 0 || N <= 0) throw std::invalid_argument("Model::forward: empty batch");
  if (batch.tokens.size() != static_cast<size_t>(N) || batch.positions.size() != static_cast<size_t>(N))
    throw std::invalid_argument("Model::forward: inconsistent TokenBatch");
  for (int i = 0; i < N; ++i) {
    if (batch.tokens[i] < 0 || batch.tokens[i] >= cfg_.vocab_size)
      throw std::out_of_range("token id " + std::to_string(batch.tokens[i]) + " outside the vocabulary");
    if (batch.positions[i] < 0 || batch.positions[i] >= cfg_.max_seq_len)
      throw std::out_of_range("sequence longer than max_seq_len");
  }
  Acts& a = *acts_;
  a.host_cu = batch.cu_seqlens;
  a.host_eos.resize(B);
  for (int s = 0; s < B; ++s) a.host_eos[s] = batch.cu_seqlens[s + 1] - 1;
  be_.to_device(a.ids, batch.tokens.data(), N * sizeof(int32_t));
  be_.to_device(a.pos, batch.positions.data(), N * sizeof(int32_t));
  be_.to_device(a.cu_seqlens, batch.cu_seqlens.data(), (B + 1) * sizeof(int32_t));
  be_.to_device(a.eos_rows, a.host_eos.data(), B * sizeof(int32_t));
}

void Model::forward(const TokenBatch& batch, std::vector<float>& rewards_host, bool keep) {
  const int N = batch.n_tokens(), B = batch.n_seqs();
  Acts& a = *acts_;
  const bool fits = N <= a.N_cap && B <= a.B_cap && (a.kept || !keep);
  if (!fits) a.allocate(be_, cfg_, std::max(N, a.N_cap), std::max(B, a.B_cap), keep || a.kept);
  upload(batch);

  const int C = cfg_.d_model, F = cfg_.d_ff, NH = cfg_.n_heads, HS = cfg_.head_size(), H = cfg_.n_heads_out;
  const float* P = params_.data();
  SeqLayout seqs;
  seqs.n_seqs = B, seqs.n_tokens = N, seqs.cu_seqlens = a.cu_seqlens, seqs.host_cu_seqlens = a.host_cu.data();
  for (int s = 0; s < B; ++s) seqs.max_len = std::max(seqs.max_len, a.host_cu[s + 1] - a.host_cu[s]);

  const bool per_layer = a.kept;
  const int L = cfg_.n_layers;
  be_.embedding_forward(a.res[0], a.ids, a.pos, P + table_.tok_emb, P + table_.pos_emb, N, C);
  for (int l = 0; l < L; ++l) {
    const BlockParams& w = table_.blocks[l];
    Acts::Layer& x = a.layers[per_layer ? l : 0];
    float* res_in = a.res[per_layer ? l : l % 2];
    be_.layernorm_forward(x.ln1, x.ln1_mean, x.ln1_rstd, res_in, P + w.ln1_w, P + w.ln1_b, N, C);
    be_.linear_forward(x.qkv, x.ln1, P + w.qkv_w, P + w.qkv_b, N, C, 3 * C);
    const bool last = l == L - 1;
    const int R = last ? B : N;  // rows carried past attention
    float* res_out = last ? a.eos_x : a.res[per_layer ? l + 1 : (l + 1) % 2];
    if (last) {
      be_.attention_last_forward(x.att, x.lse, x.qkv, seqs, NH, HS);
      be_.gather_rows(a.eos_in, res_in, a.eos_rows, B, C);
    } else {
      be_.attention_forward(x.att, x.lse, x.qkv, seqs, NH, HS);
    }
    be_.linear_forward(x.mid, x.att, P + w.proj_w, P + w.proj_b, R, C, C);
    be_.add_inplace(x.mid, last ? a.eos_in : res_in, static_cast<size_t>(R) * C);
    be_.layernorm_forward(x.ln2, x.ln2_mean, x.ln2_rstd, x.mid, P + w.ln2_w, P + w.ln2_b, R, C);
    be_.linear_forward(x.fc, x.ln2, P + w.fc_w, P + w.fc_b, R, C, F);
    be_.gelu_forward(x.gelu, x.fc, static_cast<size_t>(R) * F);
    be_.linear_forward(res_out, x.gelu, P + w.mp_w, P + w.mp_b, R, F, C);
    be_.add_inplace(res_out, x.mid, static_cast<size_t>(R) * C);
  }
  if (L == 0) be_.gather_rows(a.eos_x, a.res[0], a.eos_rows, B, C);
  be_.layernorm_forward(a.lnf, a.lnf_mean, a.lnf_rstd, a.eos_x, P + table_.lnf_w, P + table_.lnf_b, B, C);
  be_.linear_forward(a.rewards, a.lnf, P + table_.head_w, P + table_.head_b, B, C, H);
  rewards_host.resize(static_cast<size_t>(B) * H);
  be_.to_host(rewards_host.data(), a.rewards, rewards_host.size() * sizeof(float));
  last_batch_ = {N, B, keep};
}

const float* Model::rewards_device() const { return acts_->rewards; }

void Model::backward(const std::vector<float>& drewards_host) {
  Acts& a = *acts_;
  if (!a.kept || !last_batch_.keep) throw std::logic_error("Model::backward without a training forward");
  if (drewards_host.size() != static_cast<size_t>(last_batch_.B) * cfg_.n_heads_out)
    throw std::invalid_argument("Model::backward: drewards has the wrong size");
  be_.to_device(a.drewards, drewards_host.data(), drewards_host.size() * sizeof(float));
  backward_device(a.drewards);
}

void Model::backward_device(const float* drewards) {
  Acts& a = *acts_;
  if (!a.kept || !last_batch_.keep) throw std::logic_error("Model::backward without a training forward");
  const int N = last_batch_.N, B = last_batch_.B;
  const int C = cfg_.d_model, F = cfg_.d_ff, NH = cfg_.n_heads, HS = cfg_.head_size(), H = cfg_.n_heads_out;
  const float* P = params_.data();
  float* G = grads_.data();
  SeqLayout seqs;
  seqs.n_seqs = B, seqs.n_tokens = N, seqs.cu_seqlens = a.cu_seqlens, seqs.host_cu_seqlens = a.host_cu.data();
  for (int s = 0; s < B; ++s) seqs.max_len = std::max(seqs.max_len, a.host_cu[s + 1] - a.host_cu[s]);

  // head: rewards = lnf·Wheadᵀ + b;  lnf = LN_f(eos_x);  eos_x = res[L][eos_rows]
  be_.linear_backward(a.d_lnf, G + table_.head_w, G + table_.head_b, drewards, a.lnf, P + table_.head_w, B, C, H);
  be_.fill(a.d_eos, 0.0f, static_cast<size_t>(B) * C);
  be_.layernorm_backward(a.d_eos, G + table_.lnf_w, G + table_.lnf_b, a.d_lnf, a.eos_x, P + table_.lnf_w,
                         a.lnf_mean, a.lnf_rstd, B, C);
  // d_eos holds dL/d(final residual at the EOS rows).
  const int L = cfg_.n_layers;
  be_.fill(a.dres, 0.0f, static_cast<size_t>(N) * C);
  for (int l = L - 1; l >= 0; --l) {
    const BlockParams& w = table_.blocks[l];
    const Acts::Layer& x = a.layers[l];
    const bool last = l == L - 1;
    const int R = last ? B : N;
    float* d_res = last ? a.d_eos : a.dres;  // gradient of this block's output rows
    // MLP branch: out = mid + gelu·Wmpᵀ + bmp
    be_.linear_backward(a.d_gelu, G + w.mp_w, G + w.mp_b, d_res, x.gelu, P + w.mp_w, R, F, C);
    be_.gelu_backward(a.d_fc, x.fc, a.d_gelu, static_cast<size_t>(R) * F);
    be_.linear_backward(a.d_ln, G + w.fc_w, G + w.fc_b, a.d_fc, x.ln2, P + w.fc_w, R, C, F);
    be_.layernorm_backward(d_res, G + w.ln2_w, G + w.ln2_b, a.d_ln, x.mid, P + w.ln2_w, x.ln2_mean, x.ln2_rstd, R, C);
    // attention branch: mid = in + att·Wprojᵀ + bproj  (d_res now holds dL/dmid)
    be_.linear_backward(a.d_att, G + w.proj_w, G + w.proj_b, d_res, x.att, P + w.proj_w, R, C, C);
    if (last) be_.attention_last_backward(a.d_qkv, a.d_att, x.qkv, x.att, x.lse, seqs, NH, HS);
    else be_.attention_backward(a.d_qkv, a.d_att, x.qkv, x.att, x.lse, seqs, NH, HS);
    be_.linear_backward(a.d_ln, G + w.qkv_w, G + w.qkv_b, a.d_qkv, x.ln1, P + w.qkv_w, N, C, 3 * C);
    if (last) be_.scatter_add_rows(a.dres, a.d_eos, a.eos_rows, B, C);  // identity path of the EOS rows
    be_.layernorm_backward(a.dres, G + w.ln1_w, G + w.ln1_b, a.d_ln, a.res[l], P + w.ln1_w, x.ln1_mean,
                           x.ln1_rstd, N, C);
  }
  if (L == 0) be_.scatter_add_rows(a.dres, a.d_eos, a.eos_rows, B, C);
  be_.embedding_backward(G + table_.tok_emb, G + table_.pos_emb, a.dres, a.ids, a.pos, N, C);
}

}  // namespace cairn

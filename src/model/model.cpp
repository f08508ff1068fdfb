// The reward model, written once over Backend for both architecture families (docs/model.md).
// Dimension letters: B sequences, N packed tokens, C d_model, NH query heads, NKV key/value heads,
// HS head size, QKV = (NH + 2·NKV)·HS, F d_ff, H reward heads, L layers.
//
// Forward, per block l (res[l] is the residual stream entering block l; Norm is LayerNorm for gpt2,
// RMSNorm for llama; biases exist for gpt2 only):
//   ln1 = Norm1(res[l]); qkv = ln1·Wqkvᵀ (+ b); llama: RoPE(q, k) in place
//   att = attention(qkv) (grouped-query); mid = res[l] + att·Wprojᵀ (+ b)
//   ln2 = Norm2(mid); fc = ln2·Wfcᵀ (+ b); act = GELU(fc) (gpt2) | SwiGLU(fc = [gate | up]) (llama)
//   res[l+1] = mid + act·Wmpᵀ (+ b)
// Head: x = res[L][last rows]; lnf = Norm_f(x); rewards = lnf·Wheadᵀ (+ b).
// The last block is pruned to the B last rows after its attention (nothing else reads the others).
// Backward walks the same graph in reverse with ONE residual-gradient buffer dres: each residual
// branch's input gradient is added into it (the norms' backward and scatter_add_rows accumulate).
// Frozen lower blocks (set_frozen_layers) run like inference: no activations kept, no backward.
#include "cairn/model.h"

#include "cairn/errors.h"

#include <algorithm>
#include <cstddef>
#include <stdexcept>
#include <type_traits>

namespace cairn {

void TokenBatch::clear() {
  tokens.clear();
  positions.clear();
  cu_seqlens.assign(1, 0);
  prefix_of.clear();
  outputs.clear();
}

namespace {
void add_segment(TokenBatch& b, const int32_t* ids, size_t n, int32_t pos0, int32_t prefix, bool output) {
  if (b.cu_seqlens.empty()) b.cu_seqlens.push_back(0);
  b.tokens.insert(b.tokens.end(), ids, ids + n);
  for (size_t i = 0; i < n; ++i) b.positions.push_back(pos0 + static_cast<int32_t>(i));
  if (output) b.outputs.push_back(b.n_segments());
  b.prefix_of.push_back(prefix);
  b.cu_seqlens.push_back(b.cu_seqlens.back() + static_cast<int32_t>(n));
}
}  // namespace

long TokenBatch::sequence_tokens() const {
  long n = 0;
  for (int32_t s : outputs) {
    n += cu_seqlens[s + 1] - cu_seqlens[s];
    if (const int32_t g = prefix_of[s]; g >= 0) n += cu_seqlens[g + 1] - cu_seqlens[g];
  }
  return n;
}

void TokenBatch::add(const std::vector<int32_t>& seq) {
  if (seq.empty()) throw std::invalid_argument("TokenBatch::add: empty sequence");
  add_segment(*this, seq.data(), seq.size(), 0, -1, true);
}

int TokenBatch::shared_prefix(const std::vector<const std::vector<int32_t>*>& seqs) {
  if (seqs.size() < 2) return 0;
  size_t shortest = seqs[0]->size(), p = 0;
  for (const auto* s : seqs) shortest = std::min(shortest, s->size());
  for (; p + 1 < shortest; ++p) {
    bool same = true;
    for (const auto* s : seqs) same = same && (*s)[p] == (*seqs[0])[p];
    if (!same) break;
  }
  return static_cast<int>(p);
}

int TokenBatch::add_shared(const std::vector<const std::vector<int32_t>*>& seqs, bool share) {
  const size_t p = share ? static_cast<size_t>(shared_prefix(seqs)) : 0;
  if (p == 0) {
    for (const auto* s : seqs) add(*s);
    return 0;
  }
  const int32_t prefix = n_segments();
  add_segment(*this, seqs[0]->data(), p, 0, -1, false);
  for (const auto* s : seqs) add_segment(*this, s->data() + p, s->size() - p, static_cast<int32_t>(p), prefix, true);
  return static_cast<int>(p);
}

// Activation buffers: ONE device allocation (the arena), carved by a size table. Blocks that keep
// activations for backward (the unfrozen ones of a training forward) own a Layer and their input
// residual each; every other block runs on one scratch Layer and two ping-pong residual buffers.
// carve() walks the table twice: first to size the arena (base == null, pointers stay null), then to
// hand out pointers into it; every buffer starts on a 256-byte boundary.
struct Model::Acts {
  int N_cap = 0, B_cap = 0, kept_from = 0;  // kept_from: first block that keeps activations (L: none)
  bool kept = false;
  DeviceArray<std::byte> arena;

  struct Layer {
    float *ln1, *ln1_mean, *ln1_rstd;  // (N,C) (N) (N)
    float *qkv;                        // (N,QKV)
    float *att, *lse;                  // (N,NH·HS) (N,NH)
    float *mid;                        // (N,C)
    float *ln2, *ln2_mean, *ln2_rstd;  // (N,C) (N) (N)
    float *fc, *act;                   // (N,F) or (N,2F) for llama, (N,F)
  };
  std::vector<float*> res;       // (N,C): res[i] is the input of block kept_from + i (kept blocks; one more slot)
  std::vector<Layer> layers;     // kept blocks
  Layer scratch;                 // every block that keeps nothing
  float* pingpong[2];            // (N,C) residual stream through the blocks that keep nothing
  // per segment (B of them): its last row through the last block and the head
  float *eos_in, *eos_x, *lnf, *lnf_mean, *lnf_rstd, *rewards;  // (B,C) (B,C) (B,C) (B) (B) (B,H)
  float *out_rewards, *d_seg_rewards;  // (B,H) (B,H): the output segments' rewards, and their scatter back
  // backward scratch (kept only)
  float *dres, *d_ln, *d_att, *d_qkv, *d_act, *d_fc;  // (N,C) (N,C) (N,NH·HS) (N,QKV) (N,F) (N,F|2F)
  float *d_lnf, *d_eos, *drewards;                    // (B,C) (B,C) (B,H)
  int32_t *ids, *pos, *cu_seqlens, *eos_rows;         // (N) (N) (B+1) (B)
  int32_t *prefix_of, *out_segs;                      // (B) (B): shared prefixes, output segments
  std::vector<int32_t> host_cu, host_eos, host_prefix;
  bool shared = false;  // the uploaded batch has shared prefixes

  // Lays out every buffer for N tokens and B sequences from `base` (null: only measure); returns bytes.
  size_t carve(const ModelConfig& c, size_t n, size_t B, bool keep, int first_kept, std::byte* base) {
    size_t used = 0;
    auto take = [&](auto*& p, size_t count) {
      using T = std::remove_reference_t<decltype(*p)>;
      used = (used + 255) / 256 * 256;
      p = base ? reinterpret_cast<T*>(base + used) : nullptr;
      used += std::max<size_t>(count, 1) * sizeof(T);
    };
    const size_t C = c.d_model, NH = c.n_heads, A = NH * c.head_size(), QKV = c.qkv_width(), H = c.n_heads_out;
    const size_t F = c.d_ff, FC = c.is_llama() ? 2 * F : F;
    auto take_layer = [&](Layer& l) {
      take(l.ln1, n * C), take(l.ln1_mean, n), take(l.ln1_rstd, n);
      take(l.qkv, n * QKV);
      take(l.att, n * A), take(l.lse, n * NH);
      take(l.mid, n * C);
      take(l.ln2, n * C), take(l.ln2_mean, n), take(l.ln2_rstd, n);
      take(l.fc, n * FC), take(l.act, n * F);
    };
    const int kept_blocks = c.n_layers - first_kept;
    res.assign(kept_blocks + 1, nullptr);  // + the slot after the last kept block (the output when L = 0)
    for (auto& r : res) take(r, n * C);
    layers.resize(kept_blocks);
    for (auto& l : layers) take_layer(l);
    take_layer(scratch);
    take(pingpong[0], n * C), take(pingpong[1], n * C);
    take(eos_in, B * C), take(eos_x, B * C), take(lnf, B * C), take(lnf_mean, B), take(lnf_rstd, B);
    take(rewards, B * H), take(out_rewards, B * H);
    if (keep) {
      take(dres, n * C), take(d_ln, n * C), take(d_att, n * A);
      take(d_qkv, n * QKV), take(d_act, n * F), take(d_fc, n * FC);
      take(d_lnf, B * C), take(d_eos, B * C), take(drewards, B * H), take(d_seg_rewards, B * H);
    } else {
      dres = d_ln = d_att = d_qkv = d_act = d_fc = d_lnf = d_eos = drewards = d_seg_rewards = nullptr;
    }
    take(ids, n), take(pos, n), take(cu_seqlens, B + 1), take(eos_rows, B), take(prefix_of, B), take(out_segs, B);
    return used;
  }
  // keep: a training forward; first_kept = the model's frozen blocks (or n_layers when not keeping).
  void allocate(Backend& be, const ModelConfig& c, int N, int B, bool keep, int frozen) {
    const int first_kept = keep ? frozen : c.n_layers;
    arena.reset();
    arena = DeviceArray<std::byte>(be, carve(c, N, B, keep, first_kept, nullptr));
    carve(c, N, B, keep, first_kept, arena.data());
    N_cap = N, B_cap = B, kept = keep, kept_from = first_kept;
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
  const int N = batch.n_tokens(), S = batch.n_segments(), B = batch.n_seqs();
  if (B <= 0 || N <= 0) throw std::invalid_argument("Model::forward: empty batch");
  if (batch.tokens.size() != static_cast<size_t>(N) || batch.positions.size() != static_cast<size_t>(N) ||
      batch.prefix_of.size() != static_cast<size_t>(S))
    throw std::invalid_argument("Model::forward: inconsistent TokenBatch");
  for (int i = 0; i < N; ++i) {
    if (batch.tokens[i] < 0 || batch.tokens[i] >= cfg_.vocab_size)
      throw std::out_of_range("token id " + std::to_string(batch.tokens[i]) + " outside the vocabulary");
    if (batch.positions[i] < 0 || batch.positions[i] >= cfg_.max_seq_len)
      throw std::out_of_range("sequence longer than max_seq_len");
  }
  // The group layout of SeqLayout: a segment continues the segment that opened its group, or none.
  for (int s = 0, leader = -1; s < S; ++s) {
    const int g = batch.prefix_of[s];
    if (batch.cu_seqlens[s + 1] <= batch.cu_seqlens[s]) throw std::invalid_argument("Model::forward: empty segment");
    if (g < 0) leader = s;
    else if (g != leader) throw std::invalid_argument("Model::forward: a segment continues a prefix out of place");
  }
  for (int k = 0; k < B; ++k)
    if (batch.outputs[k] < 0 || batch.outputs[k] >= S || (k > 0 && batch.outputs[k] <= batch.outputs[k - 1]))
      throw std::invalid_argument("Model::forward: output segments out of order");
  Acts& a = *acts_;
  a.host_cu = batch.cu_seqlens;
  a.host_eos.resize(S);
  for (int s = 0; s < S; ++s) a.host_eos[s] = batch.cu_seqlens[s + 1] - 1;
  a.host_prefix = batch.prefix_of;
  be_.to_device(a.ids, batch.tokens.data(), N * sizeof(int32_t));
  be_.to_device(a.pos, batch.positions.data(), N * sizeof(int32_t));
  be_.to_device(a.cu_seqlens, batch.cu_seqlens.data(), (S + 1) * sizeof(int32_t));
  be_.to_device(a.eos_rows, a.host_eos.data(), S * sizeof(int32_t));
  a.shared = batch.has_prefixes();
  if (a.shared) be_.to_device(a.prefix_of, batch.prefix_of.data(), S * sizeof(int32_t));
  if (B < S) be_.to_device(a.out_segs, batch.outputs.data(), B * sizeof(int32_t));
}

// The backend's view of the uploaded batch.
SeqLayout Model::layout() const {
  const Acts& a = *acts_;
  SeqLayout seqs;
  const int S = static_cast<int>(a.host_cu.size()) - 1;
  seqs.n_seqs = S, seqs.n_tokens = a.host_cu.back(), seqs.cu_seqlens = a.cu_seqlens, seqs.host_cu_seqlens = a.host_cu.data();
  for (int s = 0; s < S; ++s) seqs.max_len = std::max(seqs.max_len, a.host_cu[s + 1] - a.host_cu[s]);
  if (a.shared) {
    seqs.prefix_of = a.prefix_of, seqs.host_prefix_of = a.host_prefix.data();
    for (int s = 0; s < S; ++s)
      if (const int g = a.host_prefix[s]; g >= 0) seqs.max_prefix = std::max(seqs.max_prefix, a.host_cu[g + 1] - a.host_cu[g]);
  }
  return seqs;
}

size_t Model::trainable_begin() const {
  if (frozen_ == 0) return 0;
  const size_t begin = table_.layer_range(frozen_).begin;
  for (const ParamInfo& p : table_.tensors())
    if (trainable(p) != (p.offset >= begin))
      throw std::logic_error("ParamTable: the trainable tensors are not a suffix of the table (" + p.name + ")");
  return begin;
}

void Model::set_frozen_layers(int n) {
  if (n < 0 || n > cfg_.n_layers)
    throw std::invalid_argument("frozen layers must be in [0, " + std::to_string(cfg_.n_layers) + "]");
  frozen_ = n;
  acts_->N_cap = 0;  // the activation layout depends on it
}

namespace {
const float* at(const float* base, size_t off) { return off == kNoParam ? nullptr : base + off; }
float* at(float* base, size_t off) { return off == kNoParam ? nullptr : base + off; }
}  // namespace

void Model::check_interrupt() const {
  if (interrupt_ && interrupt_->load(std::memory_order_relaxed)) throw Interrupted();
}

void Model::forward(const TokenBatch& batch, std::vector<float>& rewards_host, bool keep) {
  // B below is the number of SEGMENTS (one last row each through the last block); with shared
  // prefixes the rewards returned are those of the output segments (batch.n_seqs() of them).
  const int N = batch.n_tokens(), B = batch.n_segments(), L = cfg_.n_layers;
  Acts& a = *acts_;
  const bool fits = N <= a.N_cap && B <= a.B_cap && (a.kept || !keep) && (!a.kept || a.kept_from == frozen_);
  if (!fits) a.allocate(be_, cfg_, std::max(N, a.N_cap), std::max(B, a.B_cap), keep || a.kept, frozen_);
  last_batch_ = {N, batch.n_seqs(), B, false};
  upload(batch);

  const int C = cfg_.d_model, F = cfg_.d_ff, NH = cfg_.n_heads, NKV = cfg_.kv_heads(), HS = cfg_.head_size();
  const int A = NH * HS, QKV = cfg_.qkv_width(), H = cfg_.n_heads_out, FC = cfg_.is_llama() ? 2 * F : F;
  const bool llama = cfg_.is_llama();
  const float* P = params_.data();
  const SeqLayout seqs = layout();
  auto norm = [&](float* out, float* mean, float* rstd, const float* inp, size_t w, size_t b, int rows) {
    if (llama) be_.rmsnorm_forward(out, rstd, inp, P + w, rows, C, cfg_.norm_eps);
    else be_.layernorm_forward(out, mean, rstd, inp, P + w, P + b, rows, C);
  };

  // Blocks ≥ kept_from keep their activations (a.kept_from = L for inference).
  const int kept_from = keep ? frozen_ : L;
  auto block_in = [&](int l) { return l >= kept_from ? a.res[l - kept_from] : a.pingpong[l % 2]; };
  be_.embedding_forward(block_in(0), a.ids, a.pos, P + table_.tok_emb, at(P, table_.pos_emb), N, C);
  for (int l = 0; l < L; ++l) {
    check_interrupt();
    const BlockParams& w = table_.blocks[l];
    Acts::Layer& x = l >= kept_from ? a.layers[l - kept_from] : a.scratch;
    const bool last = l == L - 1;
    const int R = last ? B : N;  // rows carried past attention
    float* res_in = block_in(l);
    float* res_out = last ? a.eos_x : block_in(l + 1);
    norm(x.ln1, x.ln1_mean, x.ln1_rstd, res_in, w.ln1_w, w.ln1_b, N);
    be_.linear_forward(x.qkv, x.ln1, P + w.qkv_w, at(P, w.qkv_b), N, C, QKV);
    if (llama) be_.rope_forward(x.qkv, a.pos, N, NH, NKV, HS, cfg_.rope_theta);
    if (last) {
      be_.attention_last_forward(x.att, x.lse, x.qkv, seqs, NH, NKV, HS);
      be_.gather_rows(a.eos_in, res_in, a.eos_rows, B, C);
    } else {
      be_.attention_forward(x.att, x.lse, x.qkv, seqs, NH, NKV, HS);
    }
    be_.linear_forward(x.mid, x.att, P + w.proj_w, at(P, w.proj_b), R, A, C);
    be_.add_inplace(x.mid, last ? a.eos_in : res_in, static_cast<size_t>(R) * C);
    norm(x.ln2, x.ln2_mean, x.ln2_rstd, x.mid, w.ln2_w, w.ln2_b, R);
    be_.linear_forward(x.fc, x.ln2, P + w.fc_w, at(P, w.fc_b), R, C, FC);
    if (llama) be_.swiglu_forward(x.act, x.fc, R, F);
    else be_.gelu_forward(x.act, x.fc, static_cast<size_t>(R) * F);
    be_.linear_forward(res_out, x.act, P + w.mp_w, at(P, w.mp_b), R, F, C);
    be_.add_inplace(res_out, x.mid, static_cast<size_t>(R) * C);
  }
  if (L == 0) be_.gather_rows(a.eos_x, block_in(0), a.eos_rows, B, C);
  norm(a.lnf, a.lnf_mean, a.lnf_rstd, a.eos_x, table_.lnf_w, table_.lnf_b, B);
  be_.linear_forward(a.rewards, a.lnf, P + table_.head_w, at(P, table_.head_b), B, C, H);
  const int R = last_batch_.B;  // the sequences' rewards: every segment's, or the output segments'
  if (R < B) be_.gather_rows(a.out_rewards, a.rewards, a.out_segs, R, H);
  rewards_host.resize(static_cast<size_t>(R) * H);
  be_.to_host(rewards_host.data(), rewards_device(), rewards_host.size() * sizeof(float));
  last_batch_.keep = keep;
}

const float* Model::rewards_device() const {
  return last_batch_.B < last_batch_.S ? acts_->out_rewards : acts_->rewards;
}

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
  const int N = last_batch_.N, B = last_batch_.S, L = cfg_.n_layers;  // B: segments, as in forward
  const int C = cfg_.d_model, F = cfg_.d_ff, NH = cfg_.n_heads, NKV = cfg_.kv_heads(), HS = cfg_.head_size();
  const int A = NH * HS, QKV = cfg_.qkv_width(), H = cfg_.n_heads_out, FC = cfg_.is_llama() ? 2 * F : F;
  const bool llama = cfg_.is_llama();
  const float* P = params_.data();
  float* G = grads_.data();
  const SeqLayout seqs = layout();
  if (last_batch_.B < B) {  // rewards of the output segments only: a shared prefix's own reward gets no gradient
    be_.fill(a.d_seg_rewards, 0.0f, static_cast<size_t>(B) * H);
    be_.scatter_add_rows(a.d_seg_rewards, drewards, a.out_segs, last_batch_.B, H);
    drewards = a.d_seg_rewards;
  }
  // dinp += Norm backward (dw, db +=)
  auto norm_bwd = [&](float* dinp, size_t w, size_t b, const float* dout, const float* inp, const float* mean,
                      const float* rstd, int rows) {
    if (llama) be_.rmsnorm_backward(dinp, G + w, dout, inp, P + w, rstd, rows, C);
    else be_.layernorm_backward(dinp, G + w, G + b, dout, inp, P + w, mean, rstd, rows, C);
  };

  // head: rewards = lnf·Wheadᵀ (+ b);  lnf = Norm_f(eos_x);  eos_x = res[L][last rows]
  be_.linear_backward(a.d_lnf, G + table_.head_w, at(G, table_.head_b), drewards, a.lnf, P + table_.head_w, B, C, H);
  be_.fill(a.d_eos, 0.0f, static_cast<size_t>(B) * C);
  norm_bwd(a.d_eos, table_.lnf_w, table_.lnf_b, a.d_lnf, a.eos_x, a.lnf_mean, a.lnf_rstd, B);
  // d_eos holds dL/d(final residual at the last rows).
  grad_ready(L);
  const int first = frozen_;  // the lowest block that trains
  if (first < L || L == 0) be_.fill(a.dres, 0.0f, static_cast<size_t>(N) * C);
  for (int l = L - 1; l >= first; --l) {
    check_interrupt();
    const BlockParams& w = table_.blocks[l];
    const Acts::Layer& x = a.layers[l - first];
    const bool last = l == L - 1;
    const int R = last ? B : N;
    float* d_res = last ? a.d_eos : a.dres;  // gradient of this block's output rows
    // MLP branch: out = mid + act·Wmpᵀ (+ b)
    be_.linear_backward(a.d_act, G + w.mp_w, at(G, w.mp_b), d_res, x.act, P + w.mp_w, R, F, C);
    if (llama) be_.swiglu_backward(a.d_fc, x.fc, a.d_act, R, F);
    else be_.gelu_backward(a.d_fc, x.fc, a.d_act, static_cast<size_t>(R) * F);
    be_.linear_backward(a.d_ln, G + w.fc_w, at(G, w.fc_b), a.d_fc, x.ln2, P + w.fc_w, R, C, FC);
    norm_bwd(d_res, w.ln2_w, w.ln2_b, a.d_ln, x.mid, x.ln2_mean, x.ln2_rstd, R);
    // attention branch: mid = in + att·Wprojᵀ (+ b)  (d_res now holds dL/dmid)
    be_.linear_backward(a.d_att, G + w.proj_w, at(G, w.proj_b), d_res, x.att, P + w.proj_w, R, A, C);
    if (last) be_.attention_last_backward(a.d_qkv, a.d_att, x.qkv, x.att, x.lse, seqs, NH, NKV, HS);
    else be_.attention_backward(a.d_qkv, a.d_att, x.qkv, x.att, x.lse, seqs, NH, NKV, HS);
    if (llama) be_.rope_backward(a.d_qkv, a.pos, N, NH, NKV, HS, cfg_.rope_theta);  // back to pre-rotation q, k
    be_.linear_backward(a.d_ln, G + w.qkv_w, at(G, w.qkv_b), a.d_qkv, x.ln1, P + w.qkv_w, N, C, QKV);
    if (last) be_.scatter_add_rows(a.dres, a.d_eos, a.eos_rows, B, C);  // identity path of the last rows
    norm_bwd(a.dres, w.ln1_w, w.ln1_b, a.d_ln, a.res[l - first], x.ln1_mean, x.ln1_rstd, N);
    grad_ready(l);
  }
  if (first > 0) return;  // the embeddings are frozen with the blocks below
  if (L == 0) be_.scatter_add_rows(a.dres, a.d_eos, a.eos_rows, B, C);
  be_.embedding_backward(G + table_.tok_emb, at(G, table_.pos_emb), a.dres, a.ids, a.pos, N, C);
  grad_ready(-1);
}

std::vector<LayerRange> Model::grad_buckets() const {
  std::vector<LayerRange> out;
  for (int l = cfg_.n_layers; l >= frozen_; --l) out.push_back(table_.layer_range(l));
  if (frozen_ == 0) out.push_back(table_.layer_range(-1));
  return out;
}

}  // namespace cairn

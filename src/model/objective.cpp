// BTObjective: forward → Bradley–Terry loss (Backend::bt_loss) → backward, see objective.h.
#include "cairn/objective.h"

#include <cmath>
#include <stdexcept>

namespace cairn {

BTObjective::BTObjective(Model& model, float center_coef) : model_(model), center_coef_(center_coef) {
  const ModelConfig& c = model_.config();
  Backend& be = model_.backend();
  d_head_weights_ = static_cast<float*>(be.alloc_bytes(c.n_heads_out * sizeof(float)));
  be.to_device(d_head_weights_, c.head_weights.data(), c.n_heads_out * sizeof(float));
}

BTObjective::~BTObjective() {
  Backend& be = model_.backend();
  be.free_bytes(d_head_weights_);
  if (d_pairs_) be.free_bytes(d_pairs_);
  if (d_drewards_) be.free_bytes(d_drewards_);
}

void BTObjective::set_length_debias(int length_head, float lambda) {
  const ModelConfig& c = model_.config();
  if (length_head < 0 || length_head >= c.n_heads_out) throw std::invalid_argument("length head out of range");
  length_head_ = length_head, length_lambda_ = lambda;
  std::vector<float> w = c.head_weights;
  w[length_head] = 1.0f;  // the BT loss sees quality + length
  model_.backend().to_device(d_head_weights_, w.data(), w.size() * sizeof(float));
}

// Pearson ρ(r, x) over the batch and dρ/dr_i = ((x_i − x̄)/σ_x − ρ·(r_i − r̄)/σ_r) / (n·σ_r).
static double pearson_grad(const std::vector<double>& r, const std::vector<double>& x, std::vector<double>* g) {
  const size_t n = r.size();
  double mr = 0, mx = 0;
  for (size_t i = 0; i < n; ++i) mr += r[i] / n, mx += x[i] / n;
  double srr = 0, sxx = 0, srx = 0;
  for (size_t i = 0; i < n; ++i) srr += (r[i] - mr) * (r[i] - mr), sxx += (x[i] - mx) * (x[i] - mx), srx += (r[i] - mr) * (x[i] - mx);
  g->assign(n, 0.0);
  if (srr <= 1e-12 || sxx <= 1e-12) return 0.0;
  const double sr = std::sqrt(srr / n), sx = std::sqrt(sxx / n), rho = srx / std::sqrt(srr * sxx);
  for (size_t i = 0; i < n; ++i) (*g)[i] = ((x[i] - mx) / sx - rho * (r[i] - mr) / sr) / (n * sr);
  return rho;
}

double BTObjective::length_penalty(const std::vector<float>& rewards, const std::vector<float>& lengths, int B) {
  const ModelConfig& c = model_.config();
  const int H = c.n_heads_out, Lh = length_head_;
  std::vector<double> q(B), l(B), x(lengths.begin(), lengths.end()), gq, gl;
  for (int b = 0; b < B; ++b) {
    for (int h = 0; h < H; ++h) q[b] += h == Lh ? 0.0 : c.head_weights[h] * rewards[static_cast<size_t>(b) * H + h];
    l[b] = rewards[static_cast<size_t>(b) * H + Lh];
  }
  const double rq = pearson_grad(q, x, &gq), rl = pearson_grad(l, x, &gl);
  std::vector<float> d(static_cast<size_t>(B) * H), cur(static_cast<size_t>(B) * H);
  Backend& be = model_.backend();
  be.to_host(cur.data(), d_drewards_, cur.size() * sizeof(float));
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h) {
      const double g = h == Lh ? -length_lambda_ * gl[b] : length_lambda_ * 2.0 * rq * gq[b] * c.head_weights[h];
      cur[static_cast<size_t>(b) * H + h] += static_cast<float>(g);
    }
  be.to_device(d_drewards_, cur.data(), cur.size() * sizeof(float));
  return length_lambda_ * (rq * rq + 1.0 - rl);
}

LossStats BTObjective::loss(const TokenBatch& batch, const std::vector<PairTarget>& pairs, bool train,
                            std::vector<float>* rewards_host, const std::vector<float>* seq_lengths) {
  Backend& be = model_.backend();
  const int B = batch.n_seqs(), H = model_.config().n_heads_out;
  for (const PairTarget& p : pairs)
    if (p.chosen < 0 || p.chosen >= B || p.rejected < 0 || p.rejected >= B || p.head < -1 || p.head >= H)
      throw std::invalid_argument("BTObjective: pair indexes a sequence or head outside the batch");
  if (pairs.size() > pairs_cap_) {
    if (d_pairs_) be.free_bytes(d_pairs_);
    pairs_cap_ = pairs.size() * 2;
    d_pairs_ = static_cast<PairTarget*>(be.alloc_bytes(pairs_cap_ * sizeof(PairTarget)));
  }
  const size_t nr = static_cast<size_t>(B) * H;
  if (nr > drewards_cap_) {
    if (d_drewards_) be.free_bytes(d_drewards_);
    drewards_cap_ = nr * 2;
    d_drewards_ = static_cast<float*>(be.alloc_bytes(drewards_cap_ * sizeof(float)));
  }
  model_.forward(batch, rewards_host ? *rewards_host : rewards_, train);
  be.to_device(d_pairs_, pairs.data(), pairs.size() * sizeof(PairTarget));
  be.fill(d_drewards_, 0.0f, nr);
  LossStats st = be.bt_loss(d_drewards_, model_.rewards_device(), d_pairs_, static_cast<int>(pairs.size()), H,
                            d_head_weights_, center_coef_);
  if (train && length_head_ >= 0 && length_lambda_ > 0) {
    if (!seq_lengths || seq_lengths->size() != static_cast<size_t>(B))
      throw std::invalid_argument("BTObjective: length debiasing needs the response length of every sequence");
    const double pen = length_penalty(rewards_host ? *rewards_host : rewards_, *seq_lengths, B);
    st.loss += pen;
  }
  if (train) model_.backward_device(d_drewards_);
  return st;
}

LossStats BTObjective::forward_backward(const TokenBatch& batch, const std::vector<PairTarget>& pairs,
                                        std::vector<float>* rewards_host, const std::vector<float>* seq_lengths) {
  return loss(batch, pairs, true, rewards_host, seq_lengths);
}

LossStats BTObjective::evaluate(const TokenBatch& batch, const std::vector<PairTarget>& pairs,
                                std::vector<float>* rewards_host) {
  return loss(batch, pairs, false, rewards_host, nullptr);
}

StepStats BTObjective::train_step(AdamW& opt, const TokenBatch& batch, const std::vector<PairTarget>& pairs,
                                  const std::vector<float>* seq_lengths) {
  StepStats s;
  model_.zero_grads();
  s.loss = forward_backward(batch, pairs, nullptr, seq_lengths);
  s.grad_norm = opt.step();
  s.lr = opt.last_lr();
  return s;
}

}  // namespace cairn

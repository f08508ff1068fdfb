// BTObjective: forward → Bradley–Terry loss (Backend::bt_loss) → backward, see objective.h.
#include "cairn/objective.h"

#include <cmath>
#include <stdexcept>

#include "cairn/dist.h"
#include "cairn/reward.h"

namespace cairn {
namespace {

DeviceArray<float> upload(Backend& be, const std::vector<float>& host) {
  DeviceArray<float> d(be, host.size());
  be.to_device(d.data(), host.data(), host.size() * sizeof(float));
  return d;
}

// Pearson ρ(r, x) over the batch and dρ/dr_i = ((x_i − x̄)/σ_x − ρ·(r_i − r̄)/σ_r) / (n·σ_r).
double pearson_grad(const std::vector<double>& r, const std::vector<double>& x, std::vector<double>* g) {
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

}  // namespace

BTObjective::BTObjective(Model& model, float center_coef)
    : model_(model),
      center_coef_(center_coef),
      scoring_weights_(head_weights(model.config(), HeadUse::Scoring)),
      d_training_weights_(upload(model.backend(), head_weights(model.config(), HeadUse::Training))),
      d_scoring_weights_(upload(model.backend(), scoring_weights_)) {}

void BTObjective::set_length_lambda(float lambda) {
  if (model_.config().length_head() < 0 && lambda != 0.0f)
    throw std::invalid_argument("length debiasing needs a model with a length head");
  length_lambda_ = lambda;
}

double BTObjective::length_penalty(const std::vector<float>& rewards, const std::vector<float>& lengths, int B) {
  const ModelConfig& c = model_.config();
  const int H = c.n_heads_out, Lh = c.length_head();
  // quality = the scoring composite (length head weight 0); length = the length head alone
  std::vector<double> q(B), l(B), x(lengths.begin(), lengths.end()), gq, gl;
  for (int b = 0; b < B; ++b) {
    q[b] = side_reward(rewards.data(), b, -1, H, scoring_weights_.data());
    l[b] = side_reward(rewards.data(), b, Lh, H, scoring_weights_.data());
  }
  const double rq = pearson_grad(q, x, &gq), rl = pearson_grad(l, x, &gl);
  std::vector<float> cur(static_cast<size_t>(B) * H);
  Backend& be = model_.backend();
  be.to_host(cur.data(), d_drewards_.data(), cur.size() * sizeof(float));
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h) {
      const double g = h == Lh ? -length_lambda_ * gl[b] : length_lambda_ * 2.0 * rq * gq[b] * scoring_weights_[h];
      cur[static_cast<size_t>(b) * H + h] += static_cast<float>(g);
    }
  be.to_device(d_drewards_.data(), cur.data(), cur.size() * sizeof(float));
  return length_lambda_ * (rq * rq + 1.0 - rl);
}

LossStats BTObjective::loss(const TokenBatch& batch, const std::vector<PairTarget>& pairs, bool train,
                            std::vector<float>* rewards_host, const std::vector<float>* seq_lengths, const Shard* shard) {
  Backend& be = model_.backend();
  const int H = model_.config().n_heads_out;
  size_t offset = 0, total = 0;  // sharded: this rank's first sequence, and all ranks' sequences
  if (shard) {
    const int r = shard->comm.rank();
    if (shard->seqs_per_rank.size() != static_cast<size_t>(shard->comm.size()) ||
        shard->seqs_per_rank[r] != static_cast<size_t>(batch.n_seqs()))
      throw std::invalid_argument("BTObjective: the shard sizes do not match the ranks' batches");
    for (int k = 0; k < shard->comm.size(); ++k) (k < r ? offset : total) += shard->seqs_per_rank[k];
    total += offset;
  }
  const int B = shard ? static_cast<int>(total) : batch.n_seqs();
  for (const PairTarget& p : pairs)
    if (p.chosen < 0 || p.chosen >= B || p.rejected < 0 || p.rejected >= B || p.head < -1 || p.head >= H)
      throw std::invalid_argument("BTObjective: pair indexes a sequence or head outside the batch");
  const size_t nr = static_cast<size_t>(B) * H;
  if (d_pairs_.size() < pairs.size()) d_pairs_ = DeviceArray<PairTarget>(be, 2 * pairs.size());
  if (d_drewards_.size() < nr) d_drewards_ = DeviceArray<float>(be, 2 * nr);
  std::vector<float>& rewards = rewards_host ? *rewards_host : rewards_;
  const float* d_rewards = nullptr;
  if (!shard) {
    model_.forward(batch, rewards, train);
    d_rewards = model_.rewards_device();
  } else {  // every rank's rewards, in rank order
    std::vector<float> mine;
    if (batch.n_seqs() > 0) model_.forward(batch, mine, train);
    std::vector<size_t> counts;
    for (size_t n : shard->seqs_per_rank) counts.push_back(n * H);
    rewards.resize(nr);
    shard->comm.allgatherv(mine.data(), mine.size(), rewards.data(), counts);
    if (d_gathered_.size() < nr) d_gathered_ = DeviceArray<float>(be, 2 * nr);
    be.to_device(d_gathered_.data(), rewards.data(), nr * sizeof(float));
    d_rewards = d_gathered_.data();
  }
  be.to_device(d_pairs_.data(), pairs.data(), pairs.size() * sizeof(PairTarget));
  be.fill(d_drewards_.data(), 0.0f, nr);
  const float* weights = train ? d_training_weights_.data() : d_scoring_weights_.data();
  LossStats st = be.bt_loss(d_drewards_.data(), d_rewards, d_pairs_.data(),
                            static_cast<int>(pairs.size()), H, weights, center_coef_);
  if (train && length_lambda_ > 0) {
    if (!seq_lengths || seq_lengths->size() != static_cast<size_t>(B))
      throw std::invalid_argument("BTObjective: length debiasing needs the response length of every sequence");
    st.loss += length_penalty(rewards, *seq_lengths, B);
  }
  if (train && batch.n_seqs() > 0) model_.backward_device(d_drewards_.data() + offset * H);
  return st;
}

LossStats BTObjective::forward_backward_shard(const dist::Comm& comm, const std::vector<size_t>& seqs_per_rank,
                                              const TokenBatch& batch, const std::vector<PairTarget>& pairs,
                                              const std::vector<float>* seq_lengths) {
  const Shard shard{comm, seqs_per_rank};
  return loss(batch, pairs, true, nullptr, seq_lengths, &shard);
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

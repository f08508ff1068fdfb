// The reward model of docs/model.md#architecture, written once over the Backend interface, for both
// architecture families (ModelConfig::arch):
//   gpt2:  x = tok_emb[ids] + pos_emb[pos]; L pre-LN blocks; reward = LN_f(x[eos]) · headᵀ + b
//   llama: x = tok_emb[ids]; L pre-RMSNorm blocks with RoPE, GQA, SwiGLU; reward = RMSNorm_f(x[last]) · headᵀ
// Sequences are packed (no padding): a batch of B sequences holds N tokens in total.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "cairn/backend.h"
#include "cairn/buffer.h"
#include "cairn/config.h"
#include "cairn/params.h"

namespace cairn {

// Token ids of sequences packed back to back, built on the host. Each sequence is one segment, or,
// with a shared prefix (add_shared), a group of segments [common prefix | rest of each] whose rests
// continue the prefix's positions and read it in attention (backend.h, SeqLayout): the model sees
// exactly the tokens and positions of the unshared sequences, and computes the prefix once.
struct TokenBatch {
  std::vector<int32_t> tokens;      // (N)
  std::vector<int32_t> positions;   // (N) position within its sequence
  std::vector<int32_t> cu_seqlens;  // (S+1) prefix sums of the segment lengths
  std::vector<int32_t> prefix_of;   // (S) the prefix segment a segment continues, −1: none
  std::vector<int32_t> outputs;     // segments whose last token gives a reward, in sequence order
  int n_seqs() const { return static_cast<int>(outputs.size()); }  // sequences (rewards)
  int n_segments() const { return static_cast<int>(cu_seqlens.size()) - 1; }
  int n_tokens() const { return cu_seqlens.empty() ? 0 : cu_seqlens.back(); }
  long sequence_tokens() const;  // tokens of the sequences, each shared prefix counted once per sequence
  bool has_prefixes() const {
    for (int32_t g : prefix_of)
      if (g >= 0) return true;
    return false;
  }
  void clear();
  // Appends one sequence (already [BOS] ids [EOS] and truncated to the model's max_seq_len).
  void add(const std::vector<int32_t>& seq);
  // Appends sequences as one group sharing their longest common prefix (at most the shortest one's
  // length − 1 tokens, so every sequence keeps a last token of its own); with share false, or no
  // common first token, each is added as by add(). Returns the prefix length used (0: none).
  int add_shared(const std::vector<const std::vector<int32_t>*>& seqs, bool share = true);
  // The prefix add_shared would share: the longest common prefix, capped at the shortest length − 1.
  static int shared_prefix(const std::vector<const std::vector<int32_t>*>& seqs);
};

class Model {
 public:
  Model(const ModelConfig& cfg, Backend& backend);
  ~Model();  // out of line: Acts is defined in model.cpp
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const { return cfg_; }
  const ParamTable& table() const { return table_; }
  Backend& backend() { return be_; }
  size_t num_params() const { return table_.total(); }

  // Parameters / gradients as one flat device buffer laid out by table().
  float* params() { return params_.data(); }
  float* grads() { return grads_.data(); }
  void init(uint64_t seed);
  void set_params(const float* host);  // copies table().total() floats from the host
  void get_params(float* host) const;
  void get_grads(float* host) const;
  void zero_grads();

  // Forward pass; rewards_host gets B·n_heads_out values (row-major [B, H], B = batch.n_seqs()).
  // Activations are kept for backward() when keep_activations is set.
  void forward(const TokenBatch& batch, std::vector<float>& rewards_host, bool keep_activations = true);
  // Backward from drewards[B,H] on the device (as written by Backend::bt_loss). Accumulates grads.
  void backward_device(const float* drewards);
  // The same from a host buffer.
  void backward(const std::vector<float>& drewards_host);
  // Rewards of the last forward, on the device ([B, H]).
  const float* rewards_device() const;

  // Freezes the embeddings and the lowest n blocks (0 ≤ n ≤ n_layers): a training forward runs them
  // without keeping activations, backward stops above them, and their parameters get no gradient and
  // no optimizer update (trainable() is false).
  void set_frozen_layers(int n);
  int frozen_layers() const { return frozen_; }
  bool trainable(const ParamInfo& p) const { return frozen_ == 0 || p.layer >= frozen_; }
  // The trainable parameters are the flat range [trainable_begin(), num_params()): the table orders
  // tensors by layer (embeddings, blocks, final norm + head), so freezing cuts off a prefix.
  size_t trainable_begin() const;

  // While *flag is set, forward and backward throw Interrupted at the next block boundary (nullptr:
  // never). Parameters are untouched by a pass that throws; its gradients are garbage.
  void set_interrupt(const std::atomic<bool>* flag) { interrupt_ = flag; }

  // Data parallel (docs/distributed.md#gradients): backward calls f(layer) as soon as it has finished
  // that layer's gradients, in the order of grad_buckets(): the final norm and head (layer n_layers),
  // then the trainable blocks from the top, then the embeddings (−1) when they train. Null: none.
  void set_grad_ready(std::function<void(int layer)> f) { grad_ready_ = std::move(f); }
  // The gradient range of each trainable layer, in backward order.
  std::vector<LayerRange> grad_buckets() const;

 private:
  struct Acts;
  void upload(const TokenBatch& batch);
  SeqLayout layout() const;

  ModelConfig cfg_;
  Backend& be_;
  ParamTable table_;
  DeviceArray<float> params_, grads_;  // (table().total()) each
  int frozen_ = 0;
  const std::atomic<bool>* interrupt_ = nullptr;
  std::function<void(int)> grad_ready_;
  void grad_ready(int layer) const {
    if (grad_ready_) grad_ready_(layer);
  }
  void check_interrupt() const;
  std::unique_ptr<Acts> acts_;
  struct {
    int N = 0, B = 0, S = 0;  // tokens, sequences (rewards), segments
    bool keep = false;
  } last_batch_;
};

}  // namespace cairn

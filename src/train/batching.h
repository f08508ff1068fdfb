// Tokenized pairs and the batches built from them. A batch of P pairs holds 2P packed sequences
// (chosen of pair i at index 2i, rejected at 2i+1); with prefix sharing each pair is one group
// [common prefix | chosen rest | rejected rest] (TokenBatch::add_shared), same rewards. Epoch order is a seeded shuffle; within windows
// of `bucket_window` batches, pairs are sorted by length so each batch holds similar lengths (steady
// step times; no padding exists either way since sequences are packed).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "cairn/backend.h"
#include "cairn/model.h"

namespace cairn {

struct TokenizedPair {
  std::vector<int32_t> chosen, rejected;  // [BOS] … [EOS], truncated to max_seq_len
  float label = 1.0f, margin = 0.0f, weight = 1.0f;
  int32_t head = -1;
  int64_t chosen_chars = 0, rejected_chars = 0;  // response lengths (characters), for diagnostics
};

// Appends pairs[idx[b..e)] to batch/targets (both cleared first), sharing each pair's common token
// prefix when `share` is set; lengths, if given, gets each sequence's response length in characters
// (for length debiasing).
void build_batch(const std::vector<TokenizedPair>& pairs, const std::vector<size_t>& idx, size_t b, size_t e,
                 bool share, TokenBatch* batch, std::vector<PairTarget>* targets,
                 std::vector<float>* lengths = nullptr);

// What sharing saves on a set of pairs: the tokens of all sequences, and those of the shared prefixes
// (each counted once per pair: the tokens not computed a second time).
struct SharingStats {
  long sequence_tokens = 0, shared_tokens = 0, pairs_sharing = 0;
};
SharingStats sharing_stats(const std::vector<TokenizedPair>& pairs);

// The targets and lengths build_batch makes for pairs[idx[b..e)], without the tokens (a data-parallel
// rank's view of the whole global batch).
void pair_targets(const std::vector<TokenizedPair>& pairs, const std::vector<size_t>& idx, size_t b, size_t e,
                  std::vector<PairTarget>* targets, std::vector<float>* lengths = nullptr);

// The order in which epoch `epoch` visits the pairs: deterministic in (seed, epoch).
std::vector<size_t> epoch_order(size_t n_pairs, const std::vector<TokenizedPair>& pairs, uint64_t seed, int epoch,
                                int batch_pairs, int bucket_window = 50);

}  // namespace cairn

// Scoring invariance (docs/model.md#numerics-and-determinism): on the CPU backend a sequence's
// rewards are bit-identical whatever batch it is scored in: alone or with 2, 7 or 16 others,
// first, last or in the middle, in any order, next to short or long neighbours, and whatever the
// thread count. Checked for both model families (odd head sizes and widths, d_ff above the k-block of
// 320 Eigen uses when it threads) at 1 and 2 threads, for the linear layer alone (whose row count is
// what a batch changes), and end to end through `cairn score`.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <numeric>
#include <sstream>
#include <string>
#include <tuple>

#include <nlohmann/json.hpp>

#include "cairn/backend.h"
#include "cairn/model.h"
#include "model_helpers.h"
#include "test_paths.h"
#include "test_tmpdir.h"
#include "test_util.h"
#include "util/rng.h"

namespace cairn {
namespace {

bool same_bits(const float* a, const float* b, size_t n) { return std::memcmp(a, b, n * sizeof(float)) == 0; }

// linear_forward on the first `rows` rows of x, returned row-major [rows, O].
std::vector<float> linear_rows(Backend& be, const std::vector<float>& x, const std::vector<float>& W,
                               const std::vector<float>& b, int rows, int I, int O) {
  std::vector<float> y(static_cast<size_t>(rows) * O);
  be.linear_forward(y.data(), x.data(), W.data(), b.data(), rows, I, O);
  return y;
}

class LinearRowInvariance : public ::testing::TestWithParam<int> {};

// Row r of out = x·Wᵀ + b does not depend on how many rows the call has: every prefix of the same
// input gives the same bits for the rows it shares with the longest call. Shapes: O = 1 (a
// matrix-vector product in Eigen), odd widths, and I above 320.
TEST_P(LinearRowInvariance, EveryRowIsIndependentOfTheRowCount) {
  auto be = make_backend("cpu", GetParam());
  for (auto [I, O] : {std::pair{37, 1}, std::pair{40, 3}, std::pair{64, 120}, std::pair{340, 40}, std::pair{130, 333}}) {
    const int n_max = 150;
    const auto x = test::rand_vec(static_cast<size_t>(n_max) * I, 1), W = test::rand_vec(static_cast<size_t>(O) * I, 2);
    const auto b = test::rand_vec(O, 3);
    const auto full = linear_rows(*be, x, W, b, n_max, I, O);
    for (int rows : {1, 2, 3, 4, 5, 7, 8, 9, 17, 31, 63, 64, 65, 100, 149}) {
      const auto part = linear_rows(*be, x, W, b, rows, I, O);
      EXPECT_TRUE(same_bits(part.data(), full.data(), part.size())) << "I " << I << " O " << O << " rows " << rows;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Threads, LinearRowInvariance, ::testing::Values(1, 2));

// GELU of a value does not depend on where it sits: at any address (aligned or not), any length,
// head or tail of the buffer. Eigen evaluates an unaligned head and the tail with its scalar
// functors; they give the packet code's bits (its scalar pmadd is an fmaf where the packets fuse,
// arch/SSE/PacketMath.h), which this checks.
TEST(ElementwiseInvariance, GeluOfAValueIsTheSameAtEveryOffsetAndLength) {
  auto be = make_backend("cpu", 2);
  const size_t n = 40000;
  const auto x = test::rand_vec(n + 64, 5, -6.0f, 6.0f);
  std::vector<float> ref(n + 64), y(n + 64);
  be->gelu_forward(ref.data(), x.data(), ref.size());
  for (size_t off : {0, 1, 3, 8, 13, 16, 17})
    for (size_t len : {size_t{1}, size_t{2}, size_t{7}, size_t{15}, size_t{16}, size_t{33}, size_t{1000}, n}) {
      be->gelu_forward(y.data() + off, x.data() + off, len);
      EXPECT_TRUE(same_bits(y.data() + off, ref.data() + off, len)) << "offset " << off << " length " << len;
    }
}

ModelConfig invariance_config(const std::string& arch) {
  ModelConfig c;
  c.arch = arch;
  c.vocab_size = 61, c.max_seq_len = 90, c.d_model = 36, c.n_layers = 2, c.n_heads = 4;
  c.d_ff = 340;
  if (arch == "llama") c.d_model = 40, c.n_kv_heads = 2, c.d_ff = 330, c.rope_theta = 1000.0f;  // HS 10: even
  c.n_heads_out = arch == "llama" ? 1 : 2;  // one head is a matrix-vector product in Eigen
  c.head_names.clear();
  for (int h = 0; h < c.n_heads_out; ++h) c.head_names.push_back("h" + std::to_string(h));
  c.head_weights.assign(c.n_heads_out, 1.0f / c.n_heads_out);
  return c;
}

// Scores seqs in batches of `batch_size`, taking them in `order`; returns each sequence's rewards
// (H floats) at its own index.
std::vector<std::vector<float>> score(Model& m, const std::vector<std::vector<int32_t>>& seqs,
                                      const std::vector<int>& order, int batch_size) {
  const int H = m.config().n_heads_out;
  std::vector<std::vector<float>> out(seqs.size());
  std::vector<float> r;
  for (size_t b = 0; b < order.size(); b += batch_size) {
    const size_t e = std::min(order.size(), b + batch_size);
    TokenBatch batch;
    batch.clear();
    for (size_t k = b; k < e; ++k) batch.add(seqs[order[k]]);
    m.forward(batch, r, false);
    for (size_t k = b; k < e; ++k) out[order[k]].assign(r.begin() + (k - b) * H, r.begin() + (k - b + 1) * H);
  }
  return out;
}

class ScoringInvariance : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(ScoringInvariance, RewardsAreBitIdenticalWhateverTheBatch) {
  const auto [arch, threads] = GetParam();
  auto be = make_backend("cpu", threads);
  const ModelConfig cfg = invariance_config(arch);
  Model m(cfg, *be);
  const auto p = test::random_params(m.table(), 7);
  m.set_params(p.data());
  Rng r(11);
  std::vector<int> lens(40);
  for (int& l : lens) l = 1 + static_cast<int>(r.below(cfg.max_seq_len));
  lens[0] = cfg.max_seq_len, lens[1] = 1, lens[2] = 2;
  const auto seqs = test::random_seqs(lens, cfg.vocab_size, 12);
  std::vector<int> order(seqs.size());
  std::iota(order.begin(), order.end(), 0);
  const auto alone = score(m, seqs, order, 1);

  auto expect_same = [&](const std::vector<std::vector<float>>& got, const std::string& what) {
    for (size_t i = 0; i < seqs.size(); ++i) {
      if (got[i].empty()) continue;
      EXPECT_TRUE(same_bits(got[i].data(), alone[i].data(), got[i].size()))
          << what << ": sequence " << i << " (" << lens[i] << " tokens) " << got[i][0] << " vs alone " << alone[i][0];
    }
  };
  for (int bs : {3, 8, 17, 40}) expect_same(score(m, seqs, order, bs), "batch size " + std::to_string(bs));
  std::vector<int> shuffled = order;
  for (int round = 0; round < 3; ++round) {
    for (size_t i = shuffled.size() - 1; i > 0; --i) std::swap(shuffled[i], shuffled[r.below(i + 1)]);
    for (int bs : {3, 8, 17}) expect_same(score(m, seqs, shuffled, bs), "shuffled, batch size " + std::to_string(bs));
  }
  // a few sequences at every position of a batch among the longest ones
  std::vector<int> longest = order;
  std::sort(longest.begin(), longest.end(), [&](int a, int b) { return lens[a] > lens[b]; });
  for (int target : {1, 5, 9})
    for (int pos = 0; pos < 5; ++pos) {
      std::vector<int> batch;
      for (int k = 0; batch.size() < 4; ++k)
        if (longest[k] != target) batch.push_back(longest[k]);
      batch.insert(batch.begin() + pos, target);
      auto got = score(m, seqs, batch, 5);
      for (int k : batch)
        if (k != target) got[k].clear();
      expect_same(got, "among the longest at position " + std::to_string(pos));
    }
  // another thread count, and a training forward (activations kept), compute the same rewards
  auto other = make_backend("cpu", 3 - threads);
  Model m2(cfg, *other);
  m2.set_params(p.data());
  expect_same(score(m2, seqs, shuffled, 8), std::to_string(3 - threads) + " threads");
  TokenBatch all = test::make_batch(seqs);
  std::vector<float> kept;
  m.forward(all, kept, true);
  for (size_t i = 0; i < seqs.size(); ++i)
    EXPECT_TRUE(same_bits(kept.data() + i * cfg.n_heads_out, alone[i].data(), cfg.n_heads_out))
        << "training forward, sequence " << i;
}

INSTANTIATE_TEST_SUITE_P(FamiliesAndThreads, ScoringInvariance,
                         ::testing::Combine(::testing::Values("gpt2", "llama"), ::testing::Values(1, 2)),
                         [](const auto& info) {
                           return std::get<0>(info.param) + "_" + std::to_string(std::get<1>(info.param)) + "threads";
                         });

// n words of a few letters from a fixed generator: texts of any length.
std::string words(Rng& r, int n) {
  static const char* syllables[] = {"wa", "ke", "lo", "mi", "su", "ran", "tek", "ob"};
  std::string s;
  for (int i = 0; i < n; ++i) s += std::string(i ? " " : "") + syllables[r.below(8)] + "aeiou"[r.below(5)];
  return s;
}

// `cairn score` writes the same bytes for a record whatever --batch-size, --threads and input order.
TEST(ScoreCli, OutputBytesOfARecordDoNotDependOnBatchSizeThreadsOrOrder) {
  test::TempDir d;
  auto cairn = [](const std::string& args) {
    int code = 0;
    std::string out = test::run_capture(std::string(CAIRN_BINARY) + " " + args + " 2>&1", &code);
    EXPECT_EQ(code, 0) << args << "\n" << out;
  };
  Rng r(3);
  std::string pairs, records;
  for (int i = 0; i < 120; ++i)
    pairs += nlohmann::json{{"prompt", words(r, 6)}, {"chosen", words(r, 12)}, {"rejected", words(r, 9)}}.dump() + "\n";
  std::vector<std::string> lines;
  for (int i = 0; i < 80; ++i)  // 1 to ~150 tokens; max_seq_len 96 truncates the longest
    lines.push_back(nlohmann::json{{"prompt", words(r, 1 + static_cast<int>(r.below(10)))},
                                   {"response", words(r, 1 + static_cast<int>(r.below(i % 4 ? 30 : 120)))},
                                   {"id", i}}.dump());
  for (const auto& l : lines) records += l + "\n";
  const std::string train = d.write("pairs.jsonl", pairs), in = d.write("in.jsonl", records);
  cairn("tokenizer train --input " + train + " --out " + d.file("tok.model") + " --vocab-size 300");
  cairn("train --train " + train + " --out " + d.file("run") + " --tokenizer " + d.file("tok.model") +
        " --preset tiny --d-model 36 --n-heads 4 --n-layers 2 --d-ff 340 --max-seq-len 96 --steps 2 --batch-pairs 4");
  std::vector<std::string> shuffled = lines;
  for (size_t i = shuffled.size() - 1; i > 0; --i) std::swap(shuffled[i], shuffled[r.below(i + 1)]);
  std::string shuffled_text;
  for (const auto& l : shuffled) shuffled_text += l + "\n";
  const std::string in_shuffled = d.write("shuffled.jsonl", shuffled_text);

  // output lines by record: an output line is its record with ,"reward":… before the closing '}'
  auto scored = [&](const std::string& input, const std::string& flags) {
    const std::string out = d.file("out.jsonl");
    cairn("score --model " + d.file("run") + " --input " + input + " --output " + out + " " + flags);
    std::map<std::string, std::string> by_record;
    std::istringstream text(test::slurp(out));
    for (std::string l; std::getline(text, l);) by_record[l.substr(0, l.rfind(",\"reward\":")) + "}"] = l;
    EXPECT_EQ(by_record.size(), lines.size()) << flags;
    return by_record;
  };
  const auto ref = scored(in, "--batch-size 1 --threads 2");
  for (const auto& [input, flags] : {std::pair{in, "--batch-size 7 --threads 2"}, std::pair{in, "--batch-size 32 --threads 2"},
                                     std::pair{in_shuffled, "--batch-size 7 --threads 2"},
                                     std::pair{in_shuffled, "--batch-size 32 --threads 1"}}) {
    const auto got = scored(input, flags);
    for (const auto& [rec, line] : ref)
      EXPECT_EQ(got.count(rec) ? got.at(rec) : "(missing)", line) << flags << (input == in ? "" : ", shuffled");
  }
}

}  // namespace
}  // namespace cairn

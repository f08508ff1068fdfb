// Resource bounds through the `cairn` binary: memory is bounded by a batch, not by the size of one
// record (a long text is tokenized only from a token boundary near its end: docs/model.md#long-texts).
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "test_paths.h"
#include "test_tmpdir.h"

namespace cairn {
namespace {

std::string cairn_cmd(const std::string& args, int* code) {
  return test::run_capture(std::string(CAIRN_BINARY) + " " + args + " 2>&1", code);
}

// ASan reserves terabytes of address space, so an address-space limit cannot be used under it.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAsan = true;
#else
constexpr bool kAsan = false;
#endif

TEST(Limits, A40MiBResponseScoresInBoundedMemory) {
  if (kAsan) GTEST_SKIP() << "address-space limits do not apply under AddressSanitizer";
  test::TempDir d;
  std::string pairs;
  for (int i = 0; i < 60; ++i)
    pairs += nlohmann::json({{"prompt", "q" + std::to_string(i)}, {"chosen", "yes please thanks"}, {"rejected", "no"}}).dump() + "\n";
  const std::string train = d.write("train.jsonl", pairs);
  int code = 0;
  std::string out = cairn_cmd("train --train " + train + " --out " + d.file("run") +
                                  " --vocab-size 300 --d-model 32 --n-layers 1 --d-ff 64 --max-seq-len 64 --steps 2",
                              &code);
  ASSERT_EQ(code, 0) << out;
  // 40 MiB of ordinary prose: tokenizing all of it took ~5 GB before texts were cut before tokenizing.
  std::string big;
  const char* words[] = {"the ", "answer ", "is ", "long, ", "and ", "it ", "keeps ", "going. "};
  for (size_t i = 0; big.size() < (40u << 20); ++i) big += words[(i * 7 + i / 3) % 8];
  d.write("in.jsonl", nlohmann::json({{"prompt", "Write a lot."}, {"response", big + "The end."}}).dump() + "\n" +
                          R"({"prompt": "Write a lot.", "response": "The end."})" + "\n");
  // 1.5 GiB of address space: the record itself, its parsed copy and the output line fit easily.
  out = test::run_capture("ulimit -v 1572864; " + std::string(CAIRN_BINARY) + " score --threads 2 --model " +
                              d.file("run") + " --input " + d.file("in.jsonl") + " --output " + d.file("out.jsonl") + " 2>&1",
                          &code);
  ASSERT_EQ(code, 0) << out.substr(0, 2000);
  std::ifstream o(d.file("out.jsonl"));
  std::string l1, l2;
  std::getline(o, l1), std::getline(o, l2);
  const auto j1 = nlohmann::json::parse(l1), j2 = nlohmann::json::parse(l2);
  ASSERT_TRUE(j1.contains("reward") && j2.contains("reward"));
  // Both texts end in "... The end.": with max_seq_len 64 the long one keeps only its last 64 tokens.
  EXPECT_NE(j1["reward"], j2["reward"]);
  EXPECT_NE(out.find("truncated"), std::string::npos) << out;
}

// OpenMP threads wait passively unless the user chose a policy (src/cli/main.cpp).
TEST(Limits, OpenMpWaitPolicyIsPassiveUnlessChosen) {
  const std::string bench = std::string(CAIRN_BINARY) + " bench train --preset tiny --vocab-size 300 "
                            "--batch-pairs 1 --seq-len 8 --steps 1 --warmup 0 --no-sgemm --json 2>/dev/null";
  int code = 0;
  auto policy = [&](const std::string& env) {
    const std::string out = test::run_capture(env + " " + bench, &code);
    EXPECT_EQ(code, 0) << out;
    return nlohmann::json::parse(out.substr(out.find('{')))["omp_wait_policy"].get<std::string>();
  };
  EXPECT_EQ(policy("env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT"), "passive");
  EXPECT_EQ(policy("env OMP_WAIT_POLICY=active"), "active");
  EXPECT_EQ(policy("env -u OMP_WAIT_POLICY GOMP_SPINCOUNT=1000"), "");
}

}  // namespace
}  // namespace cairn

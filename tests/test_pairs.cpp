// `cairn pairs` converters on small real-shaped fixtures with the exact pairs and labels expected.
#include <gtest/gtest.h>

#include "cairn/errors.h"
#include "data/converters.h"
#include "test_tmpdir.h"

namespace cairn {
using test::TempDir;

TEST(Pairs, AlpacaEvalAggregatesAnnotatorsAndDropsBadRecords) {
  TempDir d;
  const std::string f = d.write("ae.jsonl",
      R"({"instruction": "I1", "output_1": "A", "output_2": "B", "preference": 2, "annotator": "x"})" "\n"
      R"({"instruction": "I1", "output_1": "A", "output_2": "B", "preference": 1.6, "annotator": "y"})" "\n"
      R"({"instruction": "I2", "output_1": "C", "output_2": "D", "preference": 1.25, "annotator": "x"})" "\n"
      R"({"instruction": "I3", "output_1": "E", "output_2": "F", "preference": NaN, "annotator": "x"})" "\n"
      R"({"instruction": "I3", "output_1": "E", "output_2": "F", "preference": null, "annotator": "x"})" "\n"
      R"({"instruction": "I4", "output_1": "", "output_2": "G", "preference": 2, "annotator": "x"})" "\n"
      R"({"instruction": "I5", "output_1": "H", "output_2": "J", "preference": 1, "annotator": "x"})" "\n"
      R"({"instruction": "I5", "output_1": "H", "output_2": "J", "preference": 2, "annotator": "y"})" "\n"
      R"({"instruction": "I6", "output_1": "K", "output_2": "L", "preference": 0, "annotator": "x"})" "\n");
  ConvertResult r = convert_alpaca_eval(f);
  ASSERT_EQ(r.pairs.size(), 2u);
  EXPECT_EQ(r.pairs[0]["prompt"], "I1");
  EXPECT_EQ(r.pairs[0]["chosen"], "B");
  EXPECT_EQ(r.pairs[0]["rejected"], "A");
  EXPECT_NEAR(r.pairs[0]["label"].get<double>(), 0.8, 1e-12);  // mean of P(2≻1) = 1.0 and 0.6
  EXPECT_EQ(r.pairs[0]["n_judgments"], 2);
  EXPECT_EQ(r.pairs[1]["chosen"], "C");
  EXPECT_NEAR(r.pairs[1]["label"].get<double>(), 0.75, 1e-12);
  EXPECT_EQ(r.counts["records"], 9);
  EXPECT_EQ(r.counts["dropped_missing_preference"], 2);
  EXPECT_EQ(r.counts["dropped_empty_output"], 1);
  EXPECT_EQ(r.counts["dropped_tie"], 1);
  EXPECT_EQ(r.counts["dropped_preference_out_of_range"], 1);
}

TEST(Pairs, CaiLogsGiveRevisionPairsWithPrinciples) {
  TempDir d;
  const std::string f = d.write("cai.jsonl",
      R"({"prompt": "P", "initial": "r0", "cycles": [)"
      R"({"cycle": 2, "principle": "honest", "critique": "c2", "revised": "r2"},)"
      R"({"cycle": 1, "principle": "harmless", "critique": "c1", "revised": "r1"},)"
      R"({"cycle": 3, "principle": "helpful", "critique": "c3", "revised": "r2"}], "final": "r2"})" "\n"
      R"({"prompt": "P", "initial": "r0", "cycles": [{"cycle": 1, "principle": "harmless", "critique": "c", "revised": "r1"}], "final": "r1"})" "\n");
  ConvertResult r = convert_cai(f);
  ASSERT_EQ(r.pairs.size(), 3u);
  EXPECT_EQ(r.pairs[0]["chosen"], "r1");
  EXPECT_EQ(r.pairs[0]["rejected"], "r0");
  EXPECT_EQ(r.pairs[0]["principle"], "harmless");
  EXPECT_EQ(r.pairs[1]["chosen"], "r2");
  EXPECT_EQ(r.pairs[1]["rejected"], "r1");
  EXPECT_EQ(r.pairs[1]["principle"], "honest");
  EXPECT_EQ(r.pairs[2]["chosen"], "r2");  // final ≻ initial, no principle
  EXPECT_EQ(r.pairs[2]["rejected"], "r0");
  EXPECT_FALSE(r.pairs[2].contains("principle"));
  EXPECT_EQ(r.counts["skipped_identical"], 1);  // cycle 3 revised == cycle 2 revised
  EXPECT_EQ(r.counts["skipped_duplicate"], 2);  // record 2 repeats r1≻r0, and its final≻initial is r1≻r0 again
}

TEST(Pairs, SwappedJudgmentsVoteAndReportPositionBias) {
  TempDir d;
  const std::string f = d.write("j.jsonl",
      // agreeing: b wins in both orders → label 1
      R"({"prompt": "P1", "response_a": "A1", "response_b": "B1", "judgments": [{"order": "ab", "winner": "b"}, {"order": "ba", "winner": "b"}]})" "\n"
      // disagreeing: the first-shown slot wins both times (a in ab, b in ba) → share ½
      R"({"prompt": "P2", "response_a": "A2", "response_b": "B2", "judgments": [{"order": "ab", "winner": "a"}, {"order": "ba", "winner": "b"}]})" "\n"
      // a wins once, tie once → share_a = 0.75
      R"({"prompt": "P3", "response_a": "A3", "response_b": "B3", "judgments": [{"order": "ab", "winner": "a"}, {"order": "ba", "winner": "tie"}]})" "\n"
      // all ties → dropped
      R"({"prompt": "P4", "response_a": "A4", "response_b": "B4", "judgments": [{"order": "ab", "winner": "tie"}, {"order": "ba", "winner": "tie"}]})" "\n"
      // disagreeing with a majority: ab→a, ba→b, ab→a → share_a = 2/3
      R"({"prompt": "P5", "response_a": "A5", "response_b": "B5", "judgments": [{"order": "ab", "winner": "a"}, {"order": "ba", "winner": "b"}, {"order": "ab", "winner": "a"}]})" "\n");
  ConvertResult soft = convert_judgments(f, "soft");
  ASSERT_EQ(soft.pairs.size(), 4u);
  EXPECT_EQ(soft.pairs[0]["chosen"], "B1");
  EXPECT_EQ(soft.pairs[0]["label"], 1.0);
  EXPECT_EQ(soft.pairs[1]["label"], 0.5);
  EXPECT_EQ(soft.pairs[2]["chosen"], "A3");
  EXPECT_EQ(soft.pairs[2]["label"], 0.75);
  EXPECT_EQ(soft.pairs[3]["chosen"], "A5");
  EXPECT_NEAR(soft.pairs[3]["label"].get<double>(), 2.0 / 3.0, 1e-12);
  EXPECT_EQ(soft.counts["disagreeing"], 2);
  EXPECT_EQ(soft.counts["dropped_all_tie"], 1);
  // slot of each decided verdict: P1 ab→b second, ba→b first; P2 first, first; P3 first; P5 first ×3
  EXPECT_EQ(soft.counts["winner_in_first_slot"], 7);
  EXPECT_EQ(soft.counts["winner_in_second_slot"], 1);
  ConvertResult keep = convert_judgments(f, "keep");
  ASSERT_EQ(keep.pairs.size(), 3u);  // P2 has no majority
  EXPECT_EQ(keep.pairs[2]["label"], 1.0);
  ConvertResult drop = convert_judgments(f, "drop");
  EXPECT_EQ(drop.pairs.size(), 2u);
  EXPECT_EQ(drop.counts["dropped_disagreeing"], 2);
}

TEST(Pairs, BadConverterInputNamesTheLine) {
  TempDir d;
  const std::string f = d.write("bad.jsonl", R"({"instruction": "I", "output_1": "A", "output_2": "B", "preference": 2})" "\n"
                                             R"({"instruction": "I", "output_1": "A"})" "\n");
  try {
    convert_alpaca_eval(f);
    FAIL();
  } catch (const DataError& e) {
    EXPECT_EQ(std::string(e.what()), f + ":2: missing field \"output_2\"");
  }
  EXPECT_THROW(convert_judgments(f, "sometimes"), UsageError);
}

// Found by fuzz/converters.cpp: a non-string "order" or "winner" escaped as a JSON type_error (exit 1),
// and a blank response became a pair that `cairn train` refuses ("empty response"). A record nested
// 100k deep (a targeted input) crashed the CAI converter's copy of its cycles.
TEST(Pairs, HostileJudgmentsAndNestingAreDataErrorsOrDropped) {
  TempDir d;
  for (const char* bad : {R"({"order": 1, "winner": "a"})", R"({"order": "ab", "winner": null})", R"({"winner": "a"})"}) {
    const std::string f = d.write("j.jsonl", std::string(R"({"prompt": "P", "response_a": "A", "response_b": "B", "judgments": [)") +
                                                 bad + "]}\n");
    try {
      convert_judgments(f, "soft");
      FAIL() << bad;
    } catch (const DataError& e) {
      EXPECT_EQ(std::string(e.what()).rfind(f + ":1: judgments[0]: \"", 0), 0u) << e.what();
    }
  }
  const std::string blank = d.write("blank.jsonl",
      R"({"prompt": "P", "response_a": " ", "response_b": "B", "judgments": [{"order": "ab", "winner": "b"}]})" "\n"
      R"({"prompt": "P", "response_a": "A", "response_b": "B", "judgments": [{"order": "ab", "winner": "b"}]})" "\n");
  ConvertResult r = convert_judgments(blank, "soft");
  ASSERT_EQ(r.pairs.size(), 1u);
  EXPECT_EQ(r.pairs[0]["chosen"], "B");
  EXPECT_EQ(r.counts["dropped_empty_response"], 1);
  const int depth = 100000;
  const std::string deep = d.write("deep.jsonl", R"({"prompt": "p", "initial": "a", "cycles": [{"revised": "b", "critique": )" +
                                                     std::string(depth, '[') + std::string(depth, ']') + "}]}\n");
  try {
    convert_cai(deep);
    FAIL();
  } catch (const DataError& e) {
    EXPECT_EQ(std::string(e.what()), deep + ":1: JSON nested deeper than 256 levels");
  }
}

TEST(Pairs, LenientJsonReadsPythonNaNOutsideStringsOnly) {
  auto j = parse_json_line_lenient(R"({"a": NaN, "b": "NaN stays", "c": -Infinity})", "f", 1);
  EXPECT_TRUE(j["a"].is_null());
  EXPECT_EQ(j["b"], "NaN stays");
  EXPECT_TRUE(j["c"].is_null());
}

}  // namespace cairn

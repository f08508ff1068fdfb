// Pair parsing and rendering (docs/formats.md#pairs, docs/formats.md#rendering), streaming reads of plain and gzip files, and the errors bad
// input must produce (file:line, the field, never a crash).
#include <gtest/gtest.h>

#include <map>

#include "cairn/chat_template.h"
#include "cairn/data.h"
#include "cairn/errors.h"
#include "cairn/io.h"
#include "test_tmpdir.h"
#include "util/rng.h"

namespace cairn {
using test::TempDir;

static Pair parse(const std::string& line) { return parse_pair(parse_json_line(line, "f.jsonl", 7), "f.jsonl", 7); }

static std::string error_of(const std::string& line) {
  try {
    parse(line);
  } catch (const DataError& e) {
    return e.what();
  }
  return "no error";
}

TEST(Data, ImplicitPromptIsUsedAsGiven) {
  Pair p = parse(R"({"chosen": "\n\nHuman: hi\n\nAssistant: hello there", "rejected": "\n\nHuman: hi\n\nAssistant: go"})");
  EXPECT_EQ(p.chosen, "\n\nHuman: hi\n\nAssistant: hello there");
  EXPECT_EQ(p.rejected, "\n\nHuman: hi\n\nAssistant: go");
  EXPECT_EQ(p.chosen_chars, 12);  // " hello there": the response after the last "\n\nAssistant:"
  EXPECT_EQ(p.label, 1.0f);
  EXPECT_EQ(p.weight, 1.0f);
}

TEST(Data, ExplicitTextPromptRendering) {
  Pair p = parse(R"({"prompt": "Why?", "chosen": "Because.", "rejected": "No."})");
  EXPECT_EQ(p.chosen, "\n\nHuman: Why?\n\nAssistant: Because.");
  EXPECT_EQ(p.rejected, "\n\nHuman: Why?\n\nAssistant: No.");
  Pair raw = parse(R"({"prompt": "\n\nHuman: Why?\n\nAssistant:", "chosen": " Because.", "rejected": " No."})");
  EXPECT_EQ(raw.chosen, "\n\nHuman: Why?\n\nAssistant: Because.");
}

TEST(Data, ConversationalRendering) {
  Pair p = parse(R"({"prompt": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}],
                     "chosen": [{"role": "assistant", "content": "Hello!"}],
                     "rejected": [{"role": "assistant", "content": "What."}],
                     "label": 0.8, "margin": 0.5, "weight": 2, "principle": "harmless", "id": 42})");
  EXPECT_EQ(p.chosen, "\n\nSystem: Be kind.\n\nHuman: Hi\n\nAssistant: Hello!");
  EXPECT_EQ(p.rejected, "\n\nSystem: Be kind.\n\nHuman: Hi\n\nAssistant: What.");
  EXPECT_FLOAT_EQ(p.label, 0.8f);
  EXPECT_FLOAT_EQ(p.margin, 0.5f);
  EXPECT_FLOAT_EQ(p.weight, 2.0f);
  EXPECT_EQ(p.principle, "harmless");
  EXPECT_EQ(p.id, "42");
  EXPECT_EQ(p.chosen_chars, 6);
  Pair no_prompt = parse(R"({"chosen": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}],
                             "rejected": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "B"}]})");
  EXPECT_EQ(no_prompt.chosen, "\n\nHuman: Q\n\nAssistant: A");
}

// A conversation already rendered in the model's template (what an RL loop sends: the policy's
// rendering decoded with its special tokens, padded, cut short) reads back to its messages, so
// scoring it gives the text cairn renders for the same conversation — never a second template
// around the first. Random conversations, both templates; the decorations OpenRLHF's queries carry.
TEST(Data, RenderedConversationsReadBackToTheirMessages) {
  const std::vector<std::string> pieces = {"Hi", "What is 2+2?", "4.", "", " ", "line\nbreak", "\n\nlead",
                                           "trail\n", "héllo 世界 🙂", "a < b > c", "|pipe|", "im_end", "x"};
  const std::vector<std::string> roles = {"user", "assistant", "system"};
  Rng rng(7);
  for (const auto& [name, sys] : std::vector<std::pair<std::string, std::string>>{{"chatml", "Be helpful."},
                                                                                  {"chatml", ""}, {"llama3", ""}}) {
    const ChatTemplate t = ChatTemplate::by_name(name, sys);
    const std::string pad = name == "chatml" ? "<|im_end|>" : "<|end_of_text|>";
    const std::string bos = name == "chatml" ? "" : "<|begin_of_text|>";
    for (int trial = 0; trial < 200; ++trial) {
      std::vector<Message> conv;
      const int n = 1 + static_cast<int>(rng.below(5));
      for (int i = 0; i < n; ++i) {
        std::string content;
        for (int k = static_cast<int>(rng.below(3)); k >= 0; --k) content += pieces[rng.below(pieces.size())];
        conv.push_back({roles[rng.below(roles.size())], content});
      }
      conv.back().role = "assistant";
      const std::string canon = t.render(conv);
      ASSERT_TRUE(t.rendered(canon));
      EXPECT_EQ(t.render(t.read_text(canon)), canon) << name << " " << trial;
      std::vector<Message> want = conv;  // the messages, with the default system message rendering added
      if (!sys.empty() && conv.front().role != "system") want.insert(want.begin(), {"system", sys});
      const std::vector<Message> got = t.read_text(canon);
      ASSERT_EQ(got.size(), want.size()) << name << " " << trial;
      for (size_t i = 0; i < got.size(); ++i) {
        EXPECT_EQ(got[i].role, want[i].role);
        EXPECT_EQ(got[i].content, want[i].content);
      }
      // left padding, BOS, the final message's end marker then padding, or no end marker at all
      std::string body = canon;
      if (name == "chatml") body.pop_back();  // "<|im_end|>\n" → "<|im_end|>", as generation ends
      EXPECT_EQ(t.render(t.read_text(pad + pad + bos + body + pad + pad)), canon) << name << " " << trial;
      const std::string close = name == "chatml" ? "<|im_end|>" : "<|eot_id|>";
      const std::string cut = body.substr(0, body.size() - close.size());
      EXPECT_EQ(t.render(t.read_text(bos + cut)), canon) << name << " " << trial;
    }
  }
  // A plain transcript is not a rendering: it is split at its Human/Assistant markers.
  const ChatTemplate chatml = ChatTemplate::by_name("chatml");
  EXPECT_FALSE(chatml.rendered("\n\nHuman: hi\n\nAssistant: hello"));
  EXPECT_FALSE(ChatTemplate().rendered("<|im_start|>user\nhi<|im_end|>\n"));  // plain never re-reads
  // A header with no content: the generation prompt alone.
  const std::vector<Message> gen = chatml.read_text("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant");
  ASSERT_EQ(gen.size(), 2u);
  EXPECT_EQ(gen[1].role, "assistant");
  EXPECT_EQ(gen[1].content, "");
  // Scoring records and implicit-transcript pairs: a rendered text scores as the same conversation
  // given as prompt + response does, and its response length is the last message's.
  const std::string q = "<|im_end|><|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\nBecause.<|im_end|><|im_end|>";
  EXPECT_EQ(render_score_record(nlohmann::json{{"text", q}}, "f", 1, chatml).text,
            render_score_record(nlohmann::json{{"prompt", "Why?"}, {"response", "Because."}}, "f", 1, chatml).text);
  const Pair p = parse_pair(nlohmann::json{{"chosen", q}, {"rejected", "<|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\n"}},
                            "f", 1, chatml);
  EXPECT_EQ(p.chosen, chatml.render({{"user", "Why?"}, {"assistant", "Because."}}));
  EXPECT_EQ(p.chosen_chars, 8);
  EXPECT_TRUE(p.empty_response);
}

TEST(Data, BadRecordsNameFileLineAndField) {
  EXPECT_EQ(error_of(R"({"chosen": "a"})"), "f.jsonl:7: missing field \"rejected\"");
  EXPECT_EQ(error_of(R"({"chosen": 3, "rejected": "b"})"), "f.jsonl:7: field \"chosen\" must be a string or a list of messages");
  EXPECT_EQ(error_of(R"({"chosen": "a", "rejected": "b", "label": 1.5})"), "f.jsonl:7: field \"label\" must be a probability in [0, 1]");
  EXPECT_EQ(error_of(R"({"chosen": "a", "rejected": "b", "weight": 0})"), "f.jsonl:7: field \"weight\" must be > 0");
  EXPECT_EQ(error_of(R"({"chosen": "a", "rejected": "b", "label": "x"})"), "f.jsonl:7: field \"label\" must be a number");
  EXPECT_EQ(error_of(R"({"chosen": [{"role": "bot", "content": "x"}], "rejected": "b"})"),
            "f.jsonl:7: \"chosen\"[0]: unknown role \"bot\" (expected user, assistant or system)");
  EXPECT_EQ(error_of(R"([1, 2])"), "f.jsonl:7: expected a JSON object");
  EXPECT_NE(error_of(R"({"chosen": "a", )").find("f.jsonl:7: invalid JSON"), std::string::npos);
  EXPECT_NE(error_of("{\"chosen\": \"\xff\xfe\", \"rejected\": \"b\"}").find("f.jsonl:7: text is not valid UTF-8"), std::string::npos);
}

TEST(Data, EmptyResponsesAreTextLikeAnyOther) {
  Pair p = parse(R"({"prompt": "p", "chosen": "  ", "rejected": "b"})");
  EXPECT_EQ(p.chosen, "\n\nHuman: p\n\nAssistant:   ");
  EXPECT_EQ(p.chosen_chars, 2);
  EXPECT_TRUE(p.empty_response);
  EXPECT_TRUE(parse(R"({"chosen": [{"role": "assistant", "content": ""}], "rejected": "\n\nHuman: q\n\nAssistant:"})").empty_response);
  EXPECT_FALSE(parse(R"({"prompt": "p", "chosen": "a", "rejected": "b"})").empty_response);
  TempDir d;
  ReadStats st;
  read_pairs(d.write("p.jsonl", R"({"chosen": "a", "rejected": ""})" "\n" R"({"chosen": "a", "rejected": "b"})" "\n"), false, &st);
  EXPECT_EQ(st.pairs, 2);
  EXPECT_EQ(st.empty_responses, 1);
  EXPECT_EQ(render_score_record(parse_json_line(R"({"text": ""})", "s", 1), "s", 1).text, "");
  EXPECT_EQ(render_score_record(parse_json_line(R"({"prompt": "Q", "response": ""})", "s", 1), "s", 1).text,
            "\n\nHuman: Q\n\nAssistant: ");
}

TEST(Data, ReadPairsStopsOrSkipsWithCounts) {
  TempDir d;
  const std::string good = R"({"chosen": "a", "rejected": "b"})";
  const std::string f = d.write("p.jsonl", good + "\n\n" + R"({"chosen": "a"})" + "\n" + good + "\n");
  try {
    read_pairs(f, false, nullptr);
    FAIL() << "expected a DataError";
  } catch (const DataError& e) {
    EXPECT_EQ(std::string(e.what()), f + ":3: missing field \"rejected\"");
  }
  ReadStats st;
  auto pairs = read_pairs(f, true, &st);
  EXPECT_EQ(pairs.size(), 2u);
  EXPECT_EQ(st.skipped, 1);
  EXPECT_EQ(st.blank, 1);
  EXPECT_EQ(pairs[1].line, 4);
}

TEST(Data, GzipAndPlainGiveTheSameLines) {
  TempDir d;
  std::string content;
  for (int i = 0; i < 5000; ++i) content += "{\"i\": " + std::to_string(i) + ", \"pad\": \"" + std::string(i % 97, 'x') + "\"}\n";
  content += "last line without newline";
  const std::string plain = d.write("a.jsonl", content), gz = d.write_gz("a.jsonl.gz", content);
  LineReader a(plain), b(gz);
  std::string la, lb;
  long n = 0;
  while (a.next(la)) {
    ASSERT_TRUE(b.next(lb));
    ASSERT_EQ(la, lb);
    ++n;
  }
  EXPECT_FALSE(b.next(lb));
  EXPECT_EQ(n, 5001);
  EXPECT_EQ(la, "last line without newline");
}

TEST(Data, TruncatedGzipIsAnErrorNotACrash) {
  TempDir d;
  std::string content;
  for (int i = 0; i < 20000; ++i) content += "{\"chosen\": \"a" + std::to_string(i) + "\", \"rejected\": \"b\"}\n";
  const std::string gz = d.write_gz("t.jsonl.gz", content);
  std::string bytes = test::slurp(gz);
  const std::string cut = d.write("cut.jsonl.gz", bytes.substr(0, bytes.size() / 2));
  try {
    read_pairs(cut, false, nullptr);
    FAIL() << "expected a DataError";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("corrupt or truncated gzip"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).rfind(cut, 0), 0u);
  }
}

// What follows the last gzip member: another member (a concatenation of gzip files) is read on;
// zero padding is ignored; anything else is an error naming its offset, not lines silently lost
// (zlib's gz* API ignores such trailing bytes).
TEST(Data, GzipMembersConcatenateAndTrailingBytesAreAnError) {
  TempDir d;
  std::string a, b;
  for (int i = 0; i < 3000; ++i) a += "{\"chosen\": \"a" + std::to_string(i) + "\", \"rejected\": \"b\"}\n";
  for (int i = 0; i < 5; ++i) b += "{\"chosen\": \"c" + std::to_string(i) + "\", \"rejected\": \"d\"}\n";
  const std::string ga = test::slurp(d.write_gz("a.gz", a)), gb = test::slurp(d.write_gz("b.gz", b));
  auto lines = [](const std::string& path) {
    LineReader in(path);
    std::vector<std::string> v;
    for (std::string l; in.next(l);) v.push_back(l);
    return v;
  };
  EXPECT_EQ(lines(d.write("two.jsonl.gz", ga + gb)).size(), 3005u);
  EXPECT_EQ(lines(d.write("padded.jsonl.gz", ga + std::string(70000, '\0'))).size(), 3000u);
  EXPECT_EQ(lines(d.write("two_padded.jsonl.gz", ga + std::string(3, '\0') + gb + std::string(1, '\0'))).size(), 3005u);
  for (const std::string& tail : {b, std::string(10, '\0') + "x", std::string("\x1f"), std::string("\x1f\x8c rest")}) {
    const std::string f = d.write("tail.jsonl.gz", ga + tail);
    const size_t bad_at = ga.size() + tail.find_first_not_of('\0');  // the padding before it is fine
    try {
      lines(f);
      ADD_FAILURE() << "expected a DataError for a tail of " << tail.size() << " bytes";
    } catch (const DataError& e) {
      const std::string what = e.what();
      EXPECT_EQ(what.rfind(f + ":3001: ", 0), 0u) << what;
      EXPECT_NE(what.find("from offset " + std::to_string(bad_at) + " on are not gzip data"), std::string::npos) << what;
    }
  }
  // a second member cut short is a truncation, like a first one
  try {
    lines(d.write("cut.jsonl.gz", ga + gb.substr(0, gb.size() - 6)));
    ADD_FAILURE() << "expected a DataError";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("corrupt or truncated gzip data: unexpected end of file"), std::string::npos) << e.what();
  }
}

// The second line of "{"a": 1}\n" + 3000 x's (+ "\n" when newline) is over a 1024-byte limit. The
// variant without a final newline was found by fuzz/line_reader.cpp: it escaped a limit below the
// 1 MiB buffer.
static void expect_second_line_overlong(bool newline) {
  TempDir d;
  const std::string f = d.write("long.jsonl", "{\"a\": 1}\n" + std::string(3000, 'x') + (newline ? "\n" : ""));
  LineReader r(f, 1024);
  std::string line;
  EXPECT_TRUE(r.next(line));
  try {
    r.next(line);
    FAIL() << "expected a DataError";
  } catch (const DataError& e) {
    EXPECT_EQ(std::string(e.what()), f + ":2: line longer than 1024 bytes");
  }
}

TEST(Data, OverlongLineIsRejected) { expect_second_line_overlong(true); }
TEST(Data, OverlongLastLineWithoutNewlineIsRejected) { expect_second_line_overlong(false); }

// Found by fuzz/pairs.cpp (number overflow, float range) and by a targeted input (nesting): each is a
// DataError naming file:line, where they were a JSON out_of_range (exit 1), an infinite margin or zero
// weight, and a stack overflow when an "id" of 100k nested lists was dumped.
TEST(Data, HostileNumbersAndNestingAreDataErrors) {
  EXPECT_EQ(error_of(R"({"chosen": "a", "rejected": "b", "margin": 1e999})"),
            "f.jsonl:7: invalid JSON: number overflow parsing '1e999'");
  EXPECT_EQ(error_of(R"({"chosen": "a", "rejected": "b", "margin": 1e300})"), "f.jsonl:7: field \"margin\" must be finite");
  EXPECT_EQ(error_of(R"({"chosen": "a", "rejected": "b", "weight": 1e300})"), "f.jsonl:7: field \"weight\" must be finite");
  EXPECT_EQ(error_of(R"({"chosen": "a", "rejected": "b", "weight": 1e-300})"), "f.jsonl:7: field \"weight\" must be > 0");
  const int depth = 100000;
  EXPECT_EQ(error_of(R"({"chosen": "a", "rejected": "b", "id": )" + std::string(depth, '[') + std::string(depth, ']') + "}"),
            "f.jsonl:7: JSON nested deeper than 256 levels");
  const std::string ok_id = std::string(200, '[') + std::string(200, ']');
  EXPECT_EQ(parse(R"({"chosen": "a", "rejected": "b", "id": )" + ok_id + "}").id, ok_id);  // real records nest far less
}

TEST(Data, MissingFileIsADataError) { EXPECT_THROW(LineReader("/nonexistent/x.jsonl"), DataError); }

TEST(Data, DirectoryIsNamedAsOne) {
  TempDir d;
  try {
    LineReader r(d.file(""));
    std::string line;
    r.next(line);
    FAIL() << "expected a DataError";
  } catch (const DataError& e) {
    EXPECT_EQ(std::string(e.what()), d.file("") + ": is a directory, not a file");
  }
  try {
    read_file(d.file(""));  // whole-file reads (constitution, --tokenizer) say why too
    FAIL() << "expected a DataError";
  } catch (const DataError& e) {
    EXPECT_EQ(std::string(e.what()), d.file("") + ": cannot read: Is a directory");
  }
}

TEST(Data, ByteOrderMarksStartingALineAreDropped) {
  TempDir d;
  const std::string bom = "\xEF\xBB\xBF";
  for (const std::string& f : {d.write("b.jsonl", bom + "{\"a\": 1}\n" + bom + "x\n"), d.write_gz("b.jsonl.gz", bom + "{\"a\": 1}"),
                               d.write("only.jsonl", bom)}) {
    LineReader r(f);
    std::string line;
    ASSERT_TRUE(r.next(line)) << f;
    EXPECT_EQ(line, f.find("only") != std::string::npos ? "" : "{\"a\": 1}") << f;
    if (r.next(line)) {
      EXPECT_EQ(line, "x") << "a later line's mark (files joined with cat) is dropped too";
    }
  }
}

TEST(Data, ScoreRecords) {
  auto j = parse_json_line(R"({"prompt": "Q", "response": "Ans"})", "s", 1);
  EXPECT_EQ(render_score_record(j, "s", 1).text, "\n\nHuman: Q\n\nAssistant: Ans");
  EXPECT_EQ(render_score_record(j, "s", 1).response_chars, 3);
  auto t = parse_json_line(R"({"text": "whole"})", "s", 2);
  EXPECT_EQ(render_score_record(t, "s", 2).text, "whole");
  auto bad = parse_json_line(R"({"prompt": "Q"})", "s", 3);
  EXPECT_THROW(render_score_record(bad, "s", 3), DataError);
  EXPECT_EQ(utf8_length("h\xc3\xa9llo"), 5);
}

// Validation sampling: a fixed sample spread over prompts, in file order.
TEST(Data, SampleOverPromptsSpreadsEvenlyAndIsFixed) {
  std::vector<Pair> pairs;
  const int sizes[] = {1, 9, 4, 30, 2, 7, 12, 5};  // pairs per prompt, interleaved in the file
  std::vector<int> left(std::begin(sizes), std::end(sizes));
  for (bool more = true; more;) {
    more = false;
    for (size_t g = 0; g < left.size(); ++g)
      if (left[g] > 0) {
        Pair p;
        p.chosen = "prompt " + std::to_string(g) + "\nA" + std::to_string(left[g]);
        p.rejected = "prompt " + std::to_string(g) + "\nB" + std::to_string(left[g]);
        p.line = static_cast<long>(pairs.size()) + 1;
        pairs.push_back(p);
        more |= --left[g] > 0;
      }
  }
  size_t prompts = 0;
  const std::vector<Pair> s = sample_over_prompts(pairs, 20, &prompts);
  ASSERT_EQ(s.size(), 20u);
  EXPECT_EQ(prompts, 8u);
  std::map<std::string, int> per_prompt;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) {
      EXPECT_LT(s[i - 1].line, s[i].line) << "file order";
    }
    ++per_prompt[s[i].chosen.substr(0, s[i].chosen.find('\n'))];
  }
  // Round robin: every prompt gives min(its size, k) or min(size, k + 1) pairs for one k.
  int lo = 1 << 30, hi = 0;
  for (size_t g = 0; g < 8; ++g) {
    const int got = per_prompt["prompt " + std::to_string(g)];
    if (got < sizes[g]) {
      lo = std::min(lo, got), hi = std::max(hi, got);
    } else {
      EXPECT_EQ(got, sizes[g]);
    }
  }
  EXPECT_LE(hi - lo, 1);
  // Fixed: the same input gives the same sample; a shuffled file gives the same set of pairs.
  std::vector<long> a, b;
  for (const auto& p : s) a.push_back(p.line);
  for (const auto& p : sample_over_prompts(pairs, 20)) b.push_back(p.line);
  EXPECT_EQ(a, b);
  EXPECT_EQ(sample_over_prompts(pairs, 0).size(), pairs.size());
  EXPECT_EQ(sample_over_prompts(pairs, 1000).size(), pairs.size());
  EXPECT_EQ(sample_over_prompts({}, 5).size(), 0u);
}

}  // namespace cairn

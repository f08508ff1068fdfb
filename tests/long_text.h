// Long texts for encode_for_model, which tokenizes only a suffix of a text longer than it can keep
// (docs/model.md#long-texts): real answers from the bundled judgments joined into ~300 KB documents,
// plus documents with few spaces (CJK, digit runs, punctuation runs, special tokens written in the
// text), each checked against the plain definition (tokenize everything, then keep the end).
#pragma once
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cairn/data.h"
#include "cairn/tokenizer.h"
#include "test_paths.h"
#include "util/rng.h"

namespace cairn::test {

inline std::vector<std::string> long_documents() {
  std::vector<std::string> answers;
  LineReader in(source_dir() + "/data/alpaca-eval/valid.jsonl.gz");
  std::string line;
  while (in.next(line) && answers.size() < 4000) {
    const auto j = nlohmann::json::parse(line);
    for (const char* k : {"output_1", "output_2", "instruction"})
      if (j.contains(k) && j[k].is_string()) answers.push_back(j[k]);
  }
  Rng r(17);
  std::vector<std::string> docs(2);
  while (docs[0].size() < 300000) docs[0] += answers[r.below(answers.size())] + "\n\n";
  while (docs[1].size() < 300000) {  // a chat transcript, special tokens included
    docs[1] += "<|im_start|>user\n" + answers[r.below(answers.size())] + "<|im_end|>\n<|im_start|>assistant\n" +
               answers[r.below(answers.size())] + "<|im_end|>\n";
  }
  std::string few_spaces;  // long stretches with no cut point: the search must go further back
  while (few_spaces.size() < 200000) {
    few_spaces += std::string(r.below(3) ? "字符串和汉字的文本" : "1234567890123") + (r.below(40) ? "" : " then words ");
    if (r.below(500) == 0) few_spaces += std::string(5000, '!');
  }
  docs.push_back(few_spaces);
  docs.push_back("short " + answers[0]);
  return docs;
}

// encode_for_model(text, n) == the last n of [BOS] + encode(text) + [EOS].
inline void expect_long_text_encoding_exact(const Tokenizer& tok, const std::vector<std::string>& docs) {
  for (size_t d = 0; d < docs.size(); ++d) {
    const std::vector<int32_t> ids = tok.encode(docs[d]);
    std::vector<int32_t> full;
    if (tok.add_bos()) full.push_back(tok.bos_id());
    full.insert(full.end(), ids.begin(), ids.end());
    if (tok.add_eos()) full.push_back(tok.eos_id());
    for (int n : {8, 100, 512, 2048, 1 << 20}) {
      const size_t keep = std::min(full.size(), static_cast<size_t>(n));
      const std::vector<int32_t> want(full.end() - keep, full.end());
      bool cut = false;
      EXPECT_EQ(tok.encode_for_model(docs[d], n, &cut), want) << "document " << d << ", max_seq_len " << n;
      EXPECT_EQ(cut, full.size() > static_cast<size_t>(n)) << "document " << d << ", max_seq_len " << n;
    }
  }
}

}  // namespace cairn::test

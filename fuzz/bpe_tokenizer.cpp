// The byte-level BPE front end (src/data/bpe_tokenizer.cpp): input = tokenizer.json NUL
// tokenizer_config.json NUL text (an empty config part means no tokenizer_config.json beside it).
// load_bpe_tokenizer, then encode / encode_for_model / decode of the text, then save() and load the
// saved file again. Invariants (include/cairn/bpe_tokenizer.h): every id is < vocab_size(), BOS, EOS
// and pad are tokens, encode_for_model respects max_seq_len, and the saved tokenizer encodes the text
// to the same ids with the same BOS/EOS/pad ("save() writes back exactly what it executes").
#include "cairn/bpe_tokenizer.h"
#include "fuzz.h"

using namespace cairn;

namespace {

std::vector<int32_t> encode_checked(const Tokenizer& tok, const std::string& text) {
  std::vector<int32_t> ids = tok.encode(text);
  for (int32_t id : ids) fuzz::check(id >= 0 && id < tok.vocab_size(), "encode produced id " + std::to_string(id));
  return ids;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const fuzz::ScratchDir in("bpe_in"), out("bpe_out");
  const std::vector<std::string> p = fuzz::parts(data, size, 3);
  const std::string& text = p[2];
  const std::string path = in.write("tokenizer.json", p[0]);
  if (p[1].empty())
    in.remove("tokenizer_config.json");
  else
    in.write("tokenizer_config.json", p[1]);
  std::unique_ptr<Tokenizer> tok;
  if (!fuzz::expect_data_error([&] { tok = load_bpe_tokenizer(path); })) return 0;
  const int V = tok->vocab_size();
  for (int id : {tok->bos_id(), tok->eos_id(), tok->pad_id()})
    fuzz::check(id >= 0 && id < V, "special id " + std::to_string(id) + " outside the vocabulary of " + std::to_string(V));
  std::vector<int32_t> ids;
  if (!fuzz::expect_data_error([&] { ids = encode_checked(*tok, text); })) return 0;  // PCRE2 limits, unk
  tok->decode(ids);
  bool truncated = false;
  const std::vector<int32_t> model_ids = tok->encode_for_model(text, 8, &truncated);
  fuzz::check(model_ids.size() <= 8, "encode_for_model exceeded max_seq_len");

  tok->save(out.file("tokenizer.json"));
  std::unique_ptr<Tokenizer> again;
  try {
    again = load_bpe_tokenizer(out.file("tokenizer.json"));
  } catch (const DataError& e) {
    fuzz::finding(std::string("the saved tokenizer.json does not load: ") + e.what());
  }
  fuzz::check(again->vocab_size() == V && again->bos_id() == tok->bos_id() && again->eos_id() == tok->eos_id() &&
                  again->pad_id() == tok->pad_id() && again->add_bos() == tok->add_bos() &&
                  again->add_eos() == tok->add_eos(),
              "the saved tokenizer has other special tokens");
  fuzz::check(encode_checked(*again, text) == ids, "the saved tokenizer encodes the text differently");
  return 0;
}

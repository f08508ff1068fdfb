// Byte-level BPE tokenizer, see include/cairn/bpe_tokenizer.h.
#include "cairn/bpe_tokenizer.h"

#include "cairn/errors.h"

namespace cairn {

std::unique_ptr<Tokenizer> load_bpe_tokenizer(const std::string& path) {
  throw DataError(path, 0, "byte-level BPE tokenizers are not supported yet");
}

}  // namespace cairn

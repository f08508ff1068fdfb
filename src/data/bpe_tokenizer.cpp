// Byte-level BPE tokenizer, see include/cairn/bpe_tokenizer.h and docs/tokenizers.md.
//
// One engine behind both factories: a tokenizer.json (read, or built by make_bpe_tokenizer from GGUF
// metadata) is validated into a BpeTokenizer, and save() writes back exactly what it executes. Encoding
// follows Hugging Face tokenizers 0.19 step for step:
//   1. invalid UTF-8 → U+FFFD, one per maximal ill-formed subpart (Python's "replace");
//   2. added tokens split out of the text: first those with normalized=false, then those with
//      normalized=true, each pass leftmost-longest (aho-corasick LeftmostLongest), with single_word,
//      lstrip and rstrip as AddedVocabulary::find_matches applies them;
//   3. the pre-tokenizer steps (Split, Digits; ByteLevel last) on each remaining piece: PCRE2 (UTF + UCP,
//      JIT) emulating Oniguruma's find_iter (Ruby-syntax ^/$ are line anchors; \s is Oniguruma's set,
//      U+0009–000D, U+0085 and \p{Z}: PCRE2's UCP \s would also take U+180E);
//   4. per word, HF's BPE merge loop (a heap by (rank, position), stale entries skipped) over the byte
//      symbols of GPT-2's bytes_to_unicode; bytes missing from the vocabulary are dropped (unk_token null)
//      or become unk_token; words are cached (bounded, one table per thread: no locks).
// Invariants: every id produced or accepted is < vocab_size(); encode() accepts any bytes; the only
// errors it raises are DataErrors for a hostile regex that exhausts PCRE2's match limit or an unk_token
// that is not in the vocabulary.
#include "cairn/bpe_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "cairn/errors.h"
#include "cairn/io.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

namespace cairn {
namespace {

constexpr int64_t kMaxId = int64_t(1) << 24;             // real vocabularies are < 300k tokens
constexpr uintmax_t kMaxFileBytes = uintmax_t(1) << 30;  // a 256k-token tokenizer.json is ~20 MB
constexpr int kMaxJsonDepth = 64;

// The regexes of the supported pre-tokenizers, as Hugging Face tokenizer.json files write them.
const char* const kGpt2Regex = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const char* const kLlama3Regex = R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3})"
                                 R"(| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kQwen2Regex = R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N})"
                                R"(| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Oniguruma's (and Rust regex's) \s under Unicode, spelled with PCRE2 classes.
const char* const kOnigSpace = R"(\t-\r\x{85}\p{Z})";

std::string show(std::string_view s) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size() && i < 80; ++i) {
    const unsigned char c = s[i];
    if (c == '"' || c == '\\')
      out += '\\', out += static_cast<char>(c);
    else if (c < 0x20)
      out += "\\x" + std::string(1, "0123456789abcdef"[c >> 4]) + "0123456789abcdef"[c & 15];
    else
      out += static_cast<char>(c);
  }
  return out + (s.size() > 80 ? "…\"" : "\"");
}

// ---- UTF-8 -------------------------------------------------------------------------------------------

// 0 when a well-formed character starts at s[i] (its length in *len), else the length of the maximal
// ill-formed subpart there (Unicode §3.9, Table 3-7), which becomes one U+FFFD.
size_t utf8_at(const unsigned char* s, size_t n, size_t i, size_t* len) {
  const unsigned c = s[i];
  if (c < 0x80) return *len = 1, 0;
  size_t need;
  unsigned lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF)
    need = 1;
  else if (c == 0xE0)
    need = 2, lo = 0xA0;
  else if (c == 0xED)
    need = 2, hi = 0x9F;
  else if (c >= 0xE1 && c <= 0xEF)
    need = 2;
  else if (c == 0xF0)
    need = 3, lo = 0x90;
  else if (c == 0xF4)
    need = 3, hi = 0x8F;
  else if (c >= 0xF1 && c <= 0xF3)
    need = 3;
  else
    return 1;
  for (size_t k = 1; k <= need; ++k) {
    if (i + k >= n) return k;
    const unsigned d = s[i + k];
    if (d < (k == 1 ? lo : 0x80u) || d > (k == 1 ? hi : 0xBFu)) return k;
  }
  return *len = need + 1, 0;
}

bool is_valid_utf8(std::string_view t, size_t* first_bad = nullptr) {
  const auto* s = reinterpret_cast<const unsigned char*>(t.data());
  const size_t n = t.size();
  size_t i = 0, len = 0;
  while (i < n) {
    if (i + 8 <= n) {
      uint64_t w;
      std::memcpy(&w, s + i, 8);
      if ((w & 0x8080808080808080ull) == 0) {
        i += 8;
        continue;
      }
    }
    if (s[i] < 0x80) {
      ++i;
      continue;
    }
    if (utf8_at(s, n, i, &len) != 0) {
      if (first_bad) *first_bad = i;
      return false;
    }
    i += len;
  }
  return true;
}

// text itself when it is valid UTF-8, else a copy in *fixed with U+FFFD for each maximal ill-formed subpart.
std::string_view valid_utf8(std::string_view text, std::string* fixed) {
  size_t i = 0;
  if (is_valid_utf8(text, &i)) return text;
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  fixed->assign(text.data(), i);
  size_t len = 0;
  while (i < text.size()) {
    if (const size_t bad = utf8_at(s, text.size(), i, &len)) {
      fixed->append("\xEF\xBF\xBD");
      i += bad;
    } else {
      fixed->append(text.data() + i, len);
      i += len;
    }
  }
  return *fixed;
}

size_t utf8_len_at(const char* s, size_t i, size_t n) {  // s is valid UTF-8
  const unsigned char c = s[i];
  const size_t l = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
  return std::min(l, n - i);
}

uint32_t utf8_decode(const char* s, size_t len) {
  const auto* u = reinterpret_cast<const unsigned char*>(s);
  if (len == 1) return u[0];
  uint32_t cp = u[0] & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
  for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (u[k] & 0x3F);
  return cp;
}

void utf8_append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// ---- GPT-2's bytes_to_unicode ------------------------------------------------------------------------

// Printable bytes map to themselves, the 68 others (in byte order) to U+0100 onwards: U+0100..U+0143.
struct ByteMap {
  std::array<uint32_t, 256> cp{};
  std::array<int16_t, 0x144> byte{};
  ByteMap() {
    byte.fill(-1);
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      cp[b] = printable ? b : 256 + n++;
      byte[cp[b]] = static_cast<int16_t>(b);
    }
  }
};
const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}

// The raw bytes of a byte-mapped token; false when a character is outside the mapping. tok is valid UTF-8.
bool unmap_token(std::string_view tok, std::string* raw) {
  raw->clear();
  for (size_t i = 0; i < tok.size();) {
    const size_t l = utf8_len_at(tok.data(), i, tok.size());
    const uint32_t cp = utf8_decode(tok.data() + i, l);
    if (cp >= byte_map().byte.size() || byte_map().byte[cp] < 0) return false;
    *raw += static_cast<char>(byte_map().byte[cp]);
    i += l;
  }
  return true;
}

// ---- PCRE2 -------------------------------------------------------------------------------------------

// Rewrites \s and \S (outside classes; \s inside classes too) to Oniguruma's whitespace set.
std::string onig_whitespace(const std::string& p) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char d = p[i + 1];
      if (d == 'Q') {  // \Q...\E is literal
        const size_t e = p.find("\\E", i + 2);
        const size_t stop = e == std::string::npos ? p.size() : e + 2;
        out.append(p, i, stop - i);
        i = stop - 1;
        continue;
      }
      if (d == 's')
        out += in_class ? std::string(kOnigSpace) : "[" + std::string(kOnigSpace) + "]";
      else if (d == 'S' && !in_class)
        out += "[^" + std::string(kOnigSpace) + "]";
      else
        out.append(p, i, 2);
      ++i;
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];  // a leading ']' is literal
      continue;
    }
    if (in_class && c == '[' && i + 1 < p.size() && p[i + 1] == ':') {  // [:alpha:]
      const size_t e = p.find(":]", i + 2);
      if (e != std::string::npos) {
        out.append(p, i, e + 2 - i);
        i = e + 1;
        continue;
      }
    }
    if (in_class && c == ']') in_class = false;
    out += c;
  }
  return out;
}

// Per-thread match data and JIT stack, shared by all patterns (one match at a time per thread).
struct MatchScratch {
  pcre2_match_data* md = pcre2_match_data_create(1, nullptr);
  pcre2_match_context* mc = pcre2_match_context_create(nullptr);
  pcre2_jit_stack* js = pcre2_jit_stack_create(32 * 1024, 8 << 20, nullptr);
  MatchScratch() {
    if (!md || !mc) throw std::bad_alloc();
    if (js) pcre2_jit_stack_assign(mc, nullptr, js);
  }
  ~MatchScratch() {
    pcre2_match_data_free(md);
    pcre2_match_context_free(mc);
    if (js) pcre2_jit_stack_free(js);
  }
};
MatchScratch& scratch() {
  thread_local MatchScratch s;
  return s;
}

struct Span {
  size_t b, e;
};

class Regex {
 public:
  // literal: the pattern is a plain string (Split with a String pattern).
  Regex(const std::string& pattern, bool literal, const std::string& source, const std::string& what)
      : source_(source) {
    const std::string p = literal ? pattern : onig_whitespace(pattern);
    const uint32_t opts =
        literal ? (PCRE2_UTF | PCRE2_LITERAL) : (PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE | PCRE2_NEVER_BACKSLASH_C);
    int err = 0;
    PCRE2_SIZE off = 0;
    pcre2_compile_context* cc = pcre2_compile_context_create(nullptr);
    if (!cc) throw std::bad_alloc();
    pcre2_set_newline(cc, PCRE2_NEWLINE_LF);  // Oniguruma's: ^ $ . know only \n
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(p.data()), p.size(), opts, &err, &off, cc);
    pcre2_compile_context_free(cc);
    if (!code_) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      throw DataError(source, 0,
                      what + ": PCRE2 rejects the regex " + show(pattern) + " (" + reinterpret_cast<const char*>(msg) +
                          " at offset " + std::to_string(off) + ")");
    }
    jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;
  }
  ~Regex() { pcre2_code_free(code_); }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // The matches in s[0, n) (valid UTF-8) as Oniguruma's find_iter yields them: leftmost-first,
  // non-overlapping; an empty match right where the previous match ended is skipped by one character.
  void find_all(const char* s, size_t n, std::vector<Span>& out) const {
    out.clear();
    MatchScratch& sc = scratch();
    const auto* subj = reinterpret_cast<PCRE2_SPTR>(s);
    size_t pos = 0, last_end = SIZE_MAX;
    while (pos <= n) {
      const int rc = jit_ ? pcre2_jit_match(code_, subj, n, pos, 0, sc.md, sc.mc)
                          : pcre2_match(code_, subj, n, pos, PCRE2_NO_UTF_CHECK, sc.md, sc.mc);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof msg);
        throw DataError(
            source_, 0,
            std::string("pre-tokenizer regex failed on a text (PCRE2: ") + reinterpret_cast<const char*>(msg) + ")");
      }
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(sc.md);
      const size_t b = ov[0], e = ov[1];
      if (b < pos || e < b || e > n) throw DataError(source_, 0, "pre-tokenizer regex produced an invalid match");
      if (b == e && e == last_end) {
        if (pos >= n) break;
        pos += utf8_len_at(s, pos, n);
        continue;
      }
      out.push_back({b, e});
      pos = last_end = e;
    }
  }

  // Whether the whole of s[0, n) matches (used with single-character classes).
  bool matches_whole(const char* s, size_t n) const {
    MatchScratch& sc = scratch();
    const int rc =
        pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(s), n, 0, PCRE2_NO_UTF_CHECK | PCRE2_ANCHORED, sc.md, sc.mc);
    return rc >= 0 && pcre2_get_ovector_pointer(sc.md)[1] == n;
  }

 private:
  std::string source_;
  pcre2_code* code_ = nullptr;
  bool jit_ = false;
};

// Rust regex's \w and \s (what tokenizers uses for single_word, lstrip and rstrip).
const Regex& word_char() {
  static const Regex r(R"([\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\x{200C}\x{200D}])", false, "bpe", "word class");
  return r;
}
const Regex& space_char() {
  static const Regex r(std::string("[") + kOnigSpace + "]", false, "bpe", "space class");
  return r;
}
bool last_char_is(const Regex& cls, std::string_view s) {
  if (s.empty()) return false;
  size_t i = s.size() - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  return cls.matches_whole(s.data() + i, s.size() - i);
}
bool first_char_is(const Regex& cls, std::string_view s) {
  return !s.empty() && cls.matches_whole(s.data(), utf8_len_at(s.data(), 0, s.size()));
}

// ---- literal matching for added tokens ---------------------------------------------------------------

// Leftmost-longest matching of a set of strings, as aho-corasick's MatchKind::LeftmostLongest.
class LiteralSet {
 public:
  LiteralSet() { root_.fill(-1); }
  bool empty() const { return count_ == 0; }
  void add(std::string_view s, int value) {
    if (s.empty()) return;
    ++count_;
    int node = root_[static_cast<unsigned char>(s[0])];
    if (node < 0) node = root_[static_cast<unsigned char>(s[0])] = new_node();
    for (size_t i = 1; i < s.size(); ++i) {
      int next = child(node, static_cast<unsigned char>(s[i]));
      if (next < 0) {
        next = new_node();
        nodes_[node].kids.emplace_back(static_cast<unsigned char>(s[i]), next);
      }
      node = next;
    }
    nodes_[node].value = value;
  }
  // The leftmost, then longest, match in s[from, n): its span and value.
  bool find(std::string_view s, size_t from, Span* span, int* value) const {
    for (size_t i = from; i < s.size(); ++i) {
      int node = root_[static_cast<unsigned char>(s[i])];
      if (node < 0) continue;
      int best = -1;
      size_t best_end = 0;
      for (size_t j = i + 1;; ++j) {
        if (nodes_[node].value >= 0) best = nodes_[node].value, best_end = j;
        if (j >= s.size() || (node = child(node, static_cast<unsigned char>(s[j]))) < 0) break;
      }
      if (best >= 0) {
        *span = {i, best_end};
        *value = best;
        return true;
      }
    }
    return false;
  }

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int>> kids;
    int value = -1;
  };
  int new_node() {
    nodes_.emplace_back();
    return static_cast<int>(nodes_.size()) - 1;
  }
  int child(int node, unsigned char c) const {
    for (const auto& [k, v] : nodes_[node].kids)
      if (k == c) return v;
    return -1;
  }
  std::array<int, 256> root_;
  std::vector<Node> nodes_;
  size_t count_ = 0;
};

// ---- merges ------------------------------------------------------------------------------------------

// (left id, right id) → (rank, merged id), open addressing. A repeated pair keeps its last entry, as
// tokenizers' HashMap does.
class MergeTable {
 public:
  void build(const std::vector<std::array<int32_t, 3>>& merges) {
    size_t cap = 16;
    while (cap < merges.size() * 2) cap <<= 1;
    slots_.assign(cap, Slot{kEmpty, 0, 0});
    mask_ = cap - 1;
    for (size_t r = 0; r < merges.size(); ++r) {
      const uint64_t key = pack(merges[r][0], merges[r][1]);
      size_t i = hash(key);
      while (slots_[i].key != kEmpty && slots_[i].key != key) i = (i + 1) & mask_;
      slots_[i] = {key, static_cast<uint32_t>(r), merges[r][2]};
    }
  }
  bool find(int32_t a, int32_t b, uint32_t* rank, int32_t* id) const {
    const uint64_t key = pack(a, b);
    for (size_t i = hash(key);; i = (i + 1) & mask_) {
      if (slots_[i].key == key) return *rank = slots_[i].rank, *id = slots_[i].id, true;
      if (slots_[i].key == kEmpty) return false;
    }
  }

 private:
  struct Slot {
    uint64_t key;
    uint32_t rank;
    int32_t id;
  };
  static constexpr uint64_t kEmpty = ~uint64_t(0);
  static uint64_t pack(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
  size_t hash(uint64_t k) const { return static_cast<size_t>((k * 0x9E3779B97F4A7C15ull) >> 40) & mask_; }
  std::vector<Slot> slots_;
  size_t mask_ = 0;
};

// Words → ids, bounded. One flat open-addressing table per thread and tokenizer instance, so
// lookups take no lock and touch one slot and a few arena bytes (docs/tokenizers.md#speed: twice the
// speed of mutex-guarded shared maps on two threads). A thread that alternates between tokenizers
// keeps only the latest one's table (each instance has its own id, so a table is never read for
// another tokenizer, even one at a freed one's address).
class WordCache {
 public:
  WordCache() : owner_(next_owner()) {}
  WordCache(const WordCache&) : owner_(next_owner()) {}
  WordCache& operator=(const WordCache&) { return *this; }  // keeps its own id: tables are never shared

  bool get(std::string_view w, uint64_t h, std::vector<int32_t>& out) const {
    const Table& t = table();
    const size_t mask = t.slots.size() - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
      const Slot& s = t.slots[i];
      if (s.len == 0) return false;
      if (s.hash == h && s.len == w.size() && std::memcmp(t.keys.data() + s.key, w.data(), w.size()) == 0) {
        out.insert(out.end(), t.ids.begin() + s.id, t.ids.begin() + s.id + s.n);
        return true;
      }
    }
  }
  void put(std::string_view w, uint64_t h, const int32_t* ids, size_t n) const {
    if (w.empty() || w.size() > 0xffff || n > 0xffff) return;
    Table& t = table();
    if (2 * (t.used + 1) > t.slots.size()) {
      if (t.slots.size() < kMaxSlots) t.rehash(2 * t.slots.size());
      else t.clear(kMaxSlots);
    }
    Slot& s = t.free_slot(h);
    s = {h, static_cast<uint32_t>(t.keys.size()), static_cast<uint32_t>(t.ids.size()),
         static_cast<uint16_t>(w.size()), static_cast<uint16_t>(n)};
    t.keys.append(w);
    t.ids.insert(t.ids.end(), ids, ids + n);
    ++t.used;
  }

 private:
  // A table starts small and doubles up to kMaxSlots (2^17 words, a few MB): the words of a large
  // corpus fit, and a thread that encodes little holds little. Kept at most half full.
  static constexpr size_t kMinSlots = size_t(1) << 12, kMaxSlots = size_t(1) << 18;
  struct Slot {
    uint64_t hash;
    uint32_t key, id;  // offsets into keys / ids
    uint16_t len, n;   // len 0: empty
  };
  struct Table {
    uint64_t owner = 0;
    std::vector<Slot> slots;
    std::string keys;
    std::vector<int32_t> ids;
    size_t used = 0;
    void clear(size_t n_slots) {
      slots.assign(n_slots, Slot{});
      keys.clear(), ids.clear(), used = 0;
    }
    Slot& free_slot(uint64_t h) {
      const size_t mask = slots.size() - 1;
      size_t i = h & mask;
      while (slots[i].len != 0) i = (i + 1) & mask;
      return slots[i];
    }
    void rehash(size_t n_slots) {
      std::vector<Slot> old(n_slots, Slot{});
      old.swap(slots);
      for (const Slot& s : old)
        if (s.len != 0) free_slot(s.hash) = s;
    }
  };
  static uint64_t next_owner() {
    static std::atomic<uint64_t> n{0};
    return ++n;
  }
  Table& table() const {
    thread_local Table t;
    if (t.owner != owner_) t.clear(kMinSlots), t.owner = owner_;
    return t;
  }
  uint64_t owner_;
};

// ---- JSON helpers ------------------------------------------------------------------------------------

json parse_json(const std::string& text, const std::string& source) {
  json::parser_callback_t cb = [&source](int depth, json::parse_event_t, json&) {
    if (depth > kMaxJsonDepth) throw DataError(source, 0, "JSON nested deeper than 64 levels");
    return true;
  };
  try {
    return json::parse(text, cb);
  } catch (const json::exception& e) {
    throw DataError(source, 0, std::string("not valid JSON (") + e.what() + ")");
  }
}

// Reads keys of one JSON object with errors that name the place ("model.vocab", ...).
class Obj {
 public:
  Obj(const json& j, std::string where, const std::string& source) : j_(j), where_(std::move(where)), src_(source) {
    if (!j.is_object()) fail("must be an object, not " + std::string(j.type_name()));
  }
  [[noreturn]] void fail(const std::string& msg) const { throw DataError(src_, 0, where_ + ": " + msg); }
  const json* get(const char* key) const {  // nullptr when absent or null
    auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }
  bool flag(const char* key, bool dflt) const {
    const json* v = get(key);
    if (!v) return dflt;
    if (!v->is_boolean()) fail(std::string(key) + " must be true or false");
    return v->get<bool>();
  }
  std::string str(const char* key) const {
    const json* v = get(key);
    if (!v || !v->is_string()) fail(std::string(key) + " must be a string");
    return v->get<std::string>();
  }
  std::string type() const { return get("type") && get("type")->is_string() ? get("type")->get<std::string>() : ""; }
  const std::string& where() const { return where_; }
  const std::string& source() const { return src_; }

 private:
  const json& j_;
  std::string where_;
  const std::string& src_;
};

int32_t as_id(const json& v, const std::string& where, const std::string& source) {
  if (!v.is_number_integer()) throw DataError(source, 0, where + " must be a non-negative integer id");
  if (v.is_number_unsigned() ? v.get<uint64_t>() >= uint64_t(kMaxId)
                             : (v.get<int64_t>() < 0 || v.get<int64_t>() >= kMaxId))
    throw DataError(source, 0, where + " = " + v.dump() + " is out of range (ids must be in [0, 2^24))");
  return static_cast<int32_t>(v.get<int64_t>());
}

// ---- the tokenizer -----------------------------------------------------------------------------------

enum class Behavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };
const char* const kBehaviorNames[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};

struct Step {
  enum Kind { kSplit, kDigits, kByteLevel } kind = kSplit;
  std::unique_ptr<Regex> re;  // null for ByteLevel without use_regex
  Behavior behavior = Behavior::Isolated;
  bool invert = false;
  std::string pattern;   // Split: the pattern as written
  bool literal = false;  // Split: a String pattern
  bool individual_digits = false;
  bool add_prefix_space = false, trim_offsets = true, use_regex = true;  // ByteLevel
};

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false, single_word = false, lstrip = false, rstrip = false, normalized = true;
};

// BOS/EOS/pad as given by the caller (make_bpe_tokenizer), before the file's own rules; -1 = not given.
struct SpecialIds {
  int bos = -1, eos = -1, pad = -1;
};

class BpeTokenizer final : public Tokenizer {
 public:
  BpeTokenizer(const json& j, const std::string& source, const SpecialIds& given, const std::string& config_path);

  std::string kind() const override { return "bpe"; }
  std::vector<int32_t> encode(const std::string& text) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  int vocab_size() const override { return vocab_size_; }
  int bos_id() const override { return bos_; }
  int eos_id() const override { return eos_; }
  int pad_id() const override { return pad_; }
  bool add_bos() const override { return add_bos_; }
  bool add_eos() const override { return add_eos_; }
  void save(const std::string& path) const override;
  bool starts_token_at_space_letter() const override;

 private:
  void parse_model(const json& m);
  void parse_added(const json& a);
  void parse_pre(const json& p, int depth);
  void parse_post(const json& p);
  void resolve_special(const SpecialIds& given, const std::string& config_path);
  int32_t token_id(const std::string& content) const;  // added tokens first, then the model vocab; -1
  std::string token_text(int id) const;                // the token's text (added content or vocab string)
  std::string to_text() const;

  void split_added(const LiteralSet& set, std::string_view s, const std::function<void(size_t, size_t)>& on_text,
                   std::vector<int32_t>& ids) const;
  void encode_text(std::string_view s, std::vector<int32_t>& ids) const;
  void apply_split(const Step& st, std::string_view p, std::vector<std::string_view>& out, std::vector<Span>& m) const;
  void bpe_word(std::string_view w, std::vector<int32_t>& ids) const;
  void merge_word(std::string_view w, std::vector<int32_t>& ids) const;

  std::string source_;
  // The model, as read (written back by save()).
  std::vector<std::pair<std::string, int32_t>> vocab_;       // model.vocab, by id
  std::vector<std::pair<std::string, std::string>> merges_;  // by rank
  std::unordered_map<std::string, int32_t> vocab_map_;
  std::vector<AddedToken> added_;
  std::unordered_map<std::string, size_t> added_map_;
  std::vector<Step> steps_;
  bool has_unk_ = false, unk_in_vocab_ = false, fuse_unk_ = false, ignore_merges_ = false;
  std::string unk_token_;
  int32_t unk_id_ = -1;
  // Derived.
  int vocab_size_ = 0;
  int bos_ = -1, eos_ = -1, pad_ = -1;
  bool add_bos_ = false, add_eos_ = false;
  std::array<int32_t, 256> byte_id_{};
  MergeTable merge_table_;
  std::unordered_map<std::string, int32_t> raw_vocab_;  // ignore_merges: raw bytes of a word → id
  std::vector<std::string> id_bytes_;                   // decode: the bytes of each id
  std::vector<char> id_known_;
  LiteralSet raw_added_, normalized_added_;
  mutable WordCache cache_;
};

BpeTokenizer::BpeTokenizer(const json& j, const std::string& source, const SpecialIds& given,
                           const std::string& config_path)
    : source_(source) {
  Obj top(j, "tokenizer.json", source);
  if (const json* v = top.get("version"); v && (!v->is_string() || v->get<std::string>() != "1.0"))
    top.fail("version " + v->dump() + " is not supported (expected \"1.0\")");
  if (const json* n = top.get("normalizer")) {
    Obj o(*n, "normalizer", source);
    const std::string t = o.type();
    const json* list = o.get("normalizers");
    const bool empty_seq = t == "Sequence" && list && list->is_array() && list->empty();
    std::string name = t.empty() ? n->dump().substr(0, 80) : t;
    if (t == "Sequence" && list && list->is_array())
      for (const json& x : *list)
        name += std::string(&x == &(*list)[0] ? " [" : ", ") +
                (x.is_object() && x.contains("type") ? x["type"].dump() : "?") + (&x == &list->back() ? "]" : "");
    if (!empty_seq)
      o.fail("normalizer " + name +
             " is not supported (cairn does no Unicode normalization; only a null normalizer is accepted)");
  }
  const json* m = top.get("model");
  if (!m) top.fail("no model");
  parse_model(*m);
  if (const json* a = top.get("added_tokens")) parse_added(*a);
  const json* p = top.get("pre_tokenizer");
  if (!p) top.fail("no pre_tokenizer: cairn reads byte-level BPE, whose pre_tokenizer ends with ByteLevel");
  parse_pre(*p, 0);
  if (steps_.empty() || steps_.back().kind != Step::kByteLevel)
    top.fail("pre_tokenizer must end with ByteLevel (a byte-level BPE); this one does not");
  for (size_t i = 0; i + 1 < steps_.size(); ++i)
    if (steps_[i].kind == Step::kByteLevel) top.fail("pre_tokenizer: ByteLevel must be the last step");
  if (const json* d = top.get("decoder")) {
    Obj o(*d, "decoder", source);
    if (o.type() != "ByteLevel")
      o.fail("decoder " + show(o.type().empty() ? d->dump() : o.type()) + " is not supported (only ByteLevel)");
  }
  if (const json* pp = top.get("post_processor")) parse_post(*pp);

  // Vocabulary size, decode table, byte symbols, merges.
  for (const auto& [tok, id] : vocab_) vocab_size_ = std::max(vocab_size_, id + 1);
  for (const auto& a : added_) vocab_size_ = std::max(vocab_size_, a.id + 1);
  const size_t tokens = vocab_.size() + added_.size();
  if (size_t(vocab_size_) > tokens + 65536)
    top.fail("ids are sparse: the largest is " + std::to_string(vocab_size_ - 1) + " for " + std::to_string(tokens) +
             " tokens");
  id_bytes_.assign(vocab_size_, std::string());
  id_known_.assign(vocab_size_, 0);
  std::string raw;
  for (const auto& [tok, id] : vocab_) {
    // As tokenizers' ByteLevel decoder: a token with a character outside the mapping keeps its UTF-8.
    id_bytes_[id] = unmap_token(tok, &raw) ? raw : tok;
    id_known_[id] = 1;
    if (ignore_merges_ && unmap_token(tok, &raw)) raw_vocab_.emplace(raw, id);
  }
  for (const auto& a : added_) id_bytes_[a.id] = a.content, id_known_[a.id] = 1;
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    utf8_append(ch, byte_map().cp[b]);
    auto it = vocab_map_.find(ch);
    byte_id_[b] = it == vocab_map_.end() ? -1 : it->second;
  }
  std::vector<std::array<int32_t, 3>> table;
  table.reserve(merges_.size());
  for (size_t r = 0; r < merges_.size(); ++r) {
    const std::string &a = merges_[r].first, &b = merges_[r].second;  // not a structured binding: clang 14 cannot capture one
    auto ia = vocab_map_.find(a), ib = vocab_map_.find(b), ic = vocab_map_.find(a + b);
    auto missing = [&](const std::string& what) {
      return DataError(
          source, 0,
          "model.merges[" + std::to_string(r) + "] " + show(a + " " + b) + ": " + what + " is not in the vocab");
    };
    if (ia == vocab_map_.end()) throw missing(show(a));
    if (ib == vocab_map_.end()) throw missing(show(b));
    if (ic == vocab_map_.end()) throw missing("the merged " + show(a + b));
    table.push_back({ia->second, ib->second, ic->second});
  }
  merge_table_.build(table);
  for (size_t i = 0; i < added_.size(); ++i)
    (added_[i].normalized ? normalized_added_ : raw_added_).add(added_[i].content, static_cast<int>(i));
  resolve_special(given, config_path);
}

void BpeTokenizer::parse_model(const json& mj) {
  Obj m(mj, "model", source_);
  const std::string type = m.type();
  if (!type.empty() && type != "BPE")
    m.fail("model type " + show(type) + " is not supported (cairn reads byte-level BPE)");
  if (type.empty() && !(m.get("merges") && m.get("vocab")))
    m.fail("no type, and not a BPE model (no vocab and merges)");
  if (const json* d = m.get("dropout"); d && !(d->is_number() && d->get<double>() == 0.0))
    m.fail("dropout " + d->dump() + " is not supported (BPE dropout is random)");
  if (m.flag("byte_fallback", false))
    m.fail("byte_fallback true is not supported (a byte-level vocabulary needs none)");
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (const json* v = m.get(k); v && !(v->is_string() && v->get<std::string>().empty()))
      m.fail(std::string(k) + " " + v->dump() + " is not supported");
  fuse_unk_ = m.flag("fuse_unk", false);
  ignore_merges_ = m.flag("ignore_merges", false);
  if (m.get("unk_token")) has_unk_ = true, unk_token_ = m.str("unk_token");

  const json* vocab = m.get("vocab");
  if (!vocab || !vocab->is_object()) m.fail("vocab must be an object (token → id)");
  if (vocab->size() > size_t(kMaxId)) m.fail("vocab has " + std::to_string(vocab->size()) + " tokens, over 2^24");
  std::unordered_map<int32_t, const std::string*> by_id;
  vocab_.reserve(vocab->size());
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    const int32_t id = as_id(it.value(), "model.vocab[" + show(it.key()) + "]", source_);
    vocab_.emplace_back(it.key(), id);
  }
  vocab_map_.reserve(vocab_.size());
  for (const auto& [tok, id] : vocab_) {
    vocab_map_.emplace(tok, id);
    auto [it, fresh] = by_id.emplace(id, &tok);
    if (!fresh)
      m.fail("vocab id " + std::to_string(id) + " is given to both " + show(*it->second) + " and " + show(tok));
  }
  std::sort(vocab_.begin(), vocab_.end(), [](const auto& a, const auto& b) { return a.second < b.second; });

  const json* merges = m.get("merges");
  if (!merges || !merges->is_array()) m.fail("merges must be an array");
  if (merges->size() > size_t(kMaxId)) m.fail("merges has " + std::to_string(merges->size()) + " entries, over 2^24");
  merges_.reserve(merges->size());
  for (size_t r = 0; r < merges->size(); ++r) {
    const json& e = (*merges)[r];
    const std::string where = "merges[" + std::to_string(r) + "]";
    if (e.is_string()) {
      const std::string s = e.get<std::string>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        m.fail(where + " " + show(s) + " is not two tokens separated by one space");
      merges_.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      merges_.emplace_back(e[0].get<std::string>(), e[1].get<std::string>());
    } else {
      m.fail(where + " must be \"left right\" or [\"left\", \"right\"], not " + e.dump().substr(0, 80));
    }
  }
  if (has_unk_) {
    auto it = vocab_map_.find(unk_token_);
    unk_in_vocab_ = it != vocab_map_.end();
    if (unk_in_vocab_) unk_id_ = it->second;
  }
}

void BpeTokenizer::parse_added(const json& a) {
  if (!a.is_array()) throw DataError(source_, 0, "added_tokens must be an array");
  // tokenizers ignores the ids written here and gives each token its model id, or the next free id
  // after the model's (AddedVocabulary::add_tokens); a file that disagrees is refused.
  const int64_t n = static_cast<int64_t>(vocab_.size());
  int64_t max_id = -1;
  std::unordered_set<int32_t> ids;
  for (size_t i = 0; i < a.size(); ++i) {
    Obj o(a[i], "added_tokens[" + std::to_string(i) + "]", source_);
    AddedToken t;
    const json* id = o.get("id");
    if (!id) o.fail("no id");
    t.id = as_id(*id, o.where() + ".id", source_);
    t.content = o.str("content");
    t.special = o.flag("special", false);
    t.single_word = o.flag("single_word", false);
    t.lstrip = o.flag("lstrip", false);
    t.rstrip = o.flag("rstrip", false);
    t.normalized = o.flag("normalized", true);
    if (t.content.empty()) continue;  // tokenizers ignores empty added tokens
    if (added_map_.count(t.content)) o.fail("content " + show(t.content) + " is added twice");
    const auto in_vocab = vocab_map_.find(t.content);
    const int64_t expected = in_vocab != vocab_map_.end() ? in_vocab->second
                             : max_id < 0                 ? n
                             : (max_id >= n || n == 0)    ? max_id + 1
                                                          : n;
    if (t.id != expected)
      o.fail(show(t.content) + " has id " + std::to_string(t.id) + ", but Hugging Face tokenizers would give it id " +
             std::to_string(expected) + " (its vocab id, or the next id after the vocab)");
    if (!ids.insert(t.id).second) o.fail("id " + std::to_string(t.id) + " is given to two added tokens");
    if (in_vocab == vocab_map_.end() &&
        std::binary_search(vocab_.begin(), vocab_.end(), std::pair<std::string, int32_t>("", t.id),
                           [](const auto& x, const auto& y) { return x.second < y.second; }))
      o.fail("id " + std::to_string(t.id) + " of " + show(t.content) + " is the id of another vocab token");
    max_id = std::max<int64_t>(max_id, t.id);
    added_map_.emplace(t.content, added_.size());
    added_.push_back(std::move(t));
  }
}

void BpeTokenizer::parse_pre(const json& pj, int depth) {
  Obj p(pj, depth == 0 ? "pre_tokenizer" : "pre_tokenizer (in a Sequence)", source_);
  const std::string type = p.type();
  Step st;
  if (type == "Sequence") {
    const json* list = p.get("pretokenizers");
    if (!list || !list->is_array()) p.fail("Sequence needs a pretokenizers array");
    for (const json& x : *list) parse_pre(x, depth + 1);
    return;
  } else if (type == "ByteLevel") {
    st.kind = Step::kByteLevel;
    st.add_prefix_space = p.flag("add_prefix_space", true);
    st.trim_offsets = p.flag("trim_offsets", true);
    st.use_regex = p.flag("use_regex", true);
    if (st.use_regex) st.re = std::make_unique<Regex>(kGpt2Regex, false, source_, "ByteLevel");
  } else if (type == "Digits") {
    st.kind = Step::kDigits;
    st.individual_digits = p.flag("individual_digits", false);
    // Rust's char::is_numeric is the N categories; individual: each alone, else runs (Contiguous).
    st.re = std::make_unique<Regex>(st.individual_digits ? R"(\p{N})" : R"(\p{N}+)", false, source_, "Digits");
  } else if (type == "Split") {
    const json* pat = p.get("pattern");
    if (!pat || !pat->is_object() || pat->size() != 1)
      p.fail("Split needs a pattern {\"Regex\": …} or {\"String\": …}");
    Obj po(*pat, "pre_tokenizer Split pattern", source_);
    if (po.get("Regex")) {
      st.pattern = po.str("Regex");
    } else if (po.get("String")) {
      st.pattern = po.str("String");
      st.literal = true;
      if (st.pattern.empty()) p.fail("Split with an empty String pattern is not supported");
    } else {
      p.fail("Split pattern must be {\"Regex\": …} or {\"String\": …}, not " + pat->dump().substr(0, 80));
    }
    const std::string b = p.str("behavior");
    const auto* it = std::find(std::begin(kBehaviorNames), std::end(kBehaviorNames), b);
    if (it == std::end(kBehaviorNames))
      p.fail("Split behavior " + show(b) +
             " is not one of Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous");
    st.behavior = static_cast<Behavior>(it - std::begin(kBehaviorNames));
    st.invert = p.flag("invert", false);
    st.re = std::make_unique<Regex>(st.pattern, st.literal, source_, "pre_tokenizer Split");
  } else {
    p.fail("pre-tokenizer " + show(type.empty() ? pj.dump() : type) +
           " is not supported (cairn reads byte-level BPE: ByteLevel, Split, Digits, Sequence)");
  }
  steps_.push_back(std::move(st));
}

void BpeTokenizer::parse_post(const json& pj) {
  Obj p(pj, "post_processor", source_);
  const std::string type = p.type();
  auto set_bos = [&](int64_t id, const std::string& what) {
    if (add_bos_ && bos_ != id) p.fail("two different tokens are added before the text (" + what + ")");
    add_bos_ = true, bos_ = static_cast<int>(id);
  };
  auto set_eos = [&](int64_t id, const std::string& what) {
    if (add_eos_ && eos_ != id) p.fail("two different tokens are added after the text (" + what + ")");
    add_eos_ = true, eos_ = static_cast<int>(id);
  };
  if (type == "ByteLevel") return;  // offsets only
  if (type == "Sequence") {
    const json* list = p.get("processors");
    if (!list || !list->is_array()) p.fail("Sequence needs a processors array");
    for (const json& x : *list) {
      Obj o(x, "post_processor (in a Sequence)", source_);
      if (o.type() == "Sequence") o.fail("nested Sequence is not supported");
      parse_post(x);
    }
    return;
  }
  if (type == "RobertaProcessing" || type == "BertProcessing") {  // single: cls $A sep
    for (const char* k : {"cls", "sep"}) {
      const json* v = p.get(k);
      if (!v || !v->is_array() || v->size() != 2 || !(*v)[0].is_string())
        p.fail(std::string(k) + " must be [token, id]");
      const int32_t id = as_id((*v)[1], "post_processor." + std::string(k), source_);
      if (std::string(k) == "cls")
        set_bos(id, "cls");
      else
        set_eos(id, "sep");
    }
    return;
  }
  if (type != "TemplateProcessing")
    p.fail("post_processor " + show(type.empty() ? pj.dump() : type) +
           " is not supported (ByteLevel, TemplateProcessing, RobertaProcessing, BertProcessing, Sequence)");
  const json* single = p.get("single");
  const json* specials = p.get("special_tokens");
  if (!single || !single->is_array()) p.fail("TemplateProcessing needs a single template");
  if (specials && !specials->is_object()) p.fail("special_tokens must be an object");
  bool seen_a = false;
  int before = 0, after = 0;
  for (const json& item : *single) {
    Obj io(item, "post_processor single template item", source_);
    if (const json* seq = io.get("Sequence")) {
      Obj so(*seq, "post_processor single template item", source_);
      if (so.str("id") != "A" || seen_a) io.fail("the single template must hold $A once");
      seen_a = true;
      continue;
    }
    const json* sp = io.get("SpecialToken");
    if (!sp) io.fail("items must be SpecialToken or Sequence");
    const std::string name = Obj(*sp, "post_processor SpecialToken", source_).str("id");
    const json* def = specials ? (specials->contains(name) ? &(*specials)[name] : nullptr) : nullptr;
    if (!def) p.fail("special token " + show(name) + " is not in special_tokens");
    Obj d(*def, "post_processor special_tokens[" + show(name) + "]", source_);
    const json* ids = d.get("ids");
    if (!ids || !ids->is_array() || ids->size() != 1)
      d.fail("must have exactly one id (cairn adds one BOS and one EOS)");
    const int32_t id = as_id((*ids)[0], d.where() + ".ids[0]", source_);
    if (seen_a)
      ++after, set_eos(id, name);
    else
      ++before, set_bos(id, name);
  }
  if (!seen_a) p.fail("the single template has no $A");
  if (before > 1 || after > 1)
    p.fail("the single template adds more than one token on a side (cairn adds one BOS, one EOS)");
}

int32_t BpeTokenizer::token_id(const std::string& content) const {
  if (auto it = added_map_.find(content); it != added_map_.end()) return added_[it->second].id;
  if (auto it = vocab_map_.find(content); it != vocab_map_.end()) return it->second;
  return -1;
}

void BpeTokenizer::resolve_special(const SpecialIds& given, const std::string& config_path) {
  auto known = [&](int id) { return id >= 0 && id < vocab_size_ && id_known_[id]; };
  if (add_bos_ && !known(bos_))
    throw DataError(source_, 0, "post_processor adds id " + std::to_string(bos_) + ", which is not a token");
  if (add_eos_ && !known(eos_))
    throw DataError(source_, 0, "post_processor adds id " + std::to_string(eos_) + ", which is not a token");
  int bos = add_bos_ ? bos_ : -1, eos = add_eos_ ? eos_ : -1, pad = -1;
  for (auto [id, slot] : {std::pair{given.bos, &bos}, {given.eos, &eos}, {given.pad, &pad}}) {
    if (id < 0 || *slot >= 0) continue;  // the post-processor's BOS/EOS come first
    if (!known(id)) throw DataError(source_, 0, "special token id " + std::to_string(id) + " is not a token");
    *slot = id;
  }
  // tokenizer_config.json beside the file (transformers' bos_token / eos_token / pad_token).
  if (!config_path.empty() && fs::exists(config_path)) {
    const json cfg = parse_json(read_file(config_path), config_path);
    if (!cfg.is_object()) throw DataError(config_path, 0, "must be a JSON object");
    for (auto [key, slot] : {std::pair{"bos_token", &bos}, {"eos_token", &eos}, {"pad_token", &pad}}) {
      if (*slot >= 0 || !cfg.contains(key) || cfg[key].is_null()) continue;
      const json& v = cfg[key];
      std::string content;
      if (v.is_string())
        content = v.get<std::string>();
      else if (v.is_object() && v.contains("content") && v["content"].is_string())
        content = v["content"].get<std::string>();
      else
        throw DataError(config_path, 0, std::string(key) + " must be a string or {\"content\": …}");
      const int32_t id = token_id(content);
      if (id < 0)
        throw DataError(config_path, 0, std::string(key) + " " + show(content) + " is not a token of " + source_);
      *slot = id;
    }
  }
  // Common names.
  auto first_of = [&](std::initializer_list<const char*> names) {
    for (const char* n : names)
      if (int32_t id = token_id(n); id >= 0) return static_cast<int>(id);
    return -1;
  };
  if (bos < 0) bos = first_of({"<|begin_of_text|>", "<s>", "<|im_start|>", "<|startoftext|>", "<|endoftext|>"});
  if (eos < 0) eos = first_of({"<|end_of_text|>", "</s>", "<|im_end|>", "<|endoftext|>"});
  if (pad < 0) pad = first_of({"<pad>", "<|pad|>", "[PAD]"});
  if (eos < 0)
    throw DataError(source_, 0,
                    "no EOS token: name one (eos_token in a tokenizer_config.json beside it), or use a common name "
                    "(<|end_of_text|>, </s>, <|im_end|>, <|endoftext|>)");
  if (bos < 0) bos = eos;
  if (pad < 0) pad = eos;
  bos_ = bos, eos_ = eos, pad_ = pad;
}

// ---- encoding ----------------------------------------------------------------------------------------

void BpeTokenizer::split_added(const LiteralSet& set, std::string_view s,
                               const std::function<void(size_t, size_t)>& on_text, std::vector<int32_t>& ids) const {
  // AddedVocabulary::find_matches: a match consumes its text even when single_word discards it.
  size_t start_offset = 0, from = 0;
  Span m{};
  int k = -1;
  while (from < s.size() && set.find(s, from, &m, &k)) {
    from = m.e;
    const AddedToken& t = added_[k];
    if (t.single_word) {
      const bool start_space = m.b == 0 || !last_char_is(word_char(), s.substr(0, m.b));
      const bool stop_space = m.e == s.size() || !first_char_is(word_char(), s.substr(m.e));
      if (!start_space || !stop_space) continue;
    }
    size_t start = m.b, stop = m.e;
    if (t.lstrip) {
      size_t ns = m.b;
      while (ns > 0) {
        size_t i = ns - 1;
        while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
        if (!space_char().matches_whole(s.data() + i, ns - i)) break;
        ns = i;
      }
      start = std::max(ns, start_offset);
    }
    if (t.rstrip) {
      while (stop < s.size()) {
        const size_t l = utf8_len_at(s.data(), stop, s.size());
        if (!space_char().matches_whole(s.data() + stop, l)) break;
        stop += l;
      }
    }
    if (start_offset < start) on_text(start_offset, start);
    ids.push_back(t.id);
    start_offset = stop;
  }
  if (start_offset < s.size()) on_text(start_offset, s.size());
}

std::vector<int32_t> BpeTokenizer::encode(const std::string& text) const {
  std::string fixed;
  const std::string_view t = valid_utf8(text, &fixed);
  std::vector<int32_t> ids;
  ids.reserve(t.size() / 3 + 4);
  if (raw_added_.empty() && normalized_added_.empty()) {
    encode_text(t, ids);
    return ids;
  }
  split_added(
      raw_added_, t,
      [&](size_t b, size_t e) {
        const std::string_view piece = t.substr(b, e - b);
        if (normalized_added_.empty()) return encode_text(piece, ids);
        split_added(
            normalized_added_, piece, [&](size_t b2, size_t e2) { encode_text(piece.substr(b2, e2 - b2), ids); }, ids);
      },
      ids);
  return ids;
}

void BpeTokenizer::apply_split(const Step& st, std::string_view p, std::vector<std::string_view>& out,
                               std::vector<Span>& m) const {
  st.re->find_all(p.data(), p.size(), m);
  const size_t n = p.size();
  if (st.behavior == Behavior::Isolated) {  // every span kept: the flags do not matter
    size_t prev = 0;
    for (const Span& s : m) {
      if (prev < s.b) out.push_back(p.substr(prev, s.b - prev));
      if (s.b < s.e) out.push_back(p.substr(s.b, s.e - s.b));
      prev = s.e;
    }
    if (prev < n) out.push_back(p.substr(prev));
    return;
  }
  // NormalizedString::split: (span, is_match) covering p, then folded by the behaviour.
  struct Piece {
    size_t b, e;
    bool match;
  };
  std::vector<Piece> all;
  size_t prev = 0;
  for (const Span& s : m) {
    if (prev != s.b) all.push_back({prev, s.b, st.invert});
    all.push_back({s.b, s.e, !st.invert});
    prev = s.e;
  }
  if (prev != n) all.push_back({prev, n, st.invert});
  std::vector<Piece> kept;  // match = "remove"
  bool previous_match = false;
  switch (st.behavior) {
    case Behavior::Removed:
      kept = all;
      break;
    case Behavior::Contiguous:
      for (const Piece& x : all) {
        if (x.match == previous_match && !kept.empty())
          kept.back().e = x.e;
        else
          kept.push_back({x.b, x.e, false});
        previous_match = x.match;
      }
      break;
    case Behavior::MergedWithPrevious:
      for (const Piece& x : all) {
        if (x.match && !previous_match && !kept.empty())
          kept.back().e = x.e;
        else
          kept.push_back({x.b, x.e, false});
        previous_match = x.match;
      }
      break;
    case Behavior::MergedWithNext:
      for (auto it = all.rbegin(); it != all.rend(); ++it) {
        if (it->match && !previous_match && !kept.empty())
          kept.back().b = it->b;
        else
          kept.push_back({it->b, it->e, false});
        previous_match = it->match;
      }
      std::reverse(kept.begin(), kept.end());
      break;
    case Behavior::Isolated:
      break;
  }
  for (const Piece& x : kept)
    if (!x.match && x.b < x.e) out.push_back(p.substr(x.b, x.e - x.b));
}

void BpeTokenizer::encode_text(std::string_view s, std::vector<int32_t>& ids) const {
  if (s.empty()) return;
  std::vector<std::string_view> pieces{s}, next;
  std::vector<Span> m;
  std::deque<std::string> arena;  // prefixed pieces (stable addresses)
  for (const Step& st : steps_) {
    next.clear();
    for (std::string_view p : pieces) {
      if (st.kind == Step::kByteLevel) {
        if (st.add_prefix_space && p[0] != ' ') {
          arena.push_back(" ");
          arena.back().append(p);
          p = arena.back();
        }
        if (!st.re) {
          next.push_back(p);
          continue;
        }
      }
      apply_split(st, p, next, m);
    }
    pieces.swap(next);
  }
  for (std::string_view w : pieces) bpe_word(w, ids);
}

void BpeTokenizer::bpe_word(std::string_view w, std::vector<int32_t>& ids) const {
  if (w.size() == 1 && byte_id_[static_cast<unsigned char>(w[0])] >= 0) {
    ids.push_back(byte_id_[static_cast<unsigned char>(w[0])]);
    return;
  }
  if (ignore_merges_) {
    if (auto it = raw_vocab_.find(std::string(w)); it != raw_vocab_.end()) {
      ids.push_back(it->second);
      return;
    }
  }
  constexpr size_t kCacheMax = 64;
  if (w.size() > kCacheMax) return merge_word(w, ids);
  const uint64_t h = std::hash<std::string_view>()(w);
  if (cache_.get(w, h, ids)) return;
  const size_t before = ids.size();
  merge_word(w, ids);
  cache_.put(w, h, ids.data() + before, ids.size() - before);
}

// tokenizers' BPE::merge_word + Word::merge_all, on byte symbols.
void BpeTokenizer::merge_word(std::string_view w, std::vector<int32_t>& ids) const {
  struct Sym {
    int32_t id;
    int32_t prev, next;
    uint32_t len;
  };
  struct Merge {
    uint32_t rank;
    int32_t pos;
    int32_t new_id;
  };
  thread_local std::vector<Sym> sym;
  thread_local std::vector<Merge> heap;
  sym.clear();
  heap.clear();
  auto add = [&](int32_t id, uint32_t len) {
    const int32_t n = static_cast<int32_t>(sym.size());
    if (n > 0) sym.back().next = n;
    sym.push_back({id, n - 1, -1, len});
  };
  int32_t unk_len = 0;  // a pending unk symbol (fuse_unk joins consecutive ones)
  for (unsigned char b : w) {
    const int32_t id = byte_id_[b];
    if (id >= 0) {
      if (unk_len) add(unk_id_, unk_len), unk_len = 0;
      add(id, 1);
    } else if (has_unk_) {
      if (!unk_in_vocab_) throw DataError(source_, 0, "unk_token " + show(unk_token_) + " is not in the vocab");
      if (unk_len && !fuse_unk_) add(unk_id_, unk_len), unk_len = 0;
      ++unk_len;
    }  // else: dropped, as tokenizers does without an unk_token
  }
  if (unk_len) add(unk_id_, unk_len);
  auto later = [](const Merge& a, const Merge& b) { return a.rank > b.rank || (a.rank == b.rank && a.pos > b.pos); };
  uint32_t rank;
  int32_t new_id;
  for (size_t i = 0; i + 1 < sym.size(); ++i)
    if (merge_table_.find(sym[i].id, sym[i + 1].id, &rank, &new_id))
      heap.push_back({rank, static_cast<int32_t>(i), new_id});
  std::make_heap(heap.begin(), heap.end(), later);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const Merge top = heap.back();
    heap.pop_back();
    Sym& cur = sym[top.pos];
    if (cur.len == 0 || cur.next == -1) continue;
    const int32_t next_pos = cur.next;
    const Sym right = sym[next_pos];
    if (!merge_table_.find(cur.id, right.id, &rank, &new_id) || new_id != top.new_id) continue;  // stale
    cur.id = top.new_id;
    cur.len += right.len;
    cur.next = right.next;
    sym[next_pos].len = 0;
    if (right.next >= 0) sym[right.next].prev = top.pos;
    if (cur.prev >= 0 && merge_table_.find(sym[cur.prev].id, cur.id, &rank, &new_id)) {
      heap.push_back({rank, cur.prev, new_id});
      std::push_heap(heap.begin(), heap.end(), later);
    }
    if (cur.next >= 0 && merge_table_.find(cur.id, sym[cur.next].id, &rank, &new_id)) {
      heap.push_back({rank, top.pos, new_id});
      std::push_heap(heap.begin(), heap.end(), later);
    }
  }
  for (const Sym& s : sym)
    if (s.len) ids.push_back(s.id);
}

std::string BpeTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  for (int32_t id : ids)
    if (id >= 0 && id < vocab_size_ && id_known_[id]) out += id_bytes_[id];  // unknown ids skipped, as tokenizers
  return out;
}

// ---- saving ------------------------------------------------------------------------------------------

ojson step_json(const Step& s) {
  ojson j;
  if (s.kind == Step::kByteLevel) {
    j["type"] = "ByteLevel";
    j["add_prefix_space"] = s.add_prefix_space;
    j["trim_offsets"] = s.trim_offsets;
    j["use_regex"] = s.use_regex;
  } else if (s.kind == Step::kDigits) {
    j["type"] = "Digits";
    j["individual_digits"] = s.individual_digits;
  } else {
    j["type"] = "Split";
    j["pattern"] = ojson::object();
    j["pattern"][s.literal ? "String" : "Regex"] = s.pattern;
    j["behavior"] = kBehaviorNames[static_cast<int>(s.behavior)];
    j["invert"] = s.invert;
  }
  return j;
}

std::string BpeTokenizer::token_text(int id) const {
  for (const auto& a : added_)
    if (a.id == id) return a.content;
  auto it = std::lower_bound(vocab_.begin(), vocab_.end(), id, [](const auto& e, int v) { return e.second < v; });
  return it != vocab_.end() && it->second == id ? it->first : std::string();
}

// The tokenizer.json text, laid out as tokenizers writes it (one vocab entry and one merge per line).
std::string BpeTokenizer::to_text() const {
  auto str = [](const std::string& s) { return ojson(s).dump(); };
  std::string out = "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [";
  std::vector<const AddedToken*> added;
  for (const auto& a : added_) added.push_back(&a);
  std::sort(added.begin(), added.end(), [](auto* a, auto* b) { return a->id < b->id; });
  for (size_t i = 0; i < added.size(); ++i) {
    const AddedToken& a = *added[i];
    ojson t = ojson::object();
    t["id"] = a.id;
    t["content"] = a.content;
    t["single_word"] = a.single_word;
    t["lstrip"] = a.lstrip;
    t["rstrip"] = a.rstrip;
    t["normalized"] = a.normalized;
    t["special"] = a.special;
    out += (i ? ",\n    " : "\n    ") + t.dump();
  }
  out += added.empty() ? "],\n" : "\n  ],\n";
  out += "  \"normalizer\": null,\n";
  ojson pre;
  if (steps_.size() == 1) {
    pre = step_json(steps_[0]);
  } else {
    pre["type"] = "Sequence";
    pre["pretokenizers"] = ojson::array();
    for (const Step& s : steps_) pre["pretokenizers"].push_back(step_json(s));
  }
  out += "  \"pre_tokenizer\": " + pre.dump() + ",\n";
  ojson post = ojson::object();
  if (add_bos_ || add_eos_) {
    auto special = [&](int id, int type_id) {
      ojson item = ojson::object(), inner = ojson::object();
      inner["id"] = token_text(id);
      inner["type_id"] = type_id;
      item["SpecialToken"] = inner;
      return item;
    };
    auto seq = [](const char* id, int type_id) {
      ojson item = ojson::object(), inner = ojson::object();
      inner["id"] = id;
      inner["type_id"] = type_id;
      item["Sequence"] = inner;
      return item;
    };
    ojson single = ojson::array(), pair = ojson::array(), specials = ojson::object();
    if (add_bos_) single.push_back(special(bos_, 0)), pair.push_back(special(bos_, 0));
    single.push_back(seq("A", 0)), pair.push_back(seq("A", 0));
    if (add_eos_) single.push_back(special(eos_, 0)), pair.push_back(special(eos_, 0));
    if (add_bos_) pair.push_back(special(bos_, 1));
    pair.push_back(seq("B", 1));
    if (add_eos_) pair.push_back(special(eos_, 1));
    for (int id : {add_bos_ ? bos_ : -1, add_eos_ ? eos_ : -1}) {
      if (id < 0) continue;
      ojson d = ojson::object();
      d["id"] = token_text(id);
      d["ids"] = ojson::array();
      d["ids"].push_back(id);
      d["tokens"] = ojson::array();
      d["tokens"].push_back(token_text(id));
      specials[token_text(id)] = d;
    }
    post["type"] = "TemplateProcessing";
    post["single"] = single;
    post["pair"] = pair;
    post["special_tokens"] = specials;
  } else {
    post["type"] = "ByteLevel";
    post["add_prefix_space"] = true;
    post["trim_offsets"] = false;
    post["use_regex"] = true;
  }
  out += "  \"post_processor\": " + post.dump() + ",\n";
  out +=
      "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": "
      "true},\n";
  out += "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": ";
  out += has_unk_ ? str(unk_token_) : "null";
  out += ",\n    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n    \"fuse_unk\": ";
  out += fuse_unk_ ? "true" : "false";
  out += ",\n    \"byte_fallback\": false,\n    \"ignore_merges\": ";
  out += ignore_merges_ ? "true" : "false";
  out += ",\n    \"vocab\": {";
  for (size_t i = 0; i < vocab_.size(); ++i)
    out += (i ? ",\n      " : "\n      ") + str(vocab_[i].first) + ": " + std::to_string(vocab_[i].second);
  out += vocab_.empty() ? "},\n" : "\n    },\n";
  // "left right" strings (tokenizers 0.19 reads no other form); pairs where a token holds a space.
  bool spaced = false;
  for (const auto& [a, b] : merges_)
    spaced = spaced || a.find(' ') != std::string::npos || b.find(' ') != std::string::npos;
  out += "    \"merges\": [";
  for (size_t i = 0; i < merges_.size(); ++i) {
    const auto& [a, b] = merges_[i];
    out += i ? ",\n      " : "\n      ";
    out += spaced ? "[" + str(a) + ", " + str(b) + "]" : str(a + " " + b);
  }
  out += merges_.empty() ? "]\n" : "\n    ]\n";
  out += "  }\n}\n";
  return out;
}

void BpeTokenizer::save(const std::string& path) const {
  // tokenizer_config.json beside it names BOS/EOS/pad (tokenizer.json cannot; transformers reads it).
  // An existing one keeps its other keys (a chat template, say).
  const fs::path cfg_path = fs::path(path).parent_path() / "tokenizer_config.json";
  ojson cfg = ojson::object();
  std::error_code ec;
  if (fs::is_regular_file(cfg_path, ec)) {
    try {
      cfg = ojson::parse(read_file(cfg_path.string()));
    } catch (const std::exception&) {
      cfg = ojson::object();
    }
    if (!cfg.is_object()) cfg = ojson::object();
  }
  if (!cfg.contains("tokenizer_class")) cfg["tokenizer_class"] = "PreTrainedTokenizerFast";
  cfg["bos_token"] = token_text(bos_);
  cfg["eos_token"] = token_text(eos_);
  cfg["pad_token"] = token_text(pad_);
  if (!cfg.contains("clean_up_tokenization_spaces")) cfg["clean_up_tokenization_spaces"] = false;
  write_file_atomic(cfg_path.string(), cfg.dump(2) + "\n");
  write_file_atomic(path, to_text());
}

// ---- GGUF-style specs --------------------------------------------------------------------------------

// Every pre-tokenizer step ends a piece before a space that follows a non-space (docs/model.md#long-texts):
// the regexes cairn writes for GGUF vocabularies and GPT-2's, Digits and ByteLevel; and no added token
// holds whitespace. A tokenizer.json with another Split pattern gets no such promise.
bool BpeTokenizer::starts_token_at_space_letter() const {
  const std::string known[] = {kGpt2Regex, kLlama3Regex, kQwen2Regex, R"([\p{P}\$\+<=>\^~\|]+)", R"(\p{N}+)",
                               "[0-9][0-9][0-9]"};
  for (const Step& st : steps_)
    if (st.kind == Step::kSplit &&
        (st.literal || st.invert || st.behavior != Behavior::Isolated || std::find(std::begin(known), std::end(known), st.pattern) == std::end(known)))
      return false;
  for (const AddedToken& t : added_)
    if (t.lstrip || t.content.find_first_of(" \t\r\n") != std::string::npos) return false;
  return true;
}

json bytelevel_step(bool use_regex) {
  json j = json::object();
  j["type"] = "ByteLevel";
  j["add_prefix_space"] = false;
  j["trim_offsets"] = true;
  j["use_regex"] = use_regex;
  return j;
}
json split_step(const char* regex) {
  json j = json::object();
  j["type"] = "Split";
  j["pattern"] = json::object();
  j["pattern"]["Regex"] = regex;
  j["behavior"] = "Isolated";
  j["invert"] = false;
  return j;
}
json digits_step() {
  json j = json::object();
  j["type"] = "Digits";
  j["individual_digits"] = true;
  return j;
}

// llama.cpp's tokenizer.ggml.pre names → the pre-tokenizer of the model's tokenizer.json (llama.cpp's
// llm_tokenizer_bpe applies the same regexes in sequence), and whether merges are ignored for words in
// the vocabulary (llama.cpp: tokenizer_ignore_merges).
bool pre_for(const std::string& pre, json* steps, bool* ignore_merges) {
  *ignore_merges = false;
  *steps = json::array();
  if (pre == "gpt2") {
    steps->push_back(bytelevel_step(true));
  } else if (pre == "llama3" || pre == "llama-v3" || pre == "llama-bpe") {
    steps->push_back(split_step(kLlama3Regex));
    steps->push_back(bytelevel_step(false));
    *ignore_merges = true;
  } else if (pre == "smollm" || pre == "starcoder") {
    steps->push_back(digits_step());
    steps->push_back(bytelevel_step(true));
  } else if (pre == "qwen2") {
    steps->push_back(split_step(kQwen2Regex));
    steps->push_back(bytelevel_step(false));
  } else if (pre == "default" || pre.empty()) {
    for (const char* r : {R"([\p{P}\$\+<=>\^~\|]+)", kGpt2Regex, R"(\p{N}+)", "[0-9][0-9][0-9]"})
      steps->push_back(split_step(r));
    steps->push_back(bytelevel_step(false));
  } else {
    return false;
  }
  return true;
}

json special_item(const std::string& name) {
  json item = json::object();
  item["SpecialToken"] = json::object();
  item["SpecialToken"]["id"] = name;
  item["SpecialToken"]["type_id"] = 0;
  return item;
}

}  // namespace

std::unique_ptr<Tokenizer> load_bpe_tokenizer(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw DataError(path, 0, "tokenizer.json not found");
  const uintmax_t size = fs::file_size(path, ec);
  if (ec || size > kMaxFileBytes)
    throw DataError(path, 0, "tokenizer.json is " + std::to_string(size) + " bytes, over the 1 GiB limit");
  const json j = parse_json(read_file(path), path);
  const std::string cfg = (fs::path(path).parent_path() / "tokenizer_config.json").string();
  return std::make_unique<BpeTokenizer>(j, path, SpecialIds{}, cfg);
}

std::unique_ptr<Tokenizer> make_bpe_tokenizer(const BpeSpec& spec, const std::string& source) {
  const size_t n = spec.tokens.size();
  if (n == 0) throw DataError(source, 0, "tokenizer has no tokens");
  if (n > size_t(kMaxId)) throw DataError(source, 0, "tokenizer has " + std::to_string(n) + " tokens, over 2^24");
  if (spec.merges.size() > size_t(kMaxId)) throw DataError(source, 0, "tokenizer has over 2^24 merges");
  if (!spec.token_types.empty() && spec.token_types.size() != n)
    throw DataError(source, 0,
                    "tokenizer.ggml.token_type has " + std::to_string(spec.token_types.size()) + " entries for " +
                        std::to_string(n) + " tokens");
  for (auto [name, id] :
       {std::pair{"bos", spec.bos_id}, {"eos", spec.eos_id}, {"pad", spec.pad_id}, {"unk", spec.unk_id}})
    if (id < -1 || id >= static_cast<int64_t>(n))
      throw DataError(source, 0, std::string(name) + " token id " + std::to_string(id) + " is out of range");
  if (spec.add_bos && spec.bos_id < 0) throw DataError(source, 0, "add_bos_token is set but there is no BOS id");
  if (spec.add_eos && spec.eos_id < 0) throw DataError(source, 0, "add_eos_token is set but there is no EOS id");
  json steps;
  bool ignore_merges = false;
  if (!pre_for(spec.pre, &steps, &ignore_merges))
    throw DataError(source, 0,
                    "tokenizer.ggml.pre " + show(spec.pre) +
                        " is not supported (gpt2, llama-bpe/llama3/llama-v3, smollm/starcoder, qwen2, default)");
  json vocab = json::object();
  std::unordered_map<std::string_view, size_t> seen;
  for (size_t i = 0; i < n; ++i) {
    const std::string& t = spec.tokens[i];
    if (!is_valid_utf8(t)) throw DataError(source, 0, "token " + std::to_string(i) + " is not valid UTF-8");
    auto [it, fresh] = seen.emplace(t, i);
    if (!fresh)
      throw DataError(
          source, 0,
          "token " + show(t) + " appears twice (ids " + std::to_string(it->second) + " and " + std::to_string(i) + ")");
    vocab[t] = i;
  }
  json merges = json::array();
  for (const std::string& m : spec.merges) {
    if (!is_valid_utf8(m)) throw DataError(source, 0, "a merge is not valid UTF-8");
    merges.push_back(m);
  }
  json added = json::array();
  for (size_t i = 0; i < spec.token_types.size(); ++i) {
    const int32_t type = spec.token_types[i];
    if (type < 0 || type > 6)
      throw DataError(source, 0, "token " + std::to_string(i) + " has token type " + std::to_string(type) + " (0–6)");
    if (type != 3 && type != 4) continue;  // control: special; user-defined: matched in text too, not special
    json t = json::object();
    t["id"] = i;
    t["content"] = spec.tokens[i];
    t["single_word"] = t["lstrip"] = t["rstrip"] = t["normalized"] = false;
    t["special"] = type == 3;
    added.push_back(std::move(t));
  }
  json j = json::object();
  j["version"] = "1.0";
  j["added_tokens"] = std::move(added);
  j["normalizer"] = nullptr;
  if (steps.size() == 1) {
    j["pre_tokenizer"] = steps[0];
  } else {
    j["pre_tokenizer"] = json::object();
    j["pre_tokenizer"]["type"] = "Sequence";
    j["pre_tokenizer"]["pretokenizers"] = steps;
  }
  if (spec.add_bos || spec.add_eos) {
    json single = json::array(), specials = json::object(), seq = json::object();
    seq["Sequence"] = json::object();
    seq["Sequence"]["id"] = "A";
    seq["Sequence"]["type_id"] = 0;
    if (spec.add_bos) single.push_back(special_item(spec.tokens[spec.bos_id]));
    single.push_back(seq);
    if (spec.add_eos) single.push_back(special_item(spec.tokens[spec.eos_id]));
    for (int id : {spec.add_bos ? spec.bos_id : -1, spec.add_eos ? spec.eos_id : -1}) {
      if (id < 0) continue;
      json d = json::object();
      d["id"] = spec.tokens[id];
      d["ids"] = json::array();
      d["ids"].push_back(id);
      d["tokens"] = json::array();
      d["tokens"].push_back(spec.tokens[id]);
      specials[spec.tokens[id]] = d;
    }
    j["post_processor"] = json::object();
    j["post_processor"]["type"] = "TemplateProcessing";
    j["post_processor"]["single"] = single;
    j["post_processor"]["special_tokens"] = specials;
  }
  j["decoder"] = json::object();
  j["decoder"]["type"] = "ByteLevel";
  // unk_token stays null: bytes missing from the vocabulary are dropped, as llama.cpp and SmolLM2's own
  // tokenizer.json do (spec.unk_id is not used for encoding).
  json model = json::object();
  model["type"] = "BPE";
  model["unk_token"] = nullptr;
  model["ignore_merges"] = ignore_merges;
  model["vocab"] = std::move(vocab);
  model["merges"] = std::move(merges);
  j["model"] = std::move(model);
  return std::make_unique<BpeTokenizer>(j, source, SpecialIds{spec.bos_id, spec.eos_id, spec.pad_id}, "");
}

}  // namespace cairn

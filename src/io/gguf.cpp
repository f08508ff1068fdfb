// GGUF reader and GGML dequantization (include/cairn/gguf.h, docs/gguf.md).
//
// File layout (all little-endian):
//   "GGUF" u32 version u64 tensor_count u64 kv_count
//   kv_count × { string key, u32 value_type, value }     string = u64 length + bytes (no NUL)
//                                                        array  = u32 elem_type, u64 count, count × elem
//   tensor_count × { string name, u32 n_dims, n_dims × u64 ne, u32 ggml_type, u64 offset }
//   padding to general.alignment (default 32), then the data section; offsets are relative to it.
//
// Hostile input: every count and length is checked against the bytes left in the file before
// anything is allocated or read, so a bad file costs at most a small multiple of its own size in
// memory and ends in a DataError; nothing is trusted until checked.
//
// Dequantization: the formulas are those of ggml (ggml-quants.c) and gguf-py (quants.py), in fp32,
// with the multiplications in the same order, so the output is bit-identical to gguf-py's numpy.
// That holds on every build although GCC may fuse a*b + c into an FMA (-ffp-contract=fast is its
// GNU-mode default, -march=native has FMA): every product that is then added is exact in fp32 (an
// f16 scale has 11 significant bits, a sub-block scale or min at most 6, a quant at most 5, so 22
// bits ≤ 24), and an exact product rounds the same fused or not.
#include "cairn/gguf.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <numeric>
#include <stdexcept>

#include "cairn/errors.h"
#include "cairn/io.h"
#include "util/half.h"

namespace cairn {
namespace {

// ---------------------------------------------------------------------------------------------
// Scalars

uint16_t le16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}
uint32_t le32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}
uint64_t le64(const uint8_t* p) {
  return le32(p) | (static_cast<uint64_t>(le32(p + 4)) << 32);
}

float f16_at(const uint8_t* p) {
  return f16_to_float(le16(p));
}

// ---------------------------------------------------------------------------------------------
// Block dequantizers. Each converts one block at b to block-size floats at y, in element order.
// "d" is the block's f16 scale, "m" its f16 minimum (the _1 types), q the stored integer.
// Q6_K's product (d · scale) · q may round (8-bit scales) but is never added to, so nothing fuses.

// Q4_0, 18 bytes: f16 d, u8 qs[16]. Element j < 16 is the low nibble of qs[j], element j + 16 the
// high nibble. x = (q - 8) · d.
void block_q4_0(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>((qs[j] & 0xF) - 8) * d;
    y[j + 16] = static_cast<float>((qs[j] >> 4) - 8) * d;
  }
}

// Q4_1, 20 bytes: f16 d, f16 m, u8 qs[16] (nibbles as Q4_0). x = q · d + m.
void block_q4_1(const uint8_t* b, float* y) {
  const float d = f16_at(b), m = f16_at(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>(qs[j] & 0xF) * d + m;
    y[j + 16] = static_cast<float>(qs[j] >> 4) * d + m;
  }
}

// Q5_0, 22 bytes: f16 d, u32 qh, u8 qs[16]. The 5th bit of element j is bit j of qh; the low four
// bits are nibbles as in Q4_0. x = (q - 16) · d.
void block_q5_0(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  const uint32_t qh = le32(b + 2);
  const uint8_t* qs = b + 6;
  for (int j = 0; j < 16; ++j) {
    const int lo = (qs[j] & 0xF) | (((qh >> j) & 1) << 4);
    const int hi = (qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
    y[j] = static_cast<float>(lo - 16) * d;
    y[j + 16] = static_cast<float>(hi - 16) * d;
  }
}

// Q5_1, 24 bytes: f16 d, f16 m, u32 qh, u8 qs[16] (bits as Q5_0). x = q · d + m.
void block_q5_1(const uint8_t* b, float* y) {
  const float d = f16_at(b), m = f16_at(b + 2);
  const uint32_t qh = le32(b + 4);
  const uint8_t* qs = b + 8;
  for (int j = 0; j < 16; ++j) {
    const int lo = (qs[j] & 0xF) | (((qh >> j) & 1) << 4);
    const int hi = (qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
    y[j] = static_cast<float>(lo) * d + m;
    y[j + 16] = static_cast<float>(hi) * d + m;
  }
}

// Q8_0, 34 bytes: f16 d, i8 qs[32]. x = q · d.
void block_q8_0(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(static_cast<int8_t>(b[2 + j])) * d;
}

// K-quants: super-blocks of 256 elements in 16 sub-blocks of 16 (Q2_K, Q3_K, Q6_K) or 8 of 32
// (Q4_K, Q5_K), each with its own integer scale (and min) multiplied by the f16 super-block d (dmin).

// Q2_K, 84 bytes: u8 scales[16], u8 qs[64], f16 d, f16 dmin. scales[s]: low nibble scale, high
// nibble min, for sub-block s of 16. Element 128·h + 32·k + l (half h, k = 0..3, l = 0..31) is
// bits 2k..2k+1 of qs[32·h + l]. x = (d · scale) · q - dmin · min.
void block_q2_k(const uint8_t* b, float* y) {
  const uint8_t* scales = b;
  const uint8_t* qs = b + 16;
  const float d = f16_at(b + 80), dmin = f16_at(b + 82);
  for (int h = 0; h < 2; ++h)
    for (int k = 0; k < 4; ++k)
      for (int half16 = 0; half16 < 2; ++half16) {
        const int s = 8 * h + 2 * k + half16;  // sub-block of 16
        const float dl = d * static_cast<float>(scales[s] & 0xF);
        const float ml = dmin * static_cast<float>(scales[s] >> 4);
        for (int l = 16 * half16; l < 16 * half16 + 16; ++l) {
          const int q = (qs[32 * h + l] >> (2 * k)) & 3;
          y[128 * h + 32 * k + l] = dl * static_cast<float>(q) - ml;
        }
      }
}

// Q3_K, 110 bytes: u8 hmask[32], u8 qs[64], u8 scales[12], f16 d. Low two bits as Q2_K; the third
// bit of element 128·h + 32·k + l is bit 4·h + k of hmask[l], and a CLEAR bit subtracts 4, so
// q = low2 - (bit ? 0 : 4) in -4..3. Sixteen 6-bit scales (stored + 32): scale s has low nibble
// in byte s (s < 8) or the high nibble of byte s - 8, and top two bits at bit 2·(s / 4) of byte
// 8 + s % 4. x = (d · (scale - 32)) · q.
void block_q3_k(const uint8_t* b, float* y) {
  const uint8_t* hmask = b;
  const uint8_t* qs = b + 32;
  const uint8_t* sc = b + 96;
  const float d = f16_at(b + 108);
  float dl[16];
  for (int s = 0; s < 16; ++s) {
    const int lo = s < 8 ? (sc[s] & 0xF) : (sc[s - 8] >> 4);
    const int hi = (sc[8 + s % 4] >> (2 * (s / 4))) & 3;
    dl[s] = d * static_cast<float>((lo | (hi << 4)) - 32);
  }
  for (int h = 0; h < 2; ++h)
    for (int k = 0; k < 4; ++k)
      for (int l = 0; l < 32; ++l) {
        const int i = 128 * h + 32 * k + l;
        const int low2 = (qs[32 * h + l] >> (2 * k)) & 3;
        const int high = (hmask[l] >> (4 * h + k)) & 1;
        y[i] = dl[i / 16] * static_cast<float>(low2 - (high ? 0 : 4));
      }
}

// Q4_K / Q5_K scales: eight 6-bit scales and eight 6-bit mins in 12 bytes. Sub-blocks 0..3 hold
// their six bits in bytes 0..3 (scale) and 4..7 (min); sub-blocks 4..7 hold their low four bits in
// byte 8..11 (scale: low nibble, min: high nibble) and their top two bits in the top two bits of
// bytes 0..3 (scale) and 4..7 (min).
void unpack_scale_min_k4(const uint8_t* s, int sc[8], int mn[8]) {
  for (int j = 0; j < 4; ++j) {
    sc[j] = s[j] & 63;
    mn[j] = s[j + 4] & 63;
    sc[j + 4] = (s[j + 8] & 0xF) | ((s[j] >> 6) << 4);
    mn[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4);
  }
}

// Q4_K, 144 bytes: f16 d, f16 dmin, u8 scales[12], u8 qs[128]. Sub-block 2c (c = 0..3) is the low
// nibbles of qs[32·c .. 32·c + 31], sub-block 2c + 1 their high nibbles. x = (d · sc) · q - dmin · mn.
void block_q4_k(const uint8_t* b, float* y) {
  const float d = f16_at(b), dmin = f16_at(b + 2);
  int sc[8], mn[8];
  unpack_scale_min_k4(b + 4, sc, mn);
  const uint8_t* qs = b + 16;
  for (int s = 0; s < 8; ++s) {
    const float dl = d * static_cast<float>(sc[s]);
    const float ml = dmin * static_cast<float>(mn[s]);
    const int shift = 4 * (s & 1);
    for (int l = 0; l < 32; ++l) {
      const int q = (qs[32 * (s / 2) + l] >> shift) & 0xF;
      y[32 * s + l] = dl * static_cast<float>(q) - ml;
    }
  }
}

// Q5_K, 176 bytes: f16 d, f16 dmin, u8 scales[12], u8 qh[32], u8 qs[128]. As Q4_K, plus a fifth
// bit: element l of sub-block s has bit s of qh[l] as its bit 4. x = (d · sc) · q - dmin · mn.
void block_q5_k(const uint8_t* b, float* y) {
  const float d = f16_at(b), dmin = f16_at(b + 2);
  int sc[8], mn[8];
  unpack_scale_min_k4(b + 4, sc, mn);
  const uint8_t* qh = b + 16;
  const uint8_t* qs = b + 48;
  for (int s = 0; s < 8; ++s) {
    const float dl = d * static_cast<float>(sc[s]);
    const float ml = dmin * static_cast<float>(mn[s]);
    const int shift = 4 * (s & 1);
    for (int l = 0; l < 32; ++l) {
      const int q = ((qs[32 * (s / 2) + l] >> shift) & 0xF) | (((qh[l] >> s) & 1) << 4);
      y[32 * s + l] = dl * static_cast<float>(q) - ml;
    }
  }
}

// Q6_K, 210 bytes: u8 ql[128], u8 qh[64], i8 scales[16], f16 d. Element 128·h + 32·k + l
// (h = 0..1, k = 0..3, l = 0..31) has its low four bits in ql[64·h + 32·(k & 1) + l] (low nibble for
// k < 2, high nibble for k ≥ 2) and its top two bits at bit 2·k of qh[32·h + l]; q is stored + 32.
// x = (d · scale[i / 16]) · (q - 32).
void block_q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = f16_at(b + 208);
  for (int h = 0; h < 2; ++h)
    for (int k = 0; k < 4; ++k)
      for (int l = 0; l < 32; ++l) {
        const int i = 128 * h + 32 * k + l;
        const int lo = (ql[64 * h + 32 * (k & 1) + l] >> (4 * (k >> 1))) & 0xF;
        const int hi = (qh[32 * h + l] >> (2 * k)) & 3;
        const float dl = d * static_cast<float>(sc[i / 16]);
        y[i] = dl * static_cast<float>((lo | (hi << 4)) - 32);
      }
}

// ---------------------------------------------------------------------------------------------
// Type table

// The 1-element "blocks" of the float types.
void block_f32(const uint8_t* b, float* y) {
  *y = bits_to_float(le32(b));
}
void block_f16(const uint8_t* b, float* y) {
  *y = f16_to_float(le16(b));
}
void block_bf16(const uint8_t* b, float* y) {
  *y = bf16_to_float(le16(b));
}

using RowFn = void (*)(const uint8_t* src, int64_t blocks, float* dst);

// Applies a block dequantizer to `blocks` consecutive blocks (the block function inlines here).
template <int kBlock, int kSize, void (*kFn)(const uint8_t*, float*)>
void rows(const uint8_t* src, int64_t blocks, float* dst) {
  for (int64_t i = 0; i < blocks; ++i) kFn(src + i * kSize, dst + i * kBlock);
}

struct TypeTraits {
  GgmlType type;
  const char* name;
  int64_t block;  // elements per block
  int64_t size;   // bytes per block
  RowFn rows;     // nullptr: cairn cannot dequantize it
};

// Block sizes and byte sizes as in ggml (ggml.c type_traits). Q8_1 is 36 bytes there (two f16 and
// 32 int8); gguf-py's table still says 40 (an older float layout). No model file stores Q8_1.
// clang-format off
constexpr TypeTraits kTypes[] = {
    {GgmlType::F32, "F32", 1, 4, rows<1, 4, block_f32>},
    {GgmlType::F16, "F16", 1, 2, rows<1, 2, block_f16>},
    {GgmlType::BF16, "BF16", 1, 2, rows<1, 2, block_bf16>},
    {GgmlType::Q4_0, "Q4_0", 32, 18, rows<32, 18, block_q4_0>},
    {GgmlType::Q4_1, "Q4_1", 32, 20, rows<32, 20, block_q4_1>},
    {GgmlType::Q5_0, "Q5_0", 32, 22, rows<32, 22, block_q5_0>},
    {GgmlType::Q5_1, "Q5_1", 32, 24, rows<32, 24, block_q5_1>},
    {GgmlType::Q8_0, "Q8_0", 32, 34, rows<32, 34, block_q8_0>},
    {GgmlType::Q2_K, "Q2_K", 256, 84, rows<256, 84, block_q2_k>},
    {GgmlType::Q3_K, "Q3_K", 256, 110, rows<256, 110, block_q3_k>},
    {GgmlType::Q4_K, "Q4_K", 256, 144, rows<256, 144, block_q4_k>},
    {GgmlType::Q5_K, "Q5_K", 256, 176, rows<256, 176, block_q5_k>},
    {GgmlType::Q6_K, "Q6_K", 256, 210, rows<256, 210, block_q6_k>},
    {GgmlType::Q8_1, "Q8_1", 32, 36, nullptr},      {GgmlType::Q8_K, "Q8_K", 256, 292, nullptr},
    {GgmlType::IQ2_XXS, "IQ2_XXS", 256, 66, nullptr}, {GgmlType::IQ2_XS, "IQ2_XS", 256, 74, nullptr},
    {GgmlType::IQ3_XXS, "IQ3_XXS", 256, 98, nullptr}, {GgmlType::IQ1_S, "IQ1_S", 256, 50, nullptr},
    {GgmlType::IQ4_NL, "IQ4_NL", 32, 18, nullptr},    {GgmlType::IQ3_S, "IQ3_S", 256, 110, nullptr},
    {GgmlType::IQ2_S, "IQ2_S", 256, 82, nullptr},     {GgmlType::IQ4_XS, "IQ4_XS", 256, 136, nullptr},
    {GgmlType::I8, "I8", 1, 1, nullptr},              {GgmlType::I16, "I16", 1, 2, nullptr},
    {GgmlType::I32, "I32", 1, 4, nullptr},            {GgmlType::I64, "I64", 1, 8, nullptr},
    {GgmlType::F64, "F64", 1, 8, nullptr},            {GgmlType::IQ1_M, "IQ1_M", 256, 56, nullptr},
    {GgmlType::TQ1_0, "TQ1_0", 256, 54, nullptr},     {GgmlType::TQ2_0, "TQ2_0", 256, 66, nullptr},
    {GgmlType::MXFP4, "MXFP4", 32, 17, nullptr},      {GgmlType::NVFP4, "NVFP4", 64, 36, nullptr},
    {GgmlType::Q1_0, "Q1_0", 128, 18, nullptr},
};
// clang-format on

const TypeTraits* find_type(uint32_t id) {
  for (const auto& t : kTypes)
    if (static_cast<uint32_t>(t.type) == id) return &t;
  return nullptr;
}

const TypeTraits& traits(GgmlType type) {
  const TypeTraits* t = find_type(static_cast<uint32_t>(type));
  if (!t) throw std::invalid_argument("unknown GGML type id " + std::to_string(static_cast<uint32_t>(type)));
  return *t;
}

// ---------------------------------------------------------------------------------------------
// Metadata value types (by id)

constexpr const char* kValueTypeNames[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                           "bool", "string", "array", "u64", "i64", "f64"};
constexpr uint32_t kNumValueTypes = 13;

// Bytes an element of each value type takes at least: the fixed size, 8 for a string (its length),
// 12 for an array (element type and count). Bounds array counts by the bytes left in the file.
constexpr uint64_t kMinValueBytes[] = {1, 1, 2, 2, 4, 4, 4, 1, 8, 12, 8, 8, 8};

constexpr int kMaxArrayDepth = 8;  // arrays of arrays nest at most this deep (bounds the recursion)

// ---------------------------------------------------------------------------------------------
// UTF-8 check (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF).

bool valid_utf8(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  for (size_t i = 0; i < n;) {
    const unsigned c = p[i];
    size_t len;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, cp = c & 0x07;
    } else {
      return false;
    }
    if (n - i < len) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

std::string quoted(const std::string& s) {
  return "\"" + s + "\"";
}

// ---------------------------------------------------------------------------------------------
// Buffered sequential reader over the file for the header, metadata and tensor infos. `context`
// names what is being read, for the error message of a read past the end.

class Reader {
 public:
  Reader(int fd, uint64_t size, const std::string& path)
      : fd_(fd), size_(size), path_(path), buf_(std::min<uint64_t>(size, 1 << 20)) {}

  std::string context = "header";

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }
  [[noreturn]] void fail(const std::string& msg) const { throw DataError(path_, 0, msg); }

  void read(void* dst, uint64_t n) {
    if (n > remaining())
      fail("truncated: " + context + " needs " + std::to_string(n) + " bytes at offset " + std::to_string(pos_) +
           " but the file ends at " + std::to_string(size_));
    auto* out = static_cast<uint8_t*>(dst);
    while (n > 0) {
      if (pos_ < buf_start_ || pos_ >= buf_start_ + buf_len_) refill();
      const uint64_t k = std::min<uint64_t>(n, buf_start_ + buf_len_ - pos_);
      std::memcpy(out, buf_.data() + (pos_ - buf_start_), k);
      out += k, pos_ += k, n -= k;
    }
  }
  uint8_t u8() {
    uint8_t b;
    read(&b, 1);
    return b;
  }
  uint16_t u16() {
    uint8_t b[2];
    read(b, 2);
    return le16(b);
  }
  uint32_t u32() {
    uint8_t b[4];
    read(b, 4);
    return le32(b);
  }
  uint64_t u64() {
    uint8_t b[8];
    read(b, 8);
    return le64(b);
  }
  // A GGUF string: u64 length, then that many bytes. The length is checked before allocating.
  std::string string() {
    const uint64_t n = u64();
    if (n > remaining())
      fail(context + ": string length " + std::to_string(n) + " runs past the end of the file (" +
           std::to_string(remaining()) + " bytes left at offset " + std::to_string(pos_) + ")");
    std::string s(n, '\0');
    read(s.data(), n);
    return s;
  }

 private:
  void refill() {
    buf_start_ = pos_;
    buf_len_ = 0;
    const uint64_t want = std::min<uint64_t>(buf_.size(), size_ - pos_);
    while (buf_len_ < want) {
      const ssize_t r = ::pread(fd_, buf_.data() + buf_len_, want - buf_len_, static_cast<off_t>(pos_ + buf_len_));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0)
        fail("read failed at offset " + std::to_string(pos_ + buf_len_) +
             (r < 0 ? ": " + std::string(std::strerror(errno)) : ": file shrank while open"));
      buf_len_ += static_cast<uint64_t>(r);
    }
  }

  int fd_;
  uint64_t size_, pos_ = 0;
  const std::string& path_;
  std::vector<uint8_t> buf_;
  uint64_t buf_start_ = 0, buf_len_ = 0;
};

// Reads an array (element type, count, elements) into v, `depth` levels deep.
void read_array(Reader& r, GgufValue& v, int depth);

// Reads one element of `type` and appends it to v's vector for that type; an element that is an
// array recurses through read_array, at most kMaxArrayDepth levels deep.
void read_element(Reader& r, GgufValue& v, GgufValueType type, int depth) {
  switch (type) {
    case GgufValueType::U8:
      v.ints.push_back(r.u8());
      break;
    case GgufValueType::I8:
      v.ints.push_back(static_cast<int8_t>(r.u8()));
      break;
    case GgufValueType::U16:
      v.ints.push_back(r.u16());
      break;
    case GgufValueType::I16:
      v.ints.push_back(static_cast<int16_t>(r.u16()));
      break;
    case GgufValueType::U32:
      v.ints.push_back(r.u32());
      break;
    case GgufValueType::I32:
      v.ints.push_back(static_cast<int32_t>(r.u32()));
      break;
    case GgufValueType::U64:  // kept as its bit pattern; get_int checks the range
      v.ints.push_back(static_cast<int64_t>(r.u64()));
      break;
    case GgufValueType::I64:
      v.ints.push_back(static_cast<int64_t>(r.u64()));
      break;
    case GgufValueType::F32:
      v.floats.push_back(bits_to_float(r.u32()));
      break;
    case GgufValueType::F64: {
      const uint64_t b = r.u64();
      double x;
      std::memcpy(&x, &b, 8);
      v.floats.push_back(x);
      break;
    }
    case GgufValueType::BOOL: {
      const uint8_t b = r.u8();
      if (b > 1) r.fail(r.context + ": bool value " + std::to_string(b) + " is neither 0 nor 1");
      v.ints.push_back(b);
      break;
    }
    case GgufValueType::STRING:
      v.strings.push_back(r.string());
      break;
    case GgufValueType::ARRAY: {
      GgufValue inner;
      read_array(r, inner, depth + 1);
      v.arrays.push_back(std::move(inner));
      break;
    }
  }
}

GgufValueType read_value_type(Reader& r, const char* what) {
  const uint32_t t = r.u32();
  if (t >= kNumValueTypes) r.fail(r.context + ": unknown " + what + " " + std::to_string(t));
  return static_cast<GgufValueType>(t);
}

void read_array(Reader& r, GgufValue& v, int depth) {
  if (depth > kMaxArrayDepth) r.fail(r.context + ": arrays nested deeper than " + std::to_string(kMaxArrayDepth));
  v.is_array = true;
  v.elem = read_value_type(r, "array element type");
  const uint64_t n = r.u64();
  const uint64_t min_bytes = kMinValueBytes[static_cast<uint32_t>(v.elem)];
  if (n > r.remaining() / min_bytes)
    r.fail(r.context + ": array of " + std::to_string(n) + " " + gguf_value_type_name(v.elem) +
           " elements cannot fit in the " + std::to_string(r.remaining()) + " bytes left in the file");
  switch (v.elem) {
    case GgufValueType::F32:
    case GgufValueType::F64:
      v.floats.reserve(n);
      break;
    case GgufValueType::STRING:
      v.strings.reserve(n);
      break;
    case GgufValueType::ARRAY:
      v.arrays.reserve(n);
      break;
    default:
      v.ints.reserve(n);
  }
  for (uint64_t i = 0; i < n; ++i) read_element(r, v, v.elem, depth);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Public type helpers

bool ggml_type_known(uint32_t id) {
  return find_type(id) != nullptr;
}
const char* ggml_type_name(GgmlType type) {
  const TypeTraits* t = find_type(static_cast<uint32_t>(type));
  return t ? t->name : "unknown";
}
int64_t ggml_block_size(GgmlType type) {
  return traits(type).block;
}
int64_t ggml_type_size(GgmlType type) {
  return traits(type).size;
}
bool ggml_can_dequantize(GgmlType type) {
  const TypeTraits* t = find_type(static_cast<uint32_t>(type));
  return t && t->rows;
}

const char* gguf_value_type_name(GgufValueType type) {
  const auto t = static_cast<uint32_t>(type);
  return t < kNumValueTypes ? kValueTypeNames[t] : "unknown";
}

size_t GgufValue::size() const {
  return ints.size() + floats.size() + strings.size() + arrays.size();
}
std::string GgufValue::type() const {
  return is_array ? std::string("array of ") + gguf_value_type_name(elem) : gguf_value_type_name(elem);
}

void dequantize_row(GgmlType type, const void* src, int64_t n, float* dst) {
  const TypeTraits& t = traits(type);
  if (!t.rows) throw std::invalid_argument(std::string("cannot dequantize GGML type ") + t.name);
  if (n < 0 || n % t.block != 0)
    throw std::invalid_argument(std::to_string(n) + " elements is not a whole number of " + t.name + " blocks");
  t.rows(static_cast<const uint8_t*>(src), n / t.block, dst);
}

// ---------------------------------------------------------------------------------------------
// GgufFile

GgufFile::GgufFile(const std::string& path) : path_(path) {
  auto bad = [&](const std::string& msg) { return DataError(path_, 0, msg); };
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) throw bad(std::string("cannot open: ") + std::strerror(errno));
  try {
    struct stat st;
    if (::fstat(fd_, &st) != 0) throw bad(std::string("cannot stat: ") + std::strerror(errno));
    if (!S_ISREG(st.st_mode)) throw bad("not a regular file");
    file_size_ = static_cast<uint64_t>(st.st_size);
    Reader r(fd_, file_size_, path_);

    // Header.
    char magic[4];
    if (file_size_ < 4) throw bad("not a GGUF file: shorter than the 4-byte magic");
    r.read(magic, 4);
    if (std::memcmp(magic, "GGUF", 4) != 0) throw bad("not a GGUF file: bad magic (expected \"GGUF\")");
    version_ = r.u32();
    if (version_ == 0x02000000 || version_ == 0x03000000) throw bad("big-endian GGUF files are not supported");
    if (version_ != 2 && version_ != 3)
      throw bad("GGUF version " + std::to_string(version_) + " is not supported (only 2 and 3)");
    const uint64_t n_tensors = r.u64();
    const uint64_t n_kv = r.u64();
    // Smallest possible entries: a kv is an empty key (8), a type (4) and one byte; a tensor info is
    // an empty name (8), n_dims (4), type (4) and offset (8).
    if (n_kv > r.remaining() / 13)
      throw bad("metadata count " + std::to_string(n_kv) + " cannot fit in a file of " + std::to_string(file_size_) +
                " bytes");
    if (n_tensors > r.remaining() / 24)
      throw bad("tensor count " + std::to_string(n_tensors) + " cannot fit in a file of " + std::to_string(file_size_) +
                " bytes");

    // Metadata.
    kv_.reserve(n_kv);
    for (uint64_t i = 0; i < n_kv; ++i) {
      r.context = "the key of metadata entry " + std::to_string(i);
      std::string key = r.string();
      if (!valid_utf8(key)) throw bad(r.context + " is not valid UTF-8");
      if (index_.count(key)) throw bad("metadata key " + quoted(key) + " appears twice");
      r.context = "metadata key " + quoted(key);
      GgufValue v;
      const GgufValueType type = read_value_type(r, "value type");
      if (type == GgufValueType::ARRAY) {
        read_array(r, v, 1);
      } else {
        v.elem = type;
        read_element(r, v, type, 0);
      }
      index_.emplace(key, kv_.size());
      kv_.emplace_back(std::move(key), std::move(v));
    }
    if (has("general.alignment")) {
      const GgufValue& a = value("general.alignment");
      const bool is_int = !a.is_array && !a.ints.empty() && a.elem != GgufValueType::BOOL;
      if (!is_int) throw bad("general.alignment has type " + a.type() + ", expected u32");
      const uint64_t al = static_cast<uint64_t>(a.ints[0]);
      if (al == 0 || (al & (al - 1)) != 0 || al > (1u << 30))
        throw bad("general.alignment " + std::to_string(a.ints[0]) + " is not a power of two up to 2^30");
      alignment_ = al;
    }

    // Tensor infos.
    tensors_.reserve(n_tensors);
    for (uint64_t i = 0; i < n_tensors; ++i) {
      r.context = "the name of tensor " + std::to_string(i);
      GgufTensorInfo t;
      t.name = r.string();
      if (!valid_utf8(t.name)) throw bad(r.context + " is not valid UTF-8");
      if (tensor_index_.count(t.name)) throw bad("tensor " + t.name + " appears twice");
      r.context = "tensor " + t.name;
      const uint32_t n_dims = r.u32();
      if (n_dims > 4) throw bad("tensor " + t.name + " has " + std::to_string(n_dims) + " dimensions (at most 4)");
      t.n_elements = 1;
      for (uint32_t k = 0; k < n_dims; ++k) {
        const uint64_t d = r.u64();
        int64_t prod;
        if (d > static_cast<uint64_t>(INT64_MAX) ||
            __builtin_mul_overflow(t.n_elements, static_cast<int64_t>(d), &prod))
          throw bad("tensor " + t.name + ": dimensions overflow 64 bits (ne[" + std::to_string(k) +
                    "] = " + std::to_string(d) + ")");
        t.ne.push_back(static_cast<int64_t>(d));
        t.n_elements = prod;
      }
      const uint32_t type = r.u32();
      const TypeTraits* tt = find_type(type);
      if (!tt) throw bad("tensor " + t.name + " has unknown GGML type id " + std::to_string(type));
      t.type = tt->type;
      t.offset = r.u64();
      const int64_t row = t.ne.empty() ? 1 : t.ne[0];
      if (row % tt->block != 0)
        throw bad("tensor " + t.name + ": ne[0] = " + std::to_string(row) + " is not a multiple of " + tt->name +
                  "'s block size " + std::to_string(tt->block));
      const uint64_t blocks = static_cast<uint64_t>(t.n_elements / tt->block);
      if (__builtin_mul_overflow(blocks, static_cast<uint64_t>(tt->size), &t.n_bytes))
        throw bad("tensor " + t.name + ": byte size overflows 64 bits");
      tensor_index_.emplace(t.name, tensors_.size());
      tensors_.push_back(std::move(t));
    }

    // Data section: starts at the next multiple of the alignment; every tensor must lie inside it.
    data_offset_ = (r.pos() + alignment_ - 1) / alignment_ * alignment_;
    if (!tensors_.empty() && data_offset_ > file_size_)  // even an empty tensor must start inside the file
      throw bad("the data section starts at byte " + std::to_string(data_offset_) + ", past the end of the file (" +
                std::to_string(file_size_) + " bytes)");
    const uint64_t data_size = file_size_ > data_offset_ ? file_size_ - data_offset_ : 0;
    for (const auto& t : tensors_) {
      if (t.offset % alignment_ != 0)
        throw bad("tensor " + t.name + ": offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
                  std::to_string(alignment_));
      if (t.offset > data_size || t.n_bytes > data_size - t.offset)
        throw bad("tensor " + t.name + ": data [" + std::to_string(t.offset) + ", +" + std::to_string(t.n_bytes) +
                  ") runs past the end of the file (data section of " + std::to_string(data_size) + " bytes)");
    }
    std::vector<size_t> order(tensors_.size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return std::make_pair(tensors_[a].offset, tensors_[a].n_bytes) <
             std::make_pair(tensors_[b].offset, tensors_[b].n_bytes);
    });
    for (size_t i = 1; i < order.size(); ++i) {
      const auto& prev = tensors_[order[i - 1]];
      const auto& cur = tensors_[order[i]];
      if (cur.offset < prev.offset + prev.n_bytes)
        throw bad("tensors " + prev.name + " and " + cur.name + " overlap in the data section");
    }
  } catch (...) {
    ::close(fd_);
    fd_ = -1;
    throw;
  }
}

GgufFile::~GgufFile() {
  if (fd_ >= 0) ::close(fd_);
}

GgufFile::GgufFile(GgufFile&& o) noexcept
    : path_(std::move(o.path_)),
      fd_(o.fd_),
      file_size_(o.file_size_),
      version_(o.version_),
      alignment_(o.alignment_),
      data_offset_(o.data_offset_),
      kv_(std::move(o.kv_)),
      index_(std::move(o.index_)),
      tensors_(std::move(o.tensors_)),
      tensor_index_(std::move(o.tensor_index_)) {
  o.fd_ = -1;
}

GgufFile& GgufFile::operator=(GgufFile&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(o.path_), fd_ = o.fd_, file_size_ = o.file_size_, version_ = o.version_;
    alignment_ = o.alignment_, data_offset_ = o.data_offset_;
    kv_ = std::move(o.kv_), index_ = std::move(o.index_);
    tensors_ = std::move(o.tensors_), tensor_index_ = std::move(o.tensor_index_);
    o.fd_ = -1;
  }
  return *this;
}

// --- metadata access

std::vector<std::string> GgufFile::keys() const {
  std::vector<std::string> out;
  out.reserve(kv_.size());
  for (const auto& kv : kv_) out.push_back(kv.first);
  return out;
}

const GgufValue& GgufFile::value(const std::string& key) const {
  auto it = index_.find(key);
  if (it == index_.end()) throw DataError(path_, 0, "metadata key " + quoted(key) + " is missing");
  return kv_[it->second].second;
}

namespace {

bool is_integer(GgufValueType t) {
  switch (t) {
    case GgufValueType::U8:
    case GgufValueType::I8:
    case GgufValueType::U16:
    case GgufValueType::I16:
    case GgufValueType::U32:
    case GgufValueType::I32:
    case GgufValueType::U64:
    case GgufValueType::I64:
      return true;
    default:
      return false;
  }
}
bool is_float(GgufValueType t) {
  return t == GgufValueType::F32 || t == GgufValueType::F64;
}

[[noreturn]] void wrong_type(const std::string& path, const std::string& key, const GgufValue& v, const char* want) {
  throw DataError(path, 0, "metadata key " + quoted(key) + " has type " + v.type() + ", expected " + want);
}

}  // namespace

std::string GgufFile::get_string(const std::string& key) const {
  const GgufValue& v = value(key);
  if (v.is_array || v.elem != GgufValueType::STRING) wrong_type(path_, key, v, "string");
  if (!valid_utf8(v.strings[0])) throw DataError(path_, 0, "metadata key " + quoted(key) + " is not valid UTF-8");
  return v.strings[0];
}

int64_t GgufFile::get_int(const std::string& key) const {
  const GgufValue& v = value(key);
  if (v.is_array || !is_integer(v.elem)) wrong_type(path_, key, v, "an integer");
  if (v.elem == GgufValueType::U64 && v.ints[0] < 0)
    throw DataError(path_, 0,
                    "metadata key " + quoted(key) + " holds " + std::to_string(static_cast<uint64_t>(v.ints[0])) +
                        ", beyond int64");
  return v.ints[0];
}

double GgufFile::get_float(const std::string& key) const {
  const GgufValue& v = value(key);
  if (v.is_array || !is_float(v.elem)) wrong_type(path_, key, v, "f32 or f64");
  return v.floats[0];
}

bool GgufFile::get_bool(const std::string& key) const {
  const GgufValue& v = value(key);
  if (v.is_array || v.elem != GgufValueType::BOOL) wrong_type(path_, key, v, "bool");
  return v.ints[0] != 0;
}

std::vector<std::string> GgufFile::get_string_array(const std::string& key) const {
  const GgufValue& v = value(key);
  if (!v.is_array || v.elem != GgufValueType::STRING) wrong_type(path_, key, v, "an array of string");
  for (size_t i = 0; i < v.strings.size(); ++i)
    if (!valid_utf8(v.strings[i]))
      throw DataError(path_, 0,
                      "metadata key " + quoted(key) + ": element " + std::to_string(i) + " is not valid UTF-8");
  return v.strings;
}

std::vector<int64_t> GgufFile::get_int_array(const std::string& key) const {
  const GgufValue& v = value(key);
  if (!v.is_array || !is_integer(v.elem)) wrong_type(path_, key, v, "an array of integers");
  if (v.elem == GgufValueType::U64)
    for (int64_t x : v.ints)
      if (x < 0) throw DataError(path_, 0, "metadata key " + quoted(key) + " holds a u64 beyond int64");
  return v.ints;
}

std::vector<double> GgufFile::get_float_array(const std::string& key) const {
  const GgufValue& v = value(key);
  if (!v.is_array || !is_float(v.elem)) wrong_type(path_, key, v, "an array of f32 or f64");
  return v.floats;
}

// --- tensor data

const GgufTensorInfo& GgufFile::tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  if (it == tensor_index_.end()) throw DataError(path_, 0, "no tensor named " + name);
  return tensors_[it->second];
}

// The info must describe this file (it may be a caller's copy): sizes consistent, bytes in bounds;
// and, to dequantize, a type cairn can dequantize.
void GgufFile::check_tensor(const GgufTensorInfo& t, bool to_dequantize) const {
  const TypeTraits* tt = find_type(static_cast<uint32_t>(t.type));
  const uint64_t data_size = file_size_ > data_offset_ ? file_size_ - data_offset_ : 0;
  if (!tt || t.n_elements < 0 || t.n_elements % tt->block != 0 ||
      t.n_bytes / static_cast<uint64_t>(tt->size) != static_cast<uint64_t>(t.n_elements / tt->block) ||
      t.n_bytes % static_cast<uint64_t>(tt->size) != 0 || t.offset > data_size || t.n_bytes > data_size - t.offset)
    throw DataError(path_, 0, "tensor " + t.name + ": the tensor info does not describe data in this file");
  if (to_dequantize && !tt->rows)
    throw DataError(path_, 0, "tensor " + t.name + " has type " + tt->name + ", which cairn cannot read");
}

void GgufFile::read_at(uint64_t offset, void* dst, uint64_t n) const {
  read_exactly_at(fd_, offset, dst, n, path_);
}

std::vector<uint8_t> GgufFile::read_raw(const GgufTensorInfo& t) const {
  check_tensor(t, false);
  std::vector<uint8_t> out(t.n_bytes);
  read_at(data_offset_ + t.offset, out.data(), t.n_bytes);
  return out;
}

void GgufFile::dequantize(const GgufTensorInfo& t, float* out) const {
  check_tensor(t, true);
  // Read and convert in chunks of whole blocks (about 4 MiB), so the raw bytes never need a second
  // full-size buffer.
  const TypeTraits& tt = traits(t.type);
  const uint64_t total_blocks = t.n_bytes / static_cast<uint64_t>(tt.size);
  const uint64_t chunk_blocks = std::max<uint64_t>(1, (4u << 20) / static_cast<uint64_t>(tt.size));
  std::vector<uint8_t> buf(std::min(total_blocks, chunk_blocks) * static_cast<uint64_t>(tt.size));
  for (uint64_t b = 0; b < total_blocks; b += chunk_blocks) {
    const uint64_t nb = std::min(chunk_blocks, total_blocks - b);
    read_at(data_offset_ + t.offset + b * static_cast<uint64_t>(tt.size), buf.data(),
            nb * static_cast<uint64_t>(tt.size));
    dequantize_row(t.type, buf.data(), static_cast<int64_t>(nb) * tt.block, out + b * static_cast<uint64_t>(tt.block));
  }
}

std::vector<float> GgufFile::dequantize(const GgufTensorInfo& t) const {
  check_tensor(t, true);  // before allocating
  std::vector<float> out(static_cast<size_t>(t.n_elements));
  dequantize(t, out.data());
  return out;
}

}  // namespace cairn

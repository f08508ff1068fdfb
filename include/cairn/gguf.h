// GGUF reader (llama.cpp's model file format, versions 2 and 3, little-endian), for importing
// pretrained weights. Opening a file reads and validates the header, every metadata key/value and
// every tensor info; tensor bytes stay on disk and are read (pread) only when asked for, then
// dequantized to fp32. Format, supported types and limits: docs/gguf.md.
//
// Invariants after a successful open: keys and tensor names are unique valid UTF-8; every tensor has
// a known GGML type, at most 4 dims whose product fits int64, ne[0] a multiple of its type's block
// size, an offset that is a multiple of the alignment, and bytes that lie inside the file and overlap
// no other tensor's. Every GgufFile failure (open, lookup, read) throws DataError naming the file.
// Dimension order is GGUF's: ne[0] is the fastest-varying (innermost) dimension, so a PyTorch
// [out, in] weight has ne = {in, out}; shape() gives the PyTorch order.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace cairn {

// GGML tensor types by their on-disk ids (ggml.h `enum ggml_type`). Ids 4, 5 (removed Q4_2/Q4_3)
// and 31-33 (removed Q4_0_4_4 etc.) and anything else not listed are rejected at open.
// clang-format off
enum class GgmlType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22, IQ4_XS = 23,
  I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
  TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39, NVFP4 = 40, Q1_0 = 41,
};
// clang-format on

bool ggml_type_known(uint32_t id);          // listed in GgmlType
const char* ggml_type_name(GgmlType type);  // "Q4_K"; "unknown" for an unlisted id
int64_t ggml_block_size(GgmlType type);     // elements per block (1 for F32/F16/BF16, 32, 256, ...)
int64_t ggml_type_size(GgmlType type);      // bytes per block
bool ggml_can_dequantize(GgmlType type);    // F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K..Q6_K

// Converts n elements of `type` at `src` (n / block_size blocks, packed) to fp32 in element order.
// Throws std::invalid_argument when the type cannot be dequantized or n is not a multiple of the
// block size (a caller bug: GgufFile checks both first and throws DataError).
void dequantize_row(GgmlType type, const void* src, int64_t n, float* dst);

// GGUF metadata value types by their on-disk ids.
// clang-format off
enum class GgufValueType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7, STRING = 8, ARRAY = 9,
  U64 = 10, I64 = 11, F64 = 12,
};
// clang-format on
const char* gguf_value_type_name(GgufValueType type);  // "u32", "string", "array", ...

// One metadata value. A scalar is stored like an array of one element, so `elem` is the scalar's type
// or the array's element type, and exactly one of the vectors below holds the element(s):
//   ints    every integer type and BOOL (0/1); a U64 above INT64_MAX is kept as its bit pattern
//   floats  F32 (exactly widened) and F64
//   strings STRING, the raw bytes of the file (checked to be UTF-8 by the get_string* accessors)
//   arrays  ARRAY, for arrays of arrays
struct GgufValue {
  bool is_array = false;
  GgufValueType elem = GgufValueType::U8;
  std::vector<int64_t> ints;
  std::vector<double> floats;
  std::vector<std::string> strings;
  std::vector<GgufValue> arrays;
  size_t size() const;       // element count (1 for a scalar)
  std::string type() const;  // "u32", "array of string", ...
};

struct GgufTensorInfo {
  std::string name;
  GgmlType type = GgmlType::F32;
  std::vector<int64_t> ne;  // GGUF order: ne[0] is the innermost dimension; 0 to 4 entries
  int64_t n_elements = 0;   // product of ne (1 when ne is empty)
  uint64_t n_bytes = 0;     // n_elements / block size * type size
  uint64_t offset = 0;      // from the start of the data section (GgufFile::data_offset())
  std::vector<int64_t> shape() const { return {ne.rbegin(), ne.rend()}; }  // PyTorch order
};

class GgufFile {
 public:
  explicit GgufFile(const std::string& path);  // reads and validates everything but the tensor data
  ~GgufFile();
  GgufFile(GgufFile&& other) noexcept;
  GgufFile& operator=(GgufFile&& other) noexcept;
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }      // general.alignment, default 32
  uint64_t data_offset() const { return data_offset_; }  // absolute file offset of the data section
  uint64_t file_size() const { return file_size_; }

  // Metadata. Missing key or wrong type → DataError naming the key. get_int accepts every integer
  // type (not BOOL); get_float F32 and F64; the array getters want an array of that kind.
  bool has(const std::string& key) const { return index_.count(key) != 0; }
  std::vector<std::string> keys() const;  // in file order
  const GgufValue& value(const std::string& key) const;
  std::string get_string(const std::string& key) const;
  int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  std::vector<std::string> get_string_array(const std::string& key) const;
  std::vector<int64_t> get_int_array(const std::string& key) const;
  std::vector<double> get_float_array(const std::string& key) const;

  // Tensors, in file order. tensor(name) throws DataError when there is no such tensor.
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  bool has_tensor(const std::string& name) const { return tensor_index_.count(name) != 0; }
  const GgufTensorInfo& tensor(const std::string& name) const;

  // Tensor data, read from disk on each call; const and safe to call from several threads at once.
  // dequantize() gives n_elements floats in the file's element order (ne[0] fastest); a type cairn
  // cannot dequantize → DataError naming the tensor and the type.
  std::vector<uint8_t> read_raw(const GgufTensorInfo& t) const;
  std::vector<float> dequantize(const GgufTensorInfo& t) const;
  void dequantize(const GgufTensorInfo& t, float* out) const;  // out holds t.n_elements floats
  std::vector<float> read_tensor_f32(const std::string& name) const { return dequantize(tensor(name)); }

 private:
  void read_at(uint64_t offset, void* dst, uint64_t n) const;
  void check_tensor(const GgufTensorInfo& t, bool to_dequantize) const;

  std::string path_;
  int fd_ = -1;
  uint64_t file_size_ = 0;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> kv_;  // file order
  std::map<std::string, size_t> index_;                // key → position in kv_
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

}  // namespace cairn

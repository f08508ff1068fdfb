// GgufFile (src/io/gguf.cpp) on arbitrary file bytes: open, every metadata value through the getter of
// its type, every tensor's bytes (read_raw) and, where cairn can, its dequantized values. Invariants:
// the tensor infos keep the promises of include/cairn/gguf.h (sizes consistent, data inside the file)
// and dequantize gives n_elements floats.
#include "cairn/gguf.h"
#include "fuzz.h"

using namespace cairn;

namespace {

// The getter of v's own type; errors (invalid UTF-8 strings, a u64 beyond int64) are DataErrors.
void read_value(const GgufFile& g, const std::string& key, const GgufValue& v) {
  using T = GgufValueType;
  const bool integer = v.elem != T::F32 && v.elem != T::F64 && v.elem != T::BOOL && v.elem != T::STRING &&
                       v.elem != T::ARRAY;
  fuzz::expect_data_error([&] {
    if (v.is_array && v.elem == T::STRING) g.get_string_array(key);
    else if (v.is_array && integer) g.get_int_array(key);
    else if (v.is_array && (v.elem == T::F32 || v.elem == T::F64)) g.get_float_array(key);
    else if (!v.is_array && v.elem == T::STRING) g.get_string(key);
    else if (!v.is_array && v.elem == T::BOOL) g.get_bool(key);
    else if (!v.is_array && integer) g.get_int(key);
    else if (!v.is_array) g.get_float(key);
  });
  fuzz::check(v.is_array || v.size() == 1, "metadata " + key + ": a scalar that does not hold one value");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const fuzz::ScratchDir dir("gguf");
  const std::string path = dir.write("model.gguf", fuzz::as_view(data, size));
  fuzz::expect_data_error([&] {
    const GgufFile g(path);
    for (const std::string& key : g.keys()) read_value(g, key, g.value(key));
    for (const GgufTensorInfo& t : g.tensors()) {
      fuzz::check(&g.tensor(t.name) == &t, "tensor(name) finds another tensor");
      int64_t n = 1;
      bool overflow = false;
      for (int64_t d : t.ne) overflow = overflow || d < 0 || __builtin_mul_overflow(n, d, &n);
      fuzz::check(t.ne.size() <= 4 && !overflow && n == t.n_elements, "tensor " + t.name + ": n_elements is not the product of ne");
      fuzz::check(static_cast<uint64_t>(t.n_elements / ggml_block_size(t.type) * ggml_type_size(t.type)) == t.n_bytes,
                  "tensor " + t.name + ": n_bytes does not match its type");
      fuzz::check(g.data_offset() + t.offset + t.n_bytes <= g.file_size(), "tensor " + t.name + " lies past the end");
      fuzz::check(g.read_raw(t).size() == t.n_bytes, "read_raw size");
      if (ggml_can_dequantize(t.type) && t.n_elements <= (1 << 22))
        fuzz::check(g.dequantize(t).size() == static_cast<size_t>(t.n_elements), "dequantize size");
    }
  });
  return 0;
}

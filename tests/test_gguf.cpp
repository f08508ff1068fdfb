// The GGUF reader (include/cairn/gguf.h) against an independent reference and hostile input:
//  - hand-computed blocks for the block formulas and the type table;
//  - tests/python/gguf_reference.py writes GGUF files with gguf-py's GGUFWriter (every metadata value
//    type, every dequantizable tensor type, awkward shapes) and dequantizes them with gguf.quants;
//    every metadata value and every tensor must match;
//  - the real SmolLM2-135M Q4_1 file: known metadata, and three tensors against gguf.quants;
//  - hostile files made here from a small valid one (truncated at every offset, counts, lengths,
//    types, dims, offsets patched, duplicates, random mutations) must give DataError, nothing else.
//
// Tolerance: none. Every tensor must equal the reference bit for bit. cairn computes the same fp32
// multiplications in the same order as gguf.quants; every product that is then added is exact in
// fp32 (so an FMA cannot change it), and the f16/bf16 conversions are exact. There is no rounding
// difference to allow for: a mismatch is a layout or formula bug.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "cairn/errors.h"
#include "cairn/gguf.h"
#include "test_paths.h"
#include "test_tmpdir.h"

namespace cairn {
namespace {
using nlohmann::json;
using test::TempDir;

std::string reference_script() {
  return test::source_dir() + "/tests/python/gguf_reference.py";
}

int run(const std::string& cmd) {
  return std::system(cmd.c_str());
}

std::vector<float> read_f32_file(const std::string& path) {
  const std::string bytes = test::slurp(path);
  std::vector<float> v(bytes.size() / 4);
  std::memcpy(v.data(), bytes.data(), v.size() * 4);
  return v;
}

// Bitwise equality (so -0 ≠ +0 and NaN == the same NaN), reporting the first mismatch.
::testing::AssertionResult bits_equal(const std::vector<float>& got, const std::vector<float>& ref) {
  if (got.size() != ref.size())
    return ::testing::AssertionFailure() << "size " << got.size() << " vs reference " << ref.size();
  for (size_t i = 0; i < got.size(); ++i)
    if (std::memcmp(&got[i], &ref[i], 4) != 0)
      return ::testing::AssertionFailure() << "element " << i << ": got " << got[i] << ", reference " << ref[i];
  return ::testing::AssertionSuccess();
}

// --- a small GGUF writer for hand-made and hostile files -------------------------------------------

std::string u32b(uint32_t x) {
  std::string s(4, '\0');
  for (int i = 0; i < 4; ++i) s[i] = static_cast<char>((x >> (8 * i)) & 0xFF);
  return s;
}
std::string u64b(uint64_t x) {
  return u32b(static_cast<uint32_t>(x)) + u32b(static_cast<uint32_t>(x >> 32));
}
std::string strb(const std::string& s) {
  return u64b(s.size()) + s;
}
std::string f32b(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return u32b(b);
}

constexpr uint32_t kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7, kString = 8, kArray = 9;

struct Kv {
  std::string key;  // encoded (u64 length + bytes), so a test can forge the length
  uint32_t type;
  std::string payload;  // the value's bytes after its type
};
Kv kv(const std::string& key, uint32_t type, const std::string& payload) {
  return {strb(key), type, payload};
}

struct Ti {
  std::string name;  // encoded, as Kv::key
  std::vector<uint64_t> ne;
  uint32_t type;
  uint64_t offset;
  int64_t n_dims = -1;  // -1: ne.size()
};
Ti ti(const std::string& name, std::vector<uint64_t> ne, GgmlType type, uint64_t offset) {
  return {strb(name), std::move(ne), static_cast<uint32_t>(type), offset};
}

struct Spec {
  std::string magic = "GGUF";
  uint32_t version = 3;
  int64_t tensor_count = -1, kv_count = -1;  // -1: the real counts
  std::vector<Kv> kvs;
  std::vector<Ti> tensors;
  uint64_t alignment = 32;  // padding before the data section
  std::string data;         // the data section
};

std::string build(const Spec& s) {
  std::string out = s.magic + u32b(s.version);
  out += u64b(s.tensor_count >= 0 ? static_cast<uint64_t>(s.tensor_count) : s.tensors.size());
  out += u64b(s.kv_count >= 0 ? static_cast<uint64_t>(s.kv_count) : s.kvs.size());
  for (const auto& k : s.kvs) out += k.key + u32b(k.type) + k.payload;
  for (const auto& t : s.tensors) {
    out += t.name + u32b(static_cast<uint32_t>(t.n_dims >= 0 ? t.n_dims : static_cast<int64_t>(t.ne.size())));
    for (uint64_t d : t.ne) out += u64b(d);
    out += u32b(t.type) + u64b(t.offset);
  }
  out.append((s.alignment - out.size() % s.alignment) % s.alignment, '\0');
  return out + s.data;
}

// A valid file: metadata of several kinds, four tensors (F32 [3][4], Q8_0 [2][64], Q4_K [256],
// F16 [8]) packed at 32-byte alignment, the last one ending exactly at the end of the file.
Spec small_spec() {
  Spec s;
  s.kvs.push_back(kv("general.architecture", kString, strb("llama")));
  s.kvs.push_back(kv("x.u32", kU32, u32b(7)));
  s.kvs.push_back(kv("x.f32", kF32, f32b(0.5f)));
  s.kvs.push_back(kv("x.bool", kBool, std::string(1, '\1')));
  s.kvs.push_back(kv("x.arr", kArray, u32b(kI32) + u64b(3) + u32b(1) + u32b(2) + u32b(static_cast<uint32_t>(-3))));
  s.kvs.push_back(kv("x.strs", kArray, u32b(kString) + u64b(2) + strb("a") + strb("bc")));
  s.kvs.push_back(kv("x.nested", kArray, u32b(kArray) + u64b(1) + u32b(kU32) + u64b(1) + u32b(9)));
  s.tensors.push_back(ti("w.f32", {4, 3}, GgmlType::F32, 0));    // 48 bytes
  s.tensors.push_back(ti("w.q8", {64, 2}, GgmlType::Q8_0, 64));  // 4 blocks × 34 = 136
  s.tensors.push_back(ti("w.q4k", {256}, GgmlType::Q4_K, 224));  // 144
  s.tensors.push_back(ti("w.f16", {8}, GgmlType::F16, 384));     // 16
  std::mt19937 rng(7);
  s.data.resize(400);
  for (auto& c : s.data) c = static_cast<char>(rng());
  auto f16 = [&](size_t at) { s.data[at] = 0x00, s.data[at + 1] = 0x30; };  // 0.125
  for (int b = 0; b < 4; ++b) f16(64 + 34 * b);
  f16(224), f16(226);
  return s;
}

// Opening must throw DataError whose message names the file (and contains `needle`); any other
// exception, or success, fails.
void expect_data_error(const TempDir& d, const std::string& bytes, const std::string& label,
                       const std::string& needle = "") {
  const std::string path = d.write("hostile.gguf", bytes);
  try {
    GgufFile f(path);
    ADD_FAILURE() << label << ": opened without error";
  } catch (const DataError& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << label << ": " << msg;
    if (!needle.empty()) {
      EXPECT_NE(msg.find(needle), std::string::npos) << label << ": " << msg;
    }
  } catch (const std::exception& e) {
    ADD_FAILURE() << label << ": threw a non-DataError: " << e.what();
  }
}

// Compares a metadata value with its description in expected.json ({"type", "elem", "value"}).
void expect_value(const GgufValue& v, const json& e, const std::string& where) {
  const bool is_array = e["type"] == "array";
  const std::string elem = is_array ? e["elem"].get<std::string>() : e["type"].get<std::string>();
  ASSERT_EQ(v.is_array, is_array) << where;
  ASSERT_EQ(gguf_value_type_name(v.elem), elem) << where;
  const json values = is_array ? e["value"] : json::array({e["value"]});
  ASSERT_EQ(v.size(), values.size()) << where;
  for (size_t i = 0; i < values.size(); ++i) {
    const std::string at = where + "[" + std::to_string(i) + "]";
    if (elem == "array") {
      expect_value(v.arrays[i], values[i], at);
    } else if (elem == "string") {
      EXPECT_EQ(v.strings[i], values[i].get<std::string>()) << at;
    } else if (elem == "f32" || elem == "f64") {
      EXPECT_EQ(v.floats[i], values[i].get<double>()) << at;  // exact: f32 widens exactly
    } else if (elem == "bool") {
      EXPECT_EQ(v.ints[i], values[i].get<bool>() ? 1 : 0) << at;
    } else if (elem == "u64") {
      EXPECT_EQ(static_cast<uint64_t>(v.ints[i]), values[i].get<uint64_t>()) << at;
    } else {
      EXPECT_EQ(v.ints[i], values[i].get<int64_t>()) << at;
    }
  }
}

// The synthetic reference files, written once per test process.
class GgufReference : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    const std::string cmd = test::python() + " " + reference_script() + " synth " + dir_->file("");
    status_ = run(cmd);
    if (status_ == 0) expected_ = json::parse(test::slurp(dir_->file("expected.json")));
  }
  static void TearDownTestSuite() { delete dir_; }
  void SetUp() override {
    ASSERT_EQ(status_, 0) << "tests/python/gguf_reference.py failed (is the venv from scripts/setup.sh there? "
                          << test::python() << ")";
  }
  static std::string file(const std::string& name) { return dir_->file(name); }
  static inline TempDir* dir_ = nullptr;
  static inline int status_ = -1;
  static inline json expected_;
};

}  // namespace

// --- formulas and tables ---------------------------------------------------------------------------

TEST(GgufTypes, TableNamesAndSizes) {
  EXPECT_STREQ(ggml_type_name(GgmlType::Q4_K), "Q4_K");
  EXPECT_STREQ(ggml_type_name(GgmlType::IQ2_XXS), "IQ2_XXS");
  EXPECT_STREQ(ggml_type_name(static_cast<GgmlType>(4)), "unknown");
  EXPECT_FALSE(ggml_type_known(4));
  EXPECT_FALSE(ggml_type_known(31));
  EXPECT_TRUE(ggml_type_known(30));
  const std::vector<std::tuple<GgmlType, int64_t, int64_t>> sizes = {
      {GgmlType::F32, 1, 4},      {GgmlType::F16, 1, 2},      {GgmlType::BF16, 1, 2},     {GgmlType::Q4_0, 32, 18},
      {GgmlType::Q4_1, 32, 20},   {GgmlType::Q5_0, 32, 22},   {GgmlType::Q5_1, 32, 24},   {GgmlType::Q8_0, 32, 34},
      {GgmlType::Q2_K, 256, 84},  {GgmlType::Q3_K, 256, 110}, {GgmlType::Q4_K, 256, 144}, {GgmlType::Q5_K, 256, 176},
      {GgmlType::Q6_K, 256, 210}, {GgmlType::Q8_K, 256, 292}};
  for (const auto& [t, block, size] : sizes) {
    EXPECT_EQ(ggml_block_size(t), block) << ggml_type_name(t);
    EXPECT_EQ(ggml_type_size(t), size) << ggml_type_name(t);
  }
  EXPECT_TRUE(ggml_can_dequantize(GgmlType::Q6_K));
  EXPECT_FALSE(ggml_can_dequantize(GgmlType::IQ2_XXS));
  EXPECT_FALSE(ggml_can_dequantize(GgmlType::Q8_1));
}

TEST(GgufDequant, HandComputedBlocks) {
  // F16: 1, 2^-24 (smallest subnormal), -0, 65504, inf, NaN. BF16: 1, -2.
  const uint16_t h[] = {0x3C00, 0x0001, 0x8000, 0x7BFF, 0x7C00, 0x7E00};
  float y[32];
  dequantize_row(GgmlType::F16, h, 6, y);
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_EQ(y[1], 0x1p-24f);
  EXPECT_TRUE(std::signbit(y[2]) && y[2] == 0.0f);
  EXPECT_EQ(y[3], 65504.0f);
  EXPECT_TRUE(std::isinf(y[4]));
  EXPECT_TRUE(std::isnan(y[5]));
  const uint16_t bf[] = {0x3F80, 0xC000};
  dequantize_row(GgmlType::BF16, bf, 2, y);
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_EQ(y[1], -2.0f);

  // Q8_0: d = 0.5 (f16 0x3800), q_j = j - 16 → x_j = (j - 16) / 2.
  uint8_t q8[34] = {0x00, 0x38};
  for (int j = 0; j < 32; ++j) q8[2 + j] = static_cast<uint8_t>(j - 16);
  dequantize_row(GgmlType::Q8_0, q8, 32, y);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], (j - 16) * 0.5f) << j;

  // Q4_0: d = 2 (0x4000); byte j holds element j (low nibble = j % 16) and element j + 16 (high
  // nibble = 15 - j % 16): x = (q - 8) · 2.
  uint8_t q4[18] = {0x00, 0x40};
  for (int j = 0; j < 16; ++j) q4[2 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  dequantize_row(GgmlType::Q4_0, q4, 32, y);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], (j - 8) * 2.0f) << j;
    EXPECT_EQ(y[j + 16], (15 - j - 8) * 2.0f) << j;
  }

  // Q4_1: d = 0.25 (0x3400), m = -1 (0xBC00): x = q / 4 - 1.
  uint8_t q41[20] = {0x00, 0x34, 0x00, 0xBC};
  for (int j = 0; j < 16; ++j) q41[4 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  dequantize_row(GgmlType::Q4_1, q41, 32, y);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], j * 0.25f - 1.0f) << j;
    EXPECT_EQ(y[j + 16], (15 - j) * 0.25f - 1.0f) << j;
  }

  // Q4_K: d = 1, dmin = 1, all q = 1. Sub-block 5's scale is the low nibble of byte 9 (3) plus the
  // top two bits of byte 1 (0b10 → 32): 35; its min is byte 9's high nibble (2) plus byte 5's top
  // bits (0b01 → 16): 18. Sub-block 1: scale = byte 1 & 63 = 4, min = byte 5 & 63 = 6.
  std::vector<uint8_t> q4k(144, 0);
  q4k[1] = 0x3C, q4k[3] = 0x3C;  // d = dmin = 1
  q4k[4 + 1] = 0x80 | 4, q4k[4 + 5] = 0x40 | 6, q4k[4 + 9] = 0x23;
  for (int i = 16; i < 144; ++i) q4k[i] = 0x11;
  std::vector<float> yk(256);
  dequantize_row(GgmlType::Q4_K, q4k.data(), 256, yk.data());
  EXPECT_EQ(yk[32 * 1], 4.0f - 6.0f);
  EXPECT_EQ(yk[32 * 5 + 7], 35.0f - 18.0f);
  EXPECT_EQ(yk[0], 0.0f);

  EXPECT_THROW(dequantize_row(GgmlType::IQ2_XXS, q4k.data(), 256, yk.data()), std::invalid_argument);
  EXPECT_THROW(dequantize_row(GgmlType::Q8_0, q8, 16, y), std::invalid_argument);
}

// --- against gguf-py -------------------------------------------------------------------------------

TEST_F(GgufReference, EveryValueAndTensorMatchesGgufPy) {
  for (const auto& ef : expected_["files"]) {
    const std::string name = ef["path"];
    SCOPED_TRACE(name);
    GgufFile f(file(name));
    EXPECT_EQ(f.version(), 3u);
    EXPECT_EQ(f.alignment(), ef["alignment"].get<uint64_t>());
    EXPECT_EQ(f.data_offset() % f.alignment(), 0u);
    EXPECT_EQ(f.keys(), ef["keys"].get<std::vector<std::string>>());
    for (const auto& [key, e] : ef["kv"].items()) expect_value(f.value(key), e, key);
    ASSERT_EQ(f.tensors().size(), ef["tensors"].size());
    for (size_t i = 0; i < f.tensors().size(); ++i) {
      const GgufTensorInfo& t = f.tensors()[i];
      const json& et = ef["tensors"][i];
      SCOPED_TRACE(t.name);
      EXPECT_EQ(t.name, et["name"].get<std::string>());
      EXPECT_STREQ(ggml_type_name(t.type), et["type"].get<std::string>().c_str());
      EXPECT_EQ(t.ne, et["ne"].get<std::vector<int64_t>>());
      EXPECT_EQ(t.offset, et["offset"].get<uint64_t>());
      EXPECT_EQ(t.n_bytes, et["n_bytes"].get<uint64_t>());
      EXPECT_EQ(t.offset % f.alignment(), 0u);
      EXPECT_TRUE(bits_equal(f.dequantize(t), read_f32_file(file(et["f32"]))));
    }
  }
}

TEST_F(GgufReference, TypedGettersAndTheirErrors) {
  GgufFile f(file("ref.gguf"));
  EXPECT_EQ(f.get_string("general.architecture"), "cairn-test");
  EXPECT_EQ(f.get_int("t.u8"), 200);
  EXPECT_EQ(f.get_int("t.i8"), -100);
  EXPECT_EQ(f.get_int("t.u32"), 4000000000);
  EXPECT_EQ(f.get_int("t.i64"), INT64_MIN);
  EXPECT_EQ(f.get_float("t.f32"), static_cast<double>(3.14159f));
  EXPECT_EQ(f.get_float("t.f64"), -2.718281828459045e-300);
  EXPECT_TRUE(f.get_bool("t.bool_true"));
  EXPECT_FALSE(f.get_bool("t.bool_false"));
  EXPECT_EQ(f.get_string("t.empty_string"), "");
  EXPECT_EQ(f.get_string_array("t.arr_string")[3], "字🙂");
  EXPECT_EQ(f.get_int_array("t.arr_u8"), (std::vector<int64_t>{0, 1, 255, 128}));
  EXPECT_EQ(f.get_int_array("t.arr_u64"), (std::vector<int64_t>{INT64_MAX, 3}));
  EXPECT_EQ(f.get_float_array("t.arr_f64")[1], -1e300);
  EXPECT_TRUE(f.has("t.u16"));
  EXPECT_FALSE(f.has("t.nope"));
  EXPECT_FALSE(f.has_tensor("nope"));
  EXPECT_EQ(f.tensor("q4_k.raw.3d").shape(), (std::vector<int64_t>{2, 3, 512}));  // PyTorch order
  EXPECT_EQ(f.read_raw(f.tensor("q8_0.1d")).size(), 68u);

  auto message = [&](auto fn) -> std::string {
    try {
      fn();
    } catch (const DataError& e) {
      return e.what();
    }
    return "(no DataError)";
  };
  const std::string p = file("ref.gguf") + ": ";
  EXPECT_EQ(message([&] { f.get_int("t.nope"); }), p + "metadata key \"t.nope\" is missing");
  EXPECT_EQ(message([&] { f.get_int("t.string"); }),
            p + "metadata key \"t.string\" has type string, expected an integer");
  EXPECT_EQ(message([&] { f.get_int("t.bool_true"); }),
            p + "metadata key \"t.bool_true\" has type bool, expected an integer");
  EXPECT_EQ(message([&] { f.get_float("t.u8"); }), p + "metadata key \"t.u8\" has type u8, expected f32 or f64");
  EXPECT_EQ(message([&] { f.get_string("t.arr_string"); }),
            p + "metadata key \"t.arr_string\" has type array of string, expected string");
  EXPECT_EQ(message([&] { f.get_int_array("t.arr_f32"); }),
            p + "metadata key \"t.arr_f32\" has type array of f32, expected an array of integers");
  EXPECT_EQ(message([&] { f.get_string_array("t.arr_nested"); }),
            p + "metadata key \"t.arr_nested\" has type array of array, expected an array of string");
  EXPECT_EQ(message([&] { f.get_int("t.u64_max"); }),
            p + "metadata key \"t.u64_max\" holds 18446744073709551615, beyond int64");
  EXPECT_EQ(message([&] { f.tensor("nope"); }), p + "no tensor named nope");
}

TEST(GgufFile, VersionTwoMoveAndUnsupportedTypes) {
  TempDir d;
  Spec s = small_spec();
  s.version = 2;
  // An IQ2_XXS tensor (66 bytes per 256) opens, reads raw, and refuses to dequantize by name.
  s.tensors.push_back(ti("blk.0.attn_q.weight", {256}, GgmlType::IQ2_XXS, 416));
  s.data.resize(416 + 66, '\0');
  GgufFile f(d.write("v2.gguf", build(s)));
  EXPECT_EQ(f.version(), 2u);
  EXPECT_EQ(f.get_int_array("x.arr"), (std::vector<int64_t>{1, 2, -3}));
  EXPECT_EQ(f.value("x.nested").arrays.at(0).ints, (std::vector<int64_t>{9}));
  GgufFile g = std::move(f);
  const GgufTensorInfo& t = g.tensor("blk.0.attn_q.weight");
  EXPECT_EQ(g.read_raw(t).size(), 66u);
  try {
    g.dequantize(t);
    ADD_FAILURE() << "dequantized IQ2_XXS";
  } catch (const DataError& e) {
    EXPECT_EQ(std::string(e.what()),
              d.file("v2.gguf") + ": tensor blk.0.attn_q.weight has type IQ2_XXS, which cairn cannot read");
  }
  EXPECT_EQ(g.dequantize(g.tensor("w.f16")).size(), 8u);
  GgufTensorInfo forged = g.tensor("w.f32");
  forged.offset = 1u << 20;
  EXPECT_THROW(g.dequantize(forged), DataError);
  EXPECT_THROW(GgufFile(d.file("missing.gguf")), DataError);
  EXPECT_THROW(GgufFile(d.file("")), DataError);  // a directory
}

// --- the real model --------------------------------------------------------------------------------

TEST(GgufSmolLM2, MetadataAndTensorsMatchGgufPy) {
  const std::string path = test::smollm2_gguf();
  ASSERT_TRUE(std::filesystem::exists(path)) << path << " is missing: run scripts/get_smollm2.sh";
  GgufFile f(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_int("llama.block_count"), 30);
  EXPECT_EQ(f.get_int("llama.embedding_length"), 576);
  EXPECT_EQ(f.get_int("llama.attention.head_count"), 9);
  EXPECT_EQ(f.get_int("llama.attention.head_count_kv"), 3);
  EXPECT_EQ(f.get_float("llama.rope.freq_base"), 100000.0);
  EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(f.get_string("tokenizer.ggml.pre"), "smollm");
  EXPECT_EQ(f.get_string_array("tokenizer.ggml.tokens").size(), 49152u);
  EXPECT_EQ(f.get_string_array("tokenizer.ggml.merges").size(), 48900u);
  EXPECT_EQ(f.get_int_array("tokenizer.ggml.token_type").size(), 49152u);
  EXPECT_EQ(f.get_int("tokenizer.ggml.bos_token_id"), 1);
  EXPECT_EQ(f.get_int("tokenizer.ggml.eos_token_id"), 2);
  EXPECT_NE(f.get_string("tokenizer.chat_template").find("messages"), std::string::npos);
  ASSERT_EQ(f.tensors().size(), 272u);
  std::map<std::string, int> types;
  for (const auto& t : f.tensors()) types[ggml_type_name(t.type)]++;
  EXPECT_EQ(types, (std::map<std::string, int>{{"F32", 61}, {"Q4_1", 210}, {"Q8_0", 1}}));
  EXPECT_EQ(f.tensor("token_embd.weight").ne, (std::vector<int64_t>{576, 49152}));
  EXPECT_EQ(f.tensor("blk.0.ffn_down.weight").ne, (std::vector<int64_t>{1536, 576}));  // PyTorch [576, 1536]

  TempDir d;
  const std::vector<std::string> names = {"token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_norm.weight"};
  std::string cmd = test::python() + " " + reference_script() + " dequant " + path + " " + d.file("");
  for (const auto& n : names) cmd += " " + n;
  ASSERT_EQ(run(cmd), 0) << cmd;
  for (size_t k = 0; k < names.size(); ++k) {
    SCOPED_TRACE(names[k]);
    EXPECT_TRUE(bits_equal(f.read_tensor_f32(names[k]), read_f32_file(d.file(std::to_string(k) + ".f32"))));
  }
}

// --- hostile files ---------------------------------------------------------------------------------

TEST(GgufHostile, SmallValidFileOpens) {
  TempDir d;
  GgufFile f(d.write("ok.gguf", build(small_spec())));
  EXPECT_EQ(f.tensors().size(), 4u);
  EXPECT_EQ(f.data_offset() + 400, f.file_size());
  for (const auto& t : f.tensors()) EXPECT_EQ(f.dequantize(t).size(), static_cast<size_t>(t.n_elements));
}

TEST(GgufHostile, TruncatedAnywhere) {
  TempDir d;
  const std::string full = build(small_spec());
  for (size_t n = 0; n < full.size(); ++n) expect_data_error(d, full.substr(0, n), "truncated to " + std::to_string(n));
}

TEST(GgufHostile, HeaderCountsAndStrings) {
  TempDir d;
  auto with = [](auto edit) {
    Spec s = small_spec();
    edit(s);
    return build(s);
  };
  expect_data_error(d, with([](Spec& s) { s.magic = "GGUG"; }), "magic", "bad magic");
  expect_data_error(d, with([](Spec& s) { s.version = 1; }), "v1", "version 1 is not supported");
  expect_data_error(d, with([](Spec& s) { s.version = 4; }), "v4", "version 4");
  expect_data_error(d, with([](Spec& s) { s.version = 0x03000000; }), "big-endian", "big-endian");
  expect_data_error(d, with([](Spec& s) { s.tensor_count = INT64_MAX; }), "tensor_count", "tensor count");
  expect_data_error(d, with([](Spec& s) { s.tensor_count = 5; }), "tensor_count + 1");
  expect_data_error(d, with([](Spec& s) { s.kv_count = INT64_MAX; }), "kv_count", "metadata count");
  expect_data_error(d, with([](Spec& s) { s.kv_count = 8; }), "kv_count + 1");
  expect_data_error(d, with([](Spec& s) { s.kv_count = 6; }), "kv_count - 1");
  expect_data_error(d, with([](Spec& s) { s.kvs[1].key = u64b(UINT64_MAX) + "x.u32"; }), "key length", "string length");
  expect_data_error(d, with([](Spec& s) { s.kvs[1].key = u64b(1000) + "x.u32"; }), "key length past end");
  expect_data_error(d, with([](Spec& s) { s.kvs[0].payload = u64b(1ull << 62) + "llama"; }), "string value length",
                    "metadata key \"general.architecture\": string length");
  expect_data_error(d, with([](Spec& s) { s.kvs.push_back(kv("x.u32", kU32, u32b(8))); }), "duplicate key",
                    "appears twice");
  expect_data_error(d, with([](Spec& s) { s.kvs[1] = kv("x.\xff", kU32, u32b(1)); }), "key not UTF-8",
                    "not valid UTF-8");
  expect_data_error(d, with([](Spec& s) { s.kvs[1] = kv("x.\xc0\xaf", kU32, u32b(1)); }), "overlong UTF-8", "UTF-8");
  expect_data_error(d, with([](Spec& s) { s.kvs[1].type = 13; }), "value type 13", "unknown value type 13");
  expect_data_error(d, with([](Spec& s) { s.kvs[1].type = UINT32_MAX; }), "value type max", "unknown value type");
  expect_data_error(d, with([](Spec& s) { s.kvs[3].payload = std::string(1, '\2'); }), "bool 2", "bool value 2");
}

TEST(GgufHostile, Arrays) {
  TempDir d;
  auto with_array = [](const std::string& payload) {
    Spec s = small_spec();
    s.kvs[4].payload = payload;
    return build(s);
  };
  expect_data_error(d, with_array(u32b(0) + u64b(UINT64_MAX)), "u8 count max", "cannot fit");
  expect_data_error(d, with_array(u32b(0) + u64b(2000)), "u8 count past end", "cannot fit");
  expect_data_error(d, with_array(u32b(kString) + u64b(1ull << 60)), "string count", "cannot fit");
  expect_data_error(d, with_array(u32b(kString) + u64b(1) + u64b(1ull << 40)), "element string length",
                    "string length");
  expect_data_error(d, with_array(u32b(kArray) + u64b(UINT64_MAX / 2)), "array count", "cannot fit");
  expect_data_error(d, with_array(u32b(13) + u64b(1)), "elem type 13", "unknown array element type 13");
  expect_data_error(d, with_array(u32b(kBool) + u64b(2) + std::string("\1\3")), "bool element 3", "bool value 3");
  std::string deep;
  for (int i = 0; i < 100; ++i) deep += u32b(kArray) + u64b(1);
  expect_data_error(d, with_array(deep + u32b(kU32) + u64b(1) + u32b(1)), "nested 100 deep", "nested deeper");
  // An empty array and 8 levels of nesting are valid.
  std::string eight;
  for (int i = 0; i < 7; ++i) eight += u32b(kArray) + u64b(1);
  GgufFile ok(d.write("ok.gguf", with_array(eight + u32b(kU32) + u64b(0))));
  EXPECT_EQ(ok.value("x.arr").arrays.size(), 1u);
}

TEST(GgufHostile, AlignmentKey) {
  TempDir d;
  auto with_alignment = [](uint32_t type, const std::string& payload) {
    Spec s = small_spec();
    s.kvs.push_back(kv("general.alignment", type, payload));
    return build(s);
  };
  expect_data_error(d, with_alignment(kU32, u32b(0)), "alignment 0", "power of two");
  expect_data_error(d, with_alignment(kU32, u32b(48)), "alignment 48", "power of two");
  expect_data_error(d, with_alignment(kU32, u32b(1u << 31)), "alignment 2^31", "power of two");
  expect_data_error(d, with_alignment(kString, strb("32")), "alignment string", "general.alignment has type string");
  // 64 is valid, and then the offsets 224 and 384 (not multiples of 64) are not.
  expect_data_error(d, with_alignment(kU32, u32b(64)), "alignment 64", "not a multiple of the alignment 64");
  GgufFile ok(d.write("ok.gguf", with_alignment(kU32, u32b(16))));
  EXPECT_EQ(ok.alignment(), 16u);
}

TEST(GgufHostile, TensorInfos) {
  TempDir d;
  {  // the fuzzer's find: one empty tensor, and the file ends before its aligned data section starts
    std::string f("GGUF\x03\0\0\0", 8);
    f += std::string("\x01\0\0\0\0\0\0\0", 8) + std::string(8, '\0');          // 1 tensor, 0 keys
    f += std::string(8, '\0') + std::string("\x01\0\0\0", 4) + std::string(8, '\0');  // name "", 1 dim of 0
    f += std::string(4, '\0') + std::string(8, '\0') + std::string(2, '\0') + "m";  // F32 at offset 0; 3 bytes more
    expect_data_error(d, f, "data section past the end", "past the end of the file");
  }
  auto with = [](auto edit) {
    Spec s = small_spec();
    edit(s);
    return build(s);
  };
  expect_data_error(d, with([](Spec& s) { s.tensors[0].ne = {4, 3, 1, 1, 1}; }), "n_dims 5", "5 dimensions");
  expect_data_error(d, with([](Spec& s) { s.tensors[0].n_dims = UINT32_MAX; }), "n_dims max", "dimensions (at most 4)");
  expect_data_error(d, with([](Spec& s) {
                      s.tensors[0].ne = {1ull << 32, 1ull << 32};
                    }),
                    "product overflow", "overflow");
  expect_data_error(d, with([](Spec& s) { s.tensors[0].ne = {1ull << 62, 2, 2}; }), "product overflow 3d", "overflow");
  expect_data_error(d, with([](Spec& s) { s.tensors[0].ne = {UINT64_MAX}; }), "dim > INT64_MAX", "overflow");
  expect_data_error(d, with([](Spec& s) { s.tensors[0].ne = {1ull << 62}; }), "byte size overflow",
                    "overflows 64 bits");
  expect_data_error(d, with([](Spec& s) { s.tensors[0].ne = {1ull << 40}; }), "huge tensor", "runs past the end");
  expect_data_error(d, with([](Spec& s) { s.tensors[0].type = 4; }), "type 4", "unknown GGML type id 4");
  expect_data_error(d, with([](Spec& s) { s.tensors[0].type = UINT32_MAX; }), "type max", "unknown GGML type id");
  expect_data_error(d, with([](Spec& s) {
                      s.tensors[1].ne = {16, 8};
                    }),
                    "Q8_0 ne[0] 16", "not a multiple of Q8_0's block size 32");
  expect_data_error(d, with([](Spec& s) { s.tensors[2].ne = {128, 2}; }), "Q4_K ne[0] 128", "block size 256");
  expect_data_error(d, with([](Spec& s) { s.tensors[2].ne = {}; }), "Q4_K scalar", "block size 256");
  expect_data_error(d, with([](Spec& s) { s.tensors[1].offset = 65; }), "unaligned offset",
                    "not a multiple of the alignment 32");
  expect_data_error(d, with([](Spec& s) { s.tensors[3].offset = 416; }), "past end", "runs past the end");
  expect_data_error(d, with([](Spec& s) { s.tensors[3].offset = UINT64_MAX - 31; }), "offset max", "runs past the end");
  expect_data_error(d, with([](Spec& s) { s.tensors[1].offset = 32; }), "overlap", "overlap");
  expect_data_error(d, with([](Spec& s) { s.tensors[3].offset = 0; }), "overlap at 0", "overlap");
  expect_data_error(d, with([](Spec& s) { s.tensors[2].name = strb("w.q8"); }), "duplicate name",
                    "tensor w.q8 appears twice");
  expect_data_error(d, with([](Spec& s) { s.tensors[2].name = strb("w.\xed\xa0\x80"); }), "surrogate name", "UTF-8");
  expect_data_error(d, with([](Spec& s) { s.tensors[2].name = u64b(1ull << 50) + "w"; }), "name length",
                    "string length");
}

// Random corruption of the header region (single bytes, and u64 values at random positions): the
// file either opens, and then every tensor dequantizes and every getter answers or throws DataError,
// or opening throws DataError. Nothing else, no crash (the ASan build checks memory safety here).
TEST(GgufHostile, RandomMutations) {
  TempDir d;
  const std::string full = build(small_spec());
  const size_t header = full.size() - 400;
  std::mt19937_64 rng(12345);
  int opened = 0;
  for (int iter = 0; iter < 2000; ++iter) {
    std::string b = full;
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      const size_t at = rng() % header;
      if (rng() % 2) {
        b[at] = static_cast<char>(rng());
      } else {
        const uint64_t vals[] = {rng(), rng() % 1024, UINT64_MAX, 1ull << 63, rng() % 16};
        const std::string v = u64b(vals[rng() % 5]);
        b.replace(at, std::min<size_t>(8, b.size() - at), v.substr(0, std::min<size_t>(8, b.size() - at)));
      }
    }
    const std::string path = d.write("m.gguf", b);
    try {
      GgufFile f(path);
      ++opened;
      for (const auto& t : f.tensors()) {
        if (ggml_can_dequantize(t.type)) {
          EXPECT_EQ(f.dequantize(t).size(), static_cast<size_t>(t.n_elements));
        }
      }
      for (const auto& k : f.keys()) {
        try {
          f.get_string(k);
        } catch (const DataError&) {
        }
        try {
          f.get_int_array(k);
        } catch (const DataError&) {
        }
      }
    } catch (const DataError&) {
    } catch (const std::exception& e) {
      ADD_FAILURE() << "mutation " << iter << ": non-DataError " << e.what();
    }
  }
  EXPECT_GT(opened, 0);  // some mutations (metadata values, padding) leave a valid file
}

}  // namespace cairn

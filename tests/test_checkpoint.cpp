// safetensors and run-directory I/O: bit-exact round trips, the header checked against docs/run-directory.md#safetensors-format by an
// independent parse, hostile files rejected with DataError (never a crash), and atomic writes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "cairn/backend.h"
#include "cairn/checkpoint.h"
#include "cairn/errors.h"
#include "cairn/io.h"
#include "cairn/model.h"
#include "cairn/optim.h"
#include "test_tmpdir.h"
#include "test_util.h"

namespace cairn {
using test::TempDir;

static std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return s;
}
static std::string file_with_header(const std::string& header, size_t data_bytes) {
  return le64(header.size()) + header + std::string(data_bytes, '\0');
}

TEST(Checkpoint, ModelRoundTripIsBitExactAndHeaderFollowsSpec) {
  TempDir d;
  ModelConfig cfg = preset_config("tiny");
  cfg.vocab_size = 300;
  ParamTable t(cfg);
  auto p = test::rand_vec(t.total(), 1);
  save_model(d.file(""), cfg, p.data());
  ModelConfig cfg2;
  std::vector<float> p2;
  load_model(d.file(""), &cfg2, &p2);
  ASSERT_EQ(p2.size(), p.size());
  EXPECT_EQ(0, std::memcmp(p.data(), p2.data(), p.size() * 4));
  EXPECT_EQ(cfg2.d_model, cfg.d_model);
  EXPECT_EQ(cfg2.head_names, cfg.head_names);

  // Independent reading of the layout: u64 LE length, JSON header, contiguous F32 data.
  const std::string bytes = test::slurp(d.file("model.safetensors"));
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  auto h = nlohmann::json::parse(bytes.substr(8, n));
  EXPECT_EQ(h["tok_emb.weight"]["shape"], nlohmann::json({300, 128}));
  EXPECT_EQ(h["blocks.1.attn.qkv.weight"]["shape"], nlohmann::json({384, 128}));
  EXPECT_EQ(h["blocks.0.mlp.proj.weight"]["shape"], nlohmann::json({128, 512}));
  EXPECT_EQ(h["head.weight"]["shape"], nlohmann::json({1, 128}));
  EXPECT_EQ(h["ln_f.bias"]["dtype"], "F32");
  const auto& info = *t.find("blocks.1.mlp.fc.bias");
  const auto off = h["blocks.1.mlp.fc.bias"]["data_offsets"];
  float first;
  std::memcpy(&first, bytes.data() + 8 + n + off[0].get<size_t>(), 4);
  EXPECT_EQ(first, p[info.offset]);
  EXPECT_EQ(bytes.size(), 8 + n + 4 * t.total());
}

TEST(Checkpoint, HostileSafetensorsAreRejected) {
  const std::string ok_entry = R"("a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]})";
  struct Case {
    const char* what;
    std::string bytes;
  } cases[] = {
      {"too short", "abc"},
      {"header length past end", le64(1000) + "{}"},
      {"huge header length", le64(1ull << 60) + "{}"},
      {"not JSON", file_with_header("{nope", 0)},
      {"not an object", file_with_header("[1, 2]", 0)},
      {"bad dtype", file_with_header(R"({"a": {"dtype": "I8", "shape": [4], "data_offsets": [0, 4]}})", 4)},
      {"F16 offsets for F32 size", file_with_header(R"({"a": {"dtype": "F16", "shape": [2], "data_offsets": [0, 8]}})", 8)},
      {"negative dim", file_with_header(R"({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", 4)},
      {"overflowing shape", file_with_header(R"({"a": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 16]}})", 16)},
      {"offsets vs shape", file_with_header(R"({"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}})", 16)},
      {"offsets past data", file_with_header("{" + ok_entry + "}", 8)},
      {"overlap", file_with_header("{" + ok_entry + R"(, "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})", 16)},
      {"duplicate name", file_with_header("{" + ok_entry + ", " + ok_entry + "}", 16)},
      {"trailing bytes", file_with_header("{" + ok_entry + "}", 20)},
      {"offsets not numbers", file_with_header(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": ["0", "4"]}})", 4)},
      {"metadata not strings", file_with_header(R"({"__metadata__": {"x": 1}})", 0)},
      {"deeply nested header", file_with_header(std::string(200000, '[') + std::string(200000, ']'), 0)},
      {"entry not an object", file_with_header(R"({"a": [1, 2]})", 0)},
      {"missing dtype", file_with_header(R"({"a": {"shape": [1], "data_offsets": [0, 4]}})", 4)},
      {"shape not an array", file_with_header(R"({"a": {"dtype": "F32", "shape": 1, "data_offsets": [0, 4]}})", 4)},
      {"fractional dim", file_with_header(R"({"a": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}})", 4)},
      {"negative offset", file_with_header(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}})", 4)},
      {"reversed offsets", file_with_header(R"({"a": {"dtype": "F32", "shape": [0], "data_offsets": [4, 0]}})", 4)},
      {"three offsets", file_with_header(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 8]}})", 4)},
      {"gap before tensor", file_with_header(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", 8)},
  };
  TempDir d;
  for (const auto& c : cases) {
    EXPECT_THROW(safetensors_parse(c.bytes, "x.safetensors"), DataError) << c.what;
    // the reader that opens files checks its header the same way, against the file's size
    write_file_atomic(d.file("x.safetensors"), c.bytes);
    EXPECT_THROW(SafetensorsFile(d.file("x.safetensors")), DataError) << c.what;
  }
  EXPECT_NO_THROW(safetensors_parse(file_with_header("{" + ok_entry + "}", 16), "ok.safetensors"));
  write_file_atomic(d.file("ok.safetensors"), file_with_header("{" + ok_entry + "}", 16));
  EXPECT_NO_THROW(SafetensorsFile(d.file("ok.safetensors")));
  EXPECT_THROW(SafetensorsFile(d.file("absent.safetensors")), DataError);
  EXPECT_THROW(SafetensorsFile(d.file("")), DataError);  // a directory
}

// SafetensorsFile reads, tensor by tensor from disk, exactly what safetensors_parse reads from the
// bytes in memory: F32, F16 and BF16 (one of them over the 1M-element chunk its widening reads by),
// and the metadata. A file truncated while open is a DataError naming it.
TEST(Checkpoint, SafetensorsFileReadsWhatParseReads) {
  TempDir d;
  const size_t big = (1u << 20) + 37;  // F16 elements: more than one read chunk
  std::string data;
  std::vector<uint16_t> halves(big);
  for (size_t i = 0; i < big; ++i) halves[i] = static_cast<uint16_t>((i * 2654435761u) >> 7) & 0x7BFF;  // finite
  data.append(reinterpret_cast<const char*>(halves.data()), 2 * big);
  const auto f32 = test::rand_vec(6, 3);
  data.append(reinterpret_cast<const char*>(f32.data()), 24);
  data.append(reinterpret_cast<const char*>(halves.data()), 8);  // 4 BF16 values
  const std::string header = R"({"__metadata__": {"k": "v"}, "h": {"dtype": "F16", "shape": [)" + std::to_string(big) +
                             R"(], "data_offsets": [0, )" + std::to_string(2 * big) + R"(]}, "f": {"dtype": "F32", "shape": [2, 3], "data_offsets": [)" +
                             std::to_string(2 * big) + ", " + std::to_string(2 * big + 24) +
                             R"(]}, "b": {"dtype": "BF16", "shape": [4], "data_offsets": [)" + std::to_string(2 * big + 24) + ", " +
                             std::to_string(2 * big + 32) + "]}}";
  const std::string bytes = file_with_header(header, 0) + data;
  std::map<std::string, std::string> meta;
  const auto want = safetensors_parse(bytes, "x.safetensors", &meta);
  write_file_atomic(d.file("x.safetensors"), bytes);
  const SafetensorsFile f(d.file("x.safetensors"));
  EXPECT_EQ(f.metadata(), meta);
  ASSERT_EQ(f.tensors().size(), want.size());
  for (const auto& [name, t] : want) {
    ASSERT_NE(f.find(name), nullptr) << name;
    EXPECT_EQ(f.find(name)->shape, t.shape) << name;
    const LoadedTensor got = f.load(name);
    ASSERT_EQ(got.data.size(), t.data.size()) << name;
    EXPECT_EQ(0, std::memcmp(got.data.data(), t.data.data(), 4 * t.data.size())) << name;
  }
  EXPECT_EQ(f.find("nope"), nullptr);
  EXPECT_THROW(f.load("nope"), DataError);

  std::filesystem::resize_file(d.file("x.safetensors"), bytes.size() / 2);
  try {
    f.load("f");  // its bytes are past the new end
    ADD_FAILURE() << "a truncated file was read";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("shrank while open"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("x.safetensors"), std::string::npos) << e.what();
  }
}

// Half-precision tensors (what Hugging Face checkpoints hold) widen to fp32 exactly: normal, subnormal,
// signed zero, the largest finite F16, infinity; BF16 is the top half of an fp32.
TEST(Checkpoint, F16AndBf16TensorsWidenExactly) {
  const uint16_t f16[] = {0x3C00, 0xC100, 0x7BFF, 0x0001, 0x8000, 0x7C00, 0x3555};
  const float f16_want[] = {1.0f, -2.5f, 65504.0f, 5.9604644775390625e-8f, -0.0f, INFINITY, 0.333251953125f};
  const uint16_t bf16[] = {0x3F80, 0xC020, 0x0001, 0x7F7F};
  const float bf16_want[] = {1.0f, -2.5f, 9.18354961579912e-41f, 3.3895313892515355e38f};
  std::string data(reinterpret_cast<const char*>(f16), sizeof f16);
  data.append(reinterpret_cast<const char*>(bf16), sizeof bf16);
  const std::string header = R"({"h": {"dtype": "F16", "shape": [7], "data_offsets": [0, 14]},)"
                             R"( "b": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [14, 22]}})";
  std::string bytes = file_with_header(header, 0);
  bytes += data;
  auto t = safetensors_parse(bytes, "half.safetensors");
  ASSERT_EQ(t.at("h").data.size(), 7u);
  for (int i = 0; i < 7; ++i) EXPECT_EQ(t.at("h").data[i], f16_want[i]) << i;
  EXPECT_TRUE(std::signbit(t.at("h").data[4]));
  EXPECT_EQ(t.at("b").shape, (std::vector<int64_t>{2, 2}));
  for (int i = 0; i < 4; ++i) EXPECT_EQ(t.at("b").data[i], bf16_want[i]) << i;
}

TEST(Checkpoint, RunDirErrorsNameTheProblem) {
  TempDir d;
  ModelConfig cfg = preset_config("tiny");
  cfg.vocab_size = 300;
  ParamTable t(cfg);
  std::vector<float> p(t.total(), 0.5f);
  save_model(d.file(""), cfg, p.data());
  // config.json claims a different width than the weights have
  auto j = config_to_json(cfg);
  j["d_model"] = 64;
  write_file_atomic(d.file("config.json"), j.dump());
  ModelConfig c2;
  std::vector<float> p2;
  try {
    load_model(d.file(""), &c2, &p2);
    FAIL();
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("has shape"), std::string::npos) << e.what();
  }
  j["d_model"] = "wide";
  write_file_atomic(d.file("config.json"), j.dump());
  EXPECT_THROW(load_model(d.file(""), &c2, &p2), DataError);
  write_file_atomic(d.file("config.json"), "{truncated");
  EXPECT_THROW(load_model(d.file(""), &c2, &p2), DataError);
  // config.json claims a model of ~1e10 parameters next to the small weights file: rejected on the
  // shapes, before anything of the claimed size is allocated
  j = config_to_json(cfg);
  j["vocab_size"] = 1 << 24, j["d_model"] = 1024, j["n_heads"] = 8;
  write_file_atomic(d.file("config.json"), j.dump());
  EXPECT_THROW(load_model(d.file(""), &c2, &p2), DataError);
  // n_kv_heads must be a JSON integer (found by fuzz/run_dir.cpp: 1e30 was converted to int, undefined)
  for (const nlohmann::json& kv : {nlohmann::json(1e30), nlohmann::json(1.5), nlohmann::json("4")}) {
    j = config_to_json(cfg);
    j["n_kv_heads"] = kv;
    write_file_atomic(d.file("config.json"), j.dump());
    try {
      load_model(d.file(""), &c2, &p2);
      FAIL() << kv;
    } catch (const DataError& e) {
      EXPECT_EQ(std::string(e.what()), d.file("config.json") + ": field \"n_kv_heads\" must be an integer");
    }
  }
  // missing field, wrong head_names count
  j = config_to_json(cfg);
  j.erase("n_layers");
  write_file_atomic(d.file("config.json"), j.dump());
  EXPECT_THROW(load_model(d.file(""), &c2, &p2), DataError);
  j = config_to_json(cfg);
  j["head_names"] = {"a", "b"};
  write_file_atomic(d.file("config.json"), j.dump());
  EXPECT_THROW(load_model(d.file(""), &c2, &p2), DataError);
  // an extra tensor in the weights file is named
  write_file_atomic(d.file("config.json"), config_to_json(cfg).dump());
  {
    std::vector<TensorRef> refs;
    for (const auto& info : t.tensors()) refs.push_back({info.name, info.shape, p.data() + info.offset});
    refs.push_back({"stray.weight", {2}, p.data()});
    write_file_atomic(d.file("model.safetensors"), safetensors_serialize(refs));
    try {
      load_model(d.file(""), &c2, &p2);
      FAIL();
    } catch (const DataError& e) {
      EXPECT_NE(std::string(e.what()).find("stray.weight"), std::string::npos) << e.what();
    }
  }
  // a missing tensor is named
  {
    std::vector<TensorRef> refs;
    for (const auto& info : t.tensors())
      if (info.name != "ln_f.bias") refs.push_back({info.name, info.shape, p.data() + info.offset});
    write_file_atomic(d.file("model.safetensors"), safetensors_serialize(refs));
    try {
      load_model(d.file(""), &c2, &p2);
      FAIL();
    } catch (const DataError& e) {
      EXPECT_NE(std::string(e.what()).find("ln_f.bias"), std::string::npos) << e.what();
    }
  }
  // a truncated weights file
  save_model(d.file(""), cfg, p.data());
  const std::string w = test::slurp(d.file("model.safetensors"));
  write_file_atomic(d.file("model.safetensors"), w.substr(0, w.size() / 3));
  EXPECT_THROW(load_model(d.file(""), &c2, &p2), DataError);
}

TEST(Checkpoint, NonFiniteWeightsAreRefusedNamingTheTensorOrField) {
  TempDir d;
  ModelConfig cfg = preset_config("tiny");
  cfg.vocab_size = 300;
  ParamTable t(cfg);
  std::vector<float> p(t.total(), 0.5f), p2;
  ModelConfig c2;
  auto error_of = [&] {
    try {
      load_model(d.file(""), &c2, &p2);
    } catch (const DataError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  p[t.find("ln_f.bias")->offset + 5] = INFINITY;
  save_model(d.file(""), cfg, p.data());
  EXPECT_EQ(error_of(), d.file("model.safetensors") + ": tensor \"ln_f.bias\" holds an infinity at index 5");
  p[t.find("ln_f.bias")->offset + 5] = NAN;
  save_model(d.file(""), cfg, p.data());
  EXPECT_EQ(error_of(), d.file("model.safetensors") + ": tensor \"ln_f.bias\" holds NaN at index 5");
  p[t.find("ln_f.bias")->offset + 5] = 0.5f;
  save_model(d.file(""), cfg, p.data());
  auto j = config_to_json(cfg);
  j["head_weights"] = {1e39};  // beyond float32: would become inf
  write_file_atomic(d.file("config.json"), j.dump());
  EXPECT_EQ(error_of(), d.file("config.json") + ": field \"head_weights\" holds 1e+39: weights must be finite float32 numbers");
  // the optimizer state of a checkpoint is checked the same way
  auto be = make_backend("cpu", 1);
  Model m(cfg, *be);
  m.init(1);
  AdamW opt(m, OptimConfig{});
  std::vector<float> v(m.num_params(), NAN);
  be->to_device(opt.v(), v.data(), v.size() * sizeof(float));
  save_checkpoint(d.file(""), m, opt, {{"step", 1}});
  try {
    load_checkpoint(d.file(""), m, opt);
    FAIL() << "expected a DataError";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("tensor \"exp_avg_sq.tok_emb.weight\" holds NaN"), std::string::npos) << e.what();
  }
}

TEST(Checkpoint, StaleTempFilesOfDeadWritersAreRemovedAndNothingElse) {
  TempDir d;
  const std::string me = std::to_string(getpid());
  // 999999999 is above any pid_max (2^22): no such process
  const std::vector<std::string> stale = {"model.safetensors.tmp.999999999.0", "config.json.tmp.999999999.12"};
  const std::vector<std::string> kept = {"model.safetensors.tmp." + me + ".0", "model.safetensors.tmp.999999999",
                                         "model.safetensors.tmp.999999999.1.2", "notes.txt.tmp.999999999.0",
                                         "model.safetensors.tmpx.999999999.0", "model.safetensors"};
  for (const auto& f : stale) d.write(f, "x");
  for (const auto& f : kept) d.write(f, "x");
  std::vector<std::string> removed = remove_stale_temp_files(d.file(""), {"model.safetensors", "config.json"});
  std::sort(removed.begin(), removed.end());
  EXPECT_EQ(removed, (std::vector<std::string>{"config.json.tmp.999999999.12", "model.safetensors.tmp.999999999.0"}));
  for (const auto& f : stale) EXPECT_FALSE(std::filesystem::exists(d.file(f))) << f;
  for (const auto& f : kept) EXPECT_TRUE(std::filesystem::exists(d.file(f))) << f;
}

// Scratch directories <prefix><pid> (a killed tokenizer training's) go when their process is gone
// and they were marked on this boot, pid namespace and host; a live process's, unmarked or foreign
// ones, other names, plain files and symlinks stay.
TEST(Checkpoint, StaleScratchDirectoriesOfDeadProcessesAreRemovedAndNothingElse) {
  TempDir d;
  namespace fs = std::filesystem;
  const std::string me = std::to_string(getpid());
  fs::create_directories(d.file("cairn-spm-999999999/sub"));
  d.write("cairn-spm-999999999/sub/corpus.txt", "text");
  mark_scratch_dir(d.file("cairn-spm-999999999"));
  fs::create_directories(d.file("cairn-spm-" + me));
  mark_scratch_dir(d.file("cairn-spm-" + me));
  fs::create_directories(d.file("cairn-spm-999999995"));  // unmarked (another container's, an older cairn's)
  fs::create_directories(d.file("cairn-spm-999999994"));  // marked elsewhere
  d.write("cairn-spm-999999994/.cairn-owner", "another-boot pid:[1] other-host\n");
  fs::create_directories(d.file("cairn-spm-999999998x"));
  fs::create_directories(d.file("other-999999999"));
  fs::create_directories(d.file("target"));
  d.write("target/keep.txt", "x");
  fs::create_directory_symlink(d.file("target"), d.file("cairn-spm-999999997"));
  d.write("cairn-spm-999999996", "a file, not a directory");
  const std::vector<std::string> removed = remove_stale_temp_dirs(d.file(""), "cairn-spm-");
  EXPECT_EQ(removed, std::vector<std::string>{"cairn-spm-999999999"});
  EXPECT_FALSE(fs::exists(d.file("cairn-spm-999999999")));
  for (const char* kept : {"cairn-spm-999999998x", "other-999999999", "target/keep.txt", "cairn-spm-999999996",
                           "cairn-spm-999999995", "cairn-spm-999999994"})
    EXPECT_TRUE(fs::exists(d.file(kept))) << kept;
  EXPECT_TRUE(fs::exists(d.file("cairn-spm-" + me)));
  EXPECT_TRUE(fs::is_symlink(d.file("cairn-spm-999999997")));
}

static ModelConfig tiny_checkpoint_config() {
  ModelConfig cfg;
  cfg.vocab_size = 50, cfg.max_seq_len = 16, cfg.d_model = 16, cfg.n_layers = 1, cfg.n_heads = 2, cfg.d_ff = 32;
  return cfg;
}

TEST(Checkpoint, TrainingCheckpointRestoresEverything) {
  TempDir d;
  auto be = make_backend("cpu", 1);
  const ModelConfig cfg = tiny_checkpoint_config();
  Model m(cfg, *be);
  m.init(3);
  OptimConfig oc;
  AdamW opt(m, oc);
  auto g = test::rand_vec(m.num_params(), 4);
  be->to_device(m.grads(), g.data(), g.size() * 4);
  opt.step();
  opt.step();
  save_checkpoint(d.file(""), m, opt, {{"step", 2}, {"epoch", 0}});
  Model m2(cfg, *be);
  AdamW opt2(m2, oc);
  auto st = load_checkpoint(d.file(""), m2, opt2);
  EXPECT_EQ(st["step"], 2);
  EXPECT_EQ(opt2.steps_done(), 2);
  const size_t n = m.num_params();
  std::vector<float> a(n), b(n);
  m.get_params(a.data()), m2.get_params(b.data());
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), n * 4));
  EXPECT_EQ(0, std::memcmp(opt.m(), opt2.m(), n * 4));
  EXPECT_EQ(0, std::memcmp(opt.v(), opt2.v(), n * 4));
  EXPECT_EQ(read_trainer_state(d.file(""))["step"], 2);
}

// The trainer state's counters index the data on resume: anything but an integer in [0, 2^31) is
// refused. And loading rewrites the derived files from the commit point (a kill between the commit
// and the last derived write leaves them one checkpoint behind).
TEST(Checkpoint, CraftedCountersAreRefusedAndLoadRewritesDerivedFiles) {
  TempDir d;
  auto be = make_backend("cpu", 1);
  const ModelConfig cfg = tiny_checkpoint_config();
  Model m(cfg, *be);
  m.init(3);
  OptimConfig oc;
  AdamW opt(m, oc);
  save_checkpoint(d.file(""), m, opt, {{"step", 0}, {"epoch", 0}});
  const std::string good = test::slurp(d.file("optimizer.safetensors"));
  std::map<std::string, std::string> meta;
  auto tensors = safetensors_parse(good, "optimizer.safetensors", &meta);
  std::vector<TensorRef> refs;
  for (const auto& [name, t] : tensors) refs.push_back({name, t.shape, t.data.data()});
  const nlohmann::json base = nlohmann::json::parse(meta["trainer_state"]);
  for (const auto& [key, bad] : std::vector<std::pair<std::string, nlohmann::json>>{
           {"step", -5}, {"step", 1.5}, {"step", "3"}, {"step", 1LL << 40}, {"epoch", -1}, {"epoch_pos", -7},
           {"optimizer_step", -2}}) {
    nlohmann::json st = base;
    st[key] = bad;
    write_file_atomic(d.file("optimizer.safetensors"), safetensors_serialize(refs, {{"trainer_state", st.dump()}}));
    Model m2(cfg, *be);
    AdamW opt2(m2, oc);
    try {
      load_checkpoint(d.file(""), m2, opt2);
      ADD_FAILURE() << key << " = " << bad.dump() << " accepted";
    } catch (const DataError& e) {
      EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
    }
  }
  write_file_atomic(d.file("optimizer.safetensors"), good);
  write_file_atomic(d.file("trainer_state.json"), "{\"step\": 999}\n");  // stale, as after a kill
  std::filesystem::remove(d.file("model.safetensors"));
  Model m3(cfg, *be);
  AdamW opt3(m3, oc);
  load_checkpoint(d.file(""), m3, opt3);
  EXPECT_EQ(nlohmann::json::parse(test::slurp(d.file("trainer_state.json")))["step"], 0);
  EXPECT_TRUE(std::filesystem::exists(d.file("model.safetensors")));
}

TEST(Checkpoint, AbandonedAtomicWriteLeavesOldFileAndNoTemp) {
  TempDir d;
  write_file_atomic(d.file("f.txt"), "old contents");
  {
    AtomicWriter w(d.file("f.txt"));
    w.write("new half-written contents");
  }  // no commit
  EXPECT_EQ(test::slurp(d.file("f.txt")), "old contents");
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(d.file(""))) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
  {
    AtomicWriter w(d.file("f.txt"));
    w.write("new");
    w.commit();
  }
  EXPECT_EQ(test::slurp(d.file("f.txt")), "new");
}

TEST(Checkpoint, AtomicWriterChecksEveryWriteAndKeepsNonFilesInPlace) {
  TempDir d;
  try {
    AtomicWriter w(d.file(""));
    FAIL() << "a directory is refused when the writer is made";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("Is a directory"), std::string::npos) << e.what();
  }
  if (!std::filesystem::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  // a link to a device is written through (the device is the target), and ENOSPC is reported
  std::filesystem::create_symlink("/dev/full", d.file("full"));
  AtomicWriter w(d.file("full"));
  w.write("data");
  try {
    w.commit();
    FAIL() << "expected the flush to fail";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "cannot write " + d.file("full") + ": No space left on device");
  }
  EXPECT_TRUE(std::filesystem::is_symlink(d.file("full")));
}

}  // namespace cairn

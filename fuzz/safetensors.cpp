// safetensors_parse (src/io/safetensors.cpp) on arbitrary bytes, in memory. Invariants: every tensor
// it returns holds exactly product(shape) values; what it returns survives safetensors_serialize →
// safetensors_parse bit for bit (the F16/BF16 values as the F32 they were widened to), metadata too;
// SafetensorsFile, reading the same bytes as a file (a memfd), accepts exactly the inputs parse
// accepts and reads the same tensors and metadata.
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "cairn/checkpoint.h"
#include "fuzz.h"

using namespace cairn;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(fuzz::as_view(data, size));
  std::map<std::string, LoadedTensor> t;
  std::map<std::string, std::string> meta;
  const bool parsed = fuzz::expect_data_error([&] { t = safetensors_parse(bytes, "model.safetensors", &meta); });
  {
    const int fd = memfd_create("safetensors", MFD_CLOEXEC);
    fuzz::check(fd >= 0 && write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()), "memfd write");
    const std::string path = "/proc/self/fd/" + std::to_string(fd);
    const bool opened = fuzz::expect_data_error([&] {
      const SafetensorsFile f(path);
      if (!parsed) return;
      fuzz::check(f.metadata() == meta && f.tensors().size() == t.size(), "SafetensorsFile reads other metadata or tensors");
      for (const auto& [name, lt] : t) {
        const LoadedTensor x = f.load(name);
        fuzz::check(x.shape == lt.shape && x.data.size() == lt.data.size() &&
                        std::memcmp(x.data.data(), lt.data.data(), 4 * lt.data.size()) == 0,
                    "SafetensorsFile reads tensor " + name + " differently");
      }
    });
    fuzz::check(opened == parsed, "SafetensorsFile and safetensors_parse disagree on whether the file is valid");
    close(fd);
  }
  if (!parsed) return 0;
  std::vector<TensorRef> refs;
  for (const auto& [name, lt] : t) {
    size_t n = 1;
    for (int64_t d : lt.shape) n *= static_cast<size_t>(d);
    fuzz::check(lt.data.size() == n, "tensor " + name + ": data size is not the product of its shape");
    refs.push_back({name, lt.shape, lt.data.data()});
  }
  std::map<std::string, std::string> meta2;
  std::map<std::string, LoadedTensor> t2;
  try {
    t2 = safetensors_parse(safetensors_serialize(refs, meta), "roundtrip.safetensors", &meta2);
  } catch (const DataError& e) {
    fuzz::finding(std::string("a parsed file does not survive serialize → parse: ") + e.what());
  }
  fuzz::check(meta2 == meta, "metadata changed in the round trip");
  fuzz::check(t2.size() == t.size(), "tensor count changed in the round trip");
  for (const auto& [name, lt] : t) {
    auto it = t2.find(name);
    fuzz::check(it != t2.end() && it->second.shape == lt.shape && it->second.data.size() == lt.data.size() &&
                    std::memcmp(it->second.data.data(), lt.data.data(), 4 * lt.data.size()) == 0,
                "tensor " + name + " changed in the round trip");
  }
  return 0;
}

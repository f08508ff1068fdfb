// safetensors reader/writer. Format: u64 little-endian header length n, n bytes of JSON header
// {name: {"dtype", "shape", "data_offsets": [b, e]}, "__metadata__": {str: str}}, then the data.
// The reader takes F32, F16 and BF16 tensors (the half types widened to fp32, exactly); the writer F32.
// The writer pads the header with spaces to a multiple of 8 (alignment, as the reference does).
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>
#include <utility>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cairn/checkpoint.h"
#include "cairn/errors.h"
#include "cairn/io.h"
#include "util/half.h"

namespace cairn {

static constexpr uint64_t kMaxHeader = 100ull << 20;

namespace {

uint64_t numel(const TensorRef& t) {
  uint64_t n = 1;
  for (int64_t d : t.shape) n *= static_cast<uint64_t>(d);
  return n;
}

// The 8-byte header length and the JSON header (padded to 8 bytes) for F32 tensors in this order.
std::string header_bytes(const std::vector<TensorRef>& tensors, const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  uint64_t off = 0;
  for (const auto& t : tensors) {
    const uint64_t n = numel(t);
    h[t.name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {off, off + 4 * n}}};
    off += 4 * n;
  }
  std::string header = h.dump();
  header.append((8 - header.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  const uint64_t len = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((len >> (8 * i)) & 0xFF);
  return out + header;
}

// Header, then each tensor's bytes (x86/ARM: host order is little-endian); null data is zeros.
template <class Sink>
void emit(const std::vector<TensorRef>& tensors, const std::map<std::string, std::string>& metadata, Sink&& sink) {
  sink(header_bytes(tensors, metadata));
  static const std::string zeros(1 << 16, '\0');
  for (const auto& t : tensors) {
    const uint64_t bytes = 4 * numel(t);
    if (t.data) {
      sink(std::string_view(reinterpret_cast<const char*>(t.data), bytes));
      continue;
    }
    for (uint64_t o = 0; o < bytes; o += zeros.size()) sink(std::string_view(zeros.data(), std::min<uint64_t>(zeros.size(), bytes - o)));
  }
}

}  // namespace

std::string safetensors_serialize(const std::vector<TensorRef>& tensors, const std::map<std::string, std::string>& metadata) {
  std::string out;
  emit(tensors, metadata, [&](std::string_view b) { out.append(b); });
  return out;
}

void safetensors_write(const std::string& path, const std::vector<TensorRef>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  AtomicWriter w(path);
  emit(tensors, metadata, [&](std::string_view b) { w.write(b); });
  w.commit();
}

namespace {

DataError bad_file(const std::string& path, const std::string& msg) {
  return DataError(path, 0, "invalid safetensors file: " + msg);
}

// The header length from the first 8 bytes of a file of `size` bytes, checked against the file.
uint64_t header_length(const unsigned char* first8, uint64_t size, const std::string& path) {
  if (size < 8) throw bad_file(path, "shorter than its 8-byte header length");
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(first8[i]) << (8 * i);
  if (n > kMaxHeader) throw bad_file(path, "header length " + std::to_string(n) + " exceeds 100 MiB");
  if (n > size - 8) throw bad_file(path, "header length " + std::to_string(n) + " runs past the end of the file");
  return n;
}

// The JSON header: an object whose top-level names are unique (nlohmann would keep the last), with
// its __metadata__ (string values only) copied into *metadata when given.
nlohmann::json parse_header(std::string_view header, const std::string& path, std::map<std::string, std::string>* metadata) {
  std::set<std::string> names;
  bool duplicate = false;
  std::string dup_name;
  nlohmann::json h;
  try {
    h = nlohmann::json::parse(header.begin(), header.end(),
                              [&](int depth, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) {
                                if (depth == 1 && ev == nlohmann::json::parse_event_t::key) {
                                  const std::string k = parsed.get<std::string>();
                                  if (!names.insert(k).second) duplicate = true, dup_name = k;
                                }
                                return true;
                              });
  } catch (const nlohmann::json::exception&) {
    throw bad_file(path, "header is not valid JSON");
  }
  if (duplicate) throw bad_file(path, "tensor \"" + dup_name + "\" appears twice");
  if (!h.is_object()) throw bad_file(path, "header is not a JSON object");
  if (auto m = h.find("__metadata__"); m != h.end()) {
    if (!m->is_object()) throw bad_file(path, "__metadata__ is not an object");
    for (auto it = m->begin(); it != m->end(); ++it) {
      if (!it.value().is_string()) throw bad_file(path, "__metadata__ values must be strings");
      if (metadata) (*metadata)[it.key()] = it.value().get<std::string>();
    }
  }
  return h;
}

// Every tensor entry of a parsed header, checked against a data section of data_len bytes: dtype
// (F32, F16, BF16), shape, offsets matching the shape, and the entries tiling the section exactly.
std::map<std::string, SafetensorsEntry> index_entries(const nlohmann::json& h, uint64_t data_len, const std::string& path) {
  auto bad = [&](const std::string& msg) { return bad_file(path, msg); };
  std::map<std::string, SafetensorsEntry> out;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string& name = it.key();
    const auto& t = it.value();
    if (name == "__metadata__") continue;  // checked and copied by parse_header
    const std::string where = "tensor \"" + name + "\": ";
    if (!t.is_object()) throw bad(where + "entry is not an object");
    auto dt = t.find("dtype"), sh = t.find("shape"), of = t.find("data_offsets");
    if (dt == t.end() || !dt->is_string()) throw bad(where + "missing dtype");
    SafetensorsEntry e;
    e.dtype = dt->get<std::string>();
    const uint64_t esize = e.element_size();
    if (!esize) throw bad(where + "dtype " + e.dtype + " is not supported (F32, F16, BF16)");
    if (sh == t.end() || !sh->is_array() || sh->size() > 8) throw bad(where + "missing or invalid shape");
    for (const auto& d : *sh) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0 || d.get<int64_t>() > (1ll << 32)) throw bad(where + "invalid dimension");
      const uint64_t v = d.get<uint64_t>();
      if (v != 0 && e.numel > data_len / v) throw bad(where + "shape larger than the file");
      e.numel *= v;
      e.shape.push_back(static_cast<int64_t>(v));
    }
    if (of == t.end() || !of->is_array() || of->size() != 2 || !(*of)[0].is_number_unsigned() || !(*of)[1].is_number_unsigned())
      throw bad(where + "missing or invalid data_offsets");
    const uint64_t b = (*of)[0].get<uint64_t>(), end = (*of)[1].get<uint64_t>();
    if (b > end || end > data_len) throw bad(where + "data_offsets outside the data section");
    if (end - b != esize * e.numel) throw bad(where + "data_offsets do not match its shape");
    e.offset = b;
    ranges.push_back({b, end});
    out.emplace(name, std::move(e));
  }
  std::sort(ranges.begin(), ranges.end());
  uint64_t end = 0;
  for (auto [b, e] : ranges) {
    if (b < end) throw bad("tensors overlap");
    if (b > end) throw bad("gap in the data section before offset " + std::to_string(b));
    end = e;
  }
  if (end != data_len) throw bad(std::to_string(data_len - end) + " bytes of data belong to no tensor");
  return out;
}

// n elements of `dtype` at src, widened to fp32 into dst.
void widen(const std::string& dtype, const char* src, uint64_t n, float* dst) {
  if (dtype == "F32") {
    if (n) std::memcpy(dst, src, 4 * n);
    return;
  }
  const bool bf16 = dtype == "BF16";
  for (uint64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = bf16 ? bf16_to_float(h) : f16_to_float(h);
  }
}

}  // namespace

uint64_t SafetensorsEntry::element_size() const {
  return dtype == "F32" ? 4 : (dtype == "F16" || dtype == "BF16") ? 2 : 0;
}

std::map<std::string, LoadedTensor> safetensors_parse(const std::string& bytes, const std::string& path,
                                                      std::map<std::string, std::string>* metadata) {
  const uint64_t n = header_length(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), path);
  const nlohmann::json h = parse_header(std::string_view(bytes).substr(8, n), path, metadata);
  std::map<std::string, LoadedTensor> out;
  for (auto& [name, e] : index_entries(h, bytes.size() - 8 - n, path)) {
    LoadedTensor lt{e.shape, std::vector<float>(e.numel)};
    widen(e.dtype, bytes.data() + 8 + n + e.offset, e.numel, lt.data.data());
    out.emplace(name, std::move(lt));
  }
  return out;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  if (std::filesystem::is_directory(path)) throw DataError(path, 0, "cannot open: Is a directory");
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) throw DataError(path, 0, std::string("cannot open: ") + std::strerror(errno));
  try {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) throw DataError(path, 0, std::string("cannot stat: ") + std::strerror(errno));
    const uint64_t size = static_cast<uint64_t>(std::max<off_t>(0, st.st_size));
    unsigned char first8[8] = {};
    if (size >= 8) read_at(0, first8, 8);
    const uint64_t n = header_length(first8, size, path);
    std::string header(n, '\0');
    read_at(8, header.data(), n);
    data_offset_ = 8 + n;
    tensors_ = index_entries(parse_header(header, path, &metadata_), size - data_offset_, path);
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (fd_ >= 0) ::close(fd_);
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& o) noexcept
    : path_(std::move(o.path_)), fd_(std::exchange(o.fd_, -1)), data_offset_(o.data_offset_),
      tensors_(std::move(o.tensors_)), metadata_(std::move(o.metadata_)) {}

const SafetensorsEntry* SafetensorsFile::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

void SafetensorsFile::read_at(uint64_t offset, void* dst, uint64_t n) const {
  read_exactly_at(fd_, offset, dst, n, path_);
}

void SafetensorsFile::read(const std::string& name, float* dst) const {
  const SafetensorsEntry* e = find(name);
  if (!e) throw DataError(path_, 0, "missing tensor \"" + name + "\"");
  if (e->dtype == "F32") return read_at(data_offset_ + e->offset, dst, 4 * e->numel);
  // half types: read in chunks and widen
  constexpr uint64_t kChunk = 1 << 20;
  std::vector<char> buf(2 * std::min(kChunk, e->numel));
  for (uint64_t i = 0; i < e->numel; i += kChunk) {
    const uint64_t k = std::min(kChunk, e->numel - i);
    read_at(data_offset_ + e->offset + 2 * i, buf.data(), 2 * k);
    widen(e->dtype, buf.data(), k, dst + i);
  }
}

LoadedTensor SafetensorsFile::load(const std::string& name) const {
  const SafetensorsEntry* e = find(name);
  if (!e) throw DataError(path_, 0, "missing tensor \"" + name + "\"");
  LoadedTensor t{e->shape, std::vector<float>(e->numel)};
  read(name, t.data.data());
  return t;
}

}  // namespace cairn

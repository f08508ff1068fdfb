// A fresh temporary directory per test, removed afterwards, and small file helpers.
#pragma once
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <unistd.h>

namespace cairn::test {

class TempDir {
 public:
  TempDir() {
    static int n = 0;
    path_ = std::filesystem::temp_directory_path() / ("cairn-test-" + std::to_string(getpid()) + "-" + std::to_string(n++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::string write(const std::string& name, const std::string& content) const {
    std::ofstream(file(name), std::ios::binary) << content;
    return file(name);
  }
  std::string write_gz(const std::string& name, const std::string& content) const {
    gzFile g = gzopen(file(name).c_str(), "wb");
    gzwrite(g, content.data(), static_cast<unsigned>(content.size()));
    gzclose(g);
    return file(name);
  }

 private:
  std::filesystem::path path_;
};

inline std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

}  // namespace cairn::test

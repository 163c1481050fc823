#include "common/temp_dir.h"

#include <stdlib.h>

#include <cstring>
#include <stdexcept>

namespace bsr {

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "bsr-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) {
    // Only tests and tools use this, and they cannot continue without it.
    throw std::runtime_error(std::string("mkdtemp failed: ") + std::strerror(errno));
  }
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace bsr

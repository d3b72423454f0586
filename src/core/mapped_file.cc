#include "core/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace moerack {

namespace {

constexpr size_t kHugePage = size_t{2} << 20;

// Transparent huge pages available to madvise() (mode "always" or "madvise").
bool HugePagesAvailable() {
  std::ifstream in("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string line;
  std::getline(in, line);
  return line.find("[always]") != std::string::npos || line.find("[madvise]") != std::string::npos;
}

size_t AvailableMemoryBytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  size_t kb = 0;
  while (in >> key >> kb) {
    if (key == "MemAvailable:") return kb * 1024;
    in.ignore(256, '\n');
  }
  return 0;
}

// Copies the open file `fd` of `size` bytes into a 2 MB-aligned anonymous
// region advised to use huge pages. Null when the memory is not there; an
// error when the file cannot be read in full.
StatusOr<void*> HugePageCopy(int fd, size_t size, size_t* region_size, const std::string& path) {
  const size_t len = (size + kHugePage - 1) / kHugePage * kHugePage + kHugePage;
  void* raw = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  uint8_t* base = reinterpret_cast<uint8_t*>(
      (reinterpret_cast<uintptr_t>(raw) + kHugePage - 1) & ~(uintptr_t{kHugePage} - 1));
  ::madvise(base, len - (base - static_cast<uint8_t*>(raw)), MADV_HUGEPAGE);
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::pread(fd, base + done, std::min<size_t>(size - done, size_t{1} << 30),
                              static_cast<off_t>(done));
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      const std::string why = n < 0 ? std::strerror(errno) : "file shorter than its size";
      ::munmap(raw, len);
      return Error(path + ": read failed at byte " + std::to_string(done) + ": " + why);
    }
    done += static_cast<size_t>(n);
  }
  // The copy is read-only from here on, like the map it replaces.
  ::mprotect(raw, len, PROT_READ);
  *region_size = len;
  return raw;
}

}  // namespace

bool MappedFile::HugePageCopyAdvisable(size_t total_bytes) {
  return total_bytes >= kHugePage && HugePagesAvailable() &&
         total_bytes < AvailableMemoryBytes() / 2;
}

StatusOr<std::unique_ptr<MappedFile>> MappedFile::Open(const std::string& path, Mode mode) {
  const bool populate = mode != Mode::kLazy;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error(path + ": cannot open: " + std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Error(path + ": not a regular file");
  }
  std::unique_ptr<MappedFile> file(new MappedFile());
  file->path_ = path;
  file->size_ = static_cast<size_t>(st.st_size);
  if (mode == Mode::kHugePageCopy && file->size_ > 0) {
    size_t region = 0;
    auto copied = HugePageCopy(fd, file->size_, &region, path);
    if (!copied.ok()) {
      ::close(fd);
      return copied.status();
    }
    if (void* raw = *copied) {
      file->region_ = raw;
      file->region_size_ = region;
      file->data_ = reinterpret_cast<const uint8_t*>(
          (reinterpret_cast<uintptr_t>(raw) + kHugePage - 1) & ~(uintptr_t{kHugePage} - 1));
      file->huge_ = true;
      ::close(fd);
      return file;
    }
  }
  if (file->size_ > 0) {
    // MAP_POPULATE: fault the pages in now (as llama.cpp does), not inside the
    // first forward pass, whose timing would otherwise include the page faults.
    void* p = ::mmap(nullptr, file->size_, PROT_READ,
                     MAP_PRIVATE | (populate ? MAP_POPULATE : 0), fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      return Error(path + ": mmap failed: " + std::strerror(errno));
    }
    file->data_ = static_cast<const uint8_t*>(p);
    file->region_ = p;
    file->region_size_ = file->size_;
  }
  ::close(fd);
  return file;
}

MappedFile::~MappedFile() {
  if (region_ != nullptr) ::munmap(region_, region_size_);
}

StatusOr<std::string> ReadFileToString(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error(path + ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Error(path + ": read failed");
  return ss.str();
}

Status WriteStringToFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return Error(path + ": cannot open for writing");
  out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  out.close();
  if (!out) return Error(path + ": write failed");
  return Status::Ok();
}

}  // namespace moerack

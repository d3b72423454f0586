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
#include <utility>

namespace moerack {

namespace {

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

// Copies the open file `fd` of `size` bytes into `*copy` (with `slack` bytes
// more), memory on huge pages, left empty when the memory is not there; an
// error when the file cannot be read in full.
Status HugePageCopy(int fd, size_t size, size_t slack, const std::string& path,
                    HugePageBuffer* copy) {
  HugePageBuffer buf(size + slack);
  if (buf.empty()) return Status::Ok();
  uint8_t* base = buf.data();
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::pread(fd, base + done, std::min<size_t>(size - done, size_t{1} << 30),
                              static_cast<off_t>(done));
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      const std::string why = n < 0 ? std::strerror(errno) : "file shorter than its size";
      return Error(path + ": read failed at byte " + std::to_string(done) + ": " + why);
    }
    done += static_cast<size_t>(n);
  }
  *copy = std::move(buf);
  return Status::Ok();
}

}  // namespace

bool MappedFile::HugePageCopyAdvisable(size_t total_bytes) {
  return total_bytes >= HugePageBuffer::kHugePage && HugePagesAvailable() &&
         total_bytes < AvailableMemoryBytes() / 2;
}

StatusOr<std::unique_ptr<MappedFile>> MappedFile::Open(const std::string& path, Mode mode,
                                                       size_t slack) {
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
    const Status copied = HugePageCopy(fd, file->size_, slack, path, &file->copy_);
    if (!copied.ok()) {
      ::close(fd);
      return copied;
    }
    if (!file->copy_.empty()) {
      file->data_ = file->copy_.data();
      file->huge_ = true;
      if (slack == 0) file->Seal();
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

void MappedFile::Seal() {
  // The copy is read-only from here on, like the map it replaces.
  if (huge_ && !sealed_) copy_.ProtectReadOnly();
  sealed_ = true;
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

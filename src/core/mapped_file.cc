#include "core/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

namespace moerack {

namespace {

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

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22  // Linux 5.14
#endif

// Bytes of the file map starting at `start` that the kernel maps with 2 MB
// page-table entries (FilePmdMapped of its line in /proc/self/smaps).
size_t PmdMappedBytes(const void* start) {
  std::ifstream in("/proc/self/smaps");
  char head[32];
  std::snprintf(head, sizeof(head), "%lx-",
                static_cast<unsigned long>(reinterpret_cast<uintptr_t>(start)));
  std::string line;
  bool ours = false;
  while (std::getline(in, line)) {
    const bool vma = !line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) &&
                     line.find('-') != std::string::npos && line.find(':') > line.find(' ');
    if (vma) {
      if (ours) break;
      ours = line.rfind(head, 0) == 0;
    } else if (ours && line.rfind("FilePmdMapped:", 0) == 0) {
      return static_cast<size_t>(std::strtoull(line.c_str() + 14, nullptr, 10)) * 1024;
    }
  }
  return 0;
}

// Maps `size` bytes of `fd` read-only at a 2 MB-aligned address (so that file
// offsets on 2 MB boundaries can take 2 MB page-table entries), advised onto
// huge pages before any page comes in, then populated: on a filesystem whose
// page cache holds large folios (ext4, xfs, tmpfs on recent Linux) the file is
// read into 2 MB folios and mapped by them. nullptr if the map fails.
void* MapOnHugePages(int fd, size_t size) {
  constexpr size_t kHuge = HugePageBuffer::kHugePage;
  const size_t len = (size + 4095) / 4096 * 4096;
  void* raw = ::mmap(nullptr, len + kHuge, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  auto* const lo = static_cast<uint8_t*>(raw);
  auto* const at = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(raw) + kHuge - 1) &
                                              ~(uintptr_t{kHuge} - 1));
  void* p = ::mmap(at, size, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0);
  // Give back the reservation around [at, at + len).
  if (at > lo) ::munmap(lo, static_cast<size_t>(at - lo));
  ::munmap(at + len, static_cast<size_t>(lo + len + kHuge - (at + len)));
  if (p == MAP_FAILED) {
    ::munmap(at, len);
    return nullptr;
  }
  ::madvise(p, size, MADV_HUGEPAGE);
  if (::madvise(p, size, MADV_POPULATE_READ) != 0) {  // older kernels: touch every page
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < size; i += 4096) sink = sink + static_cast<const uint8_t*>(p)[i];
  }
  return p;
}

// At least 90% of the whole 2 MB pages of the `size`-byte map at `p` are
// mapped by 2 MB entries (never for a file under 2 MB).
bool MostlyOnHugePages(const void* p, size_t size) {
  const size_t whole = size / HugePageBuffer::kHugePage * HugePageBuffer::kHugePage;
  return whole > 0 && PmdMappedBytes(p) >= whole / 10 * 9;
}

}  // namespace

bool MappedFile::HugePagesAvailable() {
  std::ifstream in("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string line;
  std::getline(in, line);
  return line.find("[always]") != std::string::npos || line.find("[madvise]") != std::string::npos;
}

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
  if (mode == Mode::kHugePageMap && file->size_ > 0) {
    void* p = MapOnHugePages(fd, file->size_);
    if (p != nullptr && !MostlyOnHugePages(p, file->size_) &&
        file->size_ >= HugePageBuffer::kHugePage) {
      // Pages the cache holds in small folios (a file just written, or read
      // without the advice) stay small: drop them and read the file once more.
      ::munmap(p, file->size_);
      ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
      p = MapOnHugePages(fd, file->size_);
    }
    if (p != nullptr) {
      ::close(fd);
      file->data_ = static_cast<const uint8_t*>(p);
      file->region_ = p;
      file->region_size_ = file->size_;
      file->huge_ = MostlyOnHugePages(p, file->size_);
      return file;
    }
  }
  if (file->size_ > 0) {
    // MAP_POPULATE: fault the pages in now (as llama.cpp does), not inside the
    // first forward pass, whose timing would otherwise include the page faults.
    void* p =
        ::mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE | (populate ? MAP_POPULATE : 0), fd, 0);
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
  if (!copy_.empty() && !sealed_) copy_.ProtectReadOnly();
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

#include "core/npy.h"

#include <cstring>
#include <regex>

#include "core/mapped_file.h"

namespace moerack {

Status WriteNpyF32(const std::string& path, const float* data, const std::vector<int64_t>& shape) {
  std::string dims;
  int64_t n = 1;
  for (int64_t d : shape) {
    dims += std::to_string(d) + ",";
    n *= d;
  }
  if (shape.size() > 1) dims.pop_back();
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  // Magic (6) + version (2) + length (2) + header, padded with spaces to 64 bytes, ending in \n.
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::string out = "\x93NUMPY";
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  out += header;
  out.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n) * sizeof(float));
  return WriteStringToFile(path, out);
}

StatusOr<NpyArray> ReadNpyF32(const std::string& path) {
  MR_ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(path));
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) {
    return Error(path + ": not a .npy file");
  }
  const int major = static_cast<uint8_t>(bytes[6]);
  size_t header_len, offset;
  if (major == 1) {
    header_len = static_cast<uint8_t>(bytes[8]) | (static_cast<uint8_t>(bytes[9]) << 8);
    offset = 10;
  } else {
    if (bytes.size() < 12) return Error(path + ": truncated .npy header");
    header_len = 0;
    for (int i = 0; i < 4; ++i)
      header_len |= static_cast<size_t>(static_cast<uint8_t>(bytes[8 + i])) << (8 * i);
    offset = 12;
  }
  if (offset + header_len > bytes.size()) return Error(path + ": truncated .npy header");
  const std::string header = bytes.substr(offset, header_len);
  if (header.find("'<f4'") == std::string::npos) return Error(path + ": dtype is not '<f4'");
  if (header.find("'fortran_order': True") != std::string::npos) {
    return Error(path + ": fortran_order arrays are not supported");
  }
  std::smatch m;
  if (!std::regex_search(header, m, std::regex(R"('shape': \(([0-9, ]*)\))"))) {
    return Error(path + ": no shape in .npy header");
  }
  NpyArray arr;
  int64_t n = 1;
  const std::string dims = m[1];
  const std::regex number("[0-9]+");
  for (auto it = std::sregex_iterator(dims.begin(), dims.end(), number);
       it != std::sregex_iterator(); ++it) {
    arr.shape.push_back(std::stoll(it->str()));
    n *= arr.shape.back();
  }
  const size_t data_off = offset + header_len;
  if (bytes.size() - data_off != static_cast<size_t>(n) * sizeof(float)) {
    return Error(path + ": data size does not match shape");
  }
  arr.data.resize(static_cast<size_t>(n));
  std::memcpy(arr.data.data(), bytes.data() + data_off, bytes.size() - data_off);
  return arr;
}

}  // namespace moerack

#include "cli/common.h"

#include <charconv>
#include <iostream>

#include "core/paths.h"

namespace moerack::cli {

StatusOr<std::string> ResolveModelDir(const std::string& flag) {
  if (!flag.empty()) return flag;
  return DefaultModelDir();
}

StatusOr<std::vector<int32_t>> ParseTokenList(const std::string& text, const std::string& flag) {
  std::vector<int32_t> ids;
  size_t pos = 0;
  while (pos <= text.size()) {
    const size_t comma = std::min(text.find(',', pos), text.size());
    const std::string item = text.substr(pos, comma - pos);
    int64_t v = 0;
    auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (item.empty() || ec != std::errc() || end != item.data() + item.size() || v < 0 ||
        v > INT32_MAX) {
      return Error(flag + ": '" + item + "' is not a token id (expected e.g. 1,2,3)");
    }
    ids.push_back(static_cast<int32_t>(v));
    pos = comma + 1;
  }
  return ids;
}

Status CheckTokenIds(const std::vector<int32_t>& ids, int vocab_size, const std::string& flag) {
  for (int32_t t : ids) {
    if (t < 0 || t >= vocab_size) {
      return Error(flag + ": token id " + std::to_string(t) + " is out of range [0, " +
                   std::to_string(vocab_size) + ")");
    }
  }
  return Status::Ok();
}

int Fail(const std::string& command, const Status& status) {
  std::cerr << "moerack " << command << ": " << status.message() << std::endl;
  return 1;
}

}  // namespace moerack::cli

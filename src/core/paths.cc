#include "core/paths.h"

#include <cstdlib>
#include <filesystem>

namespace moerack {
namespace fs = std::filesystem;

StatusOr<std::string> FindDataDir() {
  if (const char* env = std::getenv("MOERACK_DATA_DIR"); env != nullptr && *env != '\0') {
    if (!fs::is_directory(env))
      return Error(std::string("MOERACK_DATA_DIR=") + env + ": not a directory");
    return std::string(env);
  }
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return Error("cannot locate the moerack binary (/proc/self/exe)");
  const fs::path dir = exe.parent_path();
  for (const fs::path& candidate : {dir / "share" / "moerack", dir / ".." / "share" / "moerack"}) {
    if (fs::is_directory(candidate)) return fs::weakly_canonical(candidate).string();
  }
  return Error(
      "bundled data not found next to " + exe.string() +
      " (looked in share/moerack and ../share/moerack); set MOERACK_DATA_DIR or pass --model");
}

StatusOr<std::string> DefaultModelDir() {
  MR_ASSIGN_OR_RETURN(std::string data, FindDataDir());
  return (fs::path(data) / "models" / "default").string();
}

}  // namespace moerack

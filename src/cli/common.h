// Helpers shared by the subcommands: the --model default, token lists, and
// printing an error the way every command does (one line on stderr).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace moerack::cli {

// The flag's value, or the bundled default model when empty.
StatusOr<std::string> ResolveModelDir(const std::string& flag);
// "1,2,3" -> {1, 2, 3}; errors name the flag.
StatusOr<std::vector<int32_t>> ParseTokenList(const std::string& text, const std::string& flag);
// Checks ids against the vocabulary; errors name the flag.
Status CheckTokenIds(const std::vector<int32_t>& ids, int vocab_size, const std::string& flag);
// Prints "moerack <command>: <message>" on stderr and returns 1.
int Fail(const std::string& command, const Status& status);

}  // namespace moerack::cli

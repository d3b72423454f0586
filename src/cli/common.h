// Helpers shared by the subcommands: the --model default, token lists, and
// printing an error the way every command does (one line on stderr).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "core/status.h"
#include "model/model.h"

namespace moerack::cli {

// The flag's value, or the bundled default model when empty.
StatusOr<std::string> ResolveModelDir(const std::string& flag);
// "1,2,3" -> {1, 2, 3}; errors name the flag.
StatusOr<std::vector<int32_t>> ParseTokenList(const std::string& text, const std::string& flag);
// Checks ids against the vocabulary; errors name the flag.
Status CheckTokenIds(const std::vector<int32_t>& ids, int vocab_size, const std::string& flag);
// Flags every model-running command shares: threads, precisions, expert parallelism.
struct ModelRunFlags {
  int threads = 1;
  std::string kv_dtype = "f32";
  std::string act_dtype = "f32";
  int ep = 1;
  bool overlap = false;
  std::string dispatch_dtype = "f32";
  std::string stats;      // --stats FILE.json (commands registered with stats)
  std::string stats_svg;  // --stats-svg FILE
};
// Registers them; `ep_help` says how the command spreads its work over ranks.
void AddModelRunFlags(CLI::App& app, ModelRunFlags* f, const std::string& ep_help,
                      bool with_stats);
// Applies --act-dtype, --dispatch-dtype and --overlap to a loaded model; errors name the flag.
Status ApplyModelRunFlags(const ModelRunFlags& f, Model& model);

// Prints "moerack <command>: <message>" on stderr and returns 1.
int Fail(const std::string& command, const Status& status);

}  // namespace moerack::cli

// The `moerack` subcommands. Each Register* adds its options to the app and
// returns the function to run when that subcommand was chosen (exit code).
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace moerack::cli {

using Command = std::function<int()>;

Command RegisterGenerate(CLI::App& app);
Command RegisterLogits(CLI::App& app);
Command RegisterRandomModel(CLI::App& app);
Command RegisterMembw(CLI::App& app);
Command RegisterEval(CLI::App& app);
Command RegisterInfo(CLI::App& app);
Command RegisterQuantize(CLI::App& app);
Command RegisterSim(CLI::App& app);

}  // namespace moerack::cli

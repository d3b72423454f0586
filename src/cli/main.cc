// moerack: the command-line entry point. The contract of each subcommand is in
// DESIGN.md ("The moerack command line").
#include <CLI/CLI.hpp>
#include <iostream>
#include <map>

#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"moerack: Mixture-of-Experts inference engine and rack-scale simulator"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Help for every subcommand");
  // Bad flags: one line naming the problem, like every other error.
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return std::string("moerack: ") + e.what() + " (see --help)\n";
  });
  std::map<CLI::App*, moerack::cli::Command> commands;
  auto add = [&](const char* name, const char* help, auto reg) {
    CLI::App* sub = app.add_subcommand(name, help);
    commands[sub] = reg(*sub);
  };
  add("generate", "Generate text from a prompt", moerack::cli::RegisterGenerate);
  add("logits", "Write the logits of every position as a float32 .npy",
      moerack::cli::RegisterLogits);
  add("eval", "Perplexity and bits per byte of a text (and KL against a reference model)",
      moerack::cli::RegisterEval);
  add("info", "Architecture, parameters and KV cache size of a model or config",
      moerack::cli::RegisterInfo);
  add("random-model", "Write a model with random weights for any supported config",
      moerack::cli::RegisterRandomModel);
  add("quantize", "Write an NVFP4 / MXFP4 / FP8 copy of a checkpoint (ModelOpt / DeepSeek layouts)",
      moerack::cli::RegisterQuantize);
  add("sim", "Rack-scale simulator: throughput per GPU vs tokens/s per user for a model on a system",
      moerack::cli::RegisterSim);
  add("membw", "Measure memory read bandwidth (the roofline denominator)",
      moerack::cli::RegisterMembw);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  for (auto& [sub, run] : commands) {
    if (sub->parsed()) return run();
  }
  return 1;
}

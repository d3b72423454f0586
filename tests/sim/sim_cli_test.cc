// `moerack sim` as a user drives it: the --json contract, --compare, the
// fixed-layout mode, and clear errors for bad flags.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>

namespace {

struct SimRun {
  int code = -1;
  std::string out, err;
};

SimRun Sim(const std::string& args) {
  // Files named by this process: ctest -j runs the tests of this file as
  // separate processes at once, and with shared names one test read another's
  // output (seen once under ASan: CompareAndPlot found no "ratio").
  const std::string dir = testing::TempDir() + "/sim_" + std::to_string(::getpid());
  const std::string out = dir + "_out.txt", err = dir + "_err.txt";
  const std::string cmd = std::string("exec ") + MOERACK_BINARY + " sim " + args + " >" + out +
                          " 2>" + err + " </dev/null";
  SimRun r;
  const int status = std::system(cmd.c_str());
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  auto slurp = [](const std::string& p) {
    std::ifstream f(p);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  };
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

TEST(SimCliTest, JsonFrontierContract) {
  const SimRun r = Sim("--model deepseek-r1 --hardware gb200-nvl72 --precision nvfp4 --gpus 8 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["kv_dtype"], "fp8");  // the default with nvfp4
  ASSERT_TRUE(j["frontier"].is_array());
  ASSERT_FALSE(j["frontier"].empty());
  double prev = 0;
  for (const auto& p : j["frontier"]) {
    for (const char* k : {"tokens_per_s_per_user", "output_tokens_per_s_per_gpu",
                          "total_tokens_per_s_per_gpu", "ttft_s", "itl_s", "gpus"})
      EXPECT_TRUE(p[k].is_number()) << k;
    ASSERT_TRUE(p["layout"]["pools"].is_array());
    for (const auto& pool : p["layout"]["pools"])
      for (const char* k : {"role", "gpus", "tp", "ep", "dp"}) EXPECT_TRUE(pool.contains(k)) << k;
    EXPECT_GT(p["tokens_per_s_per_user"].get<double>(), prev);
    prev = p["tokens_per_s_per_user"].get<double>();
    EXPECT_LE(p["gpus"].get<int>(), 8);
  }
}

TEST(SimCliTest, CompareAndPlot) {
  const std::string svg = testing::TempDir() + "/frontier.svg";
  std::filesystem::remove(svg);
  const SimRun r = Sim("--model qwen3-235b-a22b --compare b200:nvfp4,h100:fp8 --gpus 8 --plot " + svg);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("ratio"), std::string::npos) << r.out;
  EXPECT_TRUE(std::filesystem::exists(svg));
}

TEST(SimCliTest, FixedLayoutPhases) {
  SimRun r = Sim("--model deepseek-r1 --hardware h100 --isl 2000 --osl 100 "
              "--layout 'decode:gpus=72,ep=72,batch=256,overlap=1' --phase decode");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("output:"), std::string::npos) << r.out;
  r = Sim("--model deepseek-r1 --hardware gb200-nvl72 --precision nvfp4 "
          "--layout 'prefill:gpus=8,ep=8;decode:gpus=48,ep=48,batch=128' --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["layout"]["mode"], "disaggregated");
  EXPECT_EQ(j["gpus"], 56);
  EXPECT_GT(j["ttft_s"].get<double>(), 0);
  r = Sim("--model mixtral-8x7b --hardware h100 --layout 'agg:gpus=2,tp=2' --arrival-rate 2");
  ASSERT_EQ(r.code, 0) << r.err;
}

TEST(SimCliTest, EfficiencyOverride) {
  // Faster GEMMs and HBM make the same fixed layout faster.
  const std::string layout =
      "--model deepseek-r1 --hardware h200 --layout 'decode:gpus=8,ep=8,batch=64' --phase decode "
      "--json";
  const SimRun base = Sim(layout), fast = Sim(layout + " --efficiency gemm=0.8,hbm=0.9");
  ASSERT_EQ(base.code, 0) << base.err;
  ASSERT_EQ(fast.code, 0) << fast.err;
  const double a = nlohmann::json::parse(base.out)["output_tokens_per_s_per_gpu"];
  const double b = nlohmann::json::parse(fast.out)["output_tokens_per_s_per_gpu"];
  EXPECT_GT(b, 1.2 * a);
}

TEST(SimCliTest, BadInputsGetClearErrors) {
  struct Case {
    std::string args, needle;
  };
  for (const Case& c : {Case{"--hardware no-such --model deepseek-r1", "unknown system"},
                        Case{"--hardware h100 --model no-such", "--model"},
                        Case{"--model deepseek-r1", "--hardware is required"},
                        Case{"--hardware h100 --layout 'decode:gpus=8,foo=1' --phase decode",
                             "unknown key 'foo'"},
                        Case{"--hardware h100 --layout 'decode:gpus=6,tp=4'", "multiple of tp"},
                        Case{"--hardware h100 --model mixtral-8x7b --layout 'agg:gpus=16'",
                             "exceeds the model's 8 experts"},
                        Case{"--hardware h100 --precision int3", "precision"},
                        Case{"--validate /no/such.csv", "/no/such.csv"},
                        Case{"--hardware h100 --model deepseek-r1 --gpus 1", "fits"},
                        Case{"--hardware h100 --layout 'prefill:gpus=8,tokens=0' --phase prefill",
                             "tokens per step"},
                        Case{"--hardware h100 --layout 'decode:gpus=8,batch=1e10' --phase decode",
                             "at most 1e6"},
                        Case{"--hardware h100 --layout 'decode:gpus=2.5,batch=1' --phase decode",
                             "whole number"},
                        Case{"--hardware h100 --layout 'decode:gpus=16,tp=16,batch=1' --phase decode",
                             "NVLink domain"},
                        Case{"--hardware cpu --layout 'decode:gpus=2,batch=1' --phase decode",
                             "scale-out"},
                        Case{"--hardware h100 --efficiency gemm=2", "gemm=2 is out of range"},
                        Case{"--hardware h100 --efficiency speed=1", "is not NAME=VALUE"},
                        Case{"--validate tests/sim/published.csv --efficiency hbm", "NAME=VALUE"}}) {
    SCOPED_TRACE(c.args);
    const SimRun r = Sim(c.args);
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.err.find(c.needle), std::string::npos) << r.err;
  }
}

}  // namespace

// End-to-end tests of the `moerack` binary on copies of the committed tiny
// model, corrupted one way per test: every bad input must end the process with
// a non-zero status (not a signal) and one stderr line naming the file, tensor,
// field or flag at fault.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "core/mapped_file.h"
#include "core/npy.h"
#include "model/safetensors.h"

namespace moerack {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr char kQProj[] = "model.layers.0.self_attn.q_proj.weight";  // BF16 [128, 64]
constexpr int kVocabSize = 300;                                      // of tiny-qwen3-moe

struct RunResult {
  int status = 0;  // as returned by std::system
  std::string out;
  std::string err;
};

std::string ShellQuote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t nl = std::min(text.find('\n', pos), text.size());
    lines.push_back(text.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return lines;
}

std::string ReadOrEmpty(const std::string& path) {
  auto text = ReadFileToString(path);
  return text.ok() ? *text : "";
}

// "1,2,...,n".
std::string TokenList(int n) {
  std::string s;
  for (int i = 1; i <= n; ++i) s += (i > 1 ? "," : "") + std::to_string(i);
  return s;
}

// Expects a clean failure: exited (no signal, no crash) with a non-zero
// status, and exactly one stderr line holding every string in `needles`.
void ExpectCleanFailure(const RunResult& r, const std::vector<std::string>& needles) {
  ASSERT_FALSE(WIFSIGNALED(r.status)) << "killed by signal " << WTERMSIG(r.status) << "\n" << r.err;
  ASSERT_TRUE(WIFEXITED(r.status)) << r.err;
  EXPECT_NE(WEXITSTATUS(r.status), 0) << "succeeded on bad input";
  EXPECT_LT(WEXITSTATUS(r.status), 128) << "shell reports a signal\n" << r.err;
  EXPECT_EQ(Lines(r.err).size(), 1u) << "stderr:\n" << r.err;
  EXPECT_TRUE(!r.err.empty() && r.err.back() == '\n') << r.err;
  for (const std::string& needle : needles) {
    EXPECT_NE(r.err.find(needle), std::string::npos) << "stderr: " << r.err << "wanted: " << needle;
  }
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = (fs::path(::testing::TempDir()) /
            ("cli_test_" + std::string(info->name()) + "_" + std::to_string(::getpid())))
               .string();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    model_ = (fs::path(dir_) / "model").string();
    fs::copy(fs::path(MOERACK_SOURCE_DIR) / "tests/data/tiny-qwen3-moe", model_,
             fs::copy_options::recursive);
    checkpoint_ = (fs::path(model_) / "model.safetensors").string();
    config_ = (fs::path(model_) / "config.json").string();
    npy_ = (fs::path(dir_) / "logits.npy").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Runs `moerack args...`, capturing stdout and stderr. `exec` makes the
  // status the binary's own, so a crash reads as WIFSIGNALED.
  RunResult Run(const std::vector<std::string>& args) const {
    const std::string out = dir_ + "/stdout.txt", err = dir_ + "/stderr.txt";
    std::string cmd = "exec " + ShellQuote(MOERACK_BINARY);
    for (const std::string& a : args) cmd += " " + ShellQuote(a);
    cmd += " >" + ShellQuote(out) + " 2>" + ShellQuote(err) + " </dev/null";
    RunResult r;
    r.status = std::system(cmd.c_str());
    r.out = ReadOrEmpty(out);
    r.err = ReadOrEmpty(err);
    return r;
  }

  RunResult Generate(const std::string& model, const std::string& tokens,
                     std::vector<std::string> extra = {}) const {
    std::vector<std::string> args = {"generate", "--model", model, "--tokens", tokens};
    args.insert(args.end(), {"--max-tokens", "2"});
    args.insert(args.end(), extra.begin(), extra.end());
    return Run(args);
  }

  RunResult Logits(const std::string& model, const std::string& tokens,
                   std::vector<std::string> extra = {}) const {
    std::vector<std::string> args = {"logits", "--model", model, "--tokens", tokens, "--out", npy_};
    args.insert(args.end(), extra.begin(), extra.end());
    return Run(args);
  }

  // Both `generate` and `logits` on the (corrupted) copy fail cleanly, with
  // `needles` in the message, and logits leaves no output file behind.
  void ExpectBothCommandsFail(const std::vector<std::string>& needles) {
    {
      SCOPED_TRACE("moerack generate");
      ExpectCleanFailure(Generate(model_, "1,2,3"), needles);
    }
    {
      SCOPED_TRACE("moerack logits");
      ExpectCleanFailure(Logits(model_, "1,2,3"), needles);
      EXPECT_FALSE(fs::exists(npy_));
    }
  }

  // Rewrites the copy's checkpoint after `edit` changes its tensor list.
  void RewriteCheckpoint(const std::function<void(std::vector<TensorToWrite>&)>& edit) {
    std::vector<TensorToWrite> tensors;
    {
      auto store = WeightStore::OpenFiles({checkpoint_});
      ASSERT_TRUE(store.ok()) << store.status().message();
      for (const std::string& name : (*store)->Names()) {
        const TensorView v = *(*store)->Get(name);
        tensors.push_back(
            {name, v.dtype, std::vector<int64_t>(v.shape.begin(), v.shape.begin() + v.ndim),
             std::string(static_cast<const char*>(v.data), static_cast<size_t>(v.nbytes()))});
      }
    }  // unmapped before the file is rewritten
    edit(tensors);
    ASSERT_TRUE(WriteSafetensors(checkpoint_, tensors).ok());
  }

  void EditConfig(const std::function<void(json&)>& edit) {
    auto text = ReadFileToString(config_);
    ASSERT_TRUE(text.ok()) << text.status().message();
    json j = json::parse(*text);
    edit(j);
    ASSERT_TRUE(WriteStringToFile(config_, j.dump(2)).ok());
  }

  std::string dir_, model_, checkpoint_, config_, npy_;
};

TensorToWrite& Find(std::vector<TensorToWrite>& tensors, const std::string& name) {
  for (TensorToWrite& t : tensors) {
    if (t.name == name) return t;
  }
  ADD_FAILURE() << "no tensor " << name;
  return tensors.front();
}

// The length of a safetensors file's JSON header (0 when unreadable).
uint64_t HeaderLength(const std::string& path) {
  auto bytes = ReadFileToString(path);
  uint64_t n = 0;
  if (bytes.ok() && bytes->size() >= 8) std::memcpy(&n, bytes->data(), 8);
  return n;
}

TEST_F(CliTest, TruncatedCheckpointFailsCleanly) {
  const uint64_t data_start = 8 + HeaderLength(checkpoint_);
  const uint64_t size = fs::file_size(checkpoint_);
  ASSERT_LT(data_start, size);
  fs::resize_file(checkpoint_, data_start + (size - data_start) / 2);
  ExpectBothCommandsFail({checkpoint_, "truncated"});
}

TEST_F(CliTest, CorruptHeaderFailsCleanly) {
  auto bytes = ReadFileToString(checkpoint_);
  ASSERT_TRUE(bytes.ok());
  const size_t colon = bytes->find(':', 8);  // the first key's separator
  ASSERT_LT(colon, 8 + HeaderLength(checkpoint_));
  (*bytes)[colon] = '#';
  ASSERT_TRUE(WriteStringToFile(checkpoint_, *bytes).ok());
  ExpectBothCommandsFail({checkpoint_, "not valid JSON"});
}

TEST_F(CliTest, TensorWithWrongShapeFailsCleanly) {
  RewriteCheckpoint([&](std::vector<TensorToWrite>& tensors) {
    TensorToWrite& q = Find(tensors, kQProj);
    ASSERT_EQ(q.shape, (std::vector<int64_t>{128, 64}));
    q.shape = {64, 128};
  });
  ExpectBothCommandsFail({kQProj, checkpoint_, "shape [64, 128], expected [128, 64]"});
}

TEST_F(CliTest, TensorWithWrongDtypeFailsCleanly) {
  RewriteCheckpoint([&](std::vector<TensorToWrite>& tensors) {
    TensorToWrite& q = Find(tensors, kQProj);
    ASSERT_EQ(q.dtype, DType::kBF16);
    q.dtype = DType::kI32;
    q.bytes.resize(q.bytes.size() * 2);
  });
  ExpectBothCommandsFail({kQProj, checkpoint_, "dtype I32, expected BF16"});
}

TEST_F(CliTest, MissingExpertTensorFailsCleanly) {
  const std::string expert = "model.layers.2.mlp.experts.5.down_proj.weight";
  RewriteCheckpoint([&](std::vector<TensorToWrite>& tensors) {
    const size_t before = tensors.size();
    std::erase_if(tensors, [&](const TensorToWrite& t) { return t.name == expert; });
    ASSERT_EQ(tensors.size(), before - 1);
  });
  ExpectBothCommandsFail({"missing tensor '" + expert + "'"});
}

TEST_F(CliTest, UnknownArchitectureFailsCleanly) {
  EditConfig([](json& j) {
    j["architectures"] = {"FooForCausalLM"};
    j["model_type"] = "foo";
  });
  ExpectBothCommandsFail({config_, "unknown architecture 'FooForCausalLM'", "'foo'"});
}

TEST_F(CliTest, MissingConfigFieldFailsCleanly) {
  EditConfig([](json& j) { ASSERT_EQ(j.erase("hidden_size"), 1u); });
  ExpectBothCommandsFail({config_, "missing required field 'hidden_size'"});
}

TEST_F(CliTest, TokenIdOutOfRangeFailsCleanly) {
  const std::vector<std::string> needles = {"--tokens", "99999", "out of range [0, 300)"};
  {
    SCOPED_TRACE("moerack logits");
    ExpectCleanFailure(Logits(model_, "1,99999"), needles);
  }
  {
    SCOPED_TRACE("moerack generate");
    ExpectCleanFailure(Generate(model_, "1,99999"), needles);
  }
}

TEST_F(CliTest, PromptLongerThanMaxModelLenFailsCleanly) {
  const std::vector<std::string> needles = {"--max-model-len 8", "20"};
  {
    SCOPED_TRACE("moerack generate");
    ExpectCleanFailure(Generate(model_, TokenList(20), {"--max-model-len", "8"}), needles);
  }
  {
    SCOPED_TRACE("moerack logits");
    ExpectCleanFailure(Logits(model_, TokenList(20), {"--max-model-len", "8"}), needles);
  }
}

TEST_F(CliTest, MissingModelDirFailsCleanly) {
  model_ = "/nonexistent";
  ExpectBothCommandsFail({"/nonexistent", "not found"});
}

TEST_F(CliTest, QuantizeBadInputsFailCleanly) {
  const std::string out = dir_ + "/q";
  ExpectCleanFailure(Run({"quantize", "--model", model_, "--format", "int3", "--out", out}),
                     {"--format", "int3"});
  ExpectCleanFailure(Run({"quantize", "--model", "/nonexistent", "--format", "nvfp4", "--out", out}),
                     {"/nonexistent"});
  fs::create_directories(out);
  ASSERT_TRUE(WriteStringToFile(out + "/keep.txt", "x").ok());
  ExpectCleanFailure(Run({"quantize", "--model", model_, "--format", "nvfp4", "--out", out}),
                     {out, "not empty"});
  ExpectCleanFailure(Generate(model_, "1,2,3", {"--act-dtype", "fp16"}), {"--act-dtype", "fp16"});
}

TEST_F(CliTest, QuantizeWritesALoadableCheckpoint) {
  const std::string out = dir_ + "/q";
  const RunResult q = Run({"quantize", "--model", model_, "--format", "nvfp4", "--out", out,
                           "--calib-tokens", "32", "--exclude", "*.self_attn.o_proj"});
  ASSERT_EQ(q.status, 0) << q.err;
  EXPECT_NE(q.out.find("to nvfp4"), std::string::npos) << q.out;
  const RunResult g = Generate(out, "1,2,3", {"--act-dtype", "bf16", "--output-tokens"});
  ASSERT_EQ(g.status, 0) << g.err;
  const RunResult g8 = Generate(out, "1,2,3", {"--act-dtype", "int8", "--output-tokens"});
  ASSERT_EQ(g8.status, 0) << g8.err;
  const RunResult info = Run({"info", "--model", out});
  ASSERT_EQ(info.status, 0) << info.err;
  EXPECT_NE(info.out.find("modelopt NVFP4"), std::string::npos) << info.out;
}

TEST_F(CliTest, MalformedTokensFailCleanly) {
  for (const auto& [tokens, bad_item] :
       std::vector<std::pair<std::string, std::string>>{{"1,,2", "''"}, {"a,b", "'a'"}}) {
    const std::vector<std::string> needles = {"--tokens", bad_item + " is not a token id"};
    SCOPED_TRACE(tokens);
    ExpectCleanFailure(Generate(model_, tokens), needles);
    ExpectCleanFailure(Logits(model_, tokens), needles);
  }
}

TEST_F(CliTest, GeneratePrintsTokenIdsAndThroughput) {
  // --ignore-eos: exactly max-tokens ids whatever the random weights predict.
  const RunResult r = Run({"generate", "--model", model_, "--tokens", "1,2,3", "--max-tokens", "4",
                           "--output-tokens", "--ignore-eos"});
  ASSERT_TRUE(WIFEXITED(r.status)) << r.err;
  ASSERT_EQ(WEXITSTATUS(r.status), 0) << r.err;

  const std::vector<std::string> out = Lines(r.out);
  ASSERT_EQ(out.size(), 1u) << r.out;
  std::smatch ids;
  ASSERT_TRUE(std::regex_match(out[0], ids, std::regex(R"((\d+),(\d+),(\d+),(\d+))"))) << out[0];
  for (size_t i = 1; i <= 4; ++i) EXPECT_LT(std::stoi(ids[i].str()), kVocabSize);

  const std::vector<std::string> err = Lines(r.err);
  ASSERT_FALSE(err.empty());
  std::smatch m;
  ASSERT_TRUE(std::regex_match(
      err.back(), m,
      std::regex(R"(prefill: (\d+) tok, ([0-9.]+) tok/s; decode: (\d+) tok, ([0-9.]+) tok/s)")))
      << err.back();
  EXPECT_EQ(m[1].str(), "3");  // the prompt
  EXPECT_EQ(m[3].str(), "3");  // the first token comes from the prefill
  EXPECT_GT(std::stod(m[2].str()), 0.0);
  EXPECT_GT(std::stod(m[4].str()), 0.0);
}

TEST_F(CliTest, LogitsWritesOneRowPerToken) {
  const RunResult r = Logits(model_, "1,2,3");
  ASSERT_TRUE(WIFEXITED(r.status)) << r.err;
  ASSERT_EQ(WEXITSTATUS(r.status), 0) << r.err;
  EXPECT_EQ(r.err, "");

  const uint64_t data_bytes = 3 * kVocabSize * sizeof(float);
  const uint64_t size = fs::file_size(npy_);
  ASSERT_GT(size, data_bytes);
  EXPECT_EQ((size - data_bytes) % 64, 0u) << "npy header must pad the data to 64 bytes";
  EXPECT_LE(size - data_bytes, 128u);
  auto npy = ReadNpyF32(npy_);
  ASSERT_TRUE(npy.ok()) << npy.status().message();
  EXPECT_EQ(npy->shape, (std::vector<int64_t>{3, kVocabSize}));
  for (float x : npy->data) ASSERT_TRUE(std::isfinite(x));
}

TEST_F(CliTest, LogitsDecodeMatchesPrefill) {
  const RunResult prefill = Logits(model_, "5,6,7,8");
  ASSERT_EQ(prefill.status, 0) << prefill.err;
  auto a = ReadNpyF32(npy_);
  ASSERT_TRUE(a.ok()) << a.status().message();
  fs::remove(npy_);
  const RunResult decode = Logits(model_, "5,6,7,8", {"--decode-from", "1"});
  ASSERT_EQ(decode.status, 0) << decode.err;
  auto b = ReadNpyF32(npy_);
  ASSERT_TRUE(b.ok()) << b.status().message();
  ASSERT_EQ(a->shape, b->shape);
  ASSERT_EQ(a->data.size(), b->data.size());
  float max_abs = 0;
  for (float x : a->data) max_abs = std::max(max_abs, std::fabs(x));
  for (size_t i = 0; i < a->data.size(); ++i) {
    ASSERT_NEAR(a->data[i], b->data[i], 1e-3f * max_abs + 1e-6f) << "element " << i;
  }
}

}  // namespace
}  // namespace moerack

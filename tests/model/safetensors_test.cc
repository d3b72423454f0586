// Tests of the safetensors reader and writer: round trips through
// WriteSafetensors and WeightStore, sharded checkpoints, and rejection of every
// malformed file the header validation promises to catch, each with a message
// that names the problem.
#include "model/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/mapped_file.h"
#include "model/config.h"
#include "model/linear_loader.h"

namespace moerack {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string Bf16Bytes(const std::vector<float>& values) {
  std::string bytes(values.size() * 2, '\0');
  for (size_t i = 0; i < values.size(); ++i) {
    const uint16_t b = F32ToBF16(values[i]);
    std::memcpy(bytes.data() + 2 * i, &b, 2);
  }
  return bytes;
}

std::string F32Bytes(const std::vector<float>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
}

// A safetensors file from its parts: 8-byte little-endian header length, the
// header text exactly as given (no padding), then the data section.
std::string SafetensorsBytes(const std::string& header, const std::string& data) {
  const uint64_t n = header.size();
  std::string bytes(reinterpret_cast<const char*>(&n), 8);
  return bytes + header + data;
}

// A header entry, e.g. Entry("F32", {2}, 0, 8).
json Entry(const std::string& dtype, const std::vector<int64_t>& shape, uint64_t begin,
           uint64_t end) {
  return json{{"dtype", dtype}, {"shape", shape}, {"data_offsets", json::array({begin, end})}};
}

std::vector<float> ReadFloats(const TensorView& v) {
  std::vector<float> out(static_cast<size_t>(v.numel()));
  for (size_t i = 0; i < out.size(); ++i) {
    if (v.dtype == DType::kBF16) {
      out[i] = BF16ToF32(v.as<const uint16_t>()[i]);
    } else {
      out[i] = v.as<const float>()[i];
    }
  }
  return out;
}

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = (fs::path(::testing::TempDir()) /
            ("safetensors_test_" + std::string(info->name()) + "_" + std::to_string(::getpid())))
               .string();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string PathOf(const std::string& name) const { return (fs::path(dir_) / name).string(); }

  std::string WriteFile(const std::string& name, const std::string& contents) const {
    const std::string path = PathOf(name);
    EXPECT_TRUE(WriteStringToFile(path, contents).ok()) << path;
    return path;
  }

  // The error message of parsing `bytes` in memory; fails the test if it parses.
  static std::string ParseError(const std::string& bytes) {
    size_t data_offset = 0;
    auto entries = ParseSafetensorsHeader(reinterpret_cast<const uint8_t*>(bytes.data()),
                                          bytes.size(), &data_offset);
    EXPECT_FALSE(entries.ok()) << "parsed a malformed header";
    return entries.ok() ? "" : entries.status().message();
  }

  // Expects `bytes` to be rejected with a message containing `problem`, both by
  // ParseSafetensorsHeader and by WeightStore::Open on a directory holding
  // them as model.safetensors (whose message must also name the file).
  void ExpectRejected(const std::string& bytes, const std::string& problem) {
    EXPECT_NE(ParseError(bytes).find(problem), std::string::npos)
        << "message: " << ParseError(bytes) << "\nwanted: " << problem;
    const std::string path = WriteFile("model.safetensors", bytes);
    auto store = WeightStore::Open(dir_);
    ASSERT_FALSE(store.ok()) << "opened a malformed file";
    const std::string& message = store.status().message();
    EXPECT_NE(message.find(problem), std::string::npos) << message << "\nwanted: " << problem;
    EXPECT_NE(message.find(path), std::string::npos) << message << "\nwanted the path " << path;
  }

  std::unique_ptr<WeightStore> OpenOrDie(const std::string& dir) const {
    auto store = WeightStore::Open(dir);
    EXPECT_TRUE(store.ok()) << store.status().message();
    return store.ok() ? std::move(store).value() : nullptr;
  }

  std::string dir_;
};

// Packed weights read 64 bytes at a time: a tensor of a multiple of 64 bytes
// must start on a 64-byte boundary of the file whatever the tensors around it.
TEST_F(SafetensorsTest, WriterAlignsTensorsOfWholeCacheLines) {
  std::vector<TensorToWrite> tensors = {
      {"a.weight_scale_2", DType::kF32, {}, F32Bytes({0.5f})},
      {"a.weight", DType::kU8, {3, 64}, std::string(192, '\x11')},
      {"a.input_scale", DType::kF32, {}, F32Bytes({2.0f})},
      {"b.odd", DType::kU8, {5, 7}, std::string(35, '\x22')},
      {"b.weight", DType::kU8, {2, 64}, std::string(128, '\x33')},
  };
  ASSERT_TRUE(WriteSafetensors(PathOf("model.safetensors"), tensors).ok());
  std::ifstream in(PathOf("model.safetensors"), std::ios::binary);
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  std::string header(n, ' ');
  in.read(header.data(), static_cast<std::streamsize>(n));
  const auto j = nlohmann::json::parse(header);
  EXPECT_EQ((8 + n) % kSafetensorsDataAlign, 0u);
  int aligned = 0;
  for (const auto& t : tensors) {
    const uint64_t begin = j[t.name]["data_offsets"][0].get<uint64_t>();
    if (t.bytes.size() % kSafetensorsDataAlign == 0) {
      EXPECT_EQ(begin % kSafetensorsDataAlign, 0u) << t.name;
      ++aligned;
    }
  }
  EXPECT_EQ(aligned, 2);
  auto store = OpenOrDie(dir_);
  ASSERT_NE(store, nullptr);
  auto b = store->Get("b.weight", {2, 64}, {DType::kU8});
  ASSERT_TRUE(b.ok()) << b.status().message();
  EXPECT_EQ(std::string(static_cast<const char*>(b->data), 128), std::string(128, '\x33'));
  auto s2 = store->Get("a.weight_scale_2", {}, {DType::kF32});
  ASSERT_TRUE(s2.ok()) << s2.status().message();
  EXPECT_EQ(ReadFloats(*s2), std::vector<float>{0.5f});
}

// A file from another writer may put tensors anywhere; in a huge-page copy the
// loader moves each to a 64-byte boundary, keeping its bytes.
TEST_F(SafetensorsTest, HugePageCopyPutsEveryTensorOnA64ByteBoundary) {
  const size_t big = 3 << 20;  // above one huge page, so the store copies the file
  std::string w(big, '\0'), t(100, '\0');
  for (size_t i = 0; i < big; ++i) w[i] = static_cast<char>(i * 7 + 3);
  for (size_t i = 0; i < t.size(); ++i) t[i] = static_cast<char>(i * 13 + 1);
  const std::string s = F32Bytes({1.5f});
  nlohmann::json h;
  h["s"] = {{"dtype", "F32"}, {"shape", nlohmann::json::array()}, {"data_offsets", {0, 4}}};
  h["w"] = {{"dtype", "U8"}, {"shape", {big}}, {"data_offsets", {4, 4 + big}}};
  h["t"] = {{"dtype", "U8"}, {"shape", {100}}, {"data_offsets", {4 + big, 104 + big}}};
  std::string header = h.dump();
  header.append((8 - (8 + header.size()) % 8) % 8 + 8, ' ');
  {
    std::ofstream out(PathOf("model.safetensors"), std::ios::binary);
    const uint64_t n = header.size();
    out.write(reinterpret_cast<const char*>(&n), 8);
    out << header << s << w << t;
  }
  auto store = OpenOrDie(dir_);
  ASSERT_NE(store, nullptr);
  auto wv = store->Get("w", {static_cast<int64_t>(big)}, {DType::kU8});
  auto tv = store->Get("t", {100}, {DType::kU8});
  auto sv = store->Get("s", {}, {DType::kF32});
  ASSERT_TRUE(wv.ok() && tv.ok() && sv.ok());
  EXPECT_EQ(std::string(static_cast<const char*>(wv->data), big), w);
  EXPECT_EQ(std::string(static_cast<const char*>(tv->data), 100), t);
  EXPECT_EQ(ReadFloats(*sv), std::vector<float>{1.5f});
  if (!MappedFile::HugePageCopyAdvisable(8 + header.size() + 104 + big))
    GTEST_SKIP() << "no transparent huge pages here: the file is mapped as it is";
  for (const TensorView* v : {&*wv, &*tv, &*sv})
    EXPECT_EQ(reinterpret_cast<uintptr_t>(v->data) % kSafetensorsDataAlign, 0u);
}

// A file whose tensors start on 64-byte boundaries (as moerack writes them),
// when it is not copied, is used in place from a map on huge pages where the
// kernel allows: the bytes are the file's and every tensor keeps its 64-byte
// boundary. The same with the copy.
TEST_F(SafetensorsTest, AlignedFileOfSeveralHugePagesLoadsInPlaceOrCopied) {
  const size_t big = (5 << 20) + 64;
  std::string w(big, '\0');
  for (size_t i = 0; i < big; ++i) w[i] = static_cast<char>(i * 11 + 5);
  ASSERT_TRUE(WriteSafetensors(PathOf("model.safetensors"),
                               {{"w", DType::kU8, {static_cast<int64_t>(big)}, w},
                                {"s", DType::kF32, {}, F32Bytes({2.5f})}})
                  .ok());
  for (int open = 0; open < 3; ++open) {  // map, map of the cached pages, copy
    auto store = WeightStore::OpenFiles({PathOf("model.safetensors")}, true, open == 2);
    ASSERT_TRUE(store.ok()) << store.status().message();
    auto wv = (*store)->Get("w", {static_cast<int64_t>(big)}, {DType::kU8});
    auto sv = (*store)->Get("s", {}, {DType::kF32});
    ASSERT_TRUE(wv.ok() && sv.ok());
    EXPECT_EQ(std::string(static_cast<const char*>(wv->data), big), w) << open;
    EXPECT_EQ(ReadFloats(*sv), std::vector<float>{2.5f});
    EXPECT_EQ(reinterpret_cast<uintptr_t>(wv->data) % kSafetensorsDataAlign, 0u);
  }
}

TEST_F(SafetensorsTest, RoundTripKeepsValuesShapesAndDtypes) {
  const std::vector<float> bf16_values = {1.0f, -2.5f, 0.15625f, 3e5f, -0.0f, 7.0f};
  const std::vector<float> f32_values = {0.1f, -1e-30f, 12345.678f, 3.0f};
  std::vector<TensorToWrite> tensors = {
      {"w.bf16", DType::kBF16, {2, 3}, Bf16Bytes(bf16_values)},
      {"b.f32", DType::kF32, {4}, F32Bytes(f32_values)},
      {"scalar", DType::kF32, {}, F32Bytes({42.5f})},
      {"empty", DType::kBF16, {0, 5}, ""},
  };
  ASSERT_TRUE(WriteSafetensors(PathOf("model.safetensors"), tensors).ok());
  auto store = OpenOrDie(dir_);
  ASSERT_NE(store, nullptr);

  EXPECT_EQ(store->Names(), (std::vector<std::string>{"b.f32", "empty", "scalar", "w.bf16"}));
  auto w = store->Get("w.bf16", {2, 3}, {DType::kBF16});
  ASSERT_TRUE(w.ok()) << w.status().message();
  for (size_t i = 0; i < bf16_values.size(); ++i) {
    EXPECT_EQ(ReadFloats(*w)[i], BF16ToF32(F32ToBF16(bf16_values[i]))) << i;
  }
  auto b = store->Get("b.f32", {4}, {DType::kF32});
  ASSERT_TRUE(b.ok()) << b.status().message();
  EXPECT_EQ(ReadFloats(*b), f32_values);

  auto scalar = store->Get("scalar", {}, {DType::kF32});
  ASSERT_TRUE(scalar.ok()) << scalar.status().message();
  EXPECT_EQ(scalar->ndim, 0);
  EXPECT_EQ(scalar->numel(), 1);
  EXPECT_EQ(ReadFloats(*scalar), std::vector<float>{42.5f});

  auto empty = store->Get("empty", {0, 5}, {DType::kBF16});
  ASSERT_TRUE(empty.ok()) << empty.status().message();
  EXPECT_EQ(empty->numel(), 0);
  EXPECT_EQ(empty->nbytes(), 0);
  EXPECT_EQ(store->FileOf("scalar"), PathOf("model.safetensors"));
}

TEST_F(SafetensorsTest, WrittenHeaderIsPaddedAndNamesDtypes) {
  ASSERT_TRUE(
      WriteSafetensors(PathOf("a.safetensors"), {{"x", DType::kF32, {3}, F32Bytes({1, 2, 3})}})
          .ok());
  auto bytes = ReadFileToString(PathOf("a.safetensors"));
  ASSERT_TRUE(bytes.ok());
  uint64_t n = 0;
  std::memcpy(&n, bytes->data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u);
  EXPECT_EQ(bytes->size(), 8 + n + 12);
  const json header = json::parse(bytes->substr(8, n));
  EXPECT_EQ(header["x"], Entry("F32", {3}, 0, 12));
}

TEST_F(SafetensorsTest, ShardedCheckpointReadsEveryShardInTheIndex) {
  ASSERT_TRUE(WriteSafetensors(PathOf("model-00001-of-00002.safetensors"),
                               {{"a", DType::kF32, {2}, F32Bytes({1, 2})},
                                {"b", DType::kBF16, {1}, Bf16Bytes({3})}})
                  .ok());
  ASSERT_TRUE(WriteSafetensors(PathOf("model-00002-of-00002.safetensors"),
                               {{"c", DType::kF32, {1, 2}, F32Bytes({4, 5})}})
                  .ok());
  // Not in the index, and it would clash with shard 1: the index must win.
  ASSERT_TRUE(
      WriteSafetensors(PathOf("stray.safetensors"), {{"a", DType::kF32, {1}, F32Bytes({9})}}).ok());
  const json index = {{"metadata", {{"total_size", 20}}},
                      {"weight_map",
                       {{"a", "model-00001-of-00002.safetensors"},
                        {"b", "model-00001-of-00002.safetensors"},
                        {"c", "model-00002-of-00002.safetensors"}}}};
  WriteFile("model.safetensors.index.json", index.dump(2));

  auto store = OpenOrDie(dir_);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->Names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(ReadFloats(*store->Get("a")), (std::vector<float>{1, 2}));
  EXPECT_EQ(ReadFloats(*store->Get("b")), (std::vector<float>{3}));
  auto c = store->Get("c", {1, 2}, {DType::kF32});
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(ReadFloats(*c), (std::vector<float>{4, 5}));
  EXPECT_EQ(store->FileOf("c"), PathOf("model-00002-of-00002.safetensors"));
}

TEST_F(SafetensorsTest, MisalignedTensorsReadBackCorrectly) {
  json header = {{"f32", Entry("F32", {3}, 0, 12)}, {"bf16", Entry("BF16", {2}, 12, 16)}};
  std::string text = header.dump();
  if ((8 + text.size()) % 2 == 0) text += ' ';  // data section at an odd offset
  const std::string data = F32Bytes({1.5f, -2.0f, 1e10f}) + Bf16Bytes({0.5f, -3.0f});
  WriteFile("model.safetensors", SafetensorsBytes(text, data));

  auto store = OpenOrDie(dir_);
  ASSERT_NE(store, nullptr);
  auto f32 = store->Get("f32", {3}, {DType::kF32});
  ASSERT_TRUE(f32.ok()) << f32.status().message();
  EXPECT_EQ(reinterpret_cast<uintptr_t>(f32->data) % alignof(float), 0u);
  EXPECT_EQ(ReadFloats(*f32), (std::vector<float>{1.5f, -2.0f, 1e10f}));
  auto bf16 = store->Get("bf16", {2}, {DType::kBF16});
  ASSERT_TRUE(bf16.ok()) << bf16.status().message();
  EXPECT_EQ(reinterpret_cast<uintptr_t>(bf16->data) % alignof(uint16_t), 0u);
  EXPECT_EQ(ReadFloats(*bf16), (std::vector<float>{0.5f, -3.0f}));
}

TEST_F(SafetensorsTest, RejectsFileShorterThanLengthPrefix) { ExpectRejected("abc", "too small"); }

TEST_F(SafetensorsTest, RejectsHeaderLengthPastEndOfFile) {
  const std::string header = json{{"x", Entry("F32", {4}, 0, 16)}}.dump();
  const std::string whole = SafetensorsBytes(header, F32Bytes({1, 2, 3, 4}));
  ExpectRejected(whole.substr(0, 8 + header.size() / 2), "runs past the end of the file");
}

TEST_F(SafetensorsTest, RejectsHeaderOver100MB) {
  uint64_t n = 200'000'000;
  std::string bytes(reinterpret_cast<const char*>(&n), 8);
  ExpectRejected(bytes + "{}", "exceeds 100 MB");
}

TEST_F(SafetensorsTest, RejectsHeaderNotStartingWithBrace) {
  ExpectRejected(SafetensorsBytes("[1, 2]  ", ""), "does not start with '{'");
  ExpectRejected(SafetensorsBytes("", ""), "does not start with '{'");
}

TEST_F(SafetensorsTest, RejectsInvalidJson) {
  ExpectRejected(SafetensorsBytes(R"({"x": {"dtype": "F32", )", ""), "not valid JSON");
}

TEST_F(SafetensorsTest, RejectsUnknownDtype) {
  const json header = {{"x", Entry("Q4_K", {4}, 0, 16)}};
  ExpectRejected(SafetensorsBytes(header.dump(), std::string(16, '\0')),
                 "tensor 'x': unsupported dtype \"Q4_K\"");
}

TEST_F(SafetensorsTest, RejectsShapeNotMatchingByteRange) {
  const json header = {{"x", Entry("F32", {2, 2}, 0, 12)}};
  ExpectRejected(SafetensorsBytes(header.dump(), std::string(12, '\0')),
                 "tensor 'x': F32 [2, 2] needs 16 bytes but data_offsets span 12");
}

TEST_F(SafetensorsTest, RejectsOffsetsOutsideDataSection) {
  const json header = {{"x", Entry("F32", {25}, 0, 100)}};
  ExpectRejected(SafetensorsBytes(header.dump(), std::string(16, '\0')),
                 "tensor 'x': data_offsets [0, 100) outside the data section of 16 bytes");
  const json reversed = {{"x", Entry("F32", {0}, 8, 4)}};
  ExpectRejected(SafetensorsBytes(reversed.dump(), std::string(8, '\0')),
                 "tensor 'x': data_offsets [8, 4)");
}

TEST_F(SafetensorsTest, RejectsOverlappingTensors) {
  const json header = {{"a", Entry("F32", {2}, 0, 8)}, {"b", Entry("F32", {2}, 4, 12)}};
  ExpectRejected(SafetensorsBytes(header.dump(), std::string(12, '\0')),
                 "tensor 'b' overlaps another tensor");
}

TEST_F(SafetensorsTest, RejectsHoleInDataSection) {
  const json header = {{"a", Entry("F32", {1}, 0, 4)}, {"b", Entry("F32", {1}, 8, 12)}};
  ExpectRejected(SafetensorsBytes(header.dump(), std::string(12, '\0')), "hole before tensor 'b'");
}

TEST_F(SafetensorsTest, RejectsTrailingBytesOfNoTensor) {
  const json header = {{"a", Entry("F32", {1}, 0, 4)}};
  ExpectRejected(SafetensorsBytes(header.dump(), std::string(8, '\0')),
                 "4 bytes that belong to no tensor");
}

TEST_F(SafetensorsTest, RejectsTensorInTwoShards) {
  ASSERT_TRUE(
      WriteSafetensors(PathOf("s1.safetensors"), {{"a", DType::kF32, {1}, F32Bytes({1})}}).ok());
  ASSERT_TRUE(WriteSafetensors(PathOf("s2.safetensors"), {{"a", DType::kF32, {1}, F32Bytes({2})},
                                                          {"b", DType::kF32, {1}, F32Bytes({3})}})
                  .ok());
  WriteFile("model.safetensors.index.json",
            json{{"weight_map", {{"a", "s1.safetensors"}, {"b", "s2.safetensors"}}}}.dump());
  auto store = WeightStore::Open(dir_);
  ASSERT_FALSE(store.ok());
  const std::string& message = store.status().message();
  EXPECT_NE(message.find("tensor 'a' also in"), std::string::npos) << message;
  EXPECT_NE(message.find(PathOf("s1.safetensors")), std::string::npos) << message;
  EXPECT_NE(message.find(PathOf("s2.safetensors")), std::string::npos) << message;
}

TEST_F(SafetensorsTest, RejectsMissingShardFile) {
  ASSERT_TRUE(WriteSafetensors(PathOf("model-00001-of-00002.safetensors"),
                               {{"a", DType::kF32, {1}, F32Bytes({1})}})
                  .ok());
  WriteFile(
      "model.safetensors.index.json",
      json{{"weight_map",
            {{"a", "model-00001-of-00002.safetensors"}, {"b", "model-00002-of-00002.safetensors"}}}}
          .dump());
  auto store = WeightStore::Open(dir_);
  ASSERT_FALSE(store.ok());
  const std::string& message = store.status().message();
  EXPECT_NE(message.find(PathOf("model-00002-of-00002.safetensors") + ": cannot open"),
            std::string::npos)
      << message;
}

TEST_F(SafetensorsTest, RejectsMissingDirectoryAndDirectoryWithoutWeights) {
  auto missing = WeightStore::Open(PathOf("no-such-dir"));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find(PathOf("no-such-dir") + ": model directory not found"),
            std::string::npos)
      << missing.status().message();
  auto empty = WeightStore::Open(dir_);
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.status().message().find("no *.safetensors files"), std::string::npos)
      << empty.status().message();
}

TEST_F(SafetensorsTest, GetNamesTheTensorOnWrongShapeDtypeOrName) {
  ASSERT_TRUE(WriteSafetensors(PathOf("model.safetensors"),
                               {{"layer.w", DType::kBF16, {2, 3}, Bf16Bytes({1, 2, 3, 4, 5, 6})}})
                  .ok());
  auto store = OpenOrDie(dir_);
  ASSERT_NE(store, nullptr);

  auto wrong_shape = store->Get("layer.w", {3, 2}, {DType::kBF16});
  ASSERT_FALSE(wrong_shape.ok());
  EXPECT_NE(
      wrong_shape.status().message().find("tensor 'layer.w' in " + PathOf("model.safetensors") +
                                          ": shape [2, 3], expected [3, 2]"),
      std::string::npos)
      << wrong_shape.status().message();

  auto wrong_dtype = store->Get("layer.w", {2, 3}, {DType::kF32, DType::kF16});
  ASSERT_FALSE(wrong_dtype.ok());
  EXPECT_NE(
      wrong_dtype.status().message().find("tensor 'layer.w' in " + PathOf("model.safetensors") +
                                          ": dtype BF16, expected F32 or F16"),
      std::string::npos)
      << wrong_dtype.status().message();

  auto missing = store->Get("layer.v", {2, 3}, {DType::kBF16});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("missing tensor 'layer.v'"), std::string::npos)
      << missing.status().message();
  EXPECT_FALSE(store->Has("layer.v"));
  EXPECT_TRUE(store->Has("layer.w"));
}

// Packed FP4 block scales the kernels cannot read (a negative or NaN E4M3
// byte, the E8M0 NaN) fail the load with a message naming the tensor and the
// scale; the same weights with valid scales load.
TEST_F(SafetensorsTest, PackedFp4WithANegativeOrNanBlockScaleIsRejected) {
  struct Case {
    const char* name;
    DType scale_dtype;
    bool compressed_tensors;
    uint8_t good, bad;
  };
  const Case cases[] = {
      {"nvfp4 negative", DType::kFP8E4M3, false, 0x38, 0xb8},
      {"nvfp4 nan", DType::kFP8E4M3, false, 0x38, 0x7f},
      {"nvfp4 negative zero", DType::kFP8E4M3, true, 0x00, 0x80},
      {"mxfp4 nan", DType::kFP8E8M0, true, 0x7f, 0xff},
  };
  const QuantConfig quant;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const bool nv = c.scale_dtype == DType::kFP8E4M3;
    const int64_t N = 3, K = 64, blocks = K / (nv ? 16 : 32);
    for (const bool corrupt : {false, true}) {
      std::string scales(N * blocks, static_cast<char>(c.good));
      if (corrupt) scales[N * blocks - 2] = static_cast<char>(c.bad);
      const std::string packed_name = c.compressed_tensors ? "l.weight_packed" : "l.weight";
      std::vector<TensorToWrite> tensors = {
          {packed_name, DType::kU8, {N, K / 2}, std::string(N * K / 2, '\x5a')},
          {"l.weight_scale", c.scale_dtype, {N, blocks}, scales},
      };
      if (nv) {
        tensors.push_back({c.compressed_tensors ? "l.weight_global_scale" : "l.weight_scale_2",
                           DType::kF32,
                           {},
                           F32Bytes({0.25f})});
      }
      fs::remove_all(dir_);
      fs::create_directories(dir_);
      ASSERT_TRUE(WriteSafetensors(PathOf("model.safetensors"), tensors).ok());
      auto store = OpenOrDie(dir_);
      ASSERT_NE(store, nullptr);
      auto w = LoadLinear(*store, quant, "l.weight", N, K);
      if (!corrupt) {
        EXPECT_TRUE(w.ok()) << w.status().message();
        continue;
      }
      ASSERT_FALSE(w.ok());
      const std::string& message = w.status().message();
      EXPECT_NE(message.find("'l.weight_scale'"), std::string::npos) << message;
      EXPECT_NE(message.find("block scale " + std::to_string(N * blocks - 2)), std::string::npos)
          << message;
    }
  }
}

}  // namespace
}  // namespace moerack

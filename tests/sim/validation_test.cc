// The simulator against published measurements (tests/sim/published.csv):
// efficiency factors fitted on calibration rows only, the error reported on
// every validation row, and the median validation error at most 20%.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "sim/validation.h"

namespace moerack::sim {
namespace {

const std::string kCsv = std::string(MOERACK_SOURCE_DIR) + "/tests/sim/published.csv";

TEST(PublishedValidationTest, MedianValidationErrorWithinTwentyPercent) {
  auto rows = LoadPublished(kCsv);
  ASSERT_TRUE(rows.ok()) << rows.status().message();
  int calibration = 0;
  for (const PublishedRow& r : *rows) calibration += r.role == "calibration";
  EXPECT_LE(3 * calibration, static_cast<int>(rows->size()));  // at most a third
  const std::vector<RowResult> res = Replay(*rows, Efficiency{});
  for (const RowResult& r : res) {
    EXPECT_TRUE(r.failure.empty()) << r.row.id << ": " << r.failure;
    std::printf("%-28s %-11s %-22s published %10.1f simulated %10.1f error %+6.1f%%  %s\n",
                r.row.id.c_str(), r.row.role.c_str(), r.row.metric.c_str(), r.row.value,
                r.predicted, 100 * r.error, r.bound.c_str());
  }
  const double median = MedianAbsError(res, "validation");
  std::printf("median |error| on validation rows: %.1f%%\n", 100 * median);
  EXPECT_LE(median, 0.20);
}

TEST(PublishedValidationTest, FitSeesOnlyCalibrationRows) {
  auto rows = LoadPublished(kCsv);
  ASSERT_TRUE(rows.ok());
  const Efficiency a = FitEfficiency(*rows, Efficiency{});
  // Moving every validation row's value must not move the fit.
  for (PublishedRow& r : *rows)
    if (r.role == "validation") r.value *= 3;
  const Efficiency b = FitEfficiency(*rows, Efficiency{});
  EXPECT_EQ(a.gemm, b.gemm);
  EXPECT_EQ(a.hbm, b.hbm);
  EXPECT_EQ(a.attention, b.attention);
  EXPECT_EQ(a.link, b.link);
  EXPECT_EQ(a.layer_overhead_s, b.layer_overhead_s);
  EXPECT_EQ(a.moe_skew, b.moe_skew);
}

TEST(PublishedValidationTest, BadCsvNamesTheLine) {
  const std::string path = testing::TempDir() + "/bad_published.csv";
  FILE* f = std::fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fputs("id,model,hardware,precision,kv_dtype,phase,isl,osl,gpus,tp,ep,batch_per_gpu,mtp,"
             "metric,value,role\nx,deepseek-r1,h100,fp8,bf16,decode,2000,100,72,1,72,256,0,"
             "tokens_per_s_per_gpu,abc,validation\n",
             f);
  std::fclose(f);
  auto rows = LoadPublished(path);
  ASSERT_FALSE(rows.ok());
  EXPECT_NE(rows.status().message().find("line 2"), std::string::npos);
  EXPECT_NE(rows.status().message().find("value"), std::string::npos);
}

}  // namespace
}  // namespace moerack::sim

// The simulator's parts: ModelSpec from real configs, the hardware catalog,
// the cost model's physics (roofline bounds, activated experts, NVLink vs
// scale-out, overlap, KV capacity), the rank simulation over the engine's
// Scheduler, and the layout search's frontier.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <set>

#include "core/mapped_file.h"
#include "sim/report.h"
#include "sim/search.h"

namespace moerack::sim {
namespace {

std::string Src(const std::string& rel) { return std::string(MOERACK_SOURCE_DIR) + "/" + rel; }

ModelSpec Model(const std::string& name) {
  auto m = LoadModelSpec(Src("configs/" + name + ".json"));
  EXPECT_TRUE(m.ok()) << m.status().message();
  return *m;
}

HardwareSpec Hw(const std::string& name) {
  auto h = LoadHardware(Src("hardware/" + name + ".json"));
  EXPECT_TRUE(h.ok()) << h.status().message();
  return *h;
}

TEST(ModelSpecTest, FullSizeModelsMatchPublishedParameterCounts) {
  struct Case {
    const char* name;
    double total_b, active_b;  // published, billions (active without MTP)
  };
  for (const Case& c : {Case{"deepseek-r1", 671, 37}, Case{"kimi-k2", 1040, 32},
                        Case{"gpt-oss-120b", 116.8, 5.1}, Case{"qwen3-235b-a22b", 235, 22},
                        Case{"mixtral-8x7b", 46.7, 12.9}}) {
    SCOPED_TRACE(c.name);
    const ModelSpec m = Model(c.name);
    EXPECT_NEAR(m.total_params / 1e9, c.total_b, 0.03 * c.total_b);
    // Published active counts differ in whether they include the embeddings.
    EXPECT_NEAR(m.active_params / 1e9, c.active_b, 0.13 * c.active_b);
  }
}

TEST(ModelSpecTest, AttentionAndKvShapes) {
  const ModelSpec ds = Model("deepseek-r1");
  EXPECT_EQ(ds.attention, AttentionKind::kMla);
  EXPECT_EQ(ds.kv_elements_per_token_layer, 576);  // 512 latent + 64 rope
  EXPECT_EQ(ds.num_moe_layers, 58);
  EXPECT_EQ(ds.num_dense_layers(), 3);
  EXPECT_EQ(ds.top_k, 8);
  EXPECT_EQ(ds.num_experts, 256);
  const ModelSpec qwen = Model("qwen3-235b-a22b");
  EXPECT_EQ(qwen.attention, AttentionKind::kGqa);
  EXPECT_EQ(qwen.kv_elements_per_token_layer, 2 * 4 * 128);
  EXPECT_EQ(qwen.sliding_window, 0);  // use_sliding_window false
  const ModelSpec oss = Model("gpt-oss-120b");
  EXPECT_EQ(oss.sliding_window, 128);
  EXPECT_EQ(oss.num_window_layers, 18);
  EXPECT_EQ(oss.num_moe_layers, 36);
  EXPECT_EQ(oss.top_k, 4);
  const ModelSpec mix = Model("mixtral-8x7b");
  EXPECT_EQ(mix.num_experts, 8);
  EXPECT_EQ(mix.sliding_window, 0);  // null
}

TEST(ModelSpecTest, BadConfigsNameTheField) {
  auto m = ParseModelSpec(nlohmann::json::parse(R"({"hidden_size": 8})"), "x.json");
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("vocab_size"), std::string::npos);
  m = ParseModelSpec(nlohmann::json::parse(
                         R"({"hidden_size": 8, "vocab_size": 10, "num_hidden_layers": 2,
                             "num_attention_heads": 2, "num_local_experts": 4,
                             "num_experts_per_tok": 9, "intermediate_size": 4})"),
                     "y.json");
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("num_experts_per_tok"), std::string::npos);
  EXPECT_FALSE(LoadModelSpec("no-such-model").ok());
}

TEST(HardwareTest, CatalogParsesWithSources) {
  for (const char* name : {"h100", "h800", "h200", "b200", "gb200-nvl72", "gb300-nvl72", "cpu"}) {
    SCOPED_TRACE(name);
    const HardwareSpec h = Hw(name);
    EXPECT_EQ(h.name, name);
    EXPECT_GT(h.hbm_bytes_per_s, 0);
    auto text = ReadFileToString(Src(std::string("hardware/") + name + ".json"));
    ASSERT_TRUE(text.ok());
    const auto j = nlohmann::json::parse(*text);
    ASSERT_TRUE(j.contains("sources"));
    for (const char* f : {"hbm_gb", "hbm_tb_s", "nvlink_gb_s", "scaleout_gb_s", "power_w"})
      EXPECT_TRUE(j["sources"].contains(f)) << f;
  }
  const HardwareSpec gb = Hw("gb200-nvl72"), h200 = Hw("h200");
  EXPECT_EQ(gb.nvlink_domain, 72);
  EXPECT_EQ(h200.nvlink_domain, 8);
  EXPECT_EQ(h200.GemmFlops(Precision::kNvfp4), h200.flops_fp8);  // no FP4 on Hopper
  EXPECT_GT(gb.GemmFlops(Precision::kNvfp4), gb.GemmFlops(Precision::kFp8));
  auto no_links = ParseHardware(
      R"({"name": "x", "hbm_gb": 80, "hbm_tb_s": 3, "tflops": {"bf16": 900}, "nvlink_gb_s": 0,
          "nvlink_domain": 8, "scaleout_gb_s": 50, "nvlink_latency_us": 3,
          "scaleout_latency_us": 8, "power_w": 700, "max_gpus": 64})",
      "x.json");
  ASSERT_FALSE(no_links.ok());
  EXPECT_NE(no_links.status().message().find("nvlink_gb_s"), std::string::npos);
  auto bad = ParseHardware(R"({"name": "x", "hbm_gb": 80})", "x.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("hbm_tb_s"), std::string::npos);
  auto unknown = LoadHardware("no-such-system");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("gb200-nvl72"), std::string::npos);
}

// A cost model with no fixed overhead, so the physics shows.
CostModel Cost(const std::string& model, const std::string& hw, Layout l,
               Precision p = Precision::kFp8) {
  Efficiency e;
  e.layer_overhead_s = 0;
  SystemOptions o;
  o.precision = p;
  return CostModel(Model(model), Hw(hw), l, o, e);
}

StepWork Decode(double seqs, double ctx) {
  StepWork w;
  w.tokens = w.decode_seqs = w.sampled = seqs;
  w.decode_ctx = w.decode_ctx_win = seqs * ctx;
  return w;
}

StepWork Prefill(double tokens) {
  StepWork w;
  w.tokens = w.prefill_tokens = w.prefill_ctx = tokens;
  w.prefill_pairs = w.prefill_pairs_win = tokens * (tokens + 1) / 2;
  w.sampled = 1;
  return w;
}

TEST(CostModelTest, DecodeIsMemoryBoundAndPrefillComputeBound) {
  const CostModel cm = Cost("deepseek-r1", "h200", {8, 1, 8, false});
  const StepCost d = cm.Step(Decode(1, 1000));
  EXPECT_EQ(d.part_bound[static_cast<int>(Part::kExperts)], Bound::kMemory);
  EXPECT_EQ(d.part_bound[static_cast<int>(Part::kAttention)], Bound::kMemory);
  const StepCost p = cm.Step(Prefill(8192));
  EXPECT_EQ(p.part_bound[static_cast<int>(Part::kExperts)], Bound::kCompute);
  EXPECT_GT(p.total_s, d.total_s);
}

TEST(CostModelTest, MeasuredRatesAreUsedAsTheyAre) {
  // A datasheet entry runs at the shared efficiency; an entry whose rates were
  // measured with moerack's kernels (the cpu entry) runs at those rates.
  const std::string base =
      R"("hbm_gb": 80, "hbm_tb_s": 1, "tflops": {"bf16": 1000}, "nvlink_gb_s": 0,
          "nvlink_domain": 1, "scaleout_gb_s": 0, "nvlink_latency_us": 0,
          "scaleout_latency_us": 0, "power_w": 0, "max_gpus": 1})";
  auto sheet = ParseHardware("{\"name\": \"a\", " + base, "a.json");
  auto measured = ParseHardware("{\"name\": \"b\", \"rates\": \"measured\", " + base, "b.json");
  ASSERT_TRUE(sheet.ok() && measured.ok());
  EXPECT_FALSE(sheet->measured_rates);
  EXPECT_TRUE(measured->measured_rates);
  auto bad = ParseHardware("{\"name\": \"c\", \"rates\": \"peak\", " + base, "c.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("rates"), std::string::npos);
  Efficiency e;
  e.layer_overhead_s = 0;
  e.hbm = 0.5;
  SystemOptions o;
  o.precision = Precision::kBf16;
  const ModelSpec m = Model("mixtral-8x7b");
  const CostModel a(m, *sheet, {1, 1, 1, false}, o, e), b(m, *measured, {1, 1, 1, false}, o, e);
  const StepWork w = Decode(1, 1);
  const int ex = static_cast<int>(Part::kExperts);
  EXPECT_NEAR(a.Step(w).part_s[ex] / b.Step(w).part_s[ex], 2.0, 1e-9);
  // One token reads its top-2 experts of every layer at 1 TB/s.
  EXPECT_NEAR(b.Step(w).part_s[ex], m.num_moe_layers * 2.0 * m.expert_params * 2 / 1e12, 1e-9);
}

TEST(CostModelTest, ExpertTrafficFollowsDistinctActivatedExperts) {
  // One GPU holds all 256 experts: a token reads its 8, a large batch all 256.
  const CostModel cm = Cost("deepseek-r1", "b200", {1, 1, 1, false});
  const int e = static_cast<int>(Part::kExperts);
  const double one = cm.Step(Decode(1, 10)).part_s[e];
  const double two = cm.Step(Decode(2, 10)).part_s[e];
  const double many = cm.Step(Decode(512, 10)).part_s[e];
  const double more = cm.Step(Decode(1024, 10)).part_s[e];
  EXPECT_NEAR(two / one, 1.0 + (1 - 8.0 / 256), 0.02);  // 8 + 8 * 248/256 distinct
  EXPECT_NEAR(many / one, 256.0 / 8, 2.0);              // every expert, still memory-bound
  EXPECT_GT(more, many);                                // compute takes over eventually
  EXPECT_LT(more / many, 2.0);
}

TEST(CostModelTest, AllToAllCrossesScaleOutOnlyOutsideTheNvlinkDomain) {
  const int a2a = static_cast<int>(Part::kAllToAll);
  const StepWork w = Decode(256, 2000);
  const double nvl72 = Cost("deepseek-r1", "gb200-nvl72", {64, 1, 64, false}).Step(w).part_s[a2a];
  const double hgx = Cost("deepseek-r1", "b200", {64, 1, 64, false}).Step(w).part_s[a2a];
  const double hgx8 = Cost("deepseek-r1", "b200", {8, 1, 8, false}).Step(w).part_s[a2a];
  EXPECT_GT(hgx / nvl72, 5.0);  // 50 GB/s NIC vs 900 GB/s NVLink
  EXPECT_LT(hgx8, hgx);         // EP8 stays inside one HGX node
  EXPECT_EQ(Cost("deepseek-r1", "b200", {8, 8, 1, false}).Step(w).part_s[a2a], 0);  // no EP
}

TEST(CostModelTest, AllToAllWhereverTokensMustMove) {
  const int a2a = static_cast<int>(Part::kAllToAll);
  const StepWork w = Decode(64, 2000);
  // Attention TP over the instance: tokens are everywhere, no dispatch.
  EXPECT_EQ(Cost("deepseek-r1", "h200", {8, 8, 4, false}).Step(w).part_s[a2a], 0);
  // Data-parallel attention with experts split (not distributed) still moves tokens.
  EXPECT_GT(Cost("deepseek-r1", "h200", {8, 1, 1, false}).Step(w).part_s[a2a], 0);
  // Layouts the hardware cannot run are refused by name.
  EXPECT_FALSE(CheckLayout(Hw("h200"), {16, 16, 16, false}).ok());  // TP beyond NVLink
  EXPECT_FALSE(CheckLayout(Hw("cpu"), {2, 1, 2, false}).ok());      // no links at all
  EXPECT_TRUE(CheckLayout(Hw("h200"), {64, 2, 64, false}).ok());
}

TEST(CostModelTest, OverlapHidesCommunicationAtLargeBatchOnly) {
  const StepWork big = Decode(512, 2000), small = Decode(1, 2000);
  const double plain = Cost("deepseek-r1", "h100", {72, 1, 72, false}).Step(big).total_s;
  const double tbo = Cost("deepseek-r1", "h100", {72, 1, 72, true}).Step(big).total_s;
  EXPECT_LT(tbo, plain);
  const double plain1 = Cost("deepseek-r1", "h100", {72, 1, 72, false}).Step(small).total_s;
  const double tbo1 = Cost("deepseek-r1", "h100", {72, 1, 72, true}).Step(small).total_s;
  EXPECT_GE(tbo1, plain1 * 0.999);  // one token cannot be split
}

TEST(CostModelTest, KvCapacityAndPrecision) {
  const CostModel bf = Cost("deepseek-r1", "gb200-nvl72", {48, 1, 48, false});
  SystemOptions o;
  o.precision = Precision::kNvfp4;
  o.kv = Precision::kFp8;
  const CostModel fp4(Model("deepseek-r1"), Hw("gb200-nvl72"), {48, 1, 48, false}, o, Efficiency{});
  EXPECT_LT(fp4.WeightBytesPerGpu(), bf.WeightBytesPerGpu());
  EXPECT_NEAR(bf.KvBytesPerTokenPerGpu(2000), 61 * 576 * 2, 1);
  EXPECT_NEAR(fp4.KvBytesPerTokenPerGpu(2000), 61 * 576, 1);
  EXPECT_GT(fp4.KvTokenCapacity(2000), 2 * bf.KvTokenCapacity(2000));
  // DeepSeek-R1 in FP8 does not fit on one H200.
  EXPECT_LT(Cost("deepseek-r1", "h200", {1, 1, 1, false}).KvTokenCapacity(2000), 0);
  // GQA heads split over TP; windowed layers hold at most the window.
  const CostModel oss1 = Cost("gpt-oss-120b", "h100", {1, 1, 1, false});
  const CostModel oss4 = Cost("gpt-oss-120b", "h100", {4, 4, 4, false});
  EXPECT_NEAR(oss1.KvBytesPerTokenPerGpu(128), 4 * oss4.KvBytesPerTokenPerGpu(128), 1);
  EXPECT_LT(oss1.KvBytesPerTokenPerGpu(100000), 0.51 * oss1.KvBytesPerTokenPerGpu(128));
}

TEST(SchedulerAddComputedTest, TransferredKvIsNotRecomputed) {
  SchedulerConfig c;
  c.num_blocks = 8;
  c.block_size = 16;
  c.max_num_batched_tokens = 64;
  Scheduler s(c);
  ASSERT_TRUE(s.Add(1, 41, 40).ok());
  const StepPlan p = s.Schedule();
  ASSERT_EQ(p.chunks.size(), 1u);
  EXPECT_EQ(p.chunks[0].start, 40);
  EXPECT_EQ(p.chunks[0].num_tokens, 1);
  EXPECT_TRUE(p.chunks[0].samples);
  EXPECT_EQ(s.blocks().num_free(), 8 - 3);  // all 41 tokens' blocks held
  EXPECT_FALSE(s.Add(2, 5, 5).ok());        // nothing left to compute
}

RankLimits Limits(int64_t kv_tokens, int max_seqs) {
  RankLimits l;
  l.kv_tokens = kv_tokens;
  l.max_num_seqs = max_seqs;
  return l;
}

TEST(SimulateRankTest, DecodeRankIsConsistentAndDeterministic) {
  const CostModel cm = Cost("deepseek-r1", "gb200-nvl72", {48, 1, 48, false});
  RankWorkload w;
  w.role = Role::kDecode;
  w.isl = 2000;
  w.osl = 200;
  w.concurrency = 64;
  auto r = SimulateRank(cm, w, Limits(1 << 20, 64));
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->preemptions, 0);
  EXPECT_NEAR(r->mean_running, 64, 0.5);
  const double step = r->cost.total_s / r->steps;
  EXPECT_NEAR(Mean(r->itl_s), step, 0.02 * step);
  EXPECT_NEAR(r->output_per_s(), 64 / step, 0.03 * 64 / step);
  EXPECT_GT(r->finished, 0);
  auto again = SimulateRank(cm, w, Limits(1 << 20, 64));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->duration_s, r->duration_s);
  EXPECT_EQ(again->output_tokens, r->output_tokens);
}

TEST(SimulateRankTest, MtpRaisesTokensPerUser) {
  RankWorkload w;
  w.role = Role::kDecode;
  w.isl = 1000;
  w.osl = 400;
  w.concurrency = 1;
  w.mtp_accept = 0.8;
  Efficiency e;
  SystemOptions plain, mtp;
  mtp.mtp = 3;
  const CostModel a(Model("deepseek-r1"), Hw("b200"), {8, 8, 8, false}, plain, e);
  const CostModel b(Model("deepseek-r1"), Hw("b200"), {8, 8, 8, false}, mtp, e);
  auto ra = SimulateRank(a, w, Limits(1 << 20, 1));
  auto rb = SimulateRank(b, w, Limits(1 << 20, 1));
  ASSERT_TRUE(ra.ok() && rb.ok());
  const double speedup = Mean(ra->itl_s) / Mean(rb->itl_s);
  // 1 + 0.8 + 0.64 + 0.512 = 2.95 tokens per step, each step a bit dearer.
  EXPECT_GT(speedup, 1.5);
  EXPECT_LT(speedup, 2.95);
}

TEST(SimulateRankTest, QueueingGrowsTtftWithLoad) {
  const CostModel cm = Cost("deepseek-r1", "h100", {32, 1, 32, true});
  RankWorkload w;
  w.role = Role::kPrefill;
  w.isl = 2000;
  w.osl = 1;
  RankLimits l = Limits(1 << 20, 4096);
  l.max_batched_tokens = 16384;
  w.concurrency = 10;
  auto sat = SimulateRank(cm, w, l);  // saturated: capacity
  ASSERT_TRUE(sat.ok());
  const double capacity = sat->input_per_s() / w.isl;  // requests/s
  std::vector<double> p90;
  for (double load : {0.3, 0.9}) {
    w.arrival_rate_per_s = load * capacity;
    auto r = SimulateRank(cm, w, l);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(static_cast<int64_t>(r->ttft_s.size()), RankSimOptions{}.open_loop_requests);
    p90.push_back(Percentile(r->ttft_s, 90));
  }
  EXPECT_GT(p90[1], 1.5 * p90[0]);
}

TEST(SimulateRankTest, RequestLargerThanTheCacheIsAnError) {
  const CostModel cm = Cost("deepseek-r1", "gb200-nvl72", {48, 1, 48, false});
  RankWorkload w;
  w.isl = 5000;
  auto r = SimulateRank(cm, w, Limits(4000, 8));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("KV cache"), std::string::npos);
}

TEST(SearchTest, FrontierIsParetoAndCountsEveryGpu) {
  SimSetup s;
  s.model = Model("deepseek-r1");
  s.hw = Hw("gb200-nvl72");
  s.system.precision = Precision::kNvfp4;
  s.system.kv = Precision::kFp8;
  s.isl = s.osl = 1024;
  s.gpus = 16;
  auto r = Search(s);
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_GE(r->frontier.size(), 3u);
  for (size_t i = 0; i < r->frontier.size(); ++i) {
    const SystemPoint& p = r->frontier[i];
    EXPECT_LE(p.gpus, 16);
    int pool_gpus = 0;
    for (const PoolReport& pool : p.pools) pool_gpus += pool.gpus();
    EXPECT_EQ(pool_gpus, p.gpus);
    if (i > 0) {
      EXPECT_GT(p.tokens_per_s_per_user, r->frontier[i - 1].tokens_per_s_per_user);
      EXPECT_LT(p.output_tokens_per_s_per_gpu, r->frontier[i - 1].output_tokens_per_s_per_gpu);
    }
    const nlohmann::json j = PointJson(p);
    for (const char* k : {"tokens_per_s_per_user", "output_tokens_per_s_per_gpu",
                          "total_tokens_per_s_per_gpu", "ttft_s", "itl_s", "gpus", "layout"})
      EXPECT_TRUE(j.contains(k)) << k;
  }
  // Disaggregation off: one pool everywhere; on: two.
  s.disagg = Disagg::kOff;
  auto off = Search(s);
  ASSERT_TRUE(off.ok());
  for (const SystemPoint& p : off->frontier) EXPECT_EQ(p.pools.size(), 1u);
  s.disagg = Disagg::kOn;
  auto on = Search(s);
  ASSERT_TRUE(on.ok());
  for (const SystemPoint& p : on->frontier) EXPECT_EQ(p.pools.size(), 2u);
  const std::string svg = FrontierSvg("t", {{"a", &r->frontier}, {"b", &off->frontier}});
  EXPECT_NE(svg.find("<svg"), std::string::npos);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
}

TEST(SearchTest, RackBeatsHgxPerGpuAtModerateInteractivity) {
  auto frontier = [](const char* hw, Precision p) {
    SimSetup s;
    s.model = Model("deepseek-r1");
    s.hw = Hw(hw);
    s.system.precision = p;
    s.system.kv = p == Precision::kNvfp4 ? Precision::kFp8 : Precision::kBf16;
    auto r = Search(s);
    EXPECT_TRUE(r.ok());
    return r->frontier;
  };
  const auto gb = frontier("gb200-nvl72", Precision::kNvfp4);
  const auto h = frontier("h200", Precision::kFp8);
  const SystemPoint* a = BestAtInteractivity(gb, 20);
  const SystemPoint* b = BestAtInteractivity(h, 20);
  ASSERT_TRUE(a && b);
  EXPECT_GT(a->output_tokens_per_s_per_gpu, 2 * b->output_tokens_per_s_per_gpu);
}

}  // namespace
}  // namespace moerack::sim

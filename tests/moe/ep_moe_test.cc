// Expert-parallel MoE over LocalComm: dispatch delivers every routed row to
// the rank of its expert (payloads carry the sender's rank and token), and
// the layer's output is bit-identical to the single-rank layer for EP = 1, 2,
// 3, 4 and 8, with uneven expert counts, ranks without experts and ranks
// without tokens (DESIGN.md principle 2).
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <set>
#include <random>
#include <vector>

#include "comm/local_comm.h"
#include "moe/ep_dispatch.h"
#include "engine/kv_cache.h"
#include "model/registry.h"
#include "moe/moe_layer.h"
#include "moe/ep_test_util.h"

namespace moerack {
namespace {

using namespace ep_test;  // NOLINT

class EpMoeTest : public ::testing::TestWithParam<int> {};

TEST_P(EpMoeTest, BitIdenticalToSingleRank) {
  const int ep = GetParam();
  const Weights w = MakeWeights();
  for (auto [shared, dtype, overlap] :
       {std::tuple{false, DispatchDType::kF32, false}, {true, DispatchDType::kF32, false},
        {false, DispatchDType::kBF16, false}, {true, DispatchDType::kFP8, false},
        {true, DispatchDType::kF32, true}, {false, DispatchDType::kFP8, true}}) {
    const ExpertMap map = ExpertMap::Contiguous(kExperts, ep);
    std::vector<std::vector<float>> got(ep);
    const Status st = LocalCommGroup::Run(ep, [&](Communicator& c) -> Status {
      ThreadPool pool(c.rank() % 2 + 1);  // thread counts differ between ranks
      const int r = c.rank();
      const std::vector<float> x = TokensFor(r);
      got[r].resize(x.size());
      // Two layers in a row: the collectives line up call after call.
      MoeLayer l = Layer(w, w.experts, shared, dtype);
      l.overlap = overlap;  // two-batch overlap: same bits
      for (int layer = 0; layer < 2; ++layer) {
        MR_RETURN_IF_ERROR(
            RunEpMoeLayer(l, map, c, x.data(), TokensOf(r), kHidden, got[r].data(), pool));
      }
      return Status::Ok();
    });
    ASSERT_TRUE(st.ok()) << st.message();
    ThreadPool pool(1);
    for (int r = 0; r < ep; ++r) {
      const std::vector<float> x = TokensFor(r);
      std::vector<float> want(x.size());
      RunMoeLayer(Layer(w, w.experts, shared, dtype), x.data(), TokensOf(r), kHidden, want.data(),
                  pool);
      EXPECT_EQ(got[r], want) << "ep " << ep << " rank " << r << " shared " << shared << " dtype "
                              << static_cast<int>(dtype);
      if (dtype != DispatchDType::kF32 && !x.empty()) {  // the rounding is really applied
        std::vector<float> exact(x.size());
        RunMoeLayer(Layer(w, w.experts, shared), x.data(), TokensOf(r), kHidden, exact.data(), pool);
        EXPECT_NE(exact, want);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(EpSizes, EpMoeTest, ::testing::Values(1, 2, 3, 4, 8));

// Dispatch alone: each received row is (sender rank, token), and each rank gets
// exactly the (rank, token, slot) triples routed to its experts, grouped by
// expert, then by sender, then in the sender's (token, slot) order.
TEST(EpDispatchTest, EveryRowReachesTheRankOfItsExpert) {
  const int ep = 4;
  const ExpertMap map = ExpertMap::Contiguous(kExperts, ep);  // 2, 2, 1, 1 experts
  auto routing_of = [](int rank) {
    RoutingResult rr;
    rr.num_tokens = TokensOf(rank);
    rr.top_k = kTopK;
    for (int64_t t = 0; t < rr.num_tokens; ++t) {
      const int a = static_cast<int>((rank * 7 + t * 3) % kExperts), b = (a + 1 + rank) % kExperts;
      rr.expert_ids.insert(rr.expert_ids.end(), {a, b == a ? (a + 1) % kExperts : b});
      rr.weights.insert(rr.weights.end(), {0.5f, 0.5f});
    }
    return rr;
  };
  const Status st = LocalCommGroup::Run(ep, [&](Communicator& c) -> Status {
    const int me = c.rank();
    const RoutingResult routing = routing_of(me);
    std::vector<float> x(static_cast<size_t>(routing.num_tokens * 2));
    for (int64_t t = 0; t < routing.num_tokens; ++t) {
      x[2 * t] = static_cast<float>(me);
      x[2 * t + 1] = static_cast<float>(t);
    }
    MR_ASSIGN_OR_RETURN(EpDispatchHandle h, PlanEpDispatch(routing, map, c));
    ScratchVector<float> rows;
    MR_RETURN_IF_ERROR(EpDispatch(h, x.data(), 2, DispatchDType::kF32, c, &rows));
    std::vector<float> want;
    for (int e = map.first[me]; e < map.first[me + 1]; ++e)
      for (int s = 0; s < ep; ++s) {
        const RoutingResult rs = routing_of(s);
        for (int64_t t = 0; t < rs.num_tokens; ++t)
          for (int k = 0; k < kTopK; ++k)
            if (rs.expert_ids[t * kTopK + k] == e)
              want.insert(want.end(), {static_cast<float>(s), static_cast<float>(t)});
      }
    if (std::vector<float>(rows.begin(), rows.end()) != want)
      return Error("rank " + std::to_string(me) + " received the wrong rows");
    // Combine returns each row to its sender in plan order.
    ScratchVector<float> back;
    MR_RETURN_IF_ERROR(EpCombine(h, rows.data(), 2, c, &back));
    for (size_t i = 0; i < h.plan.row_token.size(); ++i)
      if (back[2 * i] != me || back[2 * i + 1] != h.plan.row_token[i])
        return Error("combine returned a foreign row");
    return Status::Ok();
  });
  EXPECT_TRUE(st.ok()) << st.message();
}

TEST(ExpertMapTest, ContiguousBlocksUnevenAndEmpty) {
  const ExpertMap m = ExpertMap::Contiguous(6, 4);
  EXPECT_EQ(m.first, (std::vector<int>{0, 2, 4, 5, 6}));
  EXPECT_EQ(m.RankOfSlot(4), 2);
  EXPECT_EQ(m.RankOfSlot(5), 3);
  EXPECT_EQ(m.SlotFor(5, 17), 5);
  const ExpertMap e = ExpertMap::Contiguous(3, 8);
  EXPECT_EQ(e.NumLocal(2), 1);
  EXPECT_EQ(e.NumLocal(3), 0);
  EXPECT_EQ(e.RankOfSlot(2), 2);
}

// EPLB planner: with skewed load and redundant slots, the hottest experts get
// copies on different ranks and the heaviest rank's load drops well below the
// contiguous placement's; every expert keeps at least one slot.
TEST(EplbTest, ReplicatesHotExpertsAndBalancesRanks) {
  std::vector<double> load = {900, 20, 30, 10, 400, 15, 25, 5};  // experts 0 and 4 are hot
  const ExpertMap contiguous = ExpertMap::Contiguous(8, 4);
  const ExpertMap planned = PlanPlacement(load, 12, 4);
  ASSERT_EQ(planned.num_slots(), 12);
  for (int r = 0; r < 4; ++r) EXPECT_EQ(planned.NumLocal(r), 3);
  EXPECT_GE(planned.replicas[0].size(), 2u);
  std::set<int> ranks_of_0;
  for (int s : planned.replicas[0]) ranks_of_0.insert(planned.RankOfSlot(s));
  EXPECT_EQ(ranks_of_0.size(), planned.replicas[0].size());  // copies on distinct ranks
  for (int e = 0; e < 8; ++e) EXPECT_FALSE(planned.replicas[e].empty()) << e;
  const auto before = contiguous.RankLoad(load), after = planned.RankLoad(load);
  const double max_before = *std::max_element(before.begin(), before.end());
  const double max_after = *std::max_element(after.begin(), after.end());
  EXPECT_LT(max_after, 0.5 * max_before) << max_before << " -> " << max_after;
  double total = 0;
  for (double v : after) total += v;
  EXPECT_DOUBLE_EQ(total, std::accumulate(load.begin(), load.end(), 0.0));
}

// A replicated, repacked placement changes which rank computes a row, never its value.
TEST(EplbTest, ReplicatedPlacementBitIdenticalToSingleRank) {
  const Weights w = MakeWeights();
  const std::vector<double> load = {50, 1, 1, 30, 1, 1};
  for (int ep : {2, 3}) {
    const ExpertMap map = PlanPlacement(load, 12, ep);
    std::vector<std::vector<float>> got(ep);
    const Status st = LocalCommGroup::Run(ep, [&](Communicator& c) -> Status {
      ThreadPool pool(1);
      const std::vector<float> x = TokensFor(c.rank());
      got[c.rank()].resize(x.size());
      return RunEpMoeLayer(Layer(w, w.experts, true), map, c, x.data(), TokensOf(c.rank()),
                           kHidden, got[c.rank()].data(), pool);
    });
    ASSERT_TRUE(st.ok()) << st.message();
    ThreadPool pool(1);
    for (int r = 0; r < ep; ++r) {
      const std::vector<float> x = TokensFor(r);
      std::vector<float> want(x.size());
      RunMoeLayer(Layer(w, w.experts, true), x.data(), TokensOf(r), kHidden, want.data(), pool);
      EXPECT_EQ(got[r], want) << "ep " << ep << " rank " << r;
    }
  }
}

// A rank that fails while the others are inside a forward pass: theirs ends
// without a crash, the model reports the failure, and the group returns the
// root cause.
TEST(EpFailureTest, ARankFailingMidForwardIsAnErrorNotACrash) {
  const std::string dir = std::string(MOERACK_SOURCE_DIR) + "/tests/data/tiny-qwen3-moe";
  const std::vector<int32_t> tokens = {1, 2, 3, 4};
  const std::vector<int32_t> table = {0};
  const Status st = LocalCommGroup::Run(2, [&](Communicator& c) -> Status {
    MR_ASSIGN_OR_RETURN(std::unique_ptr<Model> model, LoadModel(dir, {c.rank(), 2}));
    if (c.rank() == 1) return Error("rank 1 lost its weights");
    model->set_communicator(&c);
    KvCache cache(model->config().num_layers, 1, 16, model->kv_floats_per_token());
    ThreadPool pool(1);
    ForwardBatch batch;
    batch.seqs.push_back({tokens, 0, table, SequenceChunk::Logits::kLast});
    std::vector<float> logits;
    model->Forward(batch, cache.view(), pool, &logits);
    EXPECT_FALSE(model->failure().ok());
    return model->failure();
  });
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("rank 1 lost its weights"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace moerack

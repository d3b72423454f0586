// LocalComm: every collective against what it must deliver, and the failure
// paths (mismatched counts, a failing rank, a missing rank) end in errors, not hangs.
#include "comm/local_comm.h"

#include <gtest/gtest.h>

#include <numeric>
#include <string>
#include <vector>

namespace moerack {
namespace {

// Byte i of what rank s sends to rank d.
uint8_t Pattern(int s, int d, int64_t i) { return static_cast<uint8_t>(s * 31 + d * 7 + i); }
int64_t Bytes(int s, int d) { return (s + 1) * (d + 2) % 5 * 3; }  // includes zero-size messages

TEST(LocalCommTest, AllToAllVDeliversEveryByteInRankOrder) {
  for (int n : {1, 2, 3, 5}) {
    const Status st = LocalCommGroup::Run(n, [&](Communicator& c) -> Status {
      const int me = c.rank();
      std::vector<int64_t> send_bytes(n), recv_bytes(n);
      std::vector<uint8_t> send;
      for (int d = 0; d < n; ++d) {
        send_bytes[d] = Bytes(me, d);
        recv_bytes[d] = Bytes(d, me);
        for (int64_t i = 0; i < send_bytes[d]; ++i) send.push_back(Pattern(me, d, i));
      }
      std::vector<uint8_t> recv(static_cast<size_t>(std::accumulate(recv_bytes.begin(), recv_bytes.end(), int64_t{0})));
      MR_RETURN_IF_ERROR(c.AllToAllV(send.data(), send_bytes, recv.data(), recv_bytes));
      size_t at = 0;
      for (int s = 0; s < n; ++s)
        for (int64_t i = 0; i < recv_bytes[s]; ++i)
          if (recv[at++] != Pattern(s, me, i)) return Error("wrong byte from rank " + std::to_string(s));
      return Status::Ok();
    });
    EXPECT_TRUE(st.ok()) << n << ": " << st.message();
  }
}

TEST(LocalCommTest, AllGatherAllReduceAndPointToPoint) {
  const int n = 4;
  const Status st = LocalCommGroup::Run(n, [&](Communicator& c) -> Status {
    const int me = c.rank();
    const int64_t mine[2] = {me, 10 * me};
    int64_t all[2 * n];
    MR_RETURN_IF_ERROR(c.AllGather(mine, sizeof(mine), all));
    for (int r = 0; r < n; ++r)
      if (all[2 * r] != r || all[2 * r + 1] != 10 * r) return Error("allgather");
    std::vector<double> v = {0.1 * me, 1.0};
    MR_RETURN_IF_ERROR(c.AllReduceSum(v));
    // Summed in rank order on every rank: exactly this double.
    if (v[0] != 0.1 * 0 + 0.1 * 1 + 0.1 * 2 + 0.1 * 3 || v[1] != 4.0) return Error("allreduce");
    // A ring: send to the next rank, receive from the previous, two tags in swapped order.
    const int next = (me + 1) % n, prev = (me + n - 1) % n;
    const int32_t a = me, b = 100 + me;
    MR_RETURN_IF_ERROR(c.Send(next, 7, &a, sizeof(a)));
    MR_RETURN_IF_ERROR(c.Send(next, 9, &b, sizeof(b)));
    int32_t got_b = -1, got_a = -1;
    MR_RETURN_IF_ERROR(c.Recv(prev, 9, &got_b, sizeof(got_b)));
    MR_RETURN_IF_ERROR(c.Recv(prev, 7, &got_a, sizeof(got_a)));
    if (got_a != prev || got_b != 100 + prev) return Error("send/recv");
    return c.Barrier();
  });
  EXPECT_TRUE(st.ok()) << st.message();
}

TEST(LocalCommTest, MismatchedCountsFailOnEveryRankWithoutHanging) {
  const Status st = LocalCommGroup::Run(3, [&](Communicator& c) -> Status {
    std::vector<int64_t> send_bytes(3, 4), recv_bytes(3, 4);
    if (c.rank() == 2) recv_bytes[0] = 8;  // disagrees with what rank 0 sends
    std::vector<uint8_t> send(12), recv(16);
    MR_RETURN_IF_ERROR(c.AllToAllV(send.data(), send_bytes, recv.data(), recv_bytes));
    return c.Barrier();  // the others fail here once rank 2 aborts
  });
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("rank 0 sends 4 bytes to rank 2, which expects 8"), std::string::npos)
      << st.message();
}

TEST(LocalCommTest, AFailingRankStopsTheOthers) {
  const Status st = LocalCommGroup::Run(4, [&](Communicator& c) -> Status {
    if (c.rank() == 1) return Error("weights missing");
    for (int i = 0; i < 3; ++i) MR_RETURN_IF_ERROR(c.Barrier());
    return Status::Ok();
  });
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("rank 1: weights missing"), std::string::npos) << st.message();
}

TEST(LocalCommTest, AMissingRankTimesOut) {
  LocalCommGroup group(2, /*timeout_s=*/0.2);
  auto rank0 = group.Rank(0);
  const Status st = rank0->Barrier();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("timed out"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace moerack

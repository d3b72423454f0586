// Run under mpirun (CTest does, with -np 2 and 4): the collectives of MpiComm
// and the expert-parallel MoE layer, which must equal the single-rank layer
// bit for bit on every rank. Exits 0 when every rank agrees, 1 otherwise; a
// rank that fails aborts the job (MpiComm::Abort), so nothing hangs.
#include <cstdio>
#include <numeric>

#include "comm/mpi_comm.h"
#include "moe/ep_test_util.h"

namespace moerack {
namespace {

Status Check(Communicator& c) {
  const int n = c.size(), me = c.rank();
  // alltoallv with uneven and empty messages.
  std::vector<int64_t> send_bytes(n), recv_bytes(n);
  std::vector<uint8_t> send;
  for (int d = 0; d < n; ++d) {
    send_bytes[d] = (me + d) % 3 * 5;
    recv_bytes[d] = (d + me) % 3 * 5;
    for (int64_t i = 0; i < send_bytes[d]; ++i) send.push_back(static_cast<uint8_t>(me * 16 + d + i));
  }
  std::vector<uint8_t> recv(std::accumulate(recv_bytes.begin(), recv_bytes.end(), size_t{0}));
  MR_RETURN_IF_ERROR(c.AllToAllV(send.data(), send_bytes, recv.data(), recv_bytes));
  size_t at = 0;
  for (int s = 0; s < n; ++s)
    for (int64_t i = 0; i < recv_bytes[s]; ++i)
      if (recv[at++] != static_cast<uint8_t>(s * 16 + me + i)) return Error("alltoallv: wrong byte");
  std::vector<double> v = {1.0 * me};
  MR_RETURN_IF_ERROR(c.AllReduceSum(v));
  if (v[0] != n * (n - 1) / 2.0) return Error("allreduce: wrong sum");
  // The EP MoE layer against the single-rank one, with and without a shared expert.
  using namespace ep_test;  // NOLINT
  const Weights w = MakeWeights();
  const ExpertMap map = ExpertMap::Contiguous(kExperts, n);
  ThreadPool pool(1);
  for (auto [shared, overlap] : {std::pair{false, false}, {true, false}, {true, true}}) {
    const std::vector<float> x = TokensFor(me);
    std::vector<float> got(x.size()), want(x.size());
    MoeLayer layer = Layer(w, w.experts, shared);
    layer.overlap = overlap;  // MPI_Ialltoallv under the expert GEMM
    MR_RETURN_IF_ERROR(
        RunEpMoeLayer(layer, map, c, x.data(), TokensOf(me), kHidden, got.data(), pool));
    RunMoeLayer(Layer(w, w.experts, shared), x.data(), TokensOf(me), kHidden, want.data(), pool);
    if (got != want) return Error("EP MoE output differs from the single-rank layer");
  }
  return c.Barrier();
}

}  // namespace
}  // namespace moerack

int main() {
  auto comm = moerack::MpiWorld();
  if (!comm.ok()) {
    std::fprintf(stderr, "mpi_check: %s\n", comm.status().message().c_str());
    return 1;
  }
  const moerack::Status st = moerack::Check(**comm);
  if (!st.ok()) (*comm)->Abort(st);
  std::printf("mpi_check: rank %d of %d ok\n", (*comm)->rank(), (*comm)->size());
  return 0;
}

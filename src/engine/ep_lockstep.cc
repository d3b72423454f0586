#include "engine/ep_lockstep.h"

#include <string>
#include <vector>

#include "comm/local_comm.h"
#include "comm/mpi_comm.h"

namespace moerack {

StatusOr<bool> AnyRankHasWork(Communicator& comm, bool has_work) {
  std::vector<double> v = {has_work ? 1.0 : 0.0};
  MR_RETURN_IF_ERROR(comm.AllReduceSum(v));
  return v[0] > 0;
}

void ForwardEmpty(Model& model, const KvCacheView& cache, ThreadPool& pool) {
  std::vector<float> none;
  model.Forward(ForwardBatch{}, cache, pool, &none);
}

Status RunExpertParallel(int ep, const std::function<Status(Communicator*)>& fn) {
  if (ep < 1) return Error("--ep must be >= 1");
  if (LaunchedByMpi()) {
    MR_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> world, MpiWorld());
    if (world->size() != ep) {
      const Status st = Error("--ep " + std::to_string(ep) + " but mpirun started " +
                              std::to_string(world->size()) + " ranks");
      return st;
    }
    const Status st = fn(world.get());
    if (!st.ok() && ep > 1) world->Abort(st);
    return st;
  }
  if (ep == 1) return fn(nullptr);
  return LocalCommGroup::Run(ep, [&](Communicator& comm) { return fn(&comm); });
}

}  // namespace moerack

// Expert-parallel ranks step together. The MoE layers of a Forward are
// collectives (all-to-alls), so every rank runs the same number of forward
// passes; a rank without sequences this step runs an empty one. Each step
// starts with AnyRankHasWork, which tells every rank whether to run it.
// Also the launcher: ranks as threads (LocalComm) or as mpirun's processes.
// Thread-safety: per rank.
#pragma once

#include <functional>

#include "comm/communicator.h"
#include "core/status.h"
#include "core/thread_pool.h"
#include "model/model.h"

namespace moerack {

// Collective: whether any rank has work this step (`has_work` is this rank's answer).
StatusOr<bool> AnyRankHasWork(Communicator& comm, bool has_work);

// A forward pass with no tokens on this rank, joining the other ranks' collectives.
void ForwardEmpty(Model& model, const KvCacheView& cache, ThreadPool& pool);

// Runs fn on each of `ep` expert-parallel ranks and returns the first failure.
// ep == 1: fn(nullptr) on this thread. Launched by mpirun: this process is one
// rank of MPI_COMM_WORLD, which must have exactly ep ranks. Otherwise: ep
// threads of this process with a LocalComm.
Status RunExpertParallel(int ep, const std::function<Status(Communicator*)>& fn);

}  // namespace moerack

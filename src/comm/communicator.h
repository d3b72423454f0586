// Communicator: the collectives expert parallelism needs, over byte buffers.
// Two implementations: LocalComm (N ranks as threads of one process: tests and
// `--ep N` without mpirun) and MpiComm (OpenMPI; the same binary across hosts
// under `mpirun`). Every call is collective over all ranks of the group unless
// it says otherwise, and every rank must make the same sequence of calls.
//
// Failure: a call returns an error Status (naming the operation and the ranks'
// disagreement) instead of hanging: LocalComm fails every waiting rank once one
// rank aborts or a wait exceeds the group's timeout; MpiComm aborts the job
// (MPI_Abort) from Abort().
// Thread-safety: one thread per rank object calls it at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"

namespace moerack {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // "local" or "mpi", for messages and stats.
  virtual std::string name() const = 0;

  // Rank r sends send_bytes[d] bytes to each rank d (the send buffer holds them
  // concatenated in rank order) and receives recv_bytes[s] from each rank s
  // into recv (rank order). The counts must agree pairwise (what s sends to r
  // is what r expects from s); the usual way is an AllToAll of the counts first.
  virtual Status AllToAllV(const void* send, std::span<const int64_t> send_bytes, void* recv,
                           std::span<const int64_t> recv_bytes) = 0;
  // Every rank contributes `bytes` bytes; out receives size() * bytes, rank order.
  virtual Status AllGather(const void* in, int64_t bytes, void* out) = 0;
  // In-place elementwise sum over ranks (in rank order, so every rank gets the
  // same bits).
  virtual Status AllReduceSum(std::span<double> values) = 0;
  virtual Status Barrier() = 0;
  // Point to point (not collective): blocking, matched by (source, tag) in order.
  virtual Status Send(int dest, int tag, const void* data, int64_t bytes) = 0;
  virtual Status Recv(int source, int tag, void* data, int64_t bytes) = 0;
  // Ends the job after a rank-local failure: the other ranks' calls fail too
  // (LocalComm) or the job is aborted (MpiComm).
  virtual void Abort(const Status& why) = 0;

  // Non-blocking all-to-all-v: returns at once; Wait() returns its Status. The
  // buffers must live until then, and this rank must start no other collective
  // before waiting (every rank issues its collectives in the same order). The
  // default runs the blocking call on a helper thread (LocalComm); MpiComm
  // uses MPI_Ialltoallv.
  class Pending {
   public:
    virtual ~Pending() = default;
    virtual Status Wait() = 0;
  };
  virtual std::unique_ptr<Pending> StartAllToAllV(const void* send,
                                                  std::vector<int64_t> send_bytes, void* recv,
                                                  std::vector<int64_t> recv_bytes);

};

}  // namespace moerack

// LocalComm: N ranks as threads of one process, exchanging through shared
// memory. Collectives are a two-phase rendezvous: every rank posts its buffers,
// all read what they need from the others, and nobody leaves until all have
// read (so send buffers may be reused at once). Every wait is bounded by the
// group's timeout and fails at once when a rank aborts.
// Thread-safety: each rank's Communicator is used by its own thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <vector>

#include "comm/communicator.h"

namespace moerack {

class LocalCommGroup {
 public:
  LocalCommGroup(int size, double timeout_s = 300.0);
  int size() const { return size_; }
  // The communicator of rank r (call once per rank).
  std::unique_ptr<Communicator> Rank(int r);

  // Runs fn(comm) on `size` threads, one per rank, and returns the first
  // failing rank's error ("rank R: ..."); a failing rank aborts the group so the
  // others stop waiting.
  static Status Run(int size, const std::function<Status(Communicator&)>& fn,
                    double timeout_s = 300.0);

 private:
  friend class LocalComm;
  struct Post {
    int op = 0;  // which collective (ranks in different ones is an error, not a crash)
    const void* send = nullptr;
    const int64_t* send_bytes = nullptr;  // AllToAllV
    int64_t bytes = 0;                    // AllGather
    const double* values = nullptr;       // AllReduceSum
  };
  // Waits until all ranks arrive (generation barrier); error on abort/timeout.
  Status Barrier(const char* op);
  void Abort(const std::string& why);

  const int size_;
  const double timeout_s_;
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  uint64_t generation_ = 0;
  bool aborted_ = false;
  std::string abort_reason_;
  std::vector<Post> posts_;
  // Point to point: (source, dest, tag) -> queued messages.
  std::map<std::tuple<int, int, int>, std::deque<std::vector<uint8_t>>> mail_;
};

}  // namespace moerack

// ThreadPool: a fixed set of worker threads that every heavy op shares.
// Between parallel regions a worker spins briefly (kSpinIterations pauses,
// ~tens of microseconds: a decoded token runs ~50 regions a few microseconds
// apart, and a futex wake-up in a VM costs as much as a small region), then
// blocks on a condition variable. No spinning while the pools hold more
// threads than the machine has cores (expert-parallel ranks as threads, or
// several MPI processes on one host, counted from OpenMPI's / MPICH's local
// size): there a spinning worker would steal the core another rank computes on. ParallelFor hands out task indices dynamically; a task must
// compute whole outputs (never a partial sum another task finishes), so results
// do not depend on the number of threads or on which thread ran which task.
// Thread-safety: ParallelFor may be called from one thread at a time.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace moerack {

class ThreadPool {
 public:
  // `num_threads` counts the calling thread: 1 means run inline, no workers.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs fn(task, thread) for task in [0, num_tasks); thread in [0, num_threads()).
  // Returns when all tasks are done.
  void ParallelFor(int64_t num_tasks, const std::function<void(int64_t, int)>& fn);

  // Splits [0, n) into contiguous ranges of at least `grain` items and runs
  // fn(begin, end, thread) on each.
  void ParallelRange(int64_t n, int64_t grain,
                     const std::function<void(int64_t, int64_t, int)>& fn);

 private:
  void WorkerLoop(int thread);
  void RunTasks(int thread);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> active_workers_{0};
  bool stop_ = false;
  const std::function<void(int64_t, int)>* fn_ = nullptr;
  int64_t num_tasks_ = 0;
  std::atomic<int64_t> next_task_{0};
};

}  // namespace moerack

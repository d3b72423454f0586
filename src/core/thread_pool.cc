#include "core/thread_pool.h"

#include <algorithm>
#include <cstdlib>

#include "core/check.h"

namespace moerack {

namespace {

constexpr int kSpinIterations = 4000;

// Threads of all live pools (calling threads included).
std::atomic<int> g_pool_threads{0};

// Processes of this MPI job on this host (OpenMPI / MPICH set these), each
// assumed to run pools like ours.
int LocalProcesses() {
  for (const char* var : {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"}) {
    if (const char* v = std::getenv(var)) {
      const int n = std::atoi(v);
      if (n > 0) return n;
    }
  }
  return 1;
}

int SpinIterations() {
  static const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  static const int processes = LocalProcesses();
  return g_pool_threads.load(std::memory_order_relaxed) * processes <= cores ? kSpinIterations
                                                                            : 0;
}

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

}  // namespace

ThreadPool::ThreadPool(int num_threads) {
  CHECK_GE(num_threads, 1);
  g_pool_threads.fetch_add(num_threads);
  for (int t = 1; t < num_threads; ++t) workers_.emplace_back([this, t] { WorkerLoop(t); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (auto& w : workers_) w.join();
  g_pool_threads.fetch_sub(num_threads());
}

void ThreadPool::RunTasks(int thread) {
  for (;;) {
    const int64_t task = next_task_.fetch_add(1, std::memory_order_relaxed);
    if (task >= num_tasks_) return;
    (*fn_)(task, thread);
  }
}


void ThreadPool::WorkerLoop(int thread) {
  uint64_t seen = 0;
  for (;;) {
    const int spin = SpinIterations();
    for (int i = 0; i < spin && generation_.load(std::memory_order_acquire) == seen; ++i)
      CpuRelax();
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [&] { return stop_ || generation_.load() != seen; });
      if (stop_) return;
      seen = generation_.load();
    }
    RunTasks(thread);
    if (active_workers_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(mu_);
      done_cv_.notify_one();
    }
  }
}

void ThreadPool::ParallelFor(int64_t num_tasks, const std::function<void(int64_t, int)>& fn) {
  if (num_tasks <= 0) return;
  if (workers_.empty() || num_tasks == 1) {
    for (int64_t t = 0; t < num_tasks; ++t) fn(t, 0);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    fn_ = &fn;
    num_tasks_ = num_tasks;
    next_task_.store(0, std::memory_order_relaxed);
    active_workers_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
  }
  work_cv_.notify_all();
  RunTasks(0);
  const int spin = SpinIterations();
  for (int i = 0; i < spin && active_workers_.load(std::memory_order_acquire) != 0; ++i)
    CpuRelax();
  std::unique_lock<std::mutex> lock(mu_);
  done_cv_.wait(lock, [&] { return active_workers_.load() == 0; });
  fn_ = nullptr;
}

void ThreadPool::ParallelRange(int64_t n, int64_t grain,
                               const std::function<void(int64_t, int64_t, int)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  // A few chunks per thread balance load when ranks share cores.
  const int64_t max_chunks = static_cast<int64_t>(num_threads()) * 4;
  const int64_t num_chunks = std::clamp<int64_t>(n / grain, 1, max_chunks);
  const int64_t chunk = (n + num_chunks - 1) / num_chunks;
  ParallelFor((n + chunk - 1) / chunk,
              [&](int64_t c, int thread) { fn(c * chunk, std::min(n, (c + 1) * chunk), thread); });
}

}  // namespace moerack

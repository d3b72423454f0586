// moerack membw: read bandwidth of this machine, the denominator of every
// roofline figure. Each thread streams its share of a buffer of at least 1 GiB
// (read-only, with the widest vector loads: kernels/stream.h); best of
// several runs. The buffer sits on 2 MB transparent huge pages, as the
// resident weights do (core/mapped_file.h); --small-pages measures 4 KB pages.
#include <algorithm>
#include <cstdio>

#include "cli/commands.h"
#include "core/huge_pages.h"
#include "core/thread_pool.h"
#include "core/timer.h"
#include "kernels/stream.h"

namespace moerack::cli {
namespace {

struct MembwFlags {
  int threads = 1;
  int64_t size_mib = 1024;
  int runs = 5;
  bool small_pages = false;
};

int RunMembw(const MembwFlags& f) {
  const size_t words = static_cast<size_t>(f.size_mib) * 1024 * 1024 / sizeof(float);
  const HugePageBuffer region(words * sizeof(float), /*advise=*/!f.small_pages);
  if (region.empty()) {
    std::fprintf(stderr, "moerack membw: cannot allocate %zu bytes\n", words * sizeof(float));
    return 1;
  }
  float* const buf = reinterpret_cast<float*>(region.data());
  ThreadPool pool(f.threads);
  // Touch every page from the threads that will read it.
  pool.ParallelFor(f.threads, [&](int64_t t, int) {
    const size_t b = words * t / f.threads, e = words * (t + 1) / f.threads;
    for (size_t i = b; i < e; ++i) buf[i] = static_cast<float>(i & 1023);
  });
  double best = 0;
  float sink = 0;
  for (int r = 0; r < f.runs; ++r) {
    std::vector<float> sums(static_cast<size_t>(f.threads));
    Timer timer;
    pool.ParallelFor(f.threads, [&](int64_t t, int) {
      const size_t b = words * t / f.threads, e = words * (t + 1) / f.threads;
      sums[t] = StreamSum(buf + b, e - b);
    });
    const double s = timer.Seconds();
    for (float v : sums) sink += v;
    best = std::max(best, static_cast<double>(words * sizeof(float)) / s);
  }
  std::printf("read bandwidth: %.2f GB/s (%d threads, %lld MiB, best of %d, %s pages)\n",
              best / 1e9, f.threads, static_cast<long long>(f.size_mib), f.runs,
              f.small_pages ? "4 KB" : "huge");
  return sink == -1.0f ? 2 : 0;  // `sink` keeps the reads alive
}

}  // namespace

Command RegisterMembw(CLI::App& app) {
  auto f = std::make_shared<MembwFlags>();
  app.add_option("--threads", f->threads, "Reading threads")->check(CLI::Range(1, 1024));
  app.add_option("--size-mib", f->size_mib, "Buffer size in MiB (>= 1024 for a roofline figure)")
      ->check(CLI::Range(16, 1 << 20));
  app.add_option("--runs", f->runs, "Runs; the best is reported")->check(CLI::Range(1, 100));
  app.add_flag("--small-pages", f->small_pages, "4 KB pages instead of transparent huge pages");
  return [f] { return RunMembw(*f); };
}

}  // namespace moerack::cli

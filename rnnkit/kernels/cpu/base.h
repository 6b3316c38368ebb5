// What every kernel source shares: the index type, the vectorization pragma and the
// row-parallel loop.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <type_traits>
#include <vector>

// Vectorize the loop that follows (-fopenmp-simd): iterations are independent and the
// arrays do not overlap, which the compiler cannot prove on its own.
#define RNNKIT_SIMD _Pragma("omp simd")

namespace rnnkit {

using index_t = int64_t;

// The default of parallel_min_work(): kernel calls of fewer multiply-adds run serially.
// benchmarks/threads.py on a quiet 2-core machine: a tanh RNN at (1000, 1, 32, 64), 6M
// multiply-adds forward, took 1.06 ms split against 0.97 ms serial; from ~20M (an LSTM at
// (1000, 1, 32, 64) or (50, 8, 64, 128)) splitting gains 5-15 %. RESULTS.md has the table.
constexpr int64_t kDefaultParallelMinWork = 8000000;

// --- Threads per call. A parallel region costs a fork and a join: microseconds, and far
// more when the other threads are busy elsewhere; below some work it costs more than it
// gives. Every loop below splits by its own grain; on top of that a kernel call whose
// whole work (multiply-adds, ops.cpp's CallThreads) is below parallel_min_work() runs all
// its loops on the calling thread. Results never depend on it (each element is computed
// by one thread in a fixed order). Set from Python by rnnkit_cpu.set_parallel_min_work.
inline std::atomic<int64_t>& parallel_min_work() {
  static std::atomic<int64_t> work{kDefaultParallelMinWork};
  return work;
}

inline bool& serial_call() {
  thread_local bool serial = false;
  return serial;
}

// For the lifetime of a kernel call: serial if its work is below the threshold.
class CallThreads {
 public:
  explicit CallThreads(int64_t work) : previous_(serial_call()) {
    serial_call() = previous_ || work < parallel_min_work().load(std::memory_order_relaxed);
  }
  ~CallThreads() { serial_call() = previous_; }
  CallThreads(const CallThreads&) = delete;
  CallThreads& operator=(const CallThreads&) = delete;

 private:
  bool previous_;
};

// f(begin, end) over [begin, end): at::parallel_for's split by grain, or one call on this
// thread for a serial kernel call.
template <typename F>
inline void parallel_for(index_t begin, index_t end, index_t grain, const F& f) {
  if (begin >= end) return;
  if (serial_call() || end - begin <= grain) {
    f(begin, end);
    return;
  }
  at::parallel_for(begin, end, grain, f);
}

// f(row) for every row, split across threads when the work is big enough to pay for it.
// Each row is processed whole by one thread, so results do not depend on the thread count.
template <typename F>
inline void for_rows(index_t rows, index_t cols, const F& f) {
  const index_t grain = std::max<index_t>(1, 16384 / std::max<index_t>(cols, 1));
  if (rows <= grain) {
    for (index_t b = 0; b < rows; ++b) f(b);
    return;
  }
  parallel_for(0, rows, grain, [&](index_t begin, index_t end) {
    for (index_t b = begin; b < end; ++b) f(b);
  });
}

}  // namespace rnnkit

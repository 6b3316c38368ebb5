// What every kernel source shares: the index type, the vectorization pragma and the
// row-parallel loop.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
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

// f(row) for every row, split across threads when the work is big enough to pay for it.
// Each row is processed whole by one thread, so results do not depend on the thread count.
template <typename F>
inline void for_rows(index_t rows, index_t cols, const F& f) {
  const index_t grain = std::max<index_t>(1, 16384 / std::max<index_t>(cols, 1));
  if (rows <= grain) {
    for (index_t b = 0; b < rows; ++b) f(b);
    return;
  }
  at::parallel_for(0, rows, grain, [&](index_t begin, index_t end) {
    for (index_t b = begin; b < end; ++b) f(b);
  });
}

}  // namespace rnnkit

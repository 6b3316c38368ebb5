// Shared pieces of the fused CPU kernels: BLAS GEMM on raw pointers, branch-free
// exp/sigmoid/tanh that the compiler vectorizes, row-parallel loops, and the sequence
// bookkeeping (time order, length mask, zoneout keep coefficients, recurrent-dropout mask).
//
// Sequence semantics (rnnkit/kernels/common.py): the carried state is
//   s_t = s_{t-1} + k_t (s~_t - s_{t-1}),   k_t = m_t (1 - z_t),
// and the output is y_t = m_t h_t. Position t is the time index; with reverse the
// steps run t = T-1 .. 0. Everything saved for backward is indexed by position.
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

// --- GEMM: C (m x n) = A (m x k) B (k x n), B packed into column panels. ---
// The weights are packed once per sequence and reused by every step; the register-tiled
// kernel (MR rows x two vectors of columns, GCC vector extensions, which compile to AVX-512
// or AVX2 under -march=native) beats a BLAS call on the small per-step products and
// matches it on the large ones. Each element of C is computed by one thread in a fixed
// order, so results do not depend on the thread count.

//
// The tile is sized to the register file of the instruction set the build targets: it
// holds kTileRows x 2 accumulator vectors plus the two vectors of B and a broadcast of A.
// AVX-512 (32 registers of 64 bytes): 8 rows of two 64-byte vectors. AVX2 (16 registers
// of 32 bytes): 6 rows of two 32-byte vectors, the shape BLIS uses there; wider vectors or
// more rows would spill accumulators to memory on every multiply-add. Plain SSE: 4 rows.
#if defined(__AVX512F__)
constexpr int kVectorBytes = 64;
constexpr int kTileRows = 8;
#elif defined(__AVX__)
constexpr int kVectorBytes = 32;
constexpr int kTileRows = 6;
#else
constexpr int kVectorBytes = 16;
constexpr int kTileRows = 4;
#endif

template <typename T> struct Lanes {
  typedef T vec __attribute__((vector_size(kVectorBytes)));
  static constexpr int count = kVectorBytes / static_cast<int>(sizeof(T));
};

template <typename T>
struct Packed {
  at::Tensor buffer;  // (panels, k, NR), zero padded past column n; undefined: not packed
  index_t k, n;
  const T* raw;       // unpacked B and its strides, used when packing would not pay off
  index_t rsb, csb;
  static constexpr int NR = 2 * Lanes<T>::count;
  index_t panels() const { return (n + NR - 1) / NR; }
  const T* panel(index_t jp) const { return buffer.data_ptr<T>() + jp * k * NR; }
};

// Pack B (k x n, element (p, j) at b[p * rsb + j * csb]) for products with `rows` rows of
// A in all; below kPackRows rows (a decoding step) packing costs more than it saves, unless
// the packed weights are cached across calls (rnnkit::pack_weight, see packed_or_pack).
constexpr index_t kPackRows = 16;

template <typename T>
Packed<T> pack(index_t k, index_t n, const T* b, index_t rsb, index_t csb,
               const at::TensorOptions& opts, index_t rows = kPackRows) {
  Packed<T> out{at::Tensor(), k, n, b, rsb, csb};
  if (rows < kPackRows && (rsb == 1 || csb == 1)) return out;
  constexpr int NR = Packed<T>::NR;
  out.buffer = at::empty({out.panels(), k, NR}, opts);
  T* dst = out.buffer.template data_ptr<T>();
  at::parallel_for(0, out.panels(), std::max<index_t>(1, 65536 / std::max<index_t>(k * NR, 1)),
                   [&](index_t begin, index_t end) {
    for (index_t jp = begin; jp < end; ++jp) {
      T* panel = dst + jp * k * NR;
      const index_t j0 = jp * NR, cols = std::min<index_t>(NR, n - j0);
      if (cols == NR && csb == 1) {  // rows of the panel are contiguous in b
        for (index_t p = 0; p < k; ++p) {
          std::memcpy(panel + p * NR, b + p * rsb + j0, sizeof(T) * NR);
        }
      } else if (rsb == 1) {  // W^T of a row-major W: each column is contiguous in b; one
                              // column at a time (the panel, k lines, stays in the cache)
        for (index_t jj = 0; jj < NR; ++jj) {
          const T* src = b + (j0 + jj) * csb;
          if (jj < cols) {
            for (index_t p = 0; p < k; ++p) panel[p * NR + jj] = src[p];
          } else {
            for (index_t p = 0; p < k; ++p) panel[p * NR + jj] = T(0);
          }
        }
      } else {
        for (index_t p = 0; p < k; ++p) {
          for (index_t jj = 0; jj < cols; ++jj) panel[p * NR + jj] = b[p * rsb + (j0 + jj) * csb];
          for (index_t jj = cols; jj < NR; ++jj) panel[p * NR + jj] = T(0);
        }
      }
    }
  });
  return out;
}

// ROWS rows of A times one panel, into (or added to) ROWS x cols of C.
template <typename T, int ROWS>
inline void gemm_tile(index_t k, const T* a, index_t rsa, index_t csa, const T* panel, T* c,
                      index_t ldc, index_t cols, bool accumulate) {
  using V = typename Lanes<T>::vec;
  constexpr int L = Lanes<T>::count, NR = 2 * L;
  V acc0[ROWS], acc1[ROWS];
  for (int r = 0; r < ROWS; ++r) {
    acc0[r] = V{};
    acc1[r] = V{};
  }
#pragma GCC unroll 4
  for (index_t p = 0; p < k; ++p) {
    V b0, b1;
    std::memcpy(&b0, panel + p * NR, sizeof(V));
    std::memcpy(&b1, panel + p * NR + L, sizeof(V));
    const T* ap = a + p * csa;
#pragma GCC unroll 8
    for (int r = 0; r < ROWS; ++r) {
      const T av = ap[r * rsa];
      acc0[r] += av * b0;
      acc1[r] += av * b1;
    }
  }
  if (cols == NR) {  // a whole tile: vector loads and stores of C (the loop below went
                    // element by element through a copy on the stack: ~10 % of a GEMM)
    for (int r = 0; r < ROWS; ++r) {
      T* cr = c + r * ldc;
      if (accumulate) {
        V c0, c1;
        std::memcpy(&c0, cr, sizeof(V));
        std::memcpy(&c1, cr + L, sizeof(V));
        acc0[r] = c0 + acc0[r];
        acc1[r] = c1 + acc1[r];
      }
      std::memcpy(cr, &acc0[r], sizeof(V));
      std::memcpy(cr + L, &acc1[r], sizeof(V));
    }
    return;
  }
  T tile[NR];
  for (int r = 0; r < ROWS; ++r) {
    T* cr = c + r * ldc;
    std::memcpy(tile, &acc0[r], sizeof(V));
    std::memcpy(tile + L, &acc1[r], sizeof(V));
    if (accumulate) {
      for (index_t j = 0; j < cols; ++j) cr[j] += tile[j];
    } else {
      std::memcpy(cr, tile, sizeof(T) * cols);
    }
  }
}

// The rows of a product split into ceil(m / kTileRows) tiles of about equal height, the
// taller ones first: 32 = 6 + 6 + 5 + 5 + 5 + 5 rather than 6 + 6 + 6 + 6 + 8 as 4 + 4, and
// 20 = 5 + 5 + 5 + 5 rather than 6 + 6 + 4 + 4. A 4-row tile's 8 accumulators just cover
// the multiply-add latency and ran at ~2/3 of the 6-row tile's rate.
struct TilePlan {
  index_t tiles, base, extra;
  explicit TilePlan(index_t m)
      : tiles((m + kTileRows - 1) / kTileRows),
        base(tiles ? m / tiles : 0),
        extra(tiles ? m % tiles : 0) {}
  index_t start(index_t t) const { return t * base + std::min(t, extra); }
  index_t rows(index_t t) const { return base + (t < extra ? 1 : 0); }
};

// A (m x k) copied into the tiles of TilePlan(m), each (k, kTileRows), zero padded: the
// tile kernel then reads one contiguous line per p instead of kTileRows strided rows
// (which, a power-of-two stride apart, would also collide in the cache).
template <typename T>
const T* pack_rows(index_t m, index_t k, const T* a, index_t rsa, index_t csa) {
  thread_local std::vector<T> buffer;
  const TilePlan plan(m);
  buffer.resize(static_cast<size_t>(plan.tiles * k * kTileRows));
  T* const out = buffer.data();
  if (rsa == 1) {
    // A^T stored (d_z^T of a weight gradient): storage row p is A's column p, and each
    // tile's part of it is contiguous. One pass down the storage rows (tile by tile, every
    // row's cache line was read again by the next tile, from the level-2 cache or beyond).
    for (index_t p = 0; p < k; ++p) {
      const T* src = a + p * csa;
      for (index_t tile = 0; tile < plan.tiles; ++tile) {
        T* dst = out + (tile * k + p) * kTileRows;
        const index_t i0 = plan.start(tile), rows = plan.rows(tile);
        if (rows == kTileRows) {
          std::memcpy(dst, src + i0, sizeof(T) * kTileRows);
        } else {
          for (index_t r = 0; r < kTileRows; ++r) dst[r] = r < rows ? src[i0 + r] : T(0);
        }
      }
    }
    return out;
  }
  for (index_t tile = 0; tile < plan.tiles; ++tile) {
    T* dst = out + tile * k * kTileRows;
    const index_t i0 = plan.start(tile), rows = plan.rows(tile);
    const T* src = a + i0 * rsa;
    if (rows == kTileRows) {  // a whole tile: a loop of fixed length, no padding
      for (index_t p = 0; p < k; ++p) {
#pragma GCC unroll 8
        for (int r = 0; r < kTileRows; ++r) dst[p * kTileRows + r] = src[r * rsa + p * csa];
      }
      continue;
    }
    for (index_t p = 0; p < k; ++p) {
      for (index_t r = 0; r < kTileRows; ++r)
        dst[p * kTileRows + r] = r < rows ? src[r * rsa + p * csa] : T(0);
    }
  }
  return out;
}

// One row of A times one panel (a decoding step's matrix-vector product): four partial
// sums per vector of columns, so eight independent FMA chains instead of two.
template <typename T>
inline void gemv_tile(index_t k, const T* a, index_t csa, const T* panel, T* c, index_t cols,
                      bool accumulate) {
  using V = typename Lanes<T>::vec;
  constexpr int L = Lanes<T>::count, NR = 2 * L, U = 4;
  V acc0[U], acc1[U];
  for (int u = 0; u < U; ++u) {
    acc0[u] = V{};
    acc1[u] = V{};
  }
  index_t p = 0;
  for (; p + U <= k; p += U) {
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) {
      V b0, b1;
      std::memcpy(&b0, panel + (p + u) * NR, sizeof(V));
      std::memcpy(&b1, panel + (p + u) * NR + L, sizeof(V));
      const T av = a[(p + u) * csa];
      acc0[u] += av * b0;
      acc1[u] += av * b1;
    }
  }
  for (; p < k; ++p) {
    V b0, b1;
    std::memcpy(&b0, panel + p * NR, sizeof(V));
    std::memcpy(&b1, panel + p * NR + L, sizeof(V));
    const T av = a[p * csa];
    acc0[0] += av * b0;
    acc1[0] += av * b1;
  }
  const V s0 = (acc0[0] + acc0[1]) + (acc0[2] + acc0[3]);
  const V s1 = (acc1[0] + acc1[1]) + (acc1[2] + acc1[3]);
  T tile[NR];
  std::memcpy(tile, &s0, sizeof(V));
  std::memcpy(tile + L, &s1, sizeof(V));
  if (accumulate) {
    for (index_t j = 0; j < cols; ++j) c[j] += tile[j];
  } else {
    std::memcpy(c, tile, sizeof(T) * cols);
  }
}

// ROWS (1..kTileRows) rows of A times one panel; a(r, p) = a[r * rsa + p * csa].
template <typename T>
inline void gemm_rows(index_t rows, index_t k, const T* a, index_t rsa, index_t csa,
                      const T* panel, T* c, index_t ldc, index_t cols, bool accumulate) {
  switch (rows) {
    case 1: gemv_tile<T>(k, a, csa, panel, c, cols, accumulate); break;
    case 2: gemm_tile<T, 2>(k, a, rsa, csa, panel, c, ldc, cols, accumulate); break;
    case 3: gemm_tile<T, 3>(k, a, rsa, csa, panel, c, ldc, cols, accumulate); break;
    case 4: gemm_tile<T, 4>(k, a, rsa, csa, panel, c, ldc, cols, accumulate); break;
    case 5: gemm_tile<T, 5>(k, a, rsa, csa, panel, c, ldc, cols, accumulate); break;
    case 6: gemm_tile<T, 6>(k, a, rsa, csa, panel, c, ldc, cols, accumulate); break;
    case 7: gemm_tile<T, 7>(k, a, rsa, csa, panel, c, ldc, cols, accumulate); break;
    case 8: gemm_tile<T, 8>(k, a, rsa, csa, panel, c, ldc, cols, accumulate); break;
    default: break;
  }
}

// Depth of one block of a panel: a block of kKBlock rows of a panel (16 KiB) stays in the
// level-1 cache while every row tile of A runs over it, beside the tile of A being read.
// Without the blocking a panel of depth k >= 512 fills the cache alone and the tiles of A
// push it out: every multiply-add then waits on the level-2 cache.
template <typename T>
constexpr index_t kKBlock = 16384 / (Packed<T>::NR * static_cast<index_t>(sizeof(T)));

// Products with at most this many rows read A in place (gemm_panels), more are copied
// into tiles first (pack_rows).
constexpr index_t kInPlaceRows = 4 * kTileRows;

// Panels [jp0, jp1) of C = [C +] A B. With a_tiles (pack_rows) A is read tile by tile;
// without (at most kInPlaceRows rows: a decoding step, a batch), straight from a.
template <typename T>
void gemm_panels(index_t m, const T* a_tiles, const T* a, index_t rsa, index_t csa,
                 const Packed<T>& b, T* c, index_t ldc, bool accumulate, index_t jp0,
                 index_t jp1) {
  constexpr int NR = Packed<T>::NR;
  const index_t k = b.k;
  const TilePlan plan(m);
  for (index_t jp = jp0; jp < jp1; ++jp) {
    const index_t j0 = jp * NR, cols = std::min<index_t>(NR, b.n - j0);
    for (index_t k0 = 0; k0 < k; k0 += kKBlock<T>) {
      const index_t kb = std::min<index_t>(kKBlock<T>, k - k0);
      const T* panel = b.panel(jp) + k0 * NR;
      const bool add = accumulate || k0 > 0;
      for (index_t tile = 0; tile < plan.tiles; ++tile) {
        const index_t i = plan.start(tile), rows = plan.rows(tile);
        T* c_tile = c + i * ldc + j0;
        if (!a_tiles) {  // a few rows (a step of a batch): read in place
          gemm_rows(rows, kb, a + i * rsa + k0 * csa, rsa, csa, panel, c_tile, ldc, cols, add);
        } else if (rows == kTileRows) {
          gemm_tile<T, kTileRows>(kb, a_tiles + tile * k * kTileRows + k0 * kTileRows, 1,
                                  kTileRows, panel, c_tile, ldc, cols, add);
        } else {
          gemm_rows(rows, kb, a_tiles + tile * k * kTileRows + k0 * kTileRows, 1, kTileRows,
                    panel, c_tile, ldc, cols, add);
        }
      }
    }
  }
}

// C[r][c] (+)= sum over p of a_r(p) b_c(p) for R rows of A and C columns of B, both
// contiguous in p (a row-major W read as W^T): R x C vector accumulators, the lanes summed
// at the end. Each column of B is loaded once for the R rows.
template <typename T, int R, int C>
inline void dot_block(index_t k, const T* a, index_t rsa, const T* b, index_t csb, T* c,
                      index_t ldc, bool accumulate) {
  using V = typename Lanes<T>::vec;
  constexpr int L = Lanes<T>::count;
  V acc[R][C];
  for (int r = 0; r < R; ++r) {
    for (int q = 0; q < C; ++q) acc[r][q] = V{};
  }
  index_t p = 0;
  for (; p + L <= k; p += L) {
    V bv[C];
    for (int q = 0; q < C; ++q) std::memcpy(&bv[q], b + q * csb + p, sizeof(V));
    for (int r = 0; r < R; ++r) {
      V av;
      std::memcpy(&av, a + r * rsa + p, sizeof(V));
      for (int q = 0; q < C; ++q) acc[r][q] += av * bv[q];
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int q = 0; q < C; ++q) {
      T lanes[L];
      std::memcpy(lanes, &acc[r][q], sizeof(V));
      T sum = 0;
      for (int l = 0; l < L; ++l) sum += lanes[l];
      for (index_t pp = p; pp < k; ++pp) sum += a[r * rsa + pp] * b[q * csb + pp];
      T& out = c[r * ldc + q];
      out = accumulate ? out + sum : sum;
    }
  }
}

// Rows [0, m) of A (m <= 4) times columns [j0, j1) of B (contiguous in p), dot_block by
// dot_block: a single row takes four columns at a time, more rows two.
template <typename T, int R>
inline void dot_rows(index_t k, const T* a, index_t rsa, const T* b, index_t csb, T* c,
                     index_t ldc, index_t j0, index_t j1, bool accumulate) {
  constexpr int C = R == 1 ? 4 : 2;
  index_t j = j0;
  for (; j + C <= j1; j += C) {
    dot_block<T, R, C>(k, a, rsa, b + j * csb, csb, c + j, ldc, accumulate);
  }
  for (; j < j1; ++j) dot_block<T, R, 1>(k, a, rsa, b + j * csb, csb, c + j, ldc, accumulate);
}

// The few-rows product on unpacked B (a decoding step: below kPackRows rows of A, packing
// the whole weight would cost more than the product, and nothing is cached across calls).
// Blocks of columns of C are split across threads in a fixed partition, each column
// computed by one thread in a fixed order, so results do not depend on the thread count.
// rsb == 1 and csa == 1 (x W^T, both row-major): register-blocked dot products, every row
// of W read once for up to four rows of A. csb == 1 (rows of B contiguous): c_i += a_ip b_p.
template <typename T>
void matmul_unpacked(index_t m, const T* a, index_t rsa, index_t csa, const Packed<T>& b, T* c,
                     index_t ldc, bool accumulate) {
  const index_t k = b.k, n = b.n;
  // columns per block: about 2^16 multiply-adds
  const index_t grain = std::max<index_t>(16, (index_t(1) << 16) / std::max<index_t>(m * k, 1));
  auto columns = [&](index_t j0, index_t j1) {
    if (b.csb == 1) {
      for (index_t i = 0; i < m; ++i) {
        const T* ai = a + i * rsa;
        T* __restrict ci = c + i * ldc;
        if (!accumulate) std::fill(ci + j0, ci + j1, T(0));
        for (index_t p = 0; p < k; ++p) {
          const T ap = ai[p * csa];
          const T* __restrict bp = b.raw + p * b.rsb;
          RNNKIT_SIMD
          for (index_t j = j0; j < j1; ++j) ci[j] += ap * bp[j];
        }
      }
      return;
    }
    if (csa == 1) {
      for (index_t i = 0; i < m; i += 4) {
        const T* ai = a + i * rsa;
        T* ci = c + i * ldc;
        switch (std::min<index_t>(4, m - i)) {
          case 1: dot_rows<T, 1>(k, ai, rsa, b.raw, b.csb, ci, ldc, j0, j1, accumulate); break;
          case 2: dot_rows<T, 2>(k, ai, rsa, b.raw, b.csb, ci, ldc, j0, j1, accumulate); break;
          case 3: dot_rows<T, 3>(k, ai, rsa, b.raw, b.csb, ci, ldc, j0, j1, accumulate); break;
          default: dot_rows<T, 4>(k, ai, rsa, b.raw, b.csb, ci, ldc, j0, j1, accumulate);
        }
      }
      return;
    }
    for (index_t j = j0; j < j1; ++j) {
      const T* bj = b.raw + j * b.csb;
      for (index_t i = 0; i < m; ++i) {
        T sum = 0;
        for (index_t p = 0; p < k; ++p) sum += a[i * rsa + p * csa] * bj[p];
        T& out = c[i * ldc + j];
        out = accumulate ? out + sum : sum;
      }
    }
  };
  const index_t blocks = (n + grain - 1) / grain;
  auto run_blocks = [&](index_t begin, index_t end) {
    for (index_t block = begin; block < end; ++block) {
      columns(block * grain, std::min(n, (block + 1) * grain));
    }
  };
  if (blocks <= 1) return run_blocks(0, blocks);
  at::parallel_for(0, blocks, 1, run_blocks);
}

// One product of matmul_shared: C (row stride ldc) = [C +] A B.
template <typename T>
struct Product {
  const Packed<T>* b;
  T* c;
  index_t ldc;
};

// Products with the same A (m x k) and packed B's of depth k (each with n > 0): A is copied
// into tiles once for all of them (weight gradients: d_z^T times x and times h_{t-1}).
template <typename T>
void matmul_shared(index_t m, const T* a, index_t rsa, index_t csa,
                   std::initializer_list<Product<T>> products, bool accumulate) {
  const index_t k = products.begin()->b->k;
  // up to four tiles (a step of a batch): read A in place, no copy
  const bool packing = m > kInPlaceRows;
  // Many rows (a weight gradient: m = 4H rows of d_z^T): blocks of rows whose tiles of A
  // (about 128 KiB) stay in the level-2 cache while every panel runs over them, instead
  // of the whole of A streaming from memory once per panel.
  const index_t block = packing ? std::max<index_t>(kTileRows, (index_t(1) << 17) /
                                      std::max<index_t>(k * index_t(sizeof(T)), 1) /
                                      kTileRows * kTileRows)
                                : m;
  for (index_t i0 = 0; i0 < m; i0 += block) {
    const index_t rows = std::min(block, m - i0);
    const T* a_rows = a + i0 * rsa;
    const T* tiles = packing ? pack_rows(rows, k, a_rows, rsa, csa) : nullptr;
    const index_t work = rows * k * Packed<T>::NR;  // multiply-adds per panel
    const index_t grain = std::max<index_t>(1, (index_t(1) << 20) / std::max<index_t>(work, 1));
    for (const Product<T>& product : products) {
      const Packed<T>& b = *product.b;
      T* c_rows = product.c + i0 * product.ldc;
      if (b.panels() <= grain) {
        gemm_panels(rows, tiles, a_rows, rsa, csa, b, c_rows, product.ldc, accumulate, 0,
                    b.panels());
        continue;
      }
      at::parallel_for(0, b.panels(), grain, [&](index_t begin, index_t end) {
        gemm_panels(rows, tiles, a_rows, rsa, csa, b, c_rows, product.ldc, accumulate, begin,
                    end);
      });
    }
  }
}

// C (m x n, row stride ldc) = [C +] A B, with a(i, p) = a[i * rsa + p * csa].
template <typename T>
void matmul(index_t m, const T* a, index_t rsa, index_t csa, const Packed<T>& b, T* c,
            index_t ldc, bool accumulate = false) {
  if (m == 0 || b.n == 0) return;
  if (!b.buffer.defined()) return matmul_unpacked(m, a, rsa, csa, b, c, ldc, accumulate);
  if (b.k == 0) {
    if (!accumulate) {
      for (index_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + b.n, T(0));
    }
    return;
  }
  matmul_shared(m, a, rsa, csa, {Product<T>{&b, c, ldc}}, accumulate);
}

// The same with B (k x n, b(p, j) = b[p * rsb + j * csb]) packed on the fly.
template <typename T>
void matmul(index_t m, index_t k, index_t n, const T* a, index_t rsa, index_t csa, const T* b,
            index_t rsb, index_t csb, T* c, index_t ldc, const at::TensorOptions& opts,
            bool accumulate = false) {
  matmul(m, a, rsa, csa, pack(k, n, b, rsb, csb, opts, m), c, ldc, accumulate);
}

// Weights packed by the caller (packed[index], a cached rnnkit::pack_weight result), or
// packed here when the caller has none.
template <typename T>
Packed<T> packed_or_pack(at::TensorList packed, size_t index, index_t k, index_t n,
                         const T* b, index_t rsb, index_t csb, const at::TensorOptions& opts,
                         index_t rows) {
  if (index >= packed.size() || !packed[index].defined()) {
    return pack(k, n, b, rsb, csb, opts, rows);
  }
  const at::Tensor& buffer = packed[index];
  Packed<T> out{buffer, k, n, b, rsb, csb};
  TORCH_CHECK(buffer.dim() == 3 && buffer.size(0) == out.panels() && buffer.size(1) == k &&
                  buffer.size(2) == Packed<T>::NR && buffer.is_contiguous() &&
                  buffer.scalar_type() == c10::CppTypeToScalarType<T>::value,
              "rnnkit cpu kernel: packed[", index, "] must be a pack_weight result of shape (",
              out.panels(), ", ", k, ", ", Packed<T>::NR, "), got ", buffer.sizes());
  return out;
}

// W^T (for x W^T, transpose) or W (for d W) of a (rows, cols) weight, packed for every
// product with it; cached by the Python side across calls with the same weights.
inline at::Tensor pack_weight(const at::Tensor& w_in, bool transpose) {
  TORCH_CHECK(w_in.dim() == 2, "rnnkit pack_weight: w must be 2-D, got ", w_in.sizes());
  const auto w = w_in.contiguous();
  const index_t rows = w.size(0), cols = w.size(1);
  return AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "rnnkit_pack_weight", [&] {
    const scalar_t* d = w.data_ptr<scalar_t>();
    auto p = transpose ? pack<scalar_t>(cols, rows, d, 1, cols, w.options(), kPackRows)
                       : pack<scalar_t>(rows, cols, d, cols, 1, w.options(), kPackRows);
    return p.buffer;
  });
}

// x W^T (+ b1 + b2) for all rows at once: x (rows, in), W^T packed (packed_or_pack) ->
// (rows, out). b1, b2: bias vectors of length out or null; the first `b2_count` entries of
// b2 are added (the GRU leaves b_hn out).
template <typename T>
at::Tensor project(const at::Tensor& x, const Packed<T>& w_t, const T* b1 = nullptr,
                   const T* b2 = nullptr, index_t b2_count = -1) {
  const index_t rows = x.size(0), in = x.size(1), n = w_t.n;
  at::Tensor out = at::empty({rows, n}, x.options());
  T* o = out.template data_ptr<T>();
  if (b1) {
    if (b2_count < 0) b2_count = n;
    for (index_t j = 0; j < n; ++j) o[j] = b1[j] + (b2 && j < b2_count ? b2[j] : T(0));
    for (index_t r = 1; r < rows; ++r) std::memcpy(o + r * n, o, sizeof(T) * n);
  }
  matmul(rows, x.template data_ptr<T>(), in, 1, w_t, o, n, b1 != nullptr);
  return out;
}

// C (m x n, row stride ldc) = [C +] sum over r < rows of a_r^T b_r: a (rows x m, row stride
// lda), b (rows x n, row stride ldb), unit column strides. The weight gradients.
template <typename T>
void matmul_tn(index_t rows, index_t m, index_t n, const T* a, index_t lda, const T* b,
               index_t ldb, T* c, index_t ldc, const at::TensorOptions& opts,
               bool accumulate = false) {
  if (rows <= 4) {  // a few outer products (a decoding step): no packing, row by row
    for_rows(m, n, [&](index_t i) {
      T* __restrict ci = c + i * ldc;
      if (!accumulate) std::fill(ci, ci + n, T(0));
      for (index_t r = 0; r < rows; ++r) {
        const T ar = a[r * lda + i];
        const T* __restrict br = b + r * ldb;
        RNNKIT_SIMD
        for (index_t j = 0; j < n; ++j) ci[j] += ar * br[j];
      }
    });
    return;
  }
  matmul(m, rows, n, a, 1, lda, b, ldb, 1, c, ldc, opts, accumulate);
}

// --- Branch-free elementwise math (vectorized by the compiler inside plain loops). ---

template <typename T> struct ExpConstants;
template <> struct ExpConstants<double> {
  using bits = int64_t;
  static constexpr double magic = 6755399441055744.0;  // 1.5*2^52
  static constexpr double ln2_hi = 6.93147180369123816490e-01;
  static constexpr double ln2_lo = 1.90821492927058770002e-10;
  static constexpr int mantissa = 52, exponent_bias = 1023;
};
template <> struct ExpConstants<float> {
  using bits = int32_t;
  static constexpr float magic = 12582912.0f;  // 1.5*2^23
  static constexpr float ln2_hi = 0.693145751953125f;
  static constexpr float ln2_lo = 1.428606765330187e-06f;
  static constexpr int mantissa = 23, exponent_bias = 127;
};

// exp(x) = 2^n e^r with n = round(x / ln 2), |r| <= ln2 / 2, e^r by its Taylor series
// (degree 12 in double: error below 2e-16; degree 7 in float: below 1e-8).
// Out of range n is clamped as an integer to [-bias, bias + 1], where 2^n is 0 and inf:
// x below about -87 (float) gives 0, above about 88.4 inf, -inf 0, +inf inf, NaN NaN. (The
// clamp of x itself, min/max in floating point, compiled to compares and blends, in the
// vectorized loops four compares, three blends and two ands per exp: the LSTM step's
// gate loop ran 1.8x slower with it; the integer min/max are one instruction each.)
template <typename T>
[[gnu::always_inline]] inline T exp_fast(T x) {
  using C = ExpConstants<T>;
  using bits_t = typename C::bits;
  const T magic = C::magic;
  const T shifted = x * T(1.4426950408889634) + magic;  // round to nearest via the magic
  bits_t shifted_bits, magic_bits;
  std::memcpy(&shifted_bits, &shifted, sizeof(T));
  std::memcpy(&magic_bits, &magic, sizeof(T));
  // n, clamped to [-bias, bias + 1], as the bits of `shifted` clamped to magic's bits
  // plus those bounds (the bits of a float in [2^23, 2^24) or a double in [2^52, 2^53)
  // are magic's plus the integer's; no subtraction before the clamp, which for a negative
  // `shifted`, x below about -8.7e6 in float, would overflow), then back as a float
  // through the magic (no int-to-double conversion instruction before AVX-512)
  const bits_t n_bits = std::min<bits_t>(
      std::max<bits_t>(shifted_bits, magic_bits - C::exponent_bias),
      magic_bits + C::exponent_bias + 1);
  const bits_t n_int = n_bits - magic_bits;
  T n;
  std::memcpy(&n, &n_bits, sizeof(T));
  n -= magic;
  T r = (x - n * C::ln2_hi) - n * C::ln2_lo;
  // |r| <= ln2 / 2 unless n was clamped; below, 2^n is 0, and e^r must stay finite (x =
  // -inf: inf * 0 would be NaN); above, 2^n is inf, which e^r > 0 keeps. NaN stays NaN.
  r = r < T(-1) ? T(-1) : r;
  T p;
  if constexpr (std::is_same_v<T, double>) {
    p = 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
  } else {
    p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
  }
  const bits_t scale_bits = (n_int + C::exponent_bias) << C::mantissa;
  T scale;
  std::memcpy(&scale, &scale_bits, sizeof(T));
  return p * scale;
}

// σ(x) = 1 / (1 + e^{-x})
template <typename T>
[[gnu::always_inline]] inline T sigmoid(T x) { return T(1) / (T(1) + exp_fast<T>(-x)); }

// tanh(x) = 1 - 2 / (1 + e^{2x})
template <typename T>
[[gnu::always_inline]] inline T tanh_fast(T x) {
  return T(1) - T(2) / (T(1) + exp_fast<T>(T(2) * x));
}

// --- Layer norm rows. ---

// 1/σ of one row given its mean μ (the variance as the mean of (x - μ)^2, ε = 1e-5).
template <typename T>
inline T row_inv_std(const T* x, index_t n, T mean) {
  T var = 0;
  _Pragma("omp simd reduction(+ : var)")
  for (index_t j = 0; j < n; ++j) {
    const T d = x[j] - mean;
    var += d * d;
  }
  return T(1) / std::sqrt(var / T(n) + T(1e-5));
}

// Layer norm statistics of one row: the mean μ (into `mean`) and 1/σ (returned).
template <typename T>
inline T row_mean_inv_std(const T* x, index_t n, T& mean) {
  T sum = 0;
  _Pragma("omp simd reduction(+ : sum)")
  for (index_t j = 0; j < n; ++j) sum += x[j];
  mean = sum / T(n);
  return row_inv_std(x, n, mean);
}

// Writes x̂ = (x - μ)/σ of one row over x; returns 1/σ.
template <typename T>
inline T normalize_row_inplace(T* x, index_t n) {
  T mean;
  const T inv_std = row_mean_inv_std(x, n, mean);
  RNNKIT_SIMD
  for (index_t j = 0; j < n; ++j) x[j] = (x[j] - mean) * inv_std;
  return inv_std;
}

// Storage for a per-step tensor: all T steps when saving for backward, else one slot.
template <typename T>
struct Slots {
  T* base;
  index_t stride;  // elements per step (B * width)
  bool all;
  T* at(index_t t) const { return base + (all ? t : 0) * stride; }
};

template <typename T>
inline Slots<T> slots(const at::Tensor& tensor, index_t stride, bool all) {
  return Slots<T>{tensor.data_ptr<T>(), stride, all};
}

// The sequence: order of steps, lengths mask m (T, B), keep coefficients k (T, B, S)
// per state (null: k = m, i.e. no zoneout), recurrent-dropout mask (B, P) (null = 1).
template <typename T>
struct Sequence {
  index_t steps, batch;
  bool reverse;
  const T* mask;
  const T* keep_h;
  const T* keep_c;
  const T* h_mask;
  index_t position(index_t k) const { return reverse ? steps - 1 - k : k; }
  T mask_at(index_t t, index_t b) const { return mask ? mask[t * batch + b] : T(1); }
};

inline const at::Tensor* optional_ptr(const std::optional<at::Tensor>& t) {
  return t.has_value() && t->defined() ? &*t : nullptr;
}

template <typename T>
inline const T* data_or_null(const std::optional<at::Tensor>& t) {
  return optional_ptr(t) ? t->data_ptr<T>() : nullptr;
}

// Make optional tensors contiguous and of x's dtype, checking their shapes.
inline std::optional<at::Tensor> prepare_optional(const std::optional<at::Tensor>& t,
                                                  const at::Tensor& x,
                                                  at::IntArrayRef shape, const char* name) {
  if (!optional_ptr(t)) return std::nullopt;
  TORCH_CHECK(t->sizes() == shape, "rnnkit cpu kernel: ", name, " must have shape ", shape,
              ", got ", t->sizes());
  return t->to(x.scalar_type()).contiguous();
}

inline void check_input(const at::Tensor& x, const char* name) {
  TORCH_CHECK(x.device().is_cpu(), "rnnkit cpu kernel: ", name, " must be a CPU tensor");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "rnnkit cpu kernel: ", name, " must be float32 or float64, got ",
              x.scalar_type());
}

// t in x's dtype (no dispatcher call when it already is).
inline at::Tensor like_x(const at::Tensor& t, const at::Tensor& x) {
  return t.scalar_type() == x.scalar_type() ? t : t.to(x.scalar_type());
}

// A contiguous copy of a state tensor (the carried state, updated in place), without the
// two dispatcher calls of clone() when it is contiguous already.
template <typename T>
inline at::Tensor state_copy(const at::Tensor& s) {
  if (!s.is_contiguous()) return s.contiguous().clone();
  at::Tensor out = at::empty(s.sizes(), s.options());
  std::memcpy(out.data_ptr<T>(), s.data_ptr<T>(), sizeof(T) * s.numel());
  return out;
}

// The sequence tensors of an op (mask (T, B), keep_h (T, B, P), keep_c (T, B, H), h_mask
// (B, P)), checked and brought to x's dtype; shared by every forward and backward op.
struct SequenceTensors {
  std::optional<at::Tensor> mask, keep_h, keep_c, h_mask;
  index_t steps, batch;
  bool reverse;

  template <typename T>
  Sequence<T> get() const {
    return Sequence<T>{steps, batch, reverse, data_or_null<T>(mask), data_or_null<T>(keep_h),
                       data_or_null<T>(keep_c), data_or_null<T>(h_mask)};
  }
};

inline SequenceTensors prepare_sequence(const at::Tensor& x, index_t P, index_t H, bool reverse,
                                        const std::optional<at::Tensor>& mask,
                                        const std::optional<at::Tensor>& keep_h,
                                        const std::optional<at::Tensor>& keep_c,
                                        const std::optional<at::Tensor>& h_mask) {
  const index_t T_ = x.size(0), B = x.size(1);
  return SequenceTensors{prepare_optional(mask, x, {T_, B}, "mask"),
                         prepare_optional(keep_h, x, {T_, B, P}, "keep_h"),
                         prepare_optional(keep_c, x, {T_, B, H}, "keep_c"),
                         prepare_optional(h_mask, x, {B, P}, "h_mask"), T_, B, reverse};
}

// The gradient arriving at the outputs (T, B, P): rows are read through strides, so the
// expanded gradient of a sum is not copied; undefined when no gradient reaches them.
inline at::Tensor prepare_output_grad(const std::optional<at::Tensor>& d, const at::Tensor& x) {
  if (!optional_ptr(d)) return at::Tensor();
  at::Tensor g = d->to(x.scalar_type());
  if (g.size(2) > 1 && g.stride(2) != 0 && g.stride(2) != 1) g = g.contiguous();
  return g;
}

// Rows of the output gradient: row(t, b) with inner stride `inner` (1, or 0 for a row of one
// repeated value); null when there is no gradient.
template <typename T>
struct OutputGrad {
  const T* base;
  index_t s0, s1, inner;
  const T* row(index_t t, index_t b) const { return base ? base + t * s0 + b * s1 : nullptr; }
};

template <typename T>
inline OutputGrad<T> output_grad(const at::Tensor& g) {
  if (!g.defined()) return OutputGrad<T>{nullptr, 0, 0, 1};
  return OutputGrad<T>{g.data_ptr<T>(), g.stride(0), g.stride(1),
                       g.size(2) > 1 ? g.stride(2) : 1};
}

// A (B, n) state gradient: the given one (contiguous copy, updated in place) or zeros.
inline at::Tensor state_grad(const std::optional<at::Tensor>& d, const at::Tensor& x,
                             index_t batch, index_t n) {
  if (!optional_ptr(d)) return at::zeros({batch, n}, x.options());
  TORCH_CHECK(d->sizes() == at::IntArrayRef({batch, n}), "rnnkit cpu kernel: state gradient "
              "must have shape (", batch, ", ", n, "), got ", d->sizes());
  return d->to(x.scalar_type()).contiguous().clone();
}

// d = d_s_t + m_t d_y_t is the gradient reaching the carried state of step t (y_t = m_t h_t);
// the candidate gets k d and the previous state (1 - k) d. d_y: a row with inner stride
// `inner` (1 or 0), or null (no gradient at the outputs).
template <typename T>
inline void split_state_grad(const T* __restrict d_state, const T* __restrict d_y,
                             index_t inner, T m, const T* __restrict keep,
                             T* __restrict d_cand, T* __restrict d_keep, index_t n) {
  if (d_y && inner == 1) {
    RNNKIT_SIMD
    for (index_t j = 0; j < n; ++j) {
      const T d = d_state[j] + m * d_y[j];
      d_cand[j] = keep[j] * d;
      d_keep[j] = d - keep[j] * d;
    }
    return;
  }
  const T v = d_y ? m * d_y[0] : T(0);
  RNNKIT_SIMD
  for (index_t j = 0; j < n; ++j) {
    const T d = d_state[j] + v;
    d_cand[j] = keep[j] * d;
    d_keep[j] = d - keep[j] * d;
  }
}

// s_t = s̃_t + (1 - k)(s_{t-1} - s̃_t), written into s (exactly s̃_t when k = 1); y = m s_t.
template <typename T>
inline void carry_row(T* __restrict state, const T* __restrict cand, const T* __restrict keep,
                      T m, T* __restrict out, index_t n) {
  RNNKIT_SIMD
  for (index_t j = 0; j < n; ++j) {
    const T s = cand[j] + (T(1) - keep[j]) * (state[j] - cand[j]);
    state[j] = s;
    out[j] = m * s;
  }
}

// d_s_{t-1} = (d_rec ⊙ mask) + d_keep over n elements (mask may be null: all ones).
template <typename T>
inline void recurrent_grad(T* __restrict d_state, const T* __restrict d_rec,
                           const T* __restrict mask, const T* __restrict d_keep, index_t n) {
  if (mask) {
    RNNKIT_SIMD
    for (index_t e = 0; e < n; ++e) d_state[e] = d_rec[e] * mask[e] + d_keep[e];
  } else {
    RNNKIT_SIMD
    for (index_t e = 0; e < n; ++e) d_state[e] = d_rec[e] + d_keep[e];
  }
}

// h̃ = h ⊙ mask over n elements.
template <typename T>
inline void apply_mask(T* __restrict out, const T* __restrict h, const T* __restrict mask,
                       index_t n) {
  RNNKIT_SIMD
  for (index_t e = 0; e < n; ++e) out[e] = h[e] * mask[e];
}

// Keep coefficients of one row: the (T, B, n) tensor's row (zoneout); without it k = m_t,
// a row of ones inside the sequence and of zeros past its end.
template <typename T>
struct Keep {
  const T* data;  // null: k = m
  const T* mask;  // (T, B) or null (every step inside)
  const T* ones;
  const T* zeros;
  index_t batch, width;
  const T* row(index_t t, index_t b) const {
    if (data) return data + (t * batch + b) * width;
    return (mask && mask[t * batch + b] == T(0)) ? zeros : ones;
  }
};

// A row of ones and a row of zeros of length n (absent options arrive as neutral rows):
// per-thread buffers that only grow, so a decoding step allocates nothing for them. Take
// both once per op call, before any parallel region.
template <typename T>
struct NeutralRows {
  const T* ones;
  const T* zeros;
  explicit NeutralRows(index_t n) {
    thread_local std::vector<T> one_row, zero_row;
    if (static_cast<index_t>(one_row.size()) < n) {
      one_row.assign(static_cast<size_t>(n), T(1));
      zero_row.assign(static_cast<size_t>(n), T(0));
    }
    ones = one_row.data();
    zeros = zero_row.data();
  }
};

// h_{t-1}, the carried state before step t, without saving it: the output at the previous
// position, or h0 at a sequence's first step. Exact at every step inside the sequence (the
// output there is the carried state, y = h); past a sequence's end the value is not used,
// as every gradient of such a step is zero (k = 0).
template <typename T>
struct PrevState {
  const T* out;  // (T, B, P)
  const T* h0;   // (B, P)
  const T* mask; // (T, B) or null
  index_t steps, batch, width;
  bool reverse;
  const T* row(index_t t, index_t b) const {
    const index_t prev = reverse ? t + 1 : t - 1;
    if (prev < 0 || prev >= steps || (mask && mask[prev * batch + b] == T(0))) {
      return h0 + b * width;
    }
    return out + (prev * batch + b) * width;
  }
};

// The reverse recurrence hands its per-step gradients to the big GEMMs in chunks of steps
// (about kChunkRows rows each), so the (T, B, G) gradient of the pre-activations is never
// held whole: a chunk buffer is filled, flushed into dW_ih, dW_hh, d_x and the biases, and
// reused. Processing index k runs T-1 .. 0; a chunk is k in [lo, hi), which covers the
// positions [p0, p1); it is flushed after its last step, k == lo.
constexpr index_t kChunkRows = 256;

struct ChunkPlan {
  index_t steps, size;
  bool reverse;
  ChunkPlan(index_t T, index_t B, bool reverse_, index_t rows = kChunkRows)
      : steps(T), size(std::max<index_t>(1, std::min<index_t>(T, (rows + B - 1) / B))),
        reverse(reverse_) {}
  index_t lo(index_t k) const { return (k / size) * size; }
  index_t hi(index_t k) const { return std::min(steps, lo(k) + size); }
  index_t p0(index_t k) const { return reverse ? steps - hi(k) : lo(k); }
  index_t p1(index_t k) const { return reverse ? steps - lo(k) : hi(k); }
  bool last(index_t k) const { return k == lo(k); }
  // whether the chunk of k is the first one processed (its flush writes, later ones add)
  bool first(index_t k) const { return hi(k) == steps; }
};

// out[j] += column sums of rows (rows x n, row stride ld), each column in a fixed order.
template <typename T>
void add_column_sums(const T* a, index_t rows, index_t n, index_t ld, T* out) {
  for (index_t r = 0; r < rows; ++r) {
    const T* ar = a + r * ld;
    RNNKIT_SIMD
    for (index_t j = 0; j < n; ++j) out[j] += ar[j];
  }
}

// One chunk (positions [p0, p1)) of the input side: dW_ih += d_xp^T x, d_x = d_xp W_ih,
// d_bias += column sums of d_xp (if given). d_xp: the chunk's rows, row stride ldd, G wide.
template <typename T>
void input_grads_chunk(const T* d_xp, index_t ldd, index_t G, index_t p0, index_t p1,
                       index_t B, const T* x, index_t I, const Packed<T>& w_ih_n, T* d_w_ih,
                       T* d_x, T* d_bias, const at::TensorOptions& opts, bool accumulate) {
  const index_t n = (p1 - p0) * B;
  matmul_tn(n, G, I, d_xp, ldd, x + p0 * B * I, I, d_w_ih, I, opts, accumulate);
  matmul(n, d_xp, ldd, 1, w_ih_n, d_x + p0 * B * I, I);
  if (d_bias) add_column_sums(d_xp, n, G, ldd, d_bias);
}

// The W_hh inputs h̃_{t-1} = h_{t-1} ⊙ h_mask of positions [p0, p1) (row (t - p0) B + b),
// packed as B of a weight-gradient product: h0 for a sequence's first step, whatever the
// direction and lengths (PrevState::row).
template <typename T>
Packed<T> pack_prev(const PrevState<T>& prev, const T* h_mask, index_t p0, index_t p1,
                    const at::TensorOptions& opts) {
  constexpr int NR = Packed<T>::NR;
  const index_t B = prev.batch, P = prev.width, k = (p1 - p0) * B;
  Packed<T> out{at::Tensor(), k, P, nullptr, 0, 0};
  out.buffer = at::empty({out.panels(), k, NR}, opts);
  T* dst = out.buffer.template data_ptr<T>();
  for (index_t r = 0; r < k; ++r) {
    const index_t b = r % B;
    const T* src = prev.row(p0 + r / B, b);
    const T* mask = h_mask ? h_mask + b * P : nullptr;
    for (index_t jp = 0; jp < out.panels(); ++jp) {
      T* d = dst + (jp * k + r) * NR;
      const index_t j0 = jp * NR, cols = std::min<index_t>(NR, P - j0);
      if (mask) {
        apply_mask(d, src + j0, mask + j0, cols);
      } else {
        std::memcpy(d, src + j0, sizeof(T) * cols);
      }
      for (index_t jj = cols; jj < NR; ++jj) d[jj] = T(0);
    }
  }
  return out;
}

// C (m x P) [+]= sum over positions t in [p0, p1) of a_t^T h̃_{t-1}, h̃ = h ⊙ h_mask the input
// of W_hh at step t: a chunk of the weight gradient of W_hh. a: the chunk's rows (row stride
// lda, m wide).
template <typename T>
void grad_hh(const T* a, index_t lda, index_t m, index_t p0, index_t p1,
             const PrevState<T>& prev, const T* h_mask, T* c, index_t ldc,
             const at::TensorOptions& opts, bool accumulate) {
  matmul(m, a, 1, lda, pack_prev(prev, h_mask, p0, p1, opts), c, ldc, accumulate);
}

// input_grads_chunk and grad_hh for a chunk whose d_z (G wide) feeds both weights (LSTM
// without layer norm, RNN): dW_ih += d_z^T x and dW_hh += d_z^T h̃_{t-1} share one copy of
// d_z^T into tiles (matmul_shared), and h̃_{t-1} is gathered by rows, h0 included.
template <typename T>
void weight_grads_chunk(const T* d_z, index_t G, index_t p0, index_t p1, const T* x,
                        index_t I, const Packed<T>& w_ih_n, const PrevState<T>& prev,
                        const T* h_mask, T* d_w_ih, T* d_w_hh, T* d_x, T* d_bias,
                        const at::TensorOptions& opts, bool accumulate) {
  const index_t B = prev.batch, n = (p1 - p0) * B;
  if (n <= kInPlaceRows || G < kPackRows || I == 0) {  // small: the separate products
    input_grads_chunk(d_z, G, G, p0, p1, B, x, I, w_ih_n, d_w_ih, d_x, d_bias, opts,
                      accumulate);
    grad_hh(d_z, G, G, p0, p1, prev, h_mask, d_w_hh, prev.width, opts, accumulate);
    return;
  }
  const Packed<T> x_rows = pack(n, I, x + p0 * B * I, I, 1, opts, G);
  const Packed<T> h_rows = pack_prev(prev, h_mask, p0, p1, opts);
  matmul_shared(G, d_z, 1, G, {Product<T>{&x_rows, d_w_ih, I},
                               Product<T>{&h_rows, d_w_hh, prev.width}}, accumulate);
  matmul(n, d_z, G, 1, w_ih_n, d_x + p0 * B * I, I);
  if (d_bias) add_column_sums(d_z, n, G, G, d_bias);
}

}  // namespace rnnkit

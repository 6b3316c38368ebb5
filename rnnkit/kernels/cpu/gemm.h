// Matrix products on raw pointers for the fused kernels: weights packed into column panels
// and register-tiled products, the few-rows products of a decoding step on unpacked
// weights, and the weight-gradient products.
#pragma once

#include "base.h"

namespace rnnkit {
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
// (Measured for x W^T at H = 256: the register-blocked dot products of matmul_unpacked
// beat packing up to about 16 rows, and cost 2x packing plus the tiled product at 64.)
constexpr index_t kPackRows = 16;

template <typename T>
Packed<T> pack(index_t k, index_t n, const T* b, index_t rsb, index_t csb,
               const at::TensorOptions& opts, index_t rows = kPackRows) {
  Packed<T> out{at::Tensor(), k, n, b, rsb, csb};
  if (rows < kPackRows && (rsb == 1 || csb == 1)) return out;
  constexpr int NR = Packed<T>::NR;
  out.buffer = at::empty({out.panels(), k, NR}, opts);
  T* dst = out.buffer.template data_ptr<T>();
  parallel_for(0, out.panels(), std::max<index_t>(1, 65536 / std::max<index_t>(k * NR, 1)),
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

// Rows [0, R) of A times columns [j0, j1) of B (contiguous in p), dot_block by dot_block:
// a single row takes four columns at a time, more rows two (R x 2 accumulators: up to
// kTileRows rows fit the register file with the two columns and a row of A).
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
// of W read once for up to kTileRows rows of A. csb == 1 (rows of B contiguous):
// c_i += a_ip b_p.
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
      for (index_t i = 0; i < m; i += kTileRows) {
        const T* ai = a + i * rsa;
        T* ci = c + i * ldc;
        switch (std::min<index_t>(kTileRows, m - i)) {
          case 1: dot_rows<T, 1>(k, ai, rsa, b.raw, b.csb, ci, ldc, j0, j1, accumulate); break;
          case 2: dot_rows<T, 2>(k, ai, rsa, b.raw, b.csb, ci, ldc, j0, j1, accumulate); break;
          case 3: dot_rows<T, 3>(k, ai, rsa, b.raw, b.csb, ci, ldc, j0, j1, accumulate); break;
          case 4: dot_rows<T, 4>(k, ai, rsa, b.raw, b.csb, ci, ldc, j0, j1, accumulate); break;
          case 5: dot_rows<T, 5>(k, ai, rsa, b.raw, b.csb, ci, ldc, j0, j1, accumulate); break;
          case 6: dot_rows<T, 6>(k, ai, rsa, b.raw, b.csb, ci, ldc, j0, j1, accumulate); break;
          case 7: dot_rows<T, 7>(k, ai, rsa, b.raw, b.csb, ci, ldc, j0, j1, accumulate); break;
          default: dot_rows<T, 8>(k, ai, rsa, b.raw, b.csb, ci, ldc, j0, j1, accumulate);
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
  parallel_for(0, blocks, 1, run_blocks);
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
      parallel_for(0, b.panels(), grain, [&](index_t begin, index_t end) {
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

}  // namespace rnnkit

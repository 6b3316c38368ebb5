// Fused minGRU (rnnkit/cells/mingru.py): z = σ(a_z), h_t = h_{t-1} + z ⊙ (h̃ - h_{t-1}), on
// the element-wise driver of elementwise.h (no recurrent parameters).
#include "elementwise.h"

namespace rnnkit {
namespace {

struct MinGruCell : InputOnlyCell<MinGruCell> {
  static constexpr const char* kName = "mingru";
  static constexpr int kStates = 1, kBlocks = 2;

  template <typename T>
  static void step(const Params<T>&, const T* xp, const T* const* prev, const T*,
                   T* const* cand, index_t H) {
    const T* __restrict h = prev[0];
    T* __restrict out = cand[0];
    RNNKIT_SIMD
    for (index_t j = 0; j < H; ++j) {
      const T z = sigmoid(xp[j]);
      out[j] = h[j] + z * (xp[H + j] - h[j]);
    }
  }

  template <typename T>
  static void step_grad(const Params<T>&, const T* xp, const T* const* prev, const T*,
                        T* const* d_cand, T* d_xp, T* const* d_prev, T*, index_t H) {
    const T* __restrict h = prev[0];
    const T* __restrict d = d_cand[0];
    RNNKIT_SIMD
    for (index_t j = 0; j < H; ++j) {
      const T z = sigmoid(xp[j]);
      // h_t = (1 - z) h + z h̃; σ' = z (1 - z)
      d_xp[j] = d[j] * (xp[H + j] - h[j]) * z * (T(1) - z);
      d_xp[H + j] = d[j] * z;
      d_prev[0][j] = d[j] * (T(1) - z);
    }
  }
};

}  // namespace

RNNKIT_REGISTER_FAMILY(4, mingru, elementwise_forward<MinGruCell>,
                       elementwise_backward<MinGruCell>)

}  // namespace rnnkit

// Fused minGRU (rnnkit/cells/mingru.py): z = σ(a_z), h_t = h_{t-1} + z ⊙ (h̃ - h_{t-1}), on
// the element-wise driver of elementwise.h (no recurrent parameters).
#include "elementwise.h"

namespace rnnkit {
namespace {

struct MinGruCell : InputOnlyCell<MinGruCell> {
  static constexpr const char* kName = "mingru";
  static constexpr int kStates = 1, kBlocks = 2;  // xp = [a_z | h̃]

  template <typename T>
  [[gnu::always_inline]] static void unit(const Params<T>&, const T* xp, index_t j, index_t H,
                                          T h, T, T, T& h_new, T&) {
    const T z = sigmoid(xp[j]);
    h_new = h + z * (xp[H + j] - h);
  }

  template <typename T>
  [[gnu::always_inline]] static void unit_grad(const Params<T>&, const T* xp, index_t j,
                                               index_t H, T h, T, T, T d, T, T* d_xp, T& d_h_prev,
                                               T&, T*) {
    const T z = sigmoid(xp[j]);
    // h_t = (1 - z) h + z h̃; σ' = z (1 - z)
    d_xp[j] = d * (xp[H + j] - h) * z * (T(1) - z);
    d_xp[H + j] = d * z;
    d_h_prev = d * (T(1) - z);
  }
};

}  // namespace

RNNKIT_REGISTER_FAMILY(4, mingru, elementwise_forward<MinGruCell>,
                       elementwise_backward<MinGruCell>)

}  // namespace rnnkit

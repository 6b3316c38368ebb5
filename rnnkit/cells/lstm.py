r"""The LSTM cell (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000).

.. math::
    \begin{aligned}
    z_t &= W_{ih} x_t + b_{ih} + W_{hh} (h_{t-1} ⊙ m) + b_{hh}
        = [z_i, z_f, z_g, z_o]                                  \\
    i_t &= σ(z_i + w_{ci} ⊙ c_{t-1})     \quad \text{input gate}  \\
    f_t &= σ(z_f + w_{cf} ⊙ c_{t-1})     \quad \text{forget gate} \\
    g_t &= \tanh(z_g)                    \quad \text{candidate}   \\
    c_t &= f_t ⊙ c_{t-1} + i_t ⊙ g_t                             \\
    o_t &= σ(z_o + w_{co} ⊙ c_t)         \quad \text{output gate} \\
    h_t &= W_{hr} (o_t ⊙ \tanh(c_t))
    \end{aligned}

σ is the logistic sigmoid, ⊙ the elementwise product, m the recurrent-dropout mask.
Gate layout in W_ih (4H, H_in) and W_hh (4H, P) is torch.nn's: i | f | g | o.

Options (each off by default, giving exactly torch.nn.LSTM):

* ``peephole`` (Gers & Schmidhuber 2000): the diagonal weights w_ci, w_cf, w_co let i and
  f see c_{t-1} and o see c_t. Without it those terms are absent.
* ``proj_size`` P > 0 (Sak et al. 2014, as torch): h_t = W_hr (o_t ⊙ tanh(c_t)), so h has
  size P while c keeps size H. Without it W_hr is the identity.
* ``layer_norm`` (Ba et al. 2016, LN-LSTM): the input and recurrent pre-activations are
  normalised separately over all 4H units, and the cell before its tanh:
  z_t = LN(W_ih x_t; α_ih, β_ih) + LN(W_hh h_{t-1}; α_hh, β_hh) + b_ih + b_hh and
  h_t = o_t ⊙ tanh(LN(c_t; α_c, β_c)). The cell state c_t itself is not normalised.
* ``forget_bias`` is an initialisation (added to b_ih's forget block), not a different
  equation; see :class:`rnnkit.LSTM`.
"""
from __future__ import annotations

import torch

from rnnkit.cells.activations import layer_norm, layer_norm_backward

__all__ = ["fused_saved_shapes", "lstm_step", "lstm_step_backward", "step", "step_backward"]


def _recurrent_preactivation(x_proj, h_in, params, spec):
    """z_t from the projected input and the (masked) previous h; returns (z, ln caches)."""
    hh = h_in @ params["weight_hh"].t()  # (B, 4H)
    if not spec.layer_norm:
        z = x_proj + hh
        if spec.bias:
            z = z + params["bias_hh"]
        return z, None
    ln_x, cache_x = layer_norm(x_proj, params["ln_ih_weight"], params["ln_ih_bias"])
    ln_h, cache_h = layer_norm(hh, params["ln_hh_weight"], params["ln_hh_bias"])
    z = ln_x + ln_h
    if spec.bias:
        z = z + params["bias_ih"] + params["bias_hh"]
    return z, (cache_x, cache_h)


def lstm_step(x_proj, h, c, params, spec, h_mask=None):
    """One step. ``x_proj``: (B, 4H). Returns ``(h_new, c_new, cache)``."""
    h_in = h if h_mask is None else h * h_mask
    z, ln_gate_caches = _recurrent_preactivation(x_proj, h_in, params, spec)
    z_i, z_f, z_g, z_o = z.chunk(4, dim=1)
    if spec.peephole:
        z_i = z_i + params["weight_ci"] * c
        z_f = z_f + params["weight_cf"] * c
    i, f, g = torch.sigmoid(z_i), torch.sigmoid(z_f), torch.tanh(z_g)
    c_new = f * c + i * g
    if spec.peephole:
        z_o = z_o + params["weight_co"] * c_new
    o = torch.sigmoid(z_o)
    ln_c_cache = None
    c_hat = c_new
    if spec.layer_norm:
        c_hat, ln_c_cache = layer_norm(c_new, params["ln_c_weight"], params["ln_c_bias"])
    tanh_c = torch.tanh(c_hat)
    m = o * tanh_c  # (B, H)
    h_new = m @ params["weight_hr"].t() if spec.proj_size > 0 else m
    cache = (h_in, h_mask, c, i, f, g, o, c_new, tanh_c, m, ln_gate_caches, ln_c_cache)
    return h_new, c_new, cache


def lstm_step_backward(d_h, d_c, cache, params, spec):
    """Derivative of one step. ``d_h`` and ``d_c`` arrive at h_t and c_t.

    Returns ``(d_x_proj, d_h_prev, d_c_prev, d_params)``.
    """
    h_in, h_mask, c, i, f, g, o, c_new, tanh_c, m, ln_gate_caches, ln_c_cache = cache
    grads = {}
    if spec.proj_size > 0:
        # h = m W_hr^T
        grads["weight_hr"] = d_h.t() @ m
        d_m = d_h @ params["weight_hr"]
    else:
        d_m = d_h
    # m = o ⊙ tanh(ĉ);  tanh'(ĉ) = 1 - tanh(ĉ)^2
    d_o = d_m * tanh_c
    d_c_hat = d_m * o * (1 - tanh_c * tanh_c)
    if spec.layer_norm:
        d_c_hat, grads["ln_c_weight"], grads["ln_c_bias"] = layer_norm_backward(
            d_c_hat, ln_c_cache, params["ln_c_weight"])
    d_c_new = d_c + d_c_hat
    # σ'(z) = σ(z) (1 - σ(z))
    d_z_o = d_o * o * (1 - o)
    if spec.peephole:
        # z_o also holds w_co ⊙ c_t, so c_t gets a second path
        d_c_new = d_c_new + d_z_o * params["weight_co"]
        grads["weight_co"] = (d_z_o * c_new).sum(0)
    # c_t = f ⊙ c_{t-1} + i ⊙ g
    d_c_prev = d_c_new * f
    d_z_i = d_c_new * g * i * (1 - i)
    d_z_f = d_c_new * c * f * (1 - f)
    d_z_g = d_c_new * i * (1 - g * g)
    if spec.peephole:
        d_c_prev = d_c_prev + d_z_i * params["weight_ci"] + d_z_f * params["weight_cf"]
        grads["weight_ci"] = (d_z_i * c).sum(0)
        grads["weight_cf"] = (d_z_f * c).sum(0)
    d_z = torch.cat([d_z_i, d_z_f, d_z_g, d_z_o], dim=1)  # (B, 4H)
    if spec.layer_norm:
        cache_x, cache_h = ln_gate_caches
        if spec.bias:
            grads["bias_ih"] = d_z.sum(0)
            grads["bias_hh"] = grads["bias_ih"].clone()
        d_x_proj, grads["ln_ih_weight"], grads["ln_ih_bias"] = layer_norm_backward(
            d_z, cache_x, params["ln_ih_weight"])
        d_hh, grads["ln_hh_weight"], grads["ln_hh_bias"] = layer_norm_backward(
            d_z, cache_h, params["ln_hh_weight"])
    else:
        d_x_proj = d_hh = d_z
        if spec.bias:
            grads["bias_hh"] = d_z.sum(0)
    # hh = (h_{t-1} ⊙ m) W_hh^T
    grads["weight_hh"] = d_hh.t() @ h_in
    d_h_prev = d_hh @ params["weight_hh"]
    if h_mask is not None:
        d_h_prev = d_h_prev * h_mask
    return d_x_proj, d_h_prev, d_c_prev, grads


def step(x_proj, state, params, spec, h_mask=None):
    """Family adapter: ``(h_t, (h_t, c_t), cache)``."""
    h, c = state
    h_new, c_new, cache = lstm_step(x_proj, h, c, params, spec, h_mask)
    return h_new, (h_new, c_new), cache


def step_backward(d_h, d_state, cache, params, spec):
    """Family adapter: ``(d_x_proj, (d_h_prev, d_c_prev), d_params)``.

    ``d_h`` is the output gradient, or None when already added into ``d_state[0]``.
    """
    d_h_total = d_state[0] if d_h is None else d_h + d_state[0]
    d_x_proj, d_h_prev, d_c_prev, grads = lstm_step_backward(
        d_h_total, d_state[1], cache, params, spec)
    return d_x_proj, (d_h_prev, d_c_prev), grads


def fused_saved_shapes(options, x, state0, keeps):
    """Shapes of what the fused kernel's forward saves (rnnkit/kernels/cpu/lstm.cpp):
    c_{t-1} and the gates (or x̂_ih), with layer norm 1/σ_ih, x̂_hh, 1/σ_hh, with a
    projection m; ``options`` as rnnkit.kernels.cpu.ops.kernel_options."""
    T, B, H = x.size(0), x.size(1), state0[1].size(1)
    shapes = [(T, B, H), (T, B, 4 * H)]
    if options[3]:  # layer_norm
        shapes += [(T, B), (T, B, 4 * H), (T, B)]
    if options[4] > 0:  # proj_size
        shapes.append((T, B, H))
    return shapes

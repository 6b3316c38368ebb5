r"""The GRU cell (Cho et al. 2014), in both of its published formulations.

.. math::
    \begin{aligned}
    r_t &= σ(W_{ir} x_t + b_{ir} + W_{hr} \tilde h + b_{hr})  \quad \text{reset gate}  \\
    z_t &= σ(W_{iz} x_t + b_{iz} + W_{hz} \tilde h + b_{hz})  \quad \text{update gate} \\
    n_t &= \tanh(W_{in} x_t + b_{in} + r_t ⊙ (W_{hn} \tilde h + b_{hn}))
           \quad \text{reset\_after=True (torch.nn, cuDNN)}                            \\
    n_t &= \tanh(W_{in} x_t + b_{in} + W_{hn} (r_t ⊙ \tilde h) + b_{hn})
           \quad \text{reset\_after=False (Cho et al. 2014)}                           \\
    h_t &= (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}
    \end{aligned}

with h̃ = h_{t-1} ⊙ m (m the recurrent-dropout mask, all ones by default); the update
h_t mixes the undropped h_{t-1}. Gate layout in W_ih (3H, H_in) and W_hh (3H, H) is
torch.nn's: r | z | n.

Implementation note: ``reset_after=True`` is what torch.nn.GRU and cuDNN compute; it lets
the whole W_hh h product be one GEMM per step. ``reset_after=False`` is the paper's
formulation; it needs the reset gate before the n-block GEMM, so two GEMMs per step.
"""
from __future__ import annotations

import torch

__all__ = ["fused_saved_shapes", "gru_step", "gru_step_backward", "step", "step_backward"]


def gru_step(x_proj, h, params, spec, h_mask=None):
    """One step. ``x_proj``: (B, 3H) = W_ih x_t + b_ih. Returns ``(h_new, cache)``."""
    weight_hh, bias_hh = params["weight_hh"], params.get("bias_hh")
    H = spec.hidden_size
    h_in = h if h_mask is None else h * h_mask
    x_r, x_z, x_n = x_proj.chunk(3, dim=1)
    if spec.reset_after:
        hh = h_in @ weight_hh.t()  # (B, 3H)
        if bias_hh is not None:
            hh = hh + bias_hh
        h_r, h_z, h_n = hh.chunk(3, dim=1)
        r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        saved = h_n
    else:
        hh_rz = h_in @ weight_hh[:2 * H].t()  # (B, 2H)
        if bias_hh is not None:
            hh_rz = hh_rz + bias_hh[:2 * H]
        h_r, h_z = hh_rz.chunk(2, dim=1)
        r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
        rh = r * h_in
        hh_n = rh @ weight_hh[2 * H:].t()  # (B, H)
        if bias_hh is not None:
            hh_n = hh_n + bias_hh[2 * H:]
        n = torch.tanh(x_n + hh_n)
        saved = rh
    h_new = (1 - z) * n + z * h
    return h_new, (h, h_in, h_mask, r, z, n, saved)


def gru_step_backward(d_h, cache, params, spec):
    """Derivative of one step. Returns ``(d_x_proj, d_h_prev, d_params)``."""
    h, h_in, h_mask, r, z, n, saved = cache
    weight_hh = params["weight_hh"]
    H = spec.hidden_size
    # h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}
    d_n = d_h * (1 - z)
    d_z = d_h * (h - n)
    d_h_prev = d_h * z
    # tanh'(a) = 1 - tanh(a)^2;  σ'(a) = σ(a)(1 - σ(a))
    d_a_n = d_n * (1 - n * n)
    d_a_z = d_z * z * (1 - z)
    grads = {}
    if spec.reset_after:
        h_n = saved
        # a_n = x_n + r ⊙ h_n  =>  d_r = d_a_n ⊙ h_n, d_h_n = d_a_n ⊙ r
        d_a_r = d_a_n * h_n * r * (1 - r)
        d_hh = torch.cat([d_a_r, d_a_z, d_a_n * r], dim=1)  # (B, 3H)
        grads["weight_hh"] = d_hh.t() @ h_in
        d_h_in = d_hh @ weight_hh
    else:
        rh = saved
        # a_n = x_n + (r ⊙ h̃) W_hn^T
        d_rh = d_a_n @ weight_hh[2 * H:]
        d_a_r = d_rh * h_in * r * (1 - r)
        d_hh = torch.cat([d_a_r, d_a_z, d_a_n], dim=1)
        grads["weight_hh"] = torch.cat([d_hh[:, :2 * H].t() @ h_in, d_a_n.t() @ rh], dim=0)
        d_h_in = d_hh[:, :2 * H] @ weight_hh[:2 * H] + d_rh * r
    if spec.bias:
        grads["bias_hh"] = d_hh.sum(0)
    if h_mask is not None:
        d_h_in = d_h_in * h_mask
    d_x_proj = torch.cat([d_a_r, d_a_z, d_a_n], dim=1)
    return d_x_proj, d_h_prev + d_h_in, grads


def step(x_proj, state, params, spec, h_mask=None):
    """Family adapter: ``(h_t, (h_t,), cache)``."""
    h_new, cache = gru_step(x_proj, state[0], params, spec, h_mask)
    return h_new, (h_new,), cache


def step_backward(d_h, d_state, cache, params, spec):
    """Family adapter: ``(d_x_proj, (d_h_prev,), d_params)``.

    ``d_h`` is the output gradient, or None when already added into ``d_state[0]``.
    """
    d_h_total = d_state[0] if d_h is None else d_h + d_state[0]
    d_x_proj, d_h_prev, grads = gru_step_backward(d_h_total, cache, params, spec)
    return d_x_proj, (d_h_prev,), grads


def fused_saved_shapes(options, x, state0, keeps):
    """Shapes of what the fused kernel's forward saves (rnnkit/kernels/cpu/gru.cpp): the
    gates r|z|n and W_hn h + b_hn (reset_after) or r ⊙ h (reset before)."""
    T, B, H = x.size(0), x.size(1), state0[0].size(1)
    return [(T, B, 3 * H), (T, B, H)]

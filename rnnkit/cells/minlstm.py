r"""The minLSTM cell (Feng et al. 2024, "Were RNNs All We Needed?"): forget and input gates
of the input only, normalised to sum to one, so the recurrence is element-wise.

.. math::
    f_t = σ(W_f x_t + b_f), \quad i_t = σ(W_i x_t + b_i), \quad h̃_t = W_h x_t + b_h

    f'_t = f_t / (f_t + i_t), \quad i'_t = i_t / (f_t + i_t), \quad
    h_t = f'_t ⊙ h_{t-1} + i'_t ⊙ h̃_t

Shapes: x_t (B, H_in), h_t (B, H), W_ih (3H, H_in) rows [W_f | W_i | W_h], b_ih (3H,).

f' is computed in log space, as the paper does, so that it stays defined when both gates
underflow to 0 (f / (f + i) would be 0/0): log σ(a) = -softplus(-a), hence

.. math::
    f'_t = σ(δ_t), \quad i'_t = 1 - f'_t, \quad δ_t = softplus(-a_i) - softplus(-a_f)

Backward (one step), with d_h the gradient arriving at h_t:

.. math::
    d_{f'} = d_h ⊙ (h_{t-1} - h̃_t), \quad d_δ = d_{f'} ⊙ f' (1 - f'), \quad
    d_{a_f} = d_δ ⊙ (1 - f_t), \quad d_{a_i} = -d_δ ⊙ (1 - i_t)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from rnnkit.cells.base import input_only_param_shapes

__all__ = ["scan", "param_shapes", "step", "step_backward", "fused_saved_shapes"]


# weight_ih (3H, H_in) rows [W_f | W_i | W_h], bias_ih (3H,).
param_shapes = input_only_param_shapes


def step(x_proj, state, params, spec, h_mask=None):
    """One step: ``(h_t, (h_t,), cache)``; ``x_proj`` = [a_f | a_i | h̃] (B, 3H)."""
    (h,) = state
    a_f, a_i, h_tilde = x_proj.chunk(3, dim=1)
    f_norm = torch.sigmoid(F.softplus(-a_i) - F.softplus(-a_f))  # f / (f + i), in log space
    h_new = h_tilde + f_norm * (h - h_tilde)  # f' h + (1 - f') h̃
    return h_new, (h_new,), (h, a_f, a_i, f_norm, h_tilde)


def step_backward(d_h, d_state, cache, params, spec):
    """``(d_x_proj, (d_h_prev,), {})``: no recurrent parameters."""
    h, a_f, a_i, f_norm, h_tilde = cache
    d_h_total = d_state[0] if d_h is None else d_h + d_state[0]
    # h_t = f' h + (1 - f') h̃
    d_f_norm = d_h_total * (h - h_tilde)
    # f' = σ(δ): σ' = f' (1 - f')
    d_delta = d_f_norm * f_norm * (1 - f_norm)
    # δ = softplus(-a_i) - softplus(-a_f), softplus'(z) = σ(z): ∂δ/∂a_f = σ(-a_f) = 1 - f,
    # ∂δ/∂a_i = -σ(-a_i) = -(1 - i)
    d_x_proj = torch.cat([d_delta * torch.sigmoid(-a_f), -d_delta * torch.sigmoid(-a_i),
                          d_h_total * (1 - f_norm)], dim=1)
    return d_x_proj, (d_h_total * f_norm,), {}


def fused_saved_shapes(options, x, state0, keeps):
    """What the fused kernel (rnnkit/kernels/cpu/minlstm.cpp, on elementwise.h) saves: the
    input projection (T, B, 3H) and the state before every step, (T, B, H) per state."""
    T, B, H = x.size(0), x.size(1), state0[0].size(1)
    return [(T, B, 3 * H)] + [(T, B, H)] * 1


def scan(x_proj, h0, chunk=32):
    """Every h_t of a sequence at once from ``x_proj`` (T, B, 3H) and ``h0`` (B, H):
    h_t = f'_t h_{t-1} + (1 - f'_t) h̃_t as a chunked parallel scan
    (:func:`rnnkit.cells.mingru.linear_scan` with a_t = f'_t)."""
    from rnnkit.cells.mingru import linear_scan

    a_f, a_i, h_tilde = x_proj.chunk(3, dim=-1)
    f_norm = torch.sigmoid(F.softplus(-a_i) - F.softplus(-a_f))
    return linear_scan(f_norm, (1 - f_norm) * h_tilde, h0, chunk)

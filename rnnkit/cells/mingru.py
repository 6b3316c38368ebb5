r"""The minGRU cell (Feng et al. 2024, "Were RNNs All We Needed?"): a GRU whose gate and
candidate depend on the input only, so every matrix product runs over all steps at once
and the recurrence is element-wise (a parallel scan can run it, see ``scan``).

.. math::
    z_t = σ(W_z x_t + b_z), \qquad h̃_t = W_h x_t + b_h, \qquad
    h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t

Shapes: x_t (B, H_in), h_t (B, H), W_ih (2H, H_in) rows [W_z | W_h], b_ih (2H,).

Backward (one step), with d_h the gradient arriving at h_t:

.. math::
    d_{z} = d_h ⊙ (h̃_t - h_{t-1}), \quad d_{a_z} = d_z ⊙ z_t (1 - z_t), \quad
    d_{h̃_t} = d_h ⊙ z_t, \quad d_{h_{t-1}} = d_h ⊙ (1 - z_t)
"""
from __future__ import annotations

import torch

__all__ = ["param_shapes", "step", "step_backward", "fused_saved_shapes"]


def param_shapes(spec):
    """weight_ih (2H, H_in) rows [W_z | W_h], bias_ih (2H,)."""
    shapes = {"weight_ih": (2 * spec.hidden_size, spec.input_size)}
    if spec.bias:
        shapes["bias_ih"] = (2 * spec.hidden_size,)
    return shapes


def step(x_proj, state, params, spec, h_mask=None):
    """One step: ``(h_t, (h_t,), cache)``; ``x_proj`` = [a_z | h̃] (B, 2H)."""
    (h,) = state
    a_z, h_tilde = x_proj.chunk(2, dim=1)
    z = torch.sigmoid(a_z)
    h_new = h + z * (h_tilde - h)  # (1 - z) h + z h̃
    return h_new, (h_new,), (h, z, h_tilde)


def step_backward(d_h, d_state, cache, params, spec):
    """``(d_x_proj, (d_h_prev,), {})``: no recurrent parameters."""
    h, z, h_tilde = cache
    d_h_total = d_state[0] if d_h is None else d_h + d_state[0]
    # h_t = (1 - z) h + z h̃  =>  d_z = d_h (h̃ - h), d_h̃ = d_h z, d_h_prev = d_h (1 - z)
    d_z = d_h_total * (h_tilde - h)
    # σ'(a) = z (1 - z)
    d_a_z = d_z * z * (1 - z)
    d_x_proj = torch.cat([d_a_z, d_h_total * z], dim=1)
    return d_x_proj, (d_h_total * (1 - z),), {}


def fused_saved_shapes(options, x, state0, keeps):
    """What the fused kernel (rnnkit/kernels/cpu/mingru.cpp, on elementwise.h) saves: the
    input projection (T, B, 2H) and the state before every step, (T, B, H) per state."""
    T, B, H = x.size(0), x.size(1), state0[0].size(1)
    return [(T, B, 2 * H)] + [(T, B, H)] * 1

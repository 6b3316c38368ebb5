r"""The minGRU cell (Feng et al. 2024, "Were RNNs All We Needed?"): a GRU whose gate and
candidate depend on the input only, so every matrix product runs over all steps at once
and the recurrence is element-wise (a parallel scan can run it, see ``scan``).

.. math::
    z_t = σ(W_z x_t + b_z), \qquad h̃_t = W_h x_t + b_h, \qquad
    h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t

Shapes: x_t (B, H_in), h_t (B, H), W_ih (2H, H_in) rows [W_z | W_h], b_ih (2H,).

The recurrence is linear in h with a_t = 1 - z_t ∈ (0, 1): :func:`scan` computes all steps
at once (a chunked parallel scan), and agrees with the step-by-step kernels.

Backward (one step), with d_h the gradient arriving at h_t:

.. math::
    d_{z} = d_h ⊙ (h̃_t - h_{t-1}), \quad d_{a_z} = d_z ⊙ z_t (1 - z_t), \quad
    d_{h̃_t} = d_h ⊙ z_t, \quad d_{h_{t-1}} = d_h ⊙ (1 - z_t)
"""
from __future__ import annotations

import torch

from rnnkit.cells.base import input_only_param_shapes

__all__ = ["scan", "linear_scan", "param_shapes", "step", "step_backward", "fused_saved_shapes"]


# weight_ih (2H, H_in) rows [W_z | W_h], bias_ih (2H,).
param_shapes = input_only_param_shapes


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


def linear_scan(a, b, h0, chunk=32):
    """All h_t of h_t = a_t ⊙ h_{t-1} + b_t at once, a_t in (0, 1]: a chunked parallel scan.

    Inside a chunk of ``chunk`` steps, h_t = P_t ⊙ h_start + Σ_{k≤t} (P_t / P_k) ⊙ b_k with
    P the running product of a; the ratios are exp(S_t - S_k) of S = cumsum(log a), which
    never exceed 1, so nothing overflows however long the sequence. The chunks run in
    order, each from the last state of the one before. Plain torch ops: autograd
    differentiates it, and on a parallel device every step of a chunk runs at once.

    Args:
        a, b: (T, B, H). h0: (B, H). Returns the (T, B, H) states.
    """
    T = a.size(0)
    outputs = []
    h = h0
    for start in range(0, T, chunk):
        a_c, b_c = a[start:start + chunk], b[start:start + chunk]  # (C, B, H)
        log_a = torch.log(a_c.clamp_min(torch.finfo(a.dtype).tiny))
        S = torch.cumsum(log_a, dim=0)  # (C, B, H)
        C = a_c.size(0)
        causal = torch.ones(C, C, dtype=torch.bool, device=a.device).tril()
        diff = (S.unsqueeze(1) - S.unsqueeze(0)).masked_fill(~causal[..., None, None],
                                                             float("-inf"))  # (C, C, B, H)
        weights = torch.exp(diff)  # P_t / P_k for k <= t, else 0
        h_c = torch.exp(S) * h + torch.einsum("tkbh,kbh->tbh", weights, b_c)
        outputs.append(h_c)
        h = h_c[-1]
    return torch.cat(outputs)


def scan(x_proj, h0, chunk=32):
    """Every h_t of a sequence at once from ``x_proj`` (T, B, 2H) and ``h0`` (B, H):
    h_t = (1 - z_t) h_{t-1} + z_t h̃_t as :func:`linear_scan` (a_t = 1 - z_t)."""
    a_z, h_tilde = x_proj.chunk(2, dim=-1)
    z = torch.sigmoid(a_z)
    return linear_scan(1 - z, z * h_tilde, h0, chunk)

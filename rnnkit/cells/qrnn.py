r"""The QRNN cell with fo-pooling (Bradbury et al. 2016, "Quasi-Recurrent Neural
Networks"): the gates depend on the input only, the pooling over time is element-wise.

.. math::
    [a_z | a_f | a_o] = W x_t + b, \quad z_t = \tanh(a_z), \quad f_t = σ(a_f), \quad
    o_t = σ(a_o)

    c_t = f_t ⊙ c_{t-1} + (1 - f_t) ⊙ z_t, \qquad h_t = o_t ⊙ c_t

Parameters: ``weight_ih`` (3H, H_in) rows [W_z | W_f | W_o], ``bias_ih`` (3H,). The
carried state is (h, c): the layer takes and returns c (``h_n`` is the final c), h is the
output. The paper's window k = 2, a convolution of width 2 over time, is the same cell on
the input [x_{t-1}; x_t] (``rnnkit.QRNN(window=2)`` builds it, and carries x_{t-1} across
chunks): ``weight_ih`` is then (3H, 2 H_in), the older input's columns first.

Backward (one step), with d_h at h_t and d_c from step t+1:

.. math::
    d_o = d_h ⊙ c_t, \quad d_c ← d_c + d_h ⊙ o_t, \quad d_f = d_c ⊙ (c_{t-1} - z_t), \quad
    d_z = d_c ⊙ (1 - f_t), \quad d_{c_{t-1}} = d_c ⊙ f_t
"""
from __future__ import annotations

import torch

from rnnkit.cells.base import input_only_param_shapes

__all__ = ["param_shapes", "step", "step_backward", "fused_saved_shapes"]


# weight_ih (3H, H_in), bias_ih (3H,).
param_shapes = input_only_param_shapes


def step(x_proj, state, params, spec, h_mask=None):
    """One step: ``(h_t, (h_t, c_t), cache)``; ``x_proj`` = [a_z | a_f | a_o] (B, 3H)."""
    _, c = state
    a_z, a_f, a_o = x_proj.chunk(3, dim=1)
    z, f, o = torch.tanh(a_z), torch.sigmoid(a_f), torch.sigmoid(a_o)
    c_new = f * c + (1 - f) * z
    h_new = o * c_new
    return h_new, (h_new, c_new), (c, z, f, o, c_new)


def step_backward(d_h, d_state, cache, params, spec):
    """``(d_x_proj, (0, d_c_prev), {})``; h_{t-1} does not enter the step."""
    c, z, f, o, c_new = cache
    d_h_total = d_state[0] if d_h is None else d_h + d_state[0]
    # h = o c_t
    d_o = d_h_total * c_new
    d_c_new = d_state[1] + d_h_total * o
    # c_t = f c + (1 - f) z
    d_f = d_c_new * (c - z)
    d_z = d_c_new * (1 - f)
    # tanh' = 1 - z², σ' = σ (1 - σ)
    d_x_proj = torch.cat([d_z * (1 - z * z), d_f * f * (1 - f), d_o * o * (1 - o)], dim=1)
    return d_x_proj, (torch.zeros_like(d_h_total), d_c_new * f), {}


def fused_saved_shapes(options, x, state0, keeps):
    """What the fused kernel (rnnkit/kernels/cpu/qrnn.cpp, on elementwise.h) saves: the
    input projection (T, B, 3H) and the state before every step, (T, B, H) per state."""
    T, B, H = x.size(0), x.size(1), state0[0].size(1)
    return [(T, B, 3 * H)] + [(T, B, H)] * 2

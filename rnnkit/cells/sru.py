r"""The SRU cell (Lei et al. 2018, "Simple Recurrent Units for Highly Parallelizable
Recurrence"): every matrix product depends on the input only; the recurrence on the cell
state c is element-wise, with diagonal (vector) weights v on c_{t-1}.

.. math::
    x̃_t = W x_t, \quad f_t = σ(W_f x_t + v_f ⊙ c_{t-1} + b_f), \quad
    r_t = σ(W_r x_t + v_r ⊙ c_{t-1} + b_r)

    c_t = f_t ⊙ c_{t-1} + (1 - f_t) ⊙ x̃_t, \qquad h_t = r_t ⊙ c_t + (1 - r_t) ⊙ x'_t

with the highway input x'_t = x_t when H_in = H, else W_s x_t. Parameters:
``weight_ih`` (3H, H_in) rows [W | W_f | W_r], or (4H, H_in) [W | W_f | W_r | W_s] when
H_in ≠ H; ``weight_c`` (2H,) [v_f | v_r]; ``bias`` (2H,) [b_f | b_r]. The carried state is
(h, c): the layer takes and returns c (``h_n`` is the final c), h is the output.

The input projection (``project_input``) is [x̃ | W_f x | W_r x | x'] (T, B, 4H) for all
steps in one GEMM. Backward (one step), with d_h at h_t and d_c from step t+1:

.. math::
    d_r = d_h ⊙ (c_t - x'_t), \quad d_{x'} = d_h ⊙ (1 - r_t), \quad
    d_c ← d_c + d_h ⊙ r_t, \quad d_f = d_c ⊙ (c_{t-1} - x̃_t), \quad d_{x̃} = d_c ⊙ (1 - f_t)

    d_{c_{t-1}} = d_c ⊙ f_t + d_{a_f} ⊙ v_f + d_{a_r} ⊙ v_r, \quad
    d_{a_f} = d_f f_t (1 - f_t), \quad d_{a_r} = d_r r_t (1 - r_t)
"""
from __future__ import annotations

import torch

__all__ = ["param_shapes", "project_input", "project_input_backward", "step",
           "step_backward", "fused_saved_shapes"]


def param_shapes(spec):
    """weight_ih (3H or 4H, H_in), weight_c (2H,) and, with bias, bias (2H,)."""
    H, I = spec.hidden_size, spec.input_size
    shapes = {"weight_ih": ((3 if I == H else 4) * H, I), "weight_c": (2 * H,)}
    if spec.bias:
        shapes["bias"] = (2 * H,)
    return shapes


def project_input(spec, x, params):
    """[x̃ | W_f x | W_r x | x'] (T, B, 4H): one GEMM, plus x itself as the highway input
    when H_in = H."""
    projected = x @ params["weight_ih"].t()
    if spec.input_size == spec.hidden_size:
        projected = torch.cat([projected, x], dim=-1)
    return projected


def project_input_backward(spec, d_x_proj, x, params):
    """Derivative of :func:`project_input`: ``(d_x, {'weight_ih': ...})``."""
    weight = params["weight_ih"]
    rows = weight.size(0)
    d_flat = d_x_proj.reshape(-1, d_x_proj.size(-1))
    d_gemm = d_flat[:, :rows]
    d_x = (d_gemm @ weight).view_as(x)
    if spec.input_size == spec.hidden_size:
        d_x = d_x + d_x_proj[..., rows:]  # the highway input is x itself
    return d_x, {"weight_ih": d_gemm.t() @ x.reshape(-1, x.size(-1))}


def step(x_proj, state, params, spec, h_mask=None):
    """One step: ``(h_t, (h_t, c_t), cache)``; ``x_proj`` = [x̃ | a_f | a_r | x'] (B, 4H)."""
    _, c = state
    x_tilde, a_f, a_r, x_high = x_proj.chunk(4, dim=1)
    v_f, v_r = params["weight_c"].chunk(2)
    if spec.bias:
        b_f, b_r = params["bias"].chunk(2)
        a_f, a_r = a_f + b_f, a_r + b_r
    f = torch.sigmoid(a_f + v_f * c)
    r = torch.sigmoid(a_r + v_r * c)
    c_new = f * c + (1 - f) * x_tilde
    h_new = r * c_new + (1 - r) * x_high
    return h_new, (h_new, c_new), (c, f, r, c_new, x_tilde, x_high)


def step_backward(d_h, d_state, cache, params, spec):
    """``(d_x_proj, (0, d_c_prev), d_params)``; h_{t-1} does not enter the step."""
    c, f, r, c_new, x_tilde, x_high = cache
    d_h_total = d_state[0] if d_h is None else d_h + d_state[0]
    v_f, v_r = params["weight_c"].chunk(2)
    # h = r c_t + (1 - r) x'
    d_r = d_h_total * (c_new - x_high)
    d_x_high = d_h_total * (1 - r)
    d_c_new = d_state[1] + d_h_total * r
    # c_t = f c + (1 - f) x̃
    d_f = d_c_new * (c - x_tilde)
    d_x_tilde = d_c_new * (1 - f)
    # σ'(a) = σ(a) (1 - σ(a)); a_f and a_r both see v ⊙ c_{t-1}
    d_a_f = d_f * f * (1 - f)
    d_a_r = d_r * r * (1 - r)
    d_c = d_c_new * f + d_a_f * v_f + d_a_r * v_r
    grads = {"weight_c": torch.cat([(d_a_f * c).sum(0), (d_a_r * c).sum(0)])}
    if spec.bias:
        grads["bias"] = torch.cat([d_a_f.sum(0), d_a_r.sum(0)])
    d_x_proj = torch.cat([d_x_tilde, d_a_f, d_a_r, d_x_high], dim=1)
    return d_x_proj, (torch.zeros_like(d_h_total), d_c), grads


def fused_saved_shapes(options, x, state0, keeps):
    """What the fused kernel (rnnkit/kernels/cpu/sru.cpp, on elementwise.h) saves: the
    input projection (T, B, 4H) and the state before every step, (T, B, H) per state."""
    T, B, H = x.size(0), x.size(1), state0[0].size(1)
    return [(T, B, 4 * H)] + [(T, B, H)] * 2

r"""The IndRNN cell (Li et al. 2018, "Independently Recurrent Neural Network"): each unit
sees only its own previous value, through one recurrent weight.

.. math::
    a_t = W_{ih} x_t + b_{ih} + w_{hh} ⊙ (h_{t-1} ⊙ m) + b_{hh}, \qquad h_t = φ(a_t)

φ = relu (the paper's default) or tanh; m is the recurrent-dropout mask (all ones unless
``recurrent_dropout``). Shapes: x_t (B, H_in), h_t (B, H), W_ih (H, H_in), w_hh, b_ih,
b_hh (H,). With relu and |w_hh| bounded (``recurrent_max``), gradients through time
neither vanish nor explode: d h_{t-1} = d a_t ⊙ w_hh, a product of scalars per unit.

Backward (one step), with d_h the gradient arriving at h_t:

.. math::
    d_a = d_h ⊙ φ'(a_t), \quad d_{w_hh} = Σ_b d_a ⊙ h_{t-1} ⊙ m, \quad
    d_{h_{t-1}} = d_a ⊙ w_{hh} ⊙ m
"""
from __future__ import annotations


__all__ = ["param_shapes", "step", "step_backward", "fused_saved_shapes"]


def param_shapes(spec):
    """weight_ih (H, H_in), weight_hh (H,) a vector, bias_ih and bias_hh (H,)."""
    H = spec.hidden_size
    shapes = {"weight_ih": (H, spec.input_size), "weight_hh": (H,)}
    if spec.bias:
        shapes.update(bias_ih=(H,), bias_hh=(H,))
    return shapes


def step(x_proj, state, params, spec, h_mask=None):
    """One step: ``(h_t, (h_t,), cache)``; ``x_proj`` = W_ih x_t + b_ih, (B, H)."""
    (h,) = state
    h_in = h if h_mask is None else h * h_mask
    a = x_proj + params["weight_hh"] * h_in  # (B, H): elementwise, unit by unit
    if spec.bias:
        a = a + params["bias_hh"]
    h_new = spec.activation.fn(a)
    return h_new, (h_new,), (h_in, a, h_new, h_mask)


def step_backward(d_h, d_state, cache, params, spec):
    """``(d_x_proj, (d_h_prev,), d_params)``; d_h and d_state[0] both arrive at h_t."""
    h_in, a, h_new, h_mask = cache
    d_h_total = d_state[0] if d_h is None else d_h + d_state[0]
    # h = φ(a)  =>  d_a = d_h ⊙ φ'(a)
    d_a = d_h_total * spec.activation.derivative(a, h_new)
    # a = ... + w ⊙ h_in  =>  d_w = Σ_b d_a ⊙ h_in, d_h_in = d_a ⊙ w
    grads = {"weight_hh": (d_a * h_in).sum(0)}
    if spec.bias:
        grads["bias_hh"] = d_a.sum(0)
    d_h_in = d_a * params["weight_hh"]
    return d_a, (d_h_in if h_mask is None else d_h_in * h_mask,), grads


def fused_saved_shapes(options, x, state0, keeps):
    """What the fused kernel (rnnkit/kernels/cpu/indrnn.cpp, on elementwise.h) saves: the
    input projection (T, B, 1H) and the state before every step, (T, B, H) per state."""
    T, B, H = x.size(0), x.size(1), state0[0].size(1)
    return [(T, B, 1 * H)] + [(T, B, H)] * 1

r"""The vanilla (Elman) RNN cell, forward step and hand-derived backward step.

.. math::
    a_t = W_{ih} x_t + b_{ih} + W_{hh} (h_{t-1} ⊙ m) + b_{hh}

    h_t = φ(a_t)

where φ is tanh (default), relu, sigmoid or a user-given ``(function, derivative)``
pair, and m is the recurrent-dropout mask (all ones unless ``recurrent_dropout``).
Shapes: x_t (B, H_in), h_t (B, H), W_ih (H, H_in), W_hh (H, H).

Backward (one step), with d_h the gradient arriving at h_t:

.. math::
    d_a = d_h ⊙ φ'(a_t), \quad d_{W_hh} = d_a^T (h_{t-1} ⊙ m), \quad
    d_{h_{t-1}} = (d_a W_{hh}) ⊙ m
"""
from __future__ import annotations

__all__ = ["fused_saved_shapes", "rnn_step", "rnn_step_backward", "step", "step_backward"]


def rnn_step(x_proj, h, weight_hh, bias_hh, activation, h_mask=None):
    """One step. ``x_proj`` = W_ih x_t + b_ih, (B, H). Returns ``(h_new, cache)``."""
    h_in = h if h_mask is None else h * h_mask
    a = x_proj + h_in @ weight_hh.t()  # (B, H)
    if bias_hh is not None:
        a = a + bias_hh
    h_new = activation.fn(a)
    return h_new, (h_in, a, h_new, h_mask)


def rnn_step_backward(d_h, cache, weight_hh, activation):
    """Returns ``(d_x_proj, d_h_prev, d_weight_hh, d_bias_hh)``."""
    h_in, a, h_new, h_mask = cache
    # h = φ(a)  =>  d_a = d_h ⊙ φ'(a)
    d_a = d_h * activation.derivative(a, h_new)
    d_weight_hh = d_a.t() @ h_in
    d_h_in = d_a @ weight_hh
    d_h_prev = d_h_in if h_mask is None else d_h_in * h_mask
    return d_a, d_h_prev, d_weight_hh, d_a.sum(0)


def step(x_proj, state, params, spec, h_mask=None):
    """Family adapter: ``(h_t, (h_t,), cache)``."""
    (h,) = state
    h_new, cache = rnn_step(x_proj, h, params["weight_hh"], params.get("bias_hh"),
                            spec.activation, h_mask)
    return h_new, (h_new,), cache


def step_backward(d_h, d_state, cache, params, spec):
    """Family adapter: ``(d_x_proj, (d_h_prev,), d_params)``.

    ``d_h`` (from the output, or None when the caller already added it into
    ``d_state``) and ``d_state[0]`` (from the next step) both arrive at h_t.
    """
    d_h_total = d_state[0] if d_h is None else d_h + d_state[0]
    d_x_proj, d_h_prev, d_weight_hh, d_bias = rnn_step_backward(
        d_h_total, cache, params["weight_hh"], spec.activation)
    grads = {"weight_hh": d_weight_hh}
    if spec.bias:
        grads["bias_hh"] = d_bias
    return d_x_proj, (d_h_prev,), grads


def fused_saved_shapes(options, x, state0, keeps):
    """Shapes of what the fused kernel's forward saves (rnnkit/kernels/cpu/rnn.cpp): the
    candidate h̃ with zoneout, else nothing (it is the output)."""
    T, B, H = x.size(0), x.size(1), state0[0].size(1)
    return [(T, B, H)] if keeps and keeps[0] is not None else []

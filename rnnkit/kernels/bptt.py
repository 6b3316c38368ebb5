"""Backpropagation through time, by hand: an autograd.Function over a whole sequence.

Forward runs the cell's ``step`` for every time step and keeps each step's cache.
Backward walks the steps in reverse, calling the cell's hand-derived ``step_backward``:

    d_s_t      = d_s_t (from step t+1) + m_t ⊙ d_y_t      gradient arriving at state t
    d_s̃_t      = k_t ⊙ d_s_t                              into the cell's candidate
    d_s_{t-1}  = (1 - k_t) ⊙ d_s_t + ∂s̃_t/∂s_{t-1} · d_s̃_t

(k_t and m_t as in ``rnnkit.kernels.common``). The gradient of the final state flows into
the last step and the gradient left at the end of the walk is the initial state's.
The input projection of all steps is differentiated once, as big GEMMs.
"""
from __future__ import annotations

import torch

from rnnkit.kernels import recompute
from rnnkit.kernels.common import carry, keep_at, keep_coefficients, length_mask, time_order

__all__ = ["run", "BPTTFunction"]


class BPTTFunction(torch.autograd.Function):
    """Inputs: spec, reverse, lengths, h_mask, zoneout, x, *state0, *params (spec order)."""

    @staticmethod
    def forward(ctx, spec, reverse, lengths, h_mask, zoneout, x, *tensors):
        state_count = len(spec.state_sizes)
        state0 = tensors[:state_count]
        params = dict(zip(spec.param_names(), tensors[state_count:]))
        seq_len = x.size(0)
        x_proj = spec.project_input(x, params)  # (T, B, G)
        mask = length_mask(lengths, seq_len, x)
        keeps = keep_coefficients(mask, zoneout, state_count)
        state = tuple(state0)
        outputs = x.new_empty(seq_len, x.size(1), spec.output_size)
        caches = [None] * seq_len
        for t in time_order(seq_len, reverse):
            _, candidate, caches[t] = spec.step(x_proj[t], state, params, h_mask)
            state = carry(candidate, state, keep_at(keeps, t))
            outputs[t] = state[0] if mask is None else state[0] * mask[t]
        ctx.spec, ctx.reverse, ctx.caches = spec, reverse, caches
        ctx.mask, ctx.keeps = mask, keeps
        ctx.sequence = (reverse, lengths, h_mask, zoneout)
        ctx.save_for_backward(x, *tensors)
        # the caches hold the last step's state: returning those very tensors would make a
        # cycle (output -> grad_fn -> ctx -> caches -> output) that leaks every graph
        return (outputs, *(s.clone() for s in state))

    @staticmethod
    def backward(ctx, d_outputs, *d_final):
        spec, caches, mask, keeps = ctx.spec, ctx.caches, ctx.mask, ctx.keeps
        if recompute.graph_needed((d_outputs, *d_final)):  # create_graph=True or vmap: a differentiable backward
            d_inputs = recompute.recompute_backward(spec, ctx.sequence, ctx.saved_tensors,
                                                    (d_outputs, *d_final),
                                                    ctx.needs_input_grad[5:])
            return (None, None, None, None, None, *d_inputs)
        x, *tensors = ctx.saved_tensors
        param_tensors = tensors[len(spec.state_sizes):]
        params = dict(zip(spec.param_names(), param_tensors))
        seq_len, batch = x.size(0), x.size(1)
        d_state = [torch.zeros(batch, size, dtype=x.dtype, device=x.device)
                   if d is None else d for d, size in zip(d_final, spec.state_sizes)]
        if d_outputs is None:
            d_outputs = x.new_zeros(seq_len, batch, spec.output_size)
        d_x_proj = x.new_empty(seq_len, batch, spec.gates * spec.hidden_size)
        grads = {}
        for t in reversed(time_order(seq_len, ctx.reverse)):
            # y_t = m_t ⊙ h_t, and h_t is state[0]
            d_state[0] = d_state[0] + (d_outputs[t] if mask is None else d_outputs[t] * mask[t])
            keep_t = keep_at(keeps, t)
            d_candidate = d_state if keep_t is None else [k * d for k, d in zip(keep_t, d_state)]
            d_x_proj[t], d_prev, step_grads = spec.step_backward(
                None, d_candidate, caches[t], params)
            if keep_t is None:
                d_state = list(d_prev)
            else:
                d_state = [dp + (1 - k) * d for dp, k, d in zip(d_prev, keep_t, d_state)]
            _accumulate(grads, step_grads)
        d_x, projection_grads = spec.project_input_backward(d_x_proj, x, params)
        _accumulate(grads, projection_grads)
        d_params = [grads.get(name) for name in spec.param_names()]
        return (None, None, None, None, None, d_x, *d_state, *d_params)


def _accumulate(total: dict, new: dict):
    for name, grad in new.items():
        total[name] = grad if name not in total else total[name] + grad


def run(spec, x, state0, params, *, reverse=False, lengths=None, h_mask=None,
        zoneout=None):
    """Run ``spec``'s cell over ``x`` (T, B, H_in); returns ``(outputs, final_state)``."""
    tensors = [*state0, *(params[name] for name in spec.param_names())]
    outputs, *state = BPTTFunction.apply(spec, reverse, lengths, h_mask, zoneout, x, *tensors)
    return outputs, tuple(state)

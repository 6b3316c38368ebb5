"""The reference kernel: a plain loop over ``cell.step`` differentiated by autograd.

Slow, obviously right, and the oracle every other kernel is tested against.
"""
from __future__ import annotations

import torch

from rnnkit.kernels.common import carry, keep_at, keep_coefficients, length_mask, time_order

__all__ = ["run"]


def run(spec, x, state0, params, *, reverse=False, lengths=None, h_mask=None,
        zoneout=None):
    """Run ``spec``'s cell over ``x`` (T, B, H_in); returns ``(outputs, final_state)``."""
    seq_len = x.size(0)
    x_proj = spec.project_input(x, params)  # (T, B, G)
    mask = length_mask(lengths, seq_len, x)
    keeps = keep_coefficients(mask, zoneout, len(state0))
    state = tuple(state0)
    outputs = [None] * seq_len
    for t in time_order(seq_len, reverse):
        _, candidate, _ = spec.step(x_proj[t], state, params, h_mask)
        state = carry(candidate, state, keep_at(keeps, t))
        outputs[t] = state[0] if mask is None else state[0] * mask[t]
    return torch.stack(outputs), state


"""Sequence-level pieces every kernel shares: time order, length masks and zoneout.

Each step computes a candidate state s̃_t from the cell; the state that is carried on is

    s_t = k_t ⊙ s̃_t + (1 - k_t) ⊙ s_{t-1},   k_t = m_t ⊙ (1 - z_t)

where m_t is 1 while step t lies inside the sequence (packed / variable lengths) and z_t
is the zoneout mask (Krueger et al. 2016; 0/1 in training, the rate p in evaluation).
Past its end a sequence's state is held, so the final state is the state at its own
last step, and in the reverse direction each sequence starts at its own last step.
The output is y_t = m_t ⊙ h_t, zero at padded positions.
"""
from __future__ import annotations

import torch

__all__ = ["time_order", "length_mask", "keep_coefficients", "keep_at", "carry",
           "check_sequence_length", "reference_only"]


def time_order(seq_len: int, reverse: bool):
    """The order in which steps are taken."""
    return range(seq_len - 1, -1, -1) if reverse else range(seq_len)


def length_mask(lengths, seq_len: int, like: torch.Tensor):
    """(T, B, 1) mask, 1 where t < lengths[b]; None when every sequence is full length."""
    if lengths is None:
        return None
    steps = torch.arange(seq_len, device=lengths.device).unsqueeze(1)  # (T, 1)
    mask = (steps < lengths.unsqueeze(0)).to(device=like.device, dtype=like.dtype)
    return mask.unsqueeze(-1)  # (T, B, 1)


def keep_coefficients(mask, zoneout, state_count: int):
    """k_t per state tensor (a tuple, each broadcastable to (T, B, S)), or None (k = 1)."""
    if mask is None and zoneout is None:
        return None
    keeps = []
    for i in range(state_count):
        k = mask if mask is not None else 1.0
        if zoneout is not None:
            k = k * (1 - zoneout[i])
        keeps.append(k)
    return tuple(keeps)


def carry(candidate, previous, keep):
    """s_t = k ⊙ s̃_t + (1 - k) ⊙ s_{t-1} for each state tensor (keep None means k = 1)."""
    if keep is None:
        return tuple(candidate)
    return tuple(p + k * (c - p) for c, p, k in zip(candidate, previous, keep))


def keep_at(keeps, t):
    """k_t for step t: each coefficient is a full (T, B, S) tensor or constant in time."""
    if keeps is None:
        return None
    return tuple(k[t] if torch.is_tensor(k) and k.dim() == 3 else k for k in keeps)


def check_sequence_length(x):
    """A sequence of length 0 has no final state: RuntimeError, as torch.nn's layers."""
    if x.size(0) == 0:
        raise RuntimeError(f"rnnkit: expected sequence length to be larger than 0, got input "
                           f"of shape {tuple(x.shape)} (T, B, H_in)")


def reference_only(spec, x) -> bool:
    """Whether only the reference kernel may run this call: an empty batch or input width
    or a cell of hidden size 0 (torch.nn returns empty results; the fused loops would
    split zero work), or a functorch transform (vmap, grad) is active (the reference is
    plain torch ops, which the transforms compose with)."""
    return (x.numel() == 0 or spec.hidden_size == 0
            or torch._C._are_functorch_transforms_active())

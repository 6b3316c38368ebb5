"""Padding and packing variable-length batches, with errors that name the argument."""
from __future__ import annotations

import torch
from torch.nn.utils import rnn as torch_rnn

__all__ = ["pack_padded_sequence", "pad_packed_sequence", "pad_sequence",
           "pack_sequence", "PackedSequence"]

PackedSequence = torch_rnn.PackedSequence
pad_packed_sequence = torch_rnn.pad_packed_sequence
pad_sequence = torch_rnn.pad_sequence


def _as_lengths(lengths, max_len, batch):
    lengths = torch.as_tensor(lengths, dtype=torch.int64, device="cpu")
    if lengths.dim() != 1 or lengths.numel() != batch:
        raise ValueError(f"pack_padded_sequence: lengths must be 1-D with one entry per "
                         f"sequence ({batch}), got shape {tuple(lengths.shape)}")
    if lengths.numel() and (lengths.min() < 1 or lengths.max() > max_len):
        raise ValueError(f"pack_padded_sequence: lengths must lie in [1, {max_len}], "
                         f"got {lengths.tolist()}")
    return lengths


def pack_padded_sequence(input, lengths, batch_first=False, enforce_sorted=True):
    """torch's ``pack_padded_sequence`` with ValueErrors that name ``lengths``.

    Args:
        input: (L, N, *) padded batch, or (N, L, *) with ``batch_first``.
        lengths: N sequence lengths, each in [1, L].
        batch_first: default False.
        enforce_sorted: default True: lengths must be in decreasing order (as torch);
            pass False to let the packing sort them.
    """
    time_dim, batch_dim = (1, 0) if batch_first else (0, 1)
    lengths = _as_lengths(lengths, input.size(time_dim), input.size(batch_dim))
    if enforce_sorted and bool((lengths[1:] > lengths[:-1]).any()):
        raise ValueError(f"pack_padded_sequence: lengths must be sorted in decreasing order "
                         f"when enforce_sorted=True, got {lengths.tolist()} "
                         f"(pass enforce_sorted=False to sort them)")
    return torch_rnn.pack_padded_sequence(input, lengths, batch_first=batch_first,
                                          enforce_sorted=enforce_sorted)


def pack_sequence(sequences, enforce_sorted=True):
    """Pack a list of (L_i, *) tensors (see :func:`pack_padded_sequence`)."""
    lengths = [len(s) for s in sequences]
    return pack_padded_sequence(pad_sequence(sequences), lengths,
                                enforce_sorted=enforce_sorted)

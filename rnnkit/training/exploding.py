"""A small training run in the exploding-gradient regime, with and without clipping.

A tanh RNN whose W_hh is scaled up at initialisation (spectral radius well above one)
learns the adding problem (:mod:`rnnkit.data.memory`) with plain SGD. Without clipping a
gradient spike sends the weights far away (the loss jumps, or becomes inf/nan and the
run stops); clipping the global gradient norm to ``clip`` (Pascanu et al. 2013) bounds
every update, so the loss stays finite. ``rnnkit plot clipping`` draws the two curves.
"""

from __future__ import annotations

import math

import torch

from rnnkit.clip import clip_grad_norm
from rnnkit.data.memory import memory_batch
from rnnkit.models.memory import MemoryModel

__all__ = ["exploding_run"]


def _scaled_model(hidden_size, init_scale, seed):
    torch.manual_seed(seed)
    model = MemoryModel("adding", hidden_size=hidden_size, cell="rnn")
    with torch.no_grad():
        model.rnn.weight_hh_l0.mul_(init_scale)
    return model


def exploding_run(clip, *, steps=150, length=50, hidden_size=32, init_scale=4.0, lr=0.05,
                  batch_size=16, seed=0):
    """Train the scaled tanh RNN for ``steps`` SGD steps; ``clip`` > 0 clips the global
    gradient norm to it, 0 does not. Every run with the same seed starts from the same
    weights and sees the same batches.

    Returns ``{"clip", "loss": [per step], "grad_norm": [before clipping, per step],
    "finite": bool}``; a non-finite loss or gradient ends the run early (its value is
    recorded as ``None``, so the list stays valid JSON)."""
    if clip < 0 or not math.isfinite(clip):
        raise ValueError(f"exploding_run: clip must be >= 0 and finite, got {clip}")
    model = _scaled_model(hidden_size, init_scale, seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    losses, norms = [], []
    for step in range(steps):
        batch = memory_batch("adding", length, batch_size, seed, "train", step)
        loss = model.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        norm = torch.linalg.vector_norm(torch.stack(
            [p.grad.norm() for p in model.parameters() if p.grad is not None]))
        value, norm = loss.item(), norm.item()
        losses.append(_json_number(value))
        norms.append(_json_number(norm))
        if not (math.isfinite(value) and math.isfinite(norm)):
            break
        if clip > 0:
            clip_grad_norm(model.parameters(), clip)
        optimizer.step()
    finite = all(v is not None and math.isfinite(v) for v in losses + norms)
    return {"clip": clip, "loss": losses, "grad_norm": norms, "finite": finite}


def _json_number(value):
    return value if math.isfinite(value) else None

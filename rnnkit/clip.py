"""Gradient clipping by global norm (Pascanu et al. 2013), the guard against exploding
gradients in backpropagation through time."""
from __future__ import annotations

import math
import warnings

import torch

__all__ = ["clip_grad_norm"]


def clip_grad_norm(parameters, threshold: float, norm_type: float = 2.0) -> torch.Tensor:
    """Rescale gradients so that their global norm is at most ``threshold``.

    .. math::
        g \\leftarrow g \\cdot \\frac{threshold}{\\lVert g \\rVert}
        \\quad \\text{if } \\lVert g \\rVert > threshold

    where ‖g‖ is the norm of all gradients concatenated. A non-finite norm (inf or nan)
    is reported with a ``RuntimeWarning`` and the gradients are left untouched, so the
    caller can decide to skip the step instead of applying a nan-scaled update.

    Args:
        parameters: an iterable of tensors (or a single tensor) whose ``.grad`` to clip.
        threshold: the largest allowed norm, > 0.
        norm_type: the p of the p-norm (default 2.0; ``math.inf`` for the max-norm).

    Returns:
        The global norm before clipping (a 0-dim tensor).

    Example::

        >>> norm = rnnkit.clip_grad_norm(model.parameters(), 5.0)
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise TypeError(f"clip_grad_norm: threshold must be a number, got {threshold!r}")
    if not threshold > 0:
        raise ValueError(f"clip_grad_norm: threshold must be > 0, got {threshold}")
    if torch.is_tensor(parameters):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    if norm_type == math.inf:
        total = torch.stack([g.detach().abs().max() for g in grads]).max()
    else:
        total = torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(g.detach(), norm_type) for g in grads]),
            norm_type)
    if not torch.isfinite(total):
        warnings.warn(f"clip_grad_norm: gradient norm is {total.item()}; gradients were "
                      f"left unclipped", RuntimeWarning, stacklevel=2)
        return total
    scale = threshold / (total + 1e-6)
    if scale < 1:
        for g in grads:
            g.detach().mul_(scale.to(g.dtype))
    return total

"""The backward that must build a graph: differentiate the reference kernel again.

The fused and ``bptt`` backward passes are first-order: they compute the gradients with
hand-derived formulas outside autograd. Two callers need more than numbers:

* ``torch.autograd.grad(..., create_graph=True)`` (gradient penalties, meta-learning,
  Hessian-vector products, ``gradgradcheck``) differentiates the gradient itself;
* ``torch.func.vmap`` over a backward (gradcheck's batched-gradient check, per-sample
  gradients) runs it on batched tensors that the C++ kernel cannot read.

For them the kernels' ``backward`` re-runs the sequence with :mod:`rnnkit.kernels.reference`
(autograd over ``cell.step``) from the saved inputs and differentiates that: one extra
forward, only when a graph of the gradient is asked for, and ordinary training keeps the
fused first-order backward.
"""
from __future__ import annotations

import torch

from rnnkit.kernels import reference

__all__ = ["graph_needed", "recompute_backward"]


def graph_needed(grads) -> bool:
    """Inside a backward: whether its result must be differentiable or vmappable
    (``create_graph=True`` leaves grad mode on; a functorch transform is active; the
    gradients are batched by the legacy vmap that gradcheck's batched check uses, or are
    some other tensor subclass the C++ kernel cannot read)."""
    if torch.is_grad_enabled() or torch._C._are_functorch_transforms_active():
        return True
    return any(g is not None and (type(g) is not torch.Tensor
                                  or torch._C._functorch.is_legacy_batchedtensor(g))
               for g in grads)


def recompute_backward(spec, sequence, inputs, grads, needs):
    """Gradients of one sequence run through the reference kernel's autograd graph.

    Args:
        spec: the cell's :class:`~rnnkit.cells.CellSpec`.
        sequence: ``(reverse, lengths, h_mask, zoneout)`` of the forward call.
        inputs: ``(x, *state0, *params)`` as saved by the forward (params in
            ``spec.param_names()`` order).
        grads: gradients of ``(outputs, *final_state)``, None for those not used.
        needs: per input, whether its gradient is wanted (``ctx.needs_input_grad``).

    Returns:
        A tuple like ``inputs``: the gradient of each, or None.
    """
    state_count = len(spec.state_sizes)
    x, state0 = inputs[0], tuple(inputs[1:1 + state_count])
    params = dict(zip(spec.param_names(), inputs[1 + state_count:]))
    reverse, lengths, h_mask, zoneout = sequence
    wanted = [t for t, need in zip(inputs, needs) if need]
    if not wanted:
        return (None,) * len(inputs)
    with torch.enable_grad():
        outputs, final = reference.run(spec, x, state0, params, reverse=reverse,
                                       lengths=lengths, h_mask=h_mask, zoneout=zoneout)
    pairs = [(o, g) for o, g in zip((outputs, *final), grads) if g is not None]
    if not pairs:
        return (None,) * len(inputs)
    result = iter(torch.autograd.grad([o for o, _ in pairs], wanted, [g for _, g in pairs],
                                      create_graph=torch.is_grad_enabled(), allow_unused=True))
    return tuple(next(result) if need else None for need in needs)

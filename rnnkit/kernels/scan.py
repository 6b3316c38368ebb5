"""The parallel-scan kernel of the families whose recurrence is linear in h (minGRU,
minLSTM): every step of a sequence at once (``family.scan``, a chunked scan in plain torch
ops, differentiated by autograd), then the same outputs and final state as the step
kernels.

On a CPU the fused kernel's sequential pass is faster (the scan does O(T·C) work for
chunk C to shorten the dependency chain, which pays only on a device with many parallel
units), so dispatch takes this kernel by default only for tensors off the CPU and
sequences of at least ``MIN_LENGTH`` steps; ``RNNKIT_KERNEL=scan`` (or ``kernel='scan'``)
forces it. Variable lengths, zoneout and recurrent dropout are not scans: they raise.
"""
from __future__ import annotations

from rnnkit.cells import FAMILIES

__all__ = ["run", "supports", "MIN_LENGTH"]

MIN_LENGTH = 64


def supports(spec) -> bool:
    """Whether ``spec``'s family has a scan."""
    family = FAMILIES.get(spec.family)
    return family is not None and family.scan is not None


def run(spec, x, state0, params, *, reverse=False, lengths=None, h_mask=None, zoneout=None):
    """Run ``spec``'s cell over ``x`` (T, B, H_in) as one scan; ``(outputs, final_state)``."""
    if not supports(spec):
        raise ValueError(f"kernel 'scan' runs minGRU and minLSTM only (a linear recurrence), "
                         f"got family {spec.family!r}")
    for name, value in (("lengths", lengths), ("zoneout", zoneout), ("h_mask", h_mask)):
        if value is not None:
            raise ValueError(f"kernel 'scan' runs whole sequences without {name}; got {name} "
                             f"(use the default kernel)")
    x_proj = spec.project_input(x, params)
    if reverse:
        x_proj = x_proj.flip(0)
    outputs = FAMILIES[spec.family].scan(x_proj, state0[0])
    final = outputs[-1]
    if reverse:
        outputs = outputs.flip(0)
    return outputs, (final,)

"""One entry point that runs a cell over a sequence, on whichever kernel is chosen.

``RNNKIT_KERNEL=reference|bptt|cpu|scan`` forces a kernel; otherwise the fused C++ kernel
is used for CPU tensors when it is built, and the hand-derived ``bptt`` kernel otherwise
(with one warning if the C++ build was expected but failed) -- or, for minGRU and minLSTM
sequences of at least 64 steps off the CPU, the parallel scan (:mod:`rnnkit.kernels.scan`).
"""
from __future__ import annotations

import os
import warnings

import torch

from rnnkit.kernels import bptt, reference, scan
from rnnkit.kernels.common import check_sequence_length, reference_only

__all__ = ["run", "KERNELS", "choose_kernel", "cpu_kernel", "fused_run", "fused_step"]

KERNELS = ("reference", "bptt", "cpu", "scan")
# "RNNKIT_KERNEL" in os.environ costs ~1.2 us (the key is encoded on every lookup): the
# per-step entries look in os.environ's own (bytes-keyed) dict when it has one. It is
# read on every call, never cached: tests and users set the variable at run time.
_ENV_DATA = getattr(os.environ, "_data", None)
_ENV_KEY = os.environ.encodekey("RNNKIT_KERNEL") if _ENV_DATA is not None else None


def _kernel_forced():
    if _ENV_DATA is not None:
        return _ENV_KEY in _ENV_DATA
    return "RNNKIT_KERNEL" in os.environ


_cpu_state = {}
_CPU_DTYPES = (torch.float32, torch.float64)  # what the fused kernel runs (cpu.supports)


def cpu_kernel():
    """The fused CPU kernel module, or None (warning once) when it cannot be built."""
    if "module" not in _cpu_state:
        module = None
        try:
            from rnnkit.kernels import cpu
            reason = cpu.unavailable_reason()
            if reason is None:
                module = cpu
            else:
                warnings.warn(f"rnnkit: fused CPU kernel unavailable ({reason}); "
                              "falling back to the bptt kernel", RuntimeWarning, stacklevel=3)
        except ImportError:
            pass  # no C++ sources in this build: bptt is the fastest kernel there is
        _cpu_state["module"] = module
    return _cpu_state["module"]


def _fused_module(x):
    """The fused kernel module when it is the kernel for ``x`` by default (a CPU float
    tensor, the kernel built, RNNKIT_KERNEL unset), else None."""
    if x.is_cpu and x.dtype in _CPU_DTYPES and not _kernel_forced():
        return _cpu_state["module"] if "module" in _cpu_state else cpu_kernel()
    return None


def fused_run(x):
    """The fused kernel's ``run`` when it is the kernel for ``x`` by default, else None:
    the cheap check of the common case, for callers that take many small steps."""
    module = _fused_module(x)
    return module.run if module is not None else None


def fused_step(x):
    """The fused kernel's ``step`` (see :func:`rnnkit.kernels.cpu.step`) on the terms of
    :func:`fused_run`, else None."""
    module = _fused_module(x)
    return module.step if module is not None else None


def choose_kernel(x, kernel=None) -> str:
    """Name of the kernel to run: ``kernel`` argument, then RNNKIT_KERNEL, then fastest."""
    name = kernel or os.environ.get("RNNKIT_KERNEL") or None
    if name is not None:
        if name not in KERNELS:
            raise ValueError(f"RNNKIT_KERNEL must be one of {KERNELS}, got {name!r}")
        if name == "cpu" and cpu_kernel() is None:
            raise ValueError("kernel 'cpu' was requested but the fused CPU kernel is "
                             "not available in this build")
        return name
    if x.device.type == "cpu" and cpu_kernel() is not None and cpu_kernel().supports(x):
        return "cpu"
    return "bptt"


def run(spec, x, state0, params, *, reverse=False, lengths=None, h_mask=None,
        zoneout=None, kernel=None):
    """Run ``spec``'s cell over ``x`` (T, B, H_in) from ``state0``.

    Args:
        spec: a :class:`rnnkit.cells.CellSpec`.
        x: (T, B, H_in) input.
        state0: tuple of initial states, ``(h0,)`` or ``(h0, c0)``, each (B, S).
        params: dict of parameter tensors by name (``spec.param_names()``).
        reverse: process t = T-1 .. 0 (the backward direction of a bidirectional layer).
        lengths: optional (B,) int64 sequence lengths (CPU); steps past a sequence's
            length leave its state unchanged and output zeros.
        h_mask: optional (B, H_out) recurrent-dropout mask multiplying h before W_hh.
        zoneout: optional tuple, one tensor per state, broadcastable to (T, B, S):
            0/1 masks in training, the zoneout rate in evaluation.
        kernel: force a kernel by name (otherwise RNNKIT_KERNEL, then the fastest).
            Empty batches, hidden size 0 and calls under a functorch transform (vmap)
            always run on ``reference``; T = 0 raises RuntimeError as torch.nn does.

    Returns:
        ``(outputs, final_state)``: outputs (T, B, H_out) and a tuple like ``state0``.
    """
    if kernel is None:
        fused = fused_run(x)
        if fused is not None:  # the common case, kept cheap (cpu.run does the checks below)
            return fused(spec, x, tuple(state0), params, reverse=reverse, lengths=lengths,
                         h_mask=h_mask, zoneout=zoneout)
    check_sequence_length(x)
    name = choose_kernel(x, kernel)
    if name == "bptt" and kernel is None and not x.is_cpu and not _kernel_forced() \
            and scan.supports(spec) and x.size(0) >= scan.MIN_LENGTH and lengths is None \
            and zoneout is None and h_mask is None:
        name = "scan"  # off the CPU, a long sequence of a linear recurrence: one scan
    impl = {"reference": reference.run, "bptt": bptt.run, "scan": scan.run}.get(name)
    if reference_only(spec, x) and name != "scan":
        impl = reference.run
    elif impl is None:
        impl = cpu_kernel().run
    return impl(spec, x, tuple(state0), params, reverse=reverse, lengths=lengths,
                h_mask=h_mask, zoneout=zoneout)

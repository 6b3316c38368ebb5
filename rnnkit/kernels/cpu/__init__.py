"""Fused C++ kernels for every cell on CPU: ``run`` (a sequence) and ``step`` (one
decoding step), with the semantics of :func:`rnnkit.kernels.bptt.run`.

The C++ sources next to this file are built once per machine (:mod:`.build`) and register
two ops for every family, ``torch.ops.rnnkit.cell_forward`` and ``cell_backward``
(ops.cpp), with their fake implementations and autograd formula (:mod:`.ops`). The same
library is also a Python module with plain entry points ``forward``, ``backward`` and
``step``: outside torch.compile and dispatch modes ``run`` calls them (with
:class:`_Fused`, an autograd.Function, when gradients are needed), since the ops' argument
boxing and torch.library's Python autograd wrapper cost more than a small decoding step.
Under torch.compile the ops and their registered autograd formula run, as opcheck tests.

What a cell is to the kernels is one list of integers, :func:`.ops.kernel_options`,
derived from its CellSpec. A cell with a user-given ``(function, derivative)``
activation, or of a family without a fused kernel, runs on the bptt kernel. Empty inputs,
hidden size 0 and calls under functorch transforms (vmap) run on the reference kernel; a
backward asked to build a graph (create_graph=True, vmap over gradients) re-runs the
sequence there too (:mod:`rnnkit.kernels.recompute`).

Every product with a weight of a sequence (T > 1, or at least 16 rows) runs on a copy
packed into column panels, made inside the kernel once per call and reused by all of its
steps; a decoding step (T = 1, a few rows) reads the weights in place. Nothing is cached
across calls: a cache keyed on a parameter's identity and ``_version`` misses writes
through ``.data`` (EMA averaging, weight surgery, gradcheck), which torch.nn's modules see.

Environment: ``RNNKIT_CPU_DISABLE=1`` makes the kernel unavailable (dispatch then warns
once and uses bptt); ``RNNKIT_CACHE`` moves the build cache (default ``~/.cache/rnnkit``).
"""
from __future__ import annotations

import functools
import os

import torch

from rnnkit.kernels import bptt, recompute, reference
from rnnkit.kernels.common import (check_sequence_length, keep_coefficients, length_mask,
                                   reference_only)
from rnnkit.kernels.cpu import build, ops
from rnnkit.kernels.cpu.build import build_directory

__all__ = ["unavailable_reason", "supports", "run", "step", "load", "build_directory",
           "set_parallel_min_work"]

_EXT = {}  # "forward", "backward", "step": the library's plain entry points, once loaded


@functools.lru_cache(maxsize=None)
def load():
    """Build (once per machine) and load the library; returns its path."""
    library, module = build.load_library()
    ops.register_ops()
    if module is not None:
        _EXT.update(forward=module.forward, backward=module.backward, step=module.step,
                    set_parallel_min_work=module.set_parallel_min_work)
    return library


def set_parallel_min_work(work: int) -> int:
    """Kernel calls of fewer multiply-adds than ``work`` (about: the weights times T times
    B, twice that backward) run all their loops on the calling thread; larger ones split
    each loop across torch's threads by its own grain. Returns the previous threshold.
    Results do not depend on it; only speed does (``benchmarks/threads.py`` measures)."""
    load()
    return _EXT["set_parallel_min_work"](int(work))


@functools.lru_cache(maxsize=None)
def unavailable_reason() -> str | None:
    """None when the fused kernels are loaded; otherwise a short reason why not."""
    if os.environ.get("RNNKIT_CPU_DISABLE", "0") not in ("", "0"):
        return "disabled by RNNKIT_CPU_DISABLE"
    try:
        load()
    except Exception as error:  # a missing compiler, a failed build: anything means bptt
        first_line = (str(error).strip().splitlines() or [""])[0][:200]
        return f"C++ build failed: {type(error).__name__}: {first_line}"
    return None


def supports(x: torch.Tensor) -> bool:
    """Whether the fused kernels can run on ``x``: float32/float64 on the CPU."""
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)


_SPEC_INFO = {}  # id(spec) -> (spec, info): what run needs of a spec, computed once


def _spec_info(spec):
    """(parameter names, kernel options) of a spec; None: it runs on bptt."""
    entry = _SPEC_INFO.get(id(spec))
    if entry is not None and entry[0] is spec:
        return entry[1]
    options = ops.kernel_options(spec)
    info = None if options is None else (spec.param_names(), options)
    _SPEC_INFO[id(spec)] = (spec, info)
    return info


def _tracing():
    """A dispatch mode or a functorch transform is active: only the registered ops may
    run (the library's plain entry points would bypass them)."""
    return bool(torch._C._len_torch_dispatch_stack()
                or torch._C._are_functorch_transforms_active())


def run(spec, x, state0, params, *, reverse=False, lengths=None, h_mask=None,
        zoneout=None):
    """Run ``spec``'s cell over ``x`` (T, B, H_in); returns ``(outputs, final_state)``.

    Same arguments and results as :func:`rnnkit.kernels.bptt.run`.
    """
    check_sequence_length(x)
    sequence = (reverse, lengths, h_mask, zoneout)
    if reference_only(spec, x):
        return reference.run(spec, x, state0, params, reverse=reverse, lengths=lengths,
                             h_mask=h_mask, zoneout=zoneout)
    info = _spec_info(spec)
    if info is None:
        return bptt.run(spec, x, state0, params, reverse=reverse, lengths=lengths,
                        h_mask=h_mask, zoneout=zoneout)
    names, options = info
    compiling = torch.compiler.is_compiling()
    if not _EXT and not compiling:  # under torch.compile the ops are loaded already
        load()
    param_list = [params[name] for name in names]
    state0 = list(state0)
    mask, keeps = None, [None] * len(state0)
    if lengths is not None or zoneout is not None or h_mask is not None:
        mask, keeps, h_mask = _sequence_tensors(spec, x, lengths, h_mask, zoneout)
    save = torch.is_grad_enabled() and (
        x.requires_grad or any(t.requires_grad for t in state0)
        or any(t.requires_grad for t in param_list))
    args = (x, state0, param_list, mask, keeps, h_mask, reverse)
    if not compiling and _EXT and type(x) is torch.Tensor and not _tracing():
        # the library's plain entry points (no argument boxing, and for gradients an
        # autograd.Function instead of torch.library's Python wrapper)
        if save:
            outputs, *final = _Fused.apply(spec, options, args, sequence, x,
                                           *state0, *param_list)
            return outputs, tuple(final)
        outputs, final, _ = _EXT["forward"](*args, False, options)
        return outputs, tuple(final)
    op = torch.ops.rnnkit.cell_forward.default
    op_args = (x, state0, param_list, [], mask, keeps, h_mask, reverse, save, options)
    if save or compiling:
        outputs, final, _ = op(*op_args)
    else:  # below autograd: its Python wrapper costs as much as a small decoding step
        with torch._C._AutoDispatchBelowAutograd():
            outputs, final, _ = op(*op_args)
    return outputs, tuple(final)


def step(spec, x, states, param_list):
    """One step of ``spec``'s cell without autograd: x (B, H_in), ``states`` a tuple of
    (B, size) tensors of x's dtype, ``param_list`` in ``spec.param_names()`` order; returns
    the new state tuple, or None when this entry does not apply (no fused kernel for the
    cell, the library's Python entry not loaded, a dispatch mode or functorch transform
    active, an empty size) and :func:`run` must be used. The caller has checked shapes,
    dtypes and devices and that no gradient is needed (``LSTMCell`` and friends under
    ``torch.no_grad``)."""
    info = _spec_info(spec)
    if info is None or "step" not in _EXT or _tracing() or x.numel() == 0 \
            or spec.hidden_size == 0:
        return None
    return tuple(_EXT["step"](x, list(states), param_list, info[1]))


class _Fused(torch.autograd.Function):
    """The fused forward and backward outside torch.compile (inside it, the ops'
    registered autograd formula runs instead): the same kernels, through the library's
    entry points. A backward that must build a graph (create_graph=True, vmap) goes
    through :mod:`rnnkit.kernels.recompute` instead."""

    @staticmethod
    def forward(ctx, spec, options, args, sequence, x, *tensors):
        outputs, final, saved = _EXT["forward"](*args, True, options)
        ctx.spec, ctx.options, ctx.sequence = spec, options, sequence
        ctx.arguments = args[3:]  # mask, keeps, h_mask, reverse
        ctx.state_count = len(args[1])
        ctx.save_for_backward(x, outputs, *tensors, *saved)
        ctx.set_materialize_grads(False)
        return (outputs, *final)

    @staticmethod
    def backward(ctx, d_output, *d_final):
        x, outputs, *rest = ctx.saved_tensors
        inputs_end = ctx.state_count + len(ctx.spec.param_names())
        state0, params = rest[:ctx.state_count], rest[ctx.state_count:inputs_end]
        saved = rest[inputs_end:]
        skipped = (None,) * 4  # spec, options, args, sequence
        if recompute.graph_needed((d_output, *d_final)):
            d_inputs = recompute.recompute_backward(
                ctx.spec, ctx.sequence, (x, *state0, *params), (d_output, *d_final),
                ctx.needs_input_grad[4:])
            return (*skipped, *d_inputs)
        mask, keeps, h_mask, reverse = ctx.arguments
        d_x, d_state0, d_params = _EXT["backward"](
            d_output, list(d_final), x, list(state0), outputs, list(params), list(saved), mask,
            keeps, h_mask, reverse, ctx.options)
        return (*skipped, d_x, *d_state0, *d_params)


def _sequence_tensors(spec, x, lengths, h_mask, zoneout):
    """The length mask (T, B), keep coefficients per state and recurrent-dropout mask."""
    seq_len, batch = x.size(0), x.size(1)
    mask = length_mask(lengths, seq_len, x) if lengths is not None else None  # (T, B, 1)
    keeps = [None] * len(spec.state_sizes)
    if zoneout is not None:  # k = m (1 - z); without zoneout the kernel takes k = m itself
        keeps = [torch.as_tensor(k, dtype=x.dtype).expand(seq_len, batch, size).contiguous()
                 for k, size in zip(keep_coefficients(mask, zoneout, len(spec.state_sizes)),
                                    spec.state_sizes)]
    if mask is not None:
        mask = mask.view(seq_len, batch)
    if h_mask is not None:
        h_mask = h_mask.to(x.dtype).expand(batch, spec.output_size).contiguous()
    return mask, keeps, h_mask

"""What the Python side registers for the C++ ops: the options of a cell as the kernels
take them, fake (shape) implementations, and one autograd formula.

``rnnkit::cell_forward`` / ``rnnkit::cell_backward`` serve every family (ops.cpp); a
family is known here by the :class:`~rnnkit.cells.FusedKernel` it registered with
(:func:`rnnkit.cells.register_family`): its code in the C++ registry (family.h,
``RNNKIT_REGISTER_FAMILY``) and the shapes of what its forward saves, which the fake
implementation needs under torch.compile.
"""
from __future__ import annotations

import functools
import torch

from rnnkit.cells import FAMILIES
from rnnkit.cells.activations import ACTIVATIONS

__all__ = ["kernel_options", "register_ops", "panel_width", "packed_list"]


_ACTIVATION_CODES = {"tanh": 0, "relu": 1, "sigmoid": 2}


def kernel_options(spec):
    """The cell's options as the C++ kernels take them (family.h, CellOptions):
    ``[family, bias, peephole, layer_norm, proj_size, reset_after, activation]``; None when
    the cell cannot run there (a family without a fused kernel, a user's activation)."""
    family = FAMILIES.get(spec.family)
    fused = family.fused if family is not None else None
    if fused is None:
        return None
    activation = _ACTIVATION_CODES.get(spec.activation.name)
    if activation is None or ACTIVATIONS.get(spec.activation.name) is not spec.activation:
        if "activation" in family.options:
            return None  # a (function, derivative) pair runs on the bptt kernel
        activation = 0
    return [fused.code, int(spec.bias), int(spec.peephole), int(spec.layer_norm),
            spec.proj_size, int(spec.reset_after), activation]


# --- Fake implementations and the autograd formula. ---

def _fused_of(options):
    code = options[0]
    for family in FAMILIES.values():
        if family.fused is not None and family.fused.code == code:
            return family.fused
    raise ValueError(f"rnnkit: no fused family has code {code}")


def _forward_fake(x, state0, params, packed, mask, keeps, h_mask, reverse, save, options):
    T, B = x.size(0), x.size(1)
    saved = ([x.new_empty(s) for s in _fused_of(options).saved_shapes(options, x, state0, keeps)]
             if save else [])
    return x.new_empty(T, B, state0[0].size(1)), [s.new_empty(s.shape) for s in state0], saved


def _backward_fake(d_output, d_final, x, state0, output, params, *rest):
    return (x.new_empty(x.shape), [s.new_empty(s.shape) for s in state0],
            [p.new_empty(p.shape) for p in params])


def _pack_weight_fake(w, transpose):
    nr = _PANEL_WIDTH[w.dtype]
    k, n = (w.size(1), w.size(0)) if transpose else (w.size(0), w.size(1))
    return w.new_empty((n + nr - 1) // nr, k, nr)


def _setup_context(ctx, inputs, output):
    x, state0, params, packed, mask, keeps, h_mask, reverse, save, options = inputs
    if not save:
        ctx.unsaved = True
        return
    ctx.unsaved = False
    ctx.arguments = (mask, keeps, h_mask, reverse, options)
    ctx.counts = (len(state0), len(params), len(packed))
    ctx.save_for_backward(x, output[0], *state0, *params, *output[2])
    ctx.set_materialize_grads(False)  # no zero tensors for the saved outputs' gradients


def _backward(ctx, d_output, d_final, d_saved):
    if ctx.unsaved:
        raise RuntimeError("rnnkit.cell_forward: backward called but the forward ran with "
                           "save=False")
    states, param_count, packed_count = ctx.counts
    x, output, *rest = ctx.saved_tensors
    state0, params, saved = rest[:states], rest[states:states + param_count], \
        rest[states + param_count:]
    mask, keeps, h_mask, reverse, options = ctx.arguments
    d_final = list(d_final) if d_final is not None else [None] * states
    d_x, d_state0, d_params = torch.ops.rnnkit.cell_backward.default(
        d_output, d_final, x, list(state0), output, list(params), [], list(saved), mask,
        keeps, h_mask, reverse, options)
    # one gradient per input, in the inputs' structure: x, state0, params, packed, mask,
    # keeps (a list when it holds tensors, a leaf when all are None), h_mask, reverse,
    # save, options
    d_keeps = [None] * len(keeps) if any(k is not None for k in keeps) else None
    return (d_x, list(d_state0), list(d_params), [None] * packed_count, None, d_keeps, None,
            None, None, None)


_PANEL_WIDTH = {}  # columns per packed panel by dtype, read off the loaded kernel


def panel_width(dtype) -> int:
    return _PANEL_WIDTH[dtype]


@functools.lru_cache(maxsize=None)
def register_ops():
    """Fake implementations and the autograd formula of the ops (once per process)."""
    torch.library.register_fake("rnnkit::cell_forward", _forward_fake)
    torch.library.register_fake("rnnkit::cell_backward", _backward_fake)
    torch.library.register_fake("rnnkit::pack_weight", _pack_weight_fake)
    torch.library.register_autograd("rnnkit::cell_forward", _backward,
                                    setup_context=_setup_context)
    for dtype in (torch.float32, torch.float64):
        packed = torch.ops.rnnkit.pack_weight.default(torch.zeros(1, 1, dtype=dtype), False)
        _PANEL_WIDTH[dtype] = packed.size(2)


def packed_list(spec, params, backward):
    """pack_weight results for one op call's products, in the order the family's C++
    takes them (tests of the ops' ``packed`` argument; the kernels pack for themselves)."""
    pack = torch.ops.rnnkit.pack_weight.default
    if spec.family not in ("lstm", "gru", "rnn"):  # elementwise.h: W_ih only, index 0 / 1
        w_ih = params[0].detach()
        return [pack(w_ih, True)] if not backward else [pack(w_ih, True), pack(w_ih, False)]
    w_ih, w_hh = params[0].detach(), params[1].detach()
    transpose = not backward
    first = [pack(w_hh, False), pack(w_ih, False)] if backward else \
        [pack(w_ih, True), pack(w_hh, True)]
    if spec.family == "lstm":
        if spec.proj_size > 0:
            first.append(pack(params[4 if spec.bias else 2].detach(), transpose))
        return first
    if spec.family == "gru" and not spec.reset_after:
        H = w_hh.size(1)
        first[0 if backward else 1] = pack(w_hh[:2 * H], transpose)
        first.append(pack(w_hh[2 * H:], transpose))
    return first

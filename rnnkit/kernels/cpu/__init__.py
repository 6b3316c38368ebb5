"""Fused C++ kernels for every cell on CPU, registered as ``torch.ops.rnnkit.*``.

The sources next to this file are compiled on first use with
``torch.utils.cpp_extension.load`` into a cache directory keyed by a hash of the sources,
the torch version and the CPU's instruction-set flags (the build uses ``-march=native``),
so each machine builds once and every later process (pytest workers, torchrun ranks)
only loads the shared library. A file lock serialises concurrent first builds.

Ops (each forward has a backward op; fake and autograd formulas are registered here):

* ``rnnkit::lstm_forward`` / ``lstm_backward`` -- peephole, proj_size, layer_norm;
* ``rnnkit::gru_forward`` / ``gru_backward`` -- reset_after True or False;
* ``rnnkit::rnn_forward`` / ``rnn_backward`` -- tanh, relu or sigmoid;
* ``rnnkit::pack_weight`` -- a weight packed for the GEMM (see "Packed weights" below).

The same library is also a Python module with two plain entry points,
``forward`` and ``backward``. Outside torch.compile and dispatch modes ``run`` calls them
(with :class:`_Fused`, an autograd.Function, when gradients are needed): the ops' argument
boxing and torch.library's Python autograd wrapper cost more than a small decoding step.
Under torch.compile the ops and their registered autograd formula run, as opcheck tests.

``run`` has the semantics of :func:`rnnkit.kernels.bptt.run`. A cell with a user-given
``(function, derivative)`` activation cannot run in C++; ``run`` hands it to the bptt
kernel. Empty inputs, hidden size 0 and calls under functorch transforms (vmap) run on
the reference kernel; a backward asked to build a graph (create_graph=True, vmap over
gradients) re-runs the sequence there too (:mod:`rnnkit.kernels.recompute`). Environment: ``RNNKIT_CPU_DISABLE=1`` makes the kernel unavailable (dispatch
then warns once and uses bptt); ``RNNKIT_CACHE`` moves the build cache
(default ``~/.cache/rnnkit``).
"""
from __future__ import annotations

import fcntl
import functools
import hashlib
import importlib.util
import os
import pathlib
import platform

import torch

from rnnkit.cells.base import ACTIVATIONS
from rnnkit.kernels import bptt, recompute, reference
from rnnkit.kernels.common import (check_sequence_length, keep_coefficients, length_mask,
                                   reference_only)

__all__ = ["unavailable_reason", "supports", "run", "step", "load", "build_directory"]

_HERE = pathlib.Path(__file__).resolve().parent
_SOURCES = ("ops.cpp", "lstm.cpp", "gru.cpp", "rnn.cpp")
_HEADERS = ("common.h",)
# -fopenmp: at::parallel_for is inlined from ATen's headers and runs its loop on torch's
# OpenMP threads only when the including code is compiled with OpenMP (without it, it
# runs the whole range on the calling thread). The library then links libgomp.so.1, the
# one torch already loaded.
# -fno-trapping-math: without it GCC keeps the clamps of exp_fast (common.h) as branches and
# leaves every gate loop scalar ("control flow in loop").
_CFLAGS = ("-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-fno-trapping-math")
_LDFLAGS = ("-fopenmp",)
_ACTIVATION_CODES = {"tanh": 0, "relu": 1, "sigmoid": 2}


def _cpu_flags() -> str:
    """The instruction-set flags of this CPU (part of the cache key: -march=native)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def build_directory() -> pathlib.Path:
    """Cache directory of the build for these sources, this torch and this CPU."""
    digest = hashlib.sha256()
    for name in _SOURCES + _HEADERS:
        digest.update((_HERE / name).read_bytes())
    for part in (torch.__version__, platform.python_version(), _cpu_flags(), *_CFLAGS,
                 *_LDFLAGS):
        digest.update(part.encode())
    root = pathlib.Path(os.environ.get("RNNKIT_CACHE")
                        or pathlib.Path.home() / ".cache" / "rnnkit")
    return root / f"cpu-{digest.hexdigest()[:16]}"


@functools.lru_cache(maxsize=None)
def load() -> pathlib.Path:
    """Build (once per machine) and load the extension; returns the shared library path."""
    from torch.utils import cpp_extension

    directory = build_directory()
    directory.mkdir(parents=True, exist_ok=True)
    library = directory / "rnnkit_cpu.so"
    done = directory / "built"
    # not named "lock": cpp_extension keeps its own baton file of that name in the directory
    with open(directory.with_suffix(".build-lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder; the others wait, then just load
        if not done.exists():
            cpp_extension.load(
                name="rnnkit_cpu", sources=[str(_HERE / s) for s in _SOURCES],
                extra_cflags=list(_CFLAGS), extra_ldflags=list(_LDFLAGS),
                build_directory=str(directory),
                is_python_module=False, verbose=False)
            done.touch()
    torch.ops.load_library(str(library))
    _register_python_side()
    _load_python_entry(library)
    return library


def _load_python_entry(library):
    """The library's Python entry points (forward, backward), loaded from the same file."""
    try:
        spec = importlib.util.spec_from_file_location("rnnkit_cpu", library)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _EXT["forward"] = module.forward
        _EXT["backward"] = module.backward
        _EXT["step"] = module.step
    except Exception:  # pragma: no cover - then every call goes through the ops
        _EXT.clear()


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


# --- Packed weights. ---
#
# Every product with a weight of a sequence (T > 1, or a batch of at least 16 rows) runs on
# a copy packed into column panels, made inside the kernel once per call and reused by all
# of its steps. A decoding step (T = 1, a few rows) reads the weights in place. Nothing is
# cached across calls: a cache keyed on a parameter's identity and ``_version`` misses
# writes through ``.data`` (EMA averaging, weight surgery, gradcheck), which torch.nn's
# modules see, and checking the contents costs as much as packing them again.
# The ops still take ``packed`` (pack_weight results): ``_packed_list`` builds them.


def _packed_list(spec, params, backward):
    """The packed weights of one op call, in the order the C++ op takes them."""
    pack = _OPS["pack_weight"]
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


_SPEC_INFO = {}  # id(spec) -> (spec, info): what run needs of a spec, computed once


def _spec_info(spec):
    """(op name, parameter names, flags, state count) of a spec; None: run on bptt."""
    entry = _SPEC_INFO.get(id(spec))
    if entry is not None and entry[0] is spec:
        return entry[1]
    family = spec.family
    if family == "lstm":
        flags = (spec.bias, spec.peephole, spec.layer_norm, spec.proj_size)
    elif family == "gru":
        flags = (spec.bias, spec.reset_after)
    elif ACTIVATIONS.get(spec.activation.name) is spec.activation:
        flags = (spec.bias, _ACTIVATION_CODES[spec.activation.name])
    else:
        flags = None  # a user-given activation cannot run in C++
    info = None if flags is None else (f"{family}_forward", spec.param_names(), flags,
                                       len(spec.state_sizes), _nograd_flags(spec))
    _SPEC_INFO[id(spec)] = (spec, info)
    return info


def _nograd_flags(spec):
    """(family code, bias, a, b, n) of the library's entry points for this spec."""
    code = _FAMILY_CODES[spec.family]
    if spec.family == "lstm":
        return code, spec.bias, spec.peephole, spec.layer_norm, spec.proj_size
    if spec.family == "gru":
        return code, spec.bias, spec.reset_after, False, 0
    return code, spec.bias, False, False, _ACTIVATION_CODES[spec.activation.name]


def _tracing():
    """A dispatch mode or a functorch transform is active: only the registered ops may
    run (the library's plain entry points would bypass them)."""
    return bool(torch._C._len_torch_dispatch_stack()
                or torch._C._are_functorch_transforms_active())


def run(spec, x, state0, params, *, reverse=False, lengths=None, h_mask=None,
        zoneout=None):
    """Run ``spec``'s cell over ``x`` (T, B, H_in); returns ``(outputs, final_state)``.

    Same arguments and results as :func:`rnnkit.kernels.bptt.run`; a user-given
    activation (not tanh/relu/sigmoid by name) is run by the bptt kernel instead.
    """
    check_sequence_length(x)
    if reference_only(spec, x):
        return reference.run(spec, x, state0, params, reverse=reverse, lengths=lengths,
                             h_mask=h_mask, zoneout=zoneout)
    info = _spec_info(spec)
    if info is None:
        return bptt.run(spec, x, state0, params, reverse=reverse, lengths=lengths,
                        h_mask=h_mask, zoneout=zoneout)
    op_name, names, flags, state_count, nograd_flags = info
    compiling = torch.compiler.is_compiling()
    if not _OPS and not compiling:  # under torch.compile the ops are loaded already
        load()
    param_list = [params[name] for name in names]
    mask = None
    keeps = (None,) * state_count
    h_mask_in = h_mask
    if lengths is not None or zoneout is not None or h_mask is not None:
        mask, keeps, h_mask = _sequence_tensors(spec, x, lengths, h_mask, zoneout)
    save = torch.is_grad_enabled() and (
        x.requires_grad or any(t.requires_grad for t in state0)
        or any(t.requires_grad for t in param_list))
    packed = []
    if not compiling and _EXT and type(x) is torch.Tensor and not _tracing():
        # no tracing: the library's plain entry points (no argument boxing, and for
        # gradients an autograd.Function instead of torch.library's Python wrapper)
        lstm = state_count == 2
        args = (x, state0[0], state0[1] if lstm else None, param_list, packed, mask, keeps[0],
                keeps[1] if lstm else None, h_mask, reverse)
        if save:
            outputs, h_n, c_n = _Fused.apply(spec, nograd_flags, args,
                                             (reverse, lengths, h_mask_in, zoneout),
                                             *args[:3], *param_list)
        else:
            code, bias, a, b, n = nograd_flags
            outputs, h_n, c_n, _ = _EXT["forward"](code, *args, False, bias, a, b, n)
        return outputs, ((h_n, c_n) if lstm else (h_n,))
    op = getattr(torch.ops.rnnkit, op_name).default if compiling else _OPS[op_name]
    args = (x, *state0, param_list, packed, mask, *keeps, h_mask, reverse, save, *flags)
    if save or compiling:
        result = op(*args)
    else:  # below autograd: its Python wrapper costs as much as a small decoding step
        with torch._C._AutoDispatchBelowAutograd():
            result = op(*args)
    return result[0], tuple(result[1:1 + state_count])


def step(spec, x, states, param_list):
    """One step of ``spec``'s cell without autograd: x (B, H_in), ``states`` a tuple of
    (B, size) tensors of x's dtype, ``param_list`` in ``spec.param_names()`` order; returns
    the new state tuple, or None when this entry does not apply (a user-given activation,
    the library's Python entry not loaded, a dispatch mode or functorch transform active)
    and :func:`run` must be used. The caller has checked shapes, dtypes and devices and
    that no gradient is needed (``LSTMCell`` and friends under ``torch.no_grad``)."""
    info = _spec_info(spec)
    if info is None or "step" not in _EXT or _tracing() or x.numel() == 0 \
            or spec.hidden_size == 0:
        return None
    code, bias, a, b, n = info[4]
    h, c = _EXT["step"](code, x, states[0], states[1] if info[3] == 2 else None, param_list,
                        [], bias, a, b, n)
    return (h, c) if info[3] == 2 else (h,)


class _Fused(torch.autograd.Function):
    """The fused forward and backward outside torch.compile (inside it, the custom ops'
    registered autograd formula runs instead): the same kernels, through the library's
    entry points. A backward that must build a graph (create_graph=True, vmap) goes
    through :mod:`rnnkit.kernels.recompute` instead."""

    @staticmethod
    def forward(ctx, spec, flags, args, sequence, x, h0, c0, *params):
        code, bias, a, b, n = flags
        outputs, h_n, c_n, saved = _EXT["forward"](code, *args, True, bias, a, b, n)
        ctx.spec, ctx.sequence = spec, sequence  # (reverse, lengths, h_mask, zoneout)
        ctx.flags, ctx.options = flags, args[5:]  # mask, keep_h, keep_c, h_mask, reverse
        ctx.param_count = len(params)
        ctx.save_for_backward(x, h0, c0, outputs, *params, *saved)
        ctx.set_materialize_grads(False)
        if c_n is None:
            return outputs, h_n, None
        return outputs, h_n, c_n

    @staticmethod
    def backward(ctx, d_output, d_h_n, d_c_n):
        x, h0, c0, outputs, *rest = ctx.saved_tensors
        params, saved = rest[:ctx.param_count], rest[ctx.param_count:]
        lstm = c0 is not None
        if recompute.graph_needed((d_output, d_h_n, d_c_n)):
            states, grads = ((h0, c0), (d_h_n, d_c_n)) if lstm else ((h0,), (d_h_n,))
            needs = ctx.needs_input_grad[4:4 + 1 + len(states)] + \
                ctx.needs_input_grad[7:7 + len(params)]
            d_inputs = recompute.recompute_backward(
                ctx.spec, ctx.sequence, (x, *states, *params), (d_output, *grads), needs)
            d_x, d_states, d_params = d_inputs[0], d_inputs[1:1 + len(states)], \
                d_inputs[1 + len(states):]
            return (None, None, None, None, d_x, d_states[0],
                    d_states[1] if lstm else None, *d_params)
        code, bias, a, b, n = ctx.flags
        d_x, d_h0, d_c0, d_params = _EXT["backward"](
            code, d_output, d_h_n, d_c_n, x, h0, outputs, params, [], saved, *ctx.options,
            bias, a, b, n)
        return (None, None, None, None, d_x, d_h0, d_c0, *d_params)


def _sequence_tensors(spec, x, lengths, h_mask, zoneout):
    """The length mask (T, B), keep coefficients per state and recurrent-dropout mask."""
    seq_len, batch = x.size(0), x.size(1)
    mask = length_mask(lengths, seq_len, x) if lengths is not None else None  # (T, B, 1)
    keeps = (None,) * len(spec.state_sizes)
    if zoneout is not None:  # k = m (1 - z); without zoneout the kernel takes k = m itself
        keeps = tuple(
            torch.as_tensor(k, dtype=x.dtype).expand(seq_len, batch, size).contiguous()
            for k, size in zip(keep_coefficients(mask, zoneout, len(spec.state_sizes)),
                               spec.state_sizes))
    if mask is not None:
        mask = mask.view(seq_len, batch)
    if h_mask is not None:
        h_mask = h_mask.to(x.dtype).expand(batch, spec.output_size).contiguous()
    return mask, keeps, h_mask


# --- Fake (shape) implementations and autograd formulas of the C++ ops. ---

def _lstm_saved_shapes(x, h0, c0, layer_norm, proj_size):
    T, B, H = x.size(0), x.size(1), c0.size(1)
    shapes = [(T, B, H), (T, B, 4 * H)]
    if layer_norm:
        shapes += [(T, B), (T, B, 4 * H), (T, B)]
    if proj_size > 0:
        shapes.append((T, B, H))
    return shapes


def _lstm_forward_fake(x, h0, c0, params, packed, mask, keep_h, keep_c, h_mask, reverse, save,
                       bias, peephole, layer_norm, proj_size):
    T, B = x.size(0), x.size(1)
    saved = ([x.new_empty(s) for s in _lstm_saved_shapes(x, h0, c0, layer_norm, proj_size)]
             if save else [])
    return (x.new_empty(T, B, h0.size(1)), h0.new_empty(h0.shape), c0.new_empty(c0.shape),
            saved)


def _gru_forward_fake(x, h0, params, packed, mask, keep_h, h_mask, reverse, save, bias,
                      reset_after):
    T, B, H = x.size(0), x.size(1), h0.size(1)
    saved = [x.new_empty(T, B, 3 * H), x.new_empty(T, B, H)] if save else []
    return x.new_empty(T, B, H), h0.new_empty(h0.shape), saved


def _rnn_forward_fake(x, h0, params, packed, mask, keep_h, h_mask, reverse, save, bias,
                      activation):
    T, B, H = x.size(0), x.size(1), h0.size(1)
    saved = [x.new_empty(T, B, H)] if save and keep_h is not None else []
    return x.new_empty(T, B, H), h0.new_empty(h0.shape), saved


# Columns per packed panel by dtype: two vectors of the instruction set the library was
# built for (common.h), read off the kernel itself once it is loaded.
_PANEL_WIDTH = {}


def _pack_weight_fake(w, transpose):
    nr = _PANEL_WIDTH[w.dtype]
    k, n = (w.size(1), w.size(0)) if transpose else (w.size(0), w.size(1))
    return w.new_empty((n + nr - 1) // nr, k, nr)


def _lstm_backward_fake(d_output, d_h_n, d_c_n, x, h0, output, params, *rest):
    B, H = h0.size(0), params[1].size(0) // 4
    return (x.new_empty(x.shape), h0.new_empty(h0.shape), x.new_empty(B, H),
            [p.new_empty(p.shape) for p in params])


def _single_state_backward_fake(d_output, d_h_n, x, h0, output, params, *rest):
    return (x.new_empty(x.shape), h0.new_empty(h0.shape),
            [p.new_empty(p.shape) for p in params])


def _setup_context(state_count):
    """setup_context for a forward op whose inputs start (x, *state0, params, packed, ...)."""
    def setup_context(ctx, inputs, output):
        x, params = inputs[0], inputs[1 + state_count]
        ctx.packed_count = len(inputs[2 + state_count])  # packed weights given to the forward
        ctx.options = inputs[3 + state_count:]  # mask, keeps, h_mask, reverse, save, flags
        ctx.param_count = len(params)
        ctx.save_for_backward(x, inputs[1], output[0], *params, *output[-1])
        ctx.set_materialize_grads(False)  # no zero tensors for the saved outputs' gradients
    return setup_context


def _backward(op_name, state_count):
    """Autograd formula: call the backward op with the forward's saved tensors (which
    packs its own weights)."""
    def backward(ctx, d_output, *grads):
        d_states = grads[:state_count]
        x, h0, output, *rest = ctx.saved_tensors
        params, saved = rest[:ctx.param_count], rest[ctx.param_count:]
        *tensors_opts, reverse, save = ctx.options[:-_FLAG_COUNT[op_name]]
        flags = ctx.options[-_FLAG_COUNT[op_name]:]
        if not save:
            raise RuntimeError(f"rnnkit.{op_name}: backward called but the forward ran with "
                               "save=False")
        op = getattr(torch.ops.rnnkit, op_name.replace("forward", "backward")).default
        d_x, *d_state0, d_params = op(d_output, *d_states, x, h0, output, list(params),
                                      [], list(saved), *tensors_opts, reverse, *flags)
        return (d_x, *d_state0, list(d_params), [None] * ctx.packed_count,
                *([None] * len(ctx.options)))
    return backward


_FLAG_COUNT = {"lstm_forward": 4, "gru_forward": 2, "rnn_forward": 2}


_OPS = {}
_EXT = {}  # "forward", "backward": the library's Python entry points, when they loaded
_FAMILY_CODES = {"lstm": 0, "gru": 1, "rnn": 2}


@functools.lru_cache(maxsize=None)
def _register_python_side():
    """Fake implementations and autograd formulas for the ops (once per process)."""
    fakes = {
        "lstm_forward": _lstm_forward_fake, "gru_forward": _gru_forward_fake,
        "rnn_forward": _rnn_forward_fake, "lstm_backward": _lstm_backward_fake,
        "gru_backward": _single_state_backward_fake,
        "rnn_backward": _single_state_backward_fake, "pack_weight": _pack_weight_fake,
    }
    for name, fake in fakes.items():
        torch.library.register_fake(f"rnnkit::{name}", fake)
    for name, state_count in (("lstm_forward", 2), ("gru_forward", 1), ("rnn_forward", 1)):
        torch.library.register_autograd(f"rnnkit::{name}",
                                        _backward(name, state_count),
                                        setup_context=_setup_context(state_count))
    for name in ("pack_weight", "lstm_forward", "gru_forward", "rnn_forward"):
        _OPS[name] = getattr(torch.ops.rnnkit, name).default
    for dtype in (torch.float32, torch.float64):
        _PANEL_WIDTH[dtype] = _OPS["pack_weight"](torch.zeros(1, 1, dtype=dtype), False).size(2)

"""What every cell family shares: the spec, and the registry of families.

A *cell family* (``rnn``, ``lstm``, ``gru`` ...) is a module of pure functions:

* ``step(x_proj_t, state, params, spec, h_mask)`` -> ``(h_t, new_state, cache)``.
* ``step_backward(d_h, d_state, cache, params, spec)`` -> ``(d_x_proj_t, d_state_prev,
  d_params)`` -- the hand-derived derivative of one step.

and one :func:`register_family` call (``rnnkit/cells/__init__.py`` makes it for the
built-in ones) that tells the spec, the kernels, the layers and the CLI about it.
``CellSpec`` binds a family to its options and tells the kernels everything they need:
which parameters exist, their shapes, which state tensors the cell carries, and
``project_input``, the part of the pre-activations that does not depend on the state,
for all time steps at once (one GEMM): ``x @ W_ih^T (+ b_ih)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import Callable

import torch

from rnnkit.cells.activations import (ACTIVATIONS, LN_EPS, Activation, get_activation,
                                      layer_norm, layer_norm_backward)

__all__ = [
    "Activation",
    "ACTIVATIONS",
    "CellFamily",
    "CellSpec",
    "FAMILIES",
    "FusedKernel",
    "get_activation",
    "input_only_param_shapes",
    "layer_norm",
    "layer_norm_backward",
    "LN_EPS",
    "register_family",
]

# the options CellSpec carries beyond sizes and bias, each off by default
SPEC_OPTIONS = ("activation", "proj_size", "peephole", "layer_norm", "reset_after")


@dataclass(frozen=True)
class FusedKernel:
    """How a family's fused C++ kernel is known: ``code``, the code its .cpp registers
    (``RNNKIT_REGISTER_FAMILY`` in rnnkit/kernels/cpu/family.h), and
    ``saved_shapes(options, x, state0, keeps)``, the shapes of the tensors its forward
    saves for backward (the ops' fake implementation under torch.compile needs them);
    ``options`` is the integer list of :func:`rnnkit.kernels.cpu.ops.kernel_options`."""

    code: int
    saved_shapes: Callable


@dataclass(frozen=True)
class CellFamily:
    """A family as the rest of rnnkit knows it.

    Args:
        name: the ``family`` of its specs, the layer's and the CLI's ``cell`` name.
        module: its pure functions ``step`` and ``step_backward`` (see this module's doc).
        gates: gate blocks stacked in W_ih / W_hh (torch order).
        states: state tensors carried: 1 for ``(h,)``, 2 for ``(h, c)``.
        options: the CellSpec options it takes (others must stay at their defaults:
            ``activation`` tanh, ``proj_size`` 0, ``peephole``/``layer_norm`` False,
            ``reset_after`` True) and the layer options only it has (``forget_bias``).
        param_shapes: ``spec -> {name: shape}`` when its parameters are not torch.nn's
            ``weight_ih, weight_hh[, bias_ih, bias_hh]`` (plus the LSTM extras); None for
            that default.
        layer: the layer class's name (``LSTM``); default the name in capitals.
        fused: its fused C++ kernel, or None (it then runs on the bptt kernel).
        default_activation: the activation of its specs when none is given.
        public_state: for a two-state family whose layer takes and returns one of them
            (SRU and QRNN carry (h, c) but ``hx`` and ``h_n`` are c): that index; None
            when the layer exposes every state (LSTM's ``(h, c)``).
        project_input / project_input_backward: ``(spec, x, params)`` and
            ``(spec, d_x_proj, x, params)`` when the input projection is not
            ``x W_ih^T (+ b_ih)`` (see :meth:`CellSpec.project_input`).
        recurrent_dropout: whether the layer's ``recurrent_dropout`` applies (a mask on
            h_{t-1} before the recurrent weights, which the family's step takes).
        scan: ``(x_proj, h0) -> outputs`` computing every step at once, for a recurrence
            linear in h (:mod:`rnnkit.kernels.scan`); None when there is none.
    """

    name: str
    module: ModuleType
    gates: int
    states: int = 1
    options: frozenset = frozenset()
    param_shapes: Callable | None = None
    layer: str = ""
    fused: FusedKernel | None = None
    default_activation: str = "tanh"
    public_state: int | None = None
    project_input: Callable | None = None
    project_input_backward: Callable | None = None
    recurrent_dropout: bool = True
    scan: Callable | None = None


FAMILIES: dict[str, CellFamily] = {}


def register_family(family: CellFamily) -> CellFamily:
    """Make a family known to CellSpec, the kernels (bptt and reference run any family;
    the fused kernel those it has a C++ source for), the layers
    (:func:`rnnkit.layers.make_layer`) and the CLI's ``--cell``."""
    for attribute in ("step", "step_backward"):
        if not callable(getattr(family.module, attribute, None)):
            raise TypeError(f"register_family: {family.name}'s module must define "
                            f"{attribute}(...), got {family.module!r}")
    if family.fused is not None:
        for other in FAMILIES.values():
            if other.fused is not None and other.fused.code == family.fused.code \
                    and other.name != family.name:
                raise ValueError(f"register_family: fused code {family.fused.code} is "
                                 f"{other.name}'s, got it again for {family.name!r}")
    if family.states not in (1, 2):
        raise ValueError(f"register_family: states must be 1 (h) or 2 (h, c), "
                         f"got {family.states}")
    FAMILIES[family.name] = family
    return family


def input_only_param_shapes(spec) -> dict:
    """``weight_ih`` (gates H, H_in) and, with bias, ``bias_ih`` (gates H,): the parameters
    of a family whose every product is on the input (QRNN, minGRU, minLSTM)."""
    rows = spec.gates * spec.hidden_size
    shapes = {"weight_ih": (rows, spec.input_size)}
    if spec.bias:
        shapes["bias_ih"] = (rows,)
    return shapes


def _family(name: str) -> CellFamily:
    family = FAMILIES.get(name)
    if family is None:
        raise ValueError(f"CellSpec: family must be one of {sorted(FAMILIES)}, got {name!r}")
    return family


def _default_activation():
    return ACTIVATIONS["tanh"]


@dataclass(frozen=True)
class CellSpec:
    """Everything a kernel needs to know about one cell: family, sizes and options.

    Args:
        family: ``'rnn'``, ``'lstm'`` or ``'gru'``.
        input_size: H_in, features of x_t.
        hidden_size: H, size of the cell (and of h unless ``proj_size > 0``).
        bias: whether ``bias_ih`` / ``bias_hh`` exist.
        activation: RNN nonlinearity (``Activation``).
        proj_size: LSTM projection size P (0 = none); h has size P.
        peephole: LSTM peephole connections (diagonal ``weight_ci/cf/co``).
        layer_norm: LSTM layer normalisation (Ba et al. 2016).
        reset_after: GRU: apply r after the recurrent matmul (torch/cuDNN) or before (Cho).
    """

    family: str
    input_size: int
    hidden_size: int
    bias: bool = True
    activation: Activation = field(default_factory=_default_activation)
    proj_size: int = 0
    peephole: bool = False
    layer_norm: bool = False
    reset_after: bool = True

    @property
    def gates(self) -> int:
        """Number of gate blocks stacked in W_ih / W_hh (torch order)."""
        return _family(self.family).gates

    @property
    def output_size(self) -> int:
        """Size of h (the output), P when projecting, else H."""
        return self.proj_size if self.proj_size > 0 else self.hidden_size

    @property
    def state_sizes(self) -> tuple[int, ...]:
        """Sizes of the state tensors in the one documented order: (h,) or (h, c)."""
        if _family(self.family).states == 2:
            return (self.output_size, self.hidden_size)
        return (self.output_size,)

    @property
    def module(self):
        """The family module holding the pure step functions."""
        return _family(self.family).module

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter names (torch.nn names first, then rnnkit extras) and shapes."""
        custom = _family(self.family).param_shapes
        if custom is not None:
            return dict(custom(self))
        G, H, P = self.gates * self.hidden_size, self.hidden_size, self.output_size
        shapes = {"weight_ih": (G, self.input_size), "weight_hh": (G, P)}
        if self.bias:
            shapes["bias_ih"] = (G,)
            shapes["bias_hh"] = (G,)
        if self.proj_size > 0:
            shapes["weight_hr"] = (self.proj_size, H)
        if self.peephole:
            for gate in ("ci", "cf", "co"):
                shapes[f"weight_{gate}"] = (H,)
        if self.layer_norm:
            for part, size in (("ih", G), ("hh", G), ("c", H)):
                shapes[f"ln_{part}_weight"] = (size,)
                shapes[f"ln_{part}_bias"] = (size,)
        return shapes

    def param_names(self) -> tuple[str, ...]:
        return tuple(self.param_shapes())

    # The family functions, bound to this spec.
    def step(self, x_proj_t, state, params, h_mask=None):
        """One time step: ``(h_t, new_state, cache)``."""
        return self.module.step(x_proj_t, state, params, self, h_mask)

    def step_backward(self, d_h, d_state, cache, params):
        """Derivative of one step: ``(d_x_proj_t, d_state_prev, d_params)``."""
        return self.module.step_backward(d_h, d_state, cache, params, self)

    def project_input(self, x, params):
        """Input pre-activations of all steps in one GEMM: (..., H_in) -> (..., G).

        ``x W_ih^T + b_ih``; with layer norm the bias is added after the
        normalisation (inside ``step``), so it is left out here.
        """
        custom = _family(self.family).project_input
        if custom is not None:
            return custom(self, x, params)
        weight = params["weight_ih"]
        if self.bias and not self.layer_norm:
            return torch.addmm(params["bias_ih"], x.reshape(-1, x.size(-1)),
                               weight.t()).view(*x.shape[:-1], weight.size(0))
        return x @ weight.t()

    def project_input_backward(self, d_x_proj, x, params):
        """Derivative of ``project_input`` as big GEMMs over all steps at once.

        Returns ``(d_x, {'weight_ih': ..., 'bias_ih': ...})``.
        """
        custom = _family(self.family).project_input_backward
        if custom is not None:
            return custom(self, d_x_proj, x, params)
        d_flat = d_x_proj.reshape(-1, d_x_proj.size(-1))  # (T*B, G)
        x_flat = x.reshape(-1, x.size(-1))  # (T*B, H_in)
        grads = {"weight_ih": d_flat.t() @ x_flat}
        if self.bias and not self.layer_norm:
            grads["bias_ih"] = d_flat.sum(0)
        d_x = (d_flat @ params["weight_ih"]).view_as(x)
        return d_x, grads

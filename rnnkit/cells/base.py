"""What every cell family shares: the spec, activations with their derivatives, layer norm.

A *cell family* (``rnn``, ``lstm``, ``gru``) is a module of pure functions:

* ``project_input(x, params, spec)`` -- the part of the pre-activations that does not
  depend on the state, for all time steps at once (one GEMM): ``x @ W_ih^T (+ b_ih)``.
* ``step(x_proj_t, state, params, spec, h_mask)`` -> ``(h_t, new_state, cache)``.
* ``step_backward(d_h, d_state, cache, params, spec)`` -> ``(d_x_proj_t, d_state_prev,
  d_params)`` -- the hand-derived derivative of one step.

``CellSpec`` binds a family to its options and tells the kernels everything they need:
which parameters exist, their shapes, which state tensors the cell carries.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

__all__ = [
    "Activation",
    "ACTIVATIONS",
    "CellSpec",
    "get_activation",
    "layer_norm",
    "layer_norm_backward",
    "LN_EPS",
]

LN_EPS = 1e-5


@dataclass(frozen=True)
class Activation:
    """A nonlinearity and its derivative.

    ``derivative(a, y)`` receives both the pre-activation ``a`` and the output
    ``y = fn(a)``, so tanh and sigmoid can use the cheap forms written in terms of ``y``.
    """

    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    derivative: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

    def __reduce_ex__(self, protocol):
        # a built-in comes back as the very ACTIVATIONS entry (the fused kernel knows those
        # by identity), not as an equal copy
        if ACTIVATIONS.get(self.name) is self:
            return get_activation, (self.name,)
        return object.__reduce_ex__(self, protocol)


def _tanh_derivative(a, y):
    # tanh'(a) = 1 - tanh(a)^2
    return 1 - y * y


def _relu_derivative(a, y):
    # relu'(a) = 1 if a > 0 else 0
    return (a > 0).to(a.dtype)


def _sigmoid_derivative(a, y):
    # sigmoid'(a) = s(a) (1 - s(a))
    return y * (1 - y)


# module-level functions, not lambdas: a layer holding them pickles (torch.save(model))
ACTIVATIONS = {
    "tanh": Activation("tanh", torch.tanh, _tanh_derivative),
    "relu": Activation("relu", torch.relu, _relu_derivative),
    "sigmoid": Activation("sigmoid", torch.sigmoid, _sigmoid_derivative),
}


@dataclass(frozen=True)
class _PreActivationDerivative:
    """A user's ``derivative(a)`` as ``derivative(a, y)``; picklable when it is."""

    derivative: Callable[[torch.Tensor], torch.Tensor]

    def __call__(self, a, y):
        return self.derivative(a)


def get_activation(activation, owner: str = "RNN") -> Activation:
    """Resolve ``'tanh' | 'relu' | 'sigmoid' | (fn, derivative) | Activation``.

    A user pair ``(fn, derivative)`` takes ``derivative(a)`` of the pre-activation.
    """
    if isinstance(activation, Activation):
        return activation
    if isinstance(activation, str):
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"{owner}: activation must be one of {sorted(ACTIVATIONS)} or a "
                f"(function, derivative) pair, got {activation!r}")
        return ACTIVATIONS[activation]
    if (isinstance(activation, (tuple, list)) and len(activation) == 2
            and all(callable(f) for f in activation)):
        fn, derivative = activation
        name = getattr(fn, "__name__", "custom")
        return Activation(name, fn, _PreActivationDerivative(derivative))
    raise ValueError(
        f"{owner}: activation must be one of {sorted(ACTIVATIONS)} or a "
        f"(function, derivative) pair, got {activation!r}")


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
        return {"rnn": 1, "lstm": 4, "gru": 3}[self.family]

    @property
    def output_size(self) -> int:
        """Size of h (the output), P when projecting, else H."""
        return self.proj_size if self.proj_size > 0 else self.hidden_size

    @property
    def state_sizes(self) -> tuple[int, ...]:
        """Sizes of the state tensors in the one documented order: (h,) or (h, c)."""
        if self.family == "lstm":
            return (self.output_size, self.hidden_size)
        return (self.hidden_size,)

    @property
    def module(self):
        """The family module holding the pure step functions."""
        from rnnkit.cells import gru, lstm, rnn
        return {"rnn": rnn, "lstm": lstm, "gru": gru}[self.family]

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter names (torch.nn names first, then rnnkit extras) and shapes."""
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
        weight = params["weight_ih"]
        if self.bias and not self.layer_norm:
            return torch.addmm(params["bias_ih"], x.reshape(-1, x.size(-1)),
                               weight.t()).view(*x.shape[:-1], weight.size(0))
        return x @ weight.t()

    def project_input_backward(self, d_x_proj, x, params):
        """Derivative of ``project_input`` as big GEMMs over all steps at once.

        Returns ``(d_x, {'weight_ih': ..., 'bias_ih': ...})``.
        """
        d_flat = d_x_proj.reshape(-1, d_x_proj.size(-1))  # (T*B, G)
        x_flat = x.reshape(-1, x.size(-1))  # (T*B, H_in)
        grads = {"weight_ih": d_flat.t() @ x_flat}
        if self.bias and not self.layer_norm:
            grads["bias_ih"] = d_flat.sum(0)
        d_x = (d_flat @ params["weight_ih"]).view_as(x)
        return d_x, grads


def layer_norm(x: torch.Tensor, gain: torch.Tensor, shift: torch.Tensor):
    """y = gain ⊙ (x - mean(x)) / sqrt(var(x) + eps) + shift over the last dim.

    Returns ``(y, cache)``; ``cache = (x_hat, inv_std)`` is what the backward needs.
    """
    mean = x.mean(-1, keepdim=True)
    centered = x - mean
    var = (centered * centered).mean(-1, keepdim=True)
    inv_std = torch.rsqrt(var + LN_EPS)
    x_hat = centered * inv_std
    return x_hat * gain + shift, (x_hat, inv_std)


def layer_norm_backward(d_y: torch.Tensor, cache, gain: torch.Tensor):
    """Derivative of ``layer_norm``: returns ``(d_x, d_gain, d_shift)``.

    With x̂ = (x - μ)/σ and n features:
    d_x = (1/σ) (d_x̂ - mean(d_x̂) - x̂ · mean(d_x̂ ⊙ x̂)), d_x̂ = d_y ⊙ gain.
    """
    x_hat, inv_std = cache
    d_x_hat = d_y * gain
    d_x = inv_std * (d_x_hat - d_x_hat.mean(-1, keepdim=True)
                     - x_hat * (d_x_hat * x_hat).mean(-1, keepdim=True))
    d_gain = (d_y * x_hat).sum(0)
    d_shift = d_y.sum(0)
    return d_x, d_gain, d_shift

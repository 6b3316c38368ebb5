"""The leaf of the cells package: nonlinearities with their derivatives, and layer norm
with its hand-derived backward. Every family module and ``base`` import from here; this
module imports nothing of rnnkit's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

__all__ = ["Activation", "ACTIVATIONS", "get_activation", "layer_norm", "layer_norm_backward",
           "LN_EPS"]

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

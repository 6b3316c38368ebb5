"""Associative memories: the Hopfield network (1982) and the modern Hopfield network of
Ramsauer et al. (2020).

Classic network, states x ∈ {-1, +1}^n, K stored patterns ξ^μ (Hebbian rule):

.. math::
    W = \\frac{1}{n} \\sum_\\mu ξ^μ ξ^{μ\\top}, \\quad W_{ii} = 0, \\qquad
    E(x) = -\\tfrac{1}{2} x^\\top W x, \\qquad x_i \\leftarrow \\operatorname{sgn}(W_i x)

Asynchronous updates (one neuron at a time, sgn(0) keeping the neuron as it is) never
raise E: the change is -Δx_i (W_i x) <= 0 because W is symmetric with a zero diagonal.
Synchronous updates (all at once) may end in a 2-cycle instead. Stored patterns are
fixed points up to a load K/n of about 0.14 (Amit, Gutfreund & Sompolinsky 1985).

Modern network, continuous states, patterns the rows of X (K, n):

.. math::
    ξ \\leftarrow X^\\top \\operatorname{softmax}(β X ξ)

which retrieves exponentially many patterns in n (one update usually suffices).
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["Hopfield", "ModernHopfield", "recall_rate", "capacity_curve", "knee",
           "RECALL_OVERLAP"]

# a pattern counts as recalled when the final state equals it, every bit (overlap 1)
RECALL_OVERLAP = 1.0


def _check_patterns(owner, patterns, n=None):
    if not isinstance(patterns, torch.Tensor):
        raise TypeError(f"{owner}: patterns must be a tensor, got {type(patterns).__name__}")
    if patterns.dim() != 2 or (n is not None and patterns.size(1) != n):
        want = f"(K, {n})" if n is not None else "(K, n)"
        raise ValueError(f"{owner}: patterns must have shape {want}, "
                         f"got {tuple(patterns.shape)}")


class Hopfield(nn.Module):
    """The classic binary Hopfield network of ``n`` neurons.

    Args:
        n: the number of neurons.

    ``store(patterns (K, n))`` of ±1 sets the weights by the Hebbian rule;
    ``recall(x (n,) or (B, n))`` returns the state the network settles in;
    ``energy(x) -> (B,)`` or a scalar.

    Example::

        >>> net = Hopfield(4)
        >>> net.store(torch.tensor([[1., -1., 1., -1.]]))
        >>> net.recall(torch.tensor([1., 1., 1., -1.])).tolist()
        [1.0, -1.0, 1.0, -1.0]
    """

    def __init__(self, n):
        super().__init__()
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"Hopfield: n must be a positive integer, got {n!r}")
        self.n = n
        self.register_buffer("weight", torch.zeros(n, n))

    def store(self, patterns):
        """Hebbian weights ``W = P^T P / n`` with a zero diagonal (replaces the memory)."""
        _check_patterns("Hopfield", patterns, self.n)
        if not bool(((patterns == 1) | (patterns == -1)).all()):
            raise ValueError("Hopfield: patterns must hold only -1 and +1")
        p = patterns.to(self.weight.dtype)
        self.weight = (p.T @ p / self.n).fill_diagonal_(0.0)

    def energy(self, x):
        """``E(x) = -x^T W x / 2`` for each row of ``x``."""
        x = x.to(self.weight.dtype)
        return -0.5 * ((x @ self.weight) * x).sum(-1)

    def recall(self, x, steps=None, mode="async", generator=None):
        """Update ``x`` until nothing changes or ``steps`` sweeps (default 100) are done.

        ``mode="async"``: each sweep visits the neurons in a random order (from
        ``generator``), each update seeing the ones before it; ``"sync"``: every neuron at
        once. Returns the final state, shaped like ``x``.
        """
        return self.trajectory(x, steps, mode, generator)[-1]

    def update_neuron(self, state, i):
        """One asynchronous update, in place: ``x_i <- sgn(W_i x)`` for each row of
        ``state (B, n)`` (sgn(0) keeps ``x_i``). Returns ``state``."""
        state[:, i] = _sign_keep(state @ self.weight[i], state[:, i])
        return state

    def trajectory(self, x, steps=None, mode="async", generator=None):
        """The states after each sweep, starting with ``x`` itself (a list)."""
        if mode not in ("async", "sync"):
            raise ValueError(f"Hopfield: mode must be 'async' or 'sync', got {mode!r}")
        if x.size(-1) != self.n:
            raise ValueError(f"Hopfield: x.size(-1) must equal n={self.n}, got {x.size(-1)}")
        state = x.to(self.weight.dtype).reshape(-1, self.n).clone()   # (B, n)
        states = [state.reshape(x.shape).clone()]
        for _ in range(100 if steps is None else steps):
            before = state.clone()
            if mode == "sync":
                state = _sign_keep(state @ self.weight, state)
            else:
                for i in torch.randperm(self.n, generator=generator).tolist():
                    self.update_neuron(state, i)
            states.append(state.reshape(x.shape).clone())
            if torch.equal(state, before):
                break
        return states


def _sign_keep(field, current):
    """sgn(field), keeping ``current`` where the field is exactly 0."""
    return torch.where(field > 0, 1.0, torch.where(field < 0, -1.0, current))


class ModernHopfield(nn.Module):
    """The modern (dense) Hopfield network with ``ξ <- X^T softmax(β X ξ)``.

    Args:
        beta: the inverse temperature β (default 1.0).

    Example::

        >>> net = ModernHopfield(beta=1.0)
        >>> net.store(torch.tensor([[1., -1., 1., -1.], [1., 1., 1., 1.]]))
        >>> net.recall(torch.tensor([1., -1., -1., -1.])).sign().tolist()
        [1.0, -1.0, 1.0, -1.0]
    """

    def __init__(self, beta=1.0):
        super().__init__()
        if not beta > 0:
            raise ValueError(f"ModernHopfield: beta must be > 0, got {beta!r}")
        self.beta = beta
        self.register_buffer("patterns", torch.zeros(0, 0))

    def store(self, patterns):
        """Keep the patterns (K, n) as the rows of X."""
        _check_patterns("ModernHopfield", patterns)
        self.patterns = patterns.to(torch.get_default_dtype()).clone()

    def recall(self, x, steps=1):
        """``steps`` updates of ``x`` (n,) or (B, n); returns the continuous state."""
        if self.patterns.numel() == 0:
            raise ValueError("ModernHopfield: store patterns before recall")
        state = x.to(self.patterns.dtype)
        for _ in range(steps):
            weights = torch.softmax(self.beta * state @ self.patterns.T, dim=-1)  # (B, K)
            state = weights @ self.patterns                                       # (B, n)
        return state


def _corrupt(patterns, flip, generator):
    """``patterns`` with a random ``flip`` fraction of the bits of each row flipped."""
    k, n = patterns.shape
    count = int(round(flip * n))
    order = torch.rand(k, n, generator=generator).argsort(dim=1)[:, :count]
    signs = torch.ones(k, n).scatter_(1, order, -1.0)
    return patterns * signs


def recall_rate(network, patterns, flip, generator):
    """Fraction of ``patterns`` (K, n) stored in ``network`` that it recalls (overlap >=
    :data:`RECALL_OVERLAP`) from copies with ``flip`` of their bits flipped."""
    network.store(patterns)
    start = _corrupt(patterns, flip, generator)
    if isinstance(network, Hopfield):
        final = network.recall(start, generator=generator)
    else:
        final = network.recall(start).sign()
    overlap = (final * patterns).sum(-1) / patterns.size(1)
    return float((overlap >= RECALL_OVERLAP).float().mean())


def capacity_curve(n, loads, trials=5, flip=0.05, beta=1.0, seed=0):
    """``{"classic": [...], "modern": [...]}``: the mean recall rate at each load K/n
    (K = round(load n) random ±1 patterns, ``trials`` sets of them)."""
    generator = torch.Generator().manual_seed(seed)
    rates = {"classic": [], "modern": []}
    for load in loads:
        k = max(1, int(round(load * n)))
        totals = {"classic": 0.0, "modern": 0.0}
        for _ in range(trials):
            patterns = torch.randint(0, 2, (k, n), generator=generator).float() * 2 - 1
            totals["classic"] += recall_rate(Hopfield(n), patterns, flip, generator)
            totals["modern"] += recall_rate(ModernHopfield(beta), patterns, flip, generator)
        for name in rates:
            rates[name].append(totals[name] / trials)
    return rates


def knee(loads, rates, level=0.5):
    """The first load where ``rates`` falls below ``level``, linearly interpolated
    between the loads either side; None if it never does."""
    for i, rate in enumerate(rates):
        if rate < level:
            if i == 0:
                return float(loads[0])
            l0, l1, r0, r1 = loads[i - 1], loads[i], rates[i - 1], rate
            return float(l0 + (r0 - level) / (r0 - r1) * (l1 - l0))
    return None

"""Gradient flow through time: the norm of dL/dh_t for every step t.

The loss reads the last step only, :math:`L = \\frac{1}{N}\\sum_n v^\\top h_T^{(n)}` with
a fixed random readout ``v``, so every gradient that reaches an earlier step travelled
there through the recurrence (backpropagation through time):

.. math::
    \\frac{\\partial L}{\\partial h_t} = \\frac{\\partial L}{\\partial h_T}
        \\prod_{k=t+1}^{T} \\frac{\\partial h_k}{\\partial h_{k-1}}

For a tanh RNN each factor is :math:`\\mathrm{diag}(1 - h_k^2)\\, W_{hh}`: with a spectral
radius of W_hh below one the product shrinks geometrically (vanishing gradients), far
above one it can grow (exploding). The LSTM's cell path multiplies by the forget gates
instead, which a forget-gate bias keeps near one:

.. math::
    \\frac{\\partial L}{\\partial c_t} = f_{t+1} \\odot \\frac{\\partial L}{\\partial c_{t+1}}
        + (\\text{terms through } h_t \\text{ and the gates})

so for an LSTM the norms of dL/dc_t (the cell path) are reported beside those of dL/dh_t.

The cell runs one step at a time through the reference kernel (autograd over the
family's own ``step``, :mod:`rnnkit.kernels.reference`) and every h_t and c_t keeps its
gradient (``retain_grad``), so the norms are autograd's exact per-step total
derivatives (c_T too: inside one step h_T = o_T ⊙ tanh(c_T) reads the very tensor), in
float64 so that a vanished gradient is a tiny number, not 0.
This module reads models; it never trains.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

__all__ = ["gradient_norms", "run_gradient_norms", "make_cell", "spectral_radius",
           "per_step_gradient_norms", "per_step_state_gradient_norms",
           "plot_gradient_norms"]

_GATES = {"rnn": "h", "lstm": "ifgo", "gru": "rzn"}
_CANDIDATE = {"rnn": "h", "lstm": "g", "gru": "n"}  # the block that carries the state


def make_cell(cell, input_size, hidden_size, *, activation="tanh", forget_bias=0.0,
              init_scale=1.0, seed=0):
    """An rnnkit cell at its default (torch.nn) initialisation, float64, drawn from
    ``seed``, with W_hh multiplied by ``init_scale``."""
    import rnnkit

    if cell not in _GATES:
        raise ValueError(f"plot gradients: cell must be one of rnn, lstm, gru, got {cell!r}")
    if not (init_scale > 0 and math.isfinite(init_scale)):
        raise ValueError(f"plot gradients: init_scale must be > 0 and finite, got {init_scale}")
    torch.manual_seed(seed)
    if cell == "rnn":
        module = rnnkit.RNNCell(input_size, hidden_size, nonlinearity=activation)
    elif cell == "lstm":
        module = rnnkit.LSTMCell(input_size, hidden_size, forget_bias=forget_bias)
    else:
        module = rnnkit.GRUCell(input_size, hidden_size)
    module = module.double()
    with torch.no_grad():
        module.weight_hh.mul_(init_scale)
    return module


def spectral_radius(weight_hh, cell):
    """``(rho, per_gate)``: the largest |eigenvalue| of the H x H block of W_hh that
    feeds the candidate (RNN: all of W_hh; LSTM: g; GRU: n), and of every gate's block."""
    hidden = weight_hh.size(1)
    blocks = {}
    for k, gate in enumerate(_GATES[cell]):
        block = weight_hh[k * hidden:(k + 1) * hidden].detach().double()
        blocks[gate] = float(torch.linalg.eigvals(block).abs().max()) if hidden else 0.0
    return blocks[_CANDIDATE[cell]], blocks


def per_step_state_gradient_norms(module, inputs, readout):
    """``{"h": [||dL/dh_t||], "c": [||dL/dc_t||] (LSTM only)}`` (Frobenius over the
    batch) for t = 1..T, where the rnnkit cell ``module`` steps through ``inputs``
    (T, N, H_in) from a zero state and ``L = mean_n(readout . h_T)``."""
    from rnnkit.kernels import dispatch
    from rnnkit.layers import _module_params

    params = _module_params(module, module._names)
    batch = inputs.size(1)
    state = tuple(inputs.new_zeros(batch, size) for size in module._spec.state_sizes)
    states = []
    for x_t in inputs:                                   # (N, H_in)
        # the reference kernel: c_t is the tensor that h_t = o_t * tanh(c_t) reads, so
        # its gradient is the total one (a fused step hides that read inside the op)
        _, state = dispatch.run(module._spec, x_t.unsqueeze(0), state, params,
                                kernel="reference")
        for tensor in state:                             # (N, H) each
            tensor.retain_grad()
        states.append(state)
    loss = (states[-1][0] @ readout).mean()
    loss.backward()
    names = ("h", "c")[:len(states[0])]
    return {name: [float(s[k].grad.norm()) for s in states] for k, name in enumerate(names)}


def per_step_gradient_norms(module, inputs, readout):
    """``||dL/dh_t||`` for t = 1..T (see :func:`per_step_state_gradient_norms`)."""
    return per_step_state_gradient_norms(module, inputs, readout)["h"]


def _ratio(norms):
    return norms[-1] / norms[0] if norms[0] > 0 else math.inf


def _result(label, cell, module, state_norms, **settings):
    """The JSON of one curve: ``norms`` (dL/dh_t), for an LSTM also ``cell_norms``
    (dL/dc_t), and each one's ``..._ratio_last_to_first`` = norm_T / norm_1."""
    rho, per_gate = spectral_radius(module.weight_hh, cell)
    norms = state_norms["h"]
    result = {"label": label, "cell": cell, "norms": norms, "spectral_radius": rho,
              "spectral_radius_gates": per_gate, "ratio_last_to_first": _ratio(norms)}
    if "c" in state_norms:
        result.update(cell_norms=state_norms["c"],
                      cell_ratio_last_to_first=_ratio(state_norms["c"]))
    return {**result, **settings}


def gradient_norms(cell, *, length=100, hidden_size=64, input_size=16, batch_size=8,
                   activation="tanh", forget_bias=0.0, init_scale=1.0, seed=0):
    """The norms of dL/dh_t (and of dL/dc_t for an LSTM) of a freshly initialised
    ``cell`` ('rnn', 'lstm', 'gru') on N(0, 1) inputs, with the spectral radius of its
    W_hh; a dict (see :func:`_result`). ``ratio_last_to_first`` is norm_T / norm_1.

    ``forget_bias`` is added to the LSTM's ``bias_ih`` forget block at init, on top of
    torch's U(-1/sqrt(H), 1/sqrt(H)) draw of both biases, so the forget gate's total bias
    starts near ``forget_bias`` (the single b_f of Gers et al. and Jozefowicz et al.)."""
    for name, value in (("length", length), ("hidden_size", hidden_size),
                        ("input_size", input_size), ("batch_size", batch_size)):
        if value < 1:
            raise ValueError(f"plot gradients: {name} must be >= 1, got {value}")
    module = make_cell(cell, input_size, hidden_size, activation=activation,
                       forget_bias=forget_bias, init_scale=init_scale, seed=seed)
    generator = torch.Generator().manual_seed(seed + 1)
    inputs = torch.randn(length, batch_size, input_size, generator=generator,
                         dtype=torch.float64)
    readout = torch.randn(hidden_size, generator=generator, dtype=torch.float64)
    norms = per_step_state_gradient_norms(module, inputs, readout / math.sqrt(hidden_size))
    label = cell + (f" ({activation})" if cell == "rnn" and activation != "tanh" else "")
    label += f", forget bias {forget_bias:g}" if cell == "lstm" else ""
    label += f", W_hh x {init_scale:g}" if init_scale != 1 else ""
    return _result(label, cell, module, norms, length=length, hidden_size=hidden_size,
                   activation=activation if cell == "rnn" else None,
                   forget_bias=forget_bias if cell == "lstm" else None,
                   init_scale=init_scale, seed=seed)


def cell_of_layer(layer, index=0):
    """A float64 rnnkit cell holding layer ``index`` of a trained rnnkit RNN / LSTM /
    GRU (unidirectional, no projection)."""
    import rnnkit

    family = layer.family
    options = {k: getattr(layer, k) for k in ("peephole", "layer_norm", "reset_after",
                                                  "forget_bias") if hasattr(layer, k)}
    if family == "rnn":
        options = {"nonlinearity": getattr(layer, "nonlinearity", "tanh")}
    options.pop("forget_bias", None)  # weights are loaded below: init settings do not matter
    classes = {"rnn": rnnkit.RNNCell, "lstm": rnnkit.LSTMCell, "gru": rnnkit.GRUCell}
    if family not in classes or getattr(layer, "proj_size", 0) or layer.bidirectional:
        raise ValueError(f"plot gradients: --run needs a unidirectional rnn, lstm or gru "
                         f"model without projection, got {type(layer).__name__}")
    hidden = layer.hidden_size
    size_in = layer.input_size if index == 0 else hidden
    cell = classes[family](size_in, hidden, bias=layer.bias, **options).double()
    state = {name[:-len(f"_l{index}")]: value for name, value in layer.state_dict().items()
             if name.endswith(f"_l{index}")}
    cell.load_state_dict(state)
    return cell


def run_gradient_norms(model, label, *, length=100, batch_size=8, seed=0):
    """:func:`gradient_norms` for the first recurrent layer of a trained language model
    ``model``, its inputs the embeddings of random tokens drawn from ``seed``."""
    cell = cell_of_layer(model.rnn, 0)
    generator = torch.Generator().manual_seed(seed + 1)
    tokens = torch.randint(model.vocab_size, (length, batch_size), generator=generator)
    with torch.no_grad():
        inputs = model.embedding(tokens).double()       # (T, N, E)
    readout = torch.randn(cell.hidden_size, generator=generator, dtype=torch.float64)
    norms = per_step_state_gradient_norms(cell, inputs, readout / math.sqrt(cell.hidden_size))
    return _result(label, cell.family, cell, norms, length=length,
                   hidden_size=cell.hidden_size, seed=seed)


def plot_gradient_norms(results, png_path, title=None):
    """One log-scale line of ||dL/dh_t|| against t per result (and a dashed one of
    ||dL/dc_t||, the cell path, for an LSTM); returns the path."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    floor = 1e-300  # an exactly-zero gradient would vanish from a log axis
    for result in results:
        steps = range(1, len(result["norms"]) + 1)
        line, = ax.semilogy(steps, [max(n, floor) for n in result["norms"]], linewidth=1.4,
                            label=f"{result['label']} (rho {result['spectral_radius']:.2f})")
        if "cell_norms" in result:
            ax.semilogy(steps, [max(n, floor) for n in result["cell_norms"]], linewidth=1.2,
                        linestyle="--", color=line.get_color(),
                        label=f"{result['label']}: cell path ||dL/dc_t||")
    ax.set_xlabel("time step t (loss at t = T only)")
    ax.set_ylabel("||dL/dh_t||  (dashed: ||dL/dc_t||)" if any(
        "cell_norms" in r for r in results) else "||dL/dh_t||")
    ax.set_title(title or "gradient flowing back through time")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return Path(png_path)

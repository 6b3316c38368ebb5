r"""Recurrent layers that are drop-in replacements for ``torch.nn.RNN / LSTM / GRU``.

Same constructor arguments, same forward signature, same ``state_dict`` keys
(``weight_ih_l{k}{_reverse}`` ...), PackedSequence in and out, unbatched input; plus the
options torch.nn lacks, each composable with the others:

============================  =========================================================
``forget_bias`` (LSTM)        added to the forget-gate block of ``bias_ih`` at init
                              (default 0 as torch; 1.0 is Jozefowicz et al. 2015's advice)
``peephole`` (LSTM)           diagonal c -> gate weights (Gers & Schmidhuber 2000)
``layer_norm`` (LSTM)         LN-LSTM (Ba et al. 2016), see :mod:`rnnkit.cells.lstm`
``activation`` (RNN)          'tanh' | 'relu' | 'sigmoid' | (function, derivative)
``reset_after`` (GRU)         True: torch/cuDNN formulation; False: Cho et al. 2014
``recurrent_dropout``         variational dropout on h before W_hh, one mask per
                              sequence (Gal & Ghahramani 2016)
``weight_drop``               DropConnect on W_hh, one mask per forward (Merity et al. 2017)
``zoneout``                   each unit of the state keeps its previous value with this
                              probability (Krueger et al. 2016); expectation in eval
``checkpoint_steps``          K > 0: activation checkpointing in chunks of K steps
                              (exact gradients, activations of K steps per layer kept)
``residual``                  every layer whose input and output widths match adds its
                              input to its output (before the dropout between layers)
============================  =========================================================

Dropout-style options act only in training mode. The state order is ``(h, c)`` everywhere.
"""
from __future__ import annotations

import math
import numbers
import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from rnnkit.cells import FAMILIES, CellSpec, get_activation
from rnnkit.errors import DTypeError, ShapeError
from rnnkit.kernels import dispatch

__all__ = ["RNN", "LSTM", "GRU", "IndRNN", "SRU", "QRNN", "MinGRU", "MinLSTM", "RNNCell",
           "LSTMCell", "GRUCell", "LAYERS", "layer_class", "make_layer"]

def _check_size(owner, name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: {name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{owner}: {name} must be >= {minimum}, got {value}")


def _check_rate(owner, name, value, closed=False):
    """A probability in [0, 1) (or [0, 1] when ``closed``: torch.nn's dropout)."""
    interval = "[0, 1]" if closed else "[0, 1)"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {name} must be a float in {interval}, got {value!r}")
    if not (0 <= value <= 1 if closed else 0 <= value < 1):
        raise ValueError(f"{owner}: {name} must be in {interval}, got {value}")


def _check_flag(owner, name, value):
    """torch.nn raises TypeError for a non-bool ``bias`` or ``batch_first`` (bias=0 would
    otherwise quietly build a layer without bias, batch_first="False" run batch first)."""
    if not isinstance(value, bool):
        raise TypeError(f"{owner}: {name} must be a bool, got {type(value).__name__} "
                        f"{value!r}")


def _make_spec(owner, family, input_size, hidden_size, bias, *, activation, proj_size,
               forget_bias, peephole, layer_norm, reset_after, minimum=1) -> CellSpec:
    """Validate the equation options for one family and build its CellSpec (sizes of at
    least ``minimum``: torch.nn's layers need 1, its cells accept 0)."""
    _check_size(owner, "input_size", input_size, minimum)
    _check_size(owner, "hidden_size", hidden_size, minimum)
    _check_size(owner, "proj_size", proj_size, minimum=0)
    family_info = FAMILIES.get(family)
    if family_info is None:
        raise ValueError(f"{owner}: cell family must be one of {sorted(FAMILIES)}, "
                         f"got {family!r}")
    given = {"forget_bias": forget_bias, "peephole": peephole, "layer_norm": layer_norm,
             "proj_size": proj_size, "activation": activation,
             "reset_after": reset_after is not True}  # (True is reset_after's default)
    for name, value in given.items():
        if value and name not in family_info.options:
            owners = " / ".join(sorted(f.layer or f.name.upper() for f in FAMILIES.values()
                                       if name in f.options)) or "no cell's"
            article = "an" if owners[0] in "AEFHILMNORSX" else "a"  # an LSTM, a GRU
            value = reset_after if name == "reset_after" else value
            raise ValueError(f"{owner}: {name} is {article} {owners} option, "
                             f"got {name}={value!r}")
    if proj_size > 0 and proj_size >= hidden_size:
        raise ValueError(f"{owner}: proj_size must be smaller than hidden_size={hidden_size}, "
                         f"got {proj_size}")
    if forget_bias != 0 and not bias:
        raise ValueError(f"{owner}: forget_bias={forget_bias} needs bias=True, got bias=False")
    return CellSpec(family, input_size, hidden_size, bias=bias,
                    activation=get_activation(activation or family_info.default_activation,
                                              owner),
                    proj_size=proj_size, peephole=bool(peephole),
                    layer_norm=bool(layer_norm), reset_after=bool(reset_after))


def _init_cell_parameters(module, names, spec, forget_bias):
    """torch.nn's init (U(-1/√H, 1/√H)) for every weight; LN gains 1, shifts 0.

    ``names`` maps cell parameter names to the module's attribute names.
    """
    bound = 1.0 / math.sqrt(spec.hidden_size) if spec.hidden_size > 0 else 0.0
    with torch.no_grad():
        for base, attribute in names.items():
            param = getattr(module, attribute)
            if base.startswith("ln_"):
                param.fill_(1.0 if base.endswith("_weight") else 0.0)
            else:
                param.uniform_(-bound, bound)
            if base == "bias_ih" and forget_bias:
                H = spec.hidden_size
                param[H:2 * H] += forget_bias  # gate order i|f|g|o


def _check_input(owner, input, input_size, weight):
    if not torch.is_tensor(input):
        raise TypeError(f"{owner}: input must be a Tensor or PackedSequence, "
                        f"got {type(input).__name__}")
    if input.dim() == 0:
        raise ValueError(f"{owner}: input must have at least one dimension, got a scalar")
    if input.size(-1) != input_size:
        raise ShapeError(f"{owner}: input.size(-1) must equal input_size={input_size}, "
                         f"got {input.size(-1)}")
    if not input.is_floating_point():
        raise DTypeError(f"{owner}: input must be a floating-point tensor, got {input.dtype}")
    if input.dtype != weight.dtype:
        raise DTypeError(f"{owner}: input dtype ({input.dtype}) must match the weights' "
                         f"dtype ({weight.dtype}); convert the input with "
                         f"input.to({weight.dtype}) or the model with model.to({input.dtype})")


def _check_state(owner, name, value, shape, like):
    if not torch.is_tensor(value):
        raise TypeError(f"{owner}: {name} must be a Tensor, got {type(value).__name__}")
    if value.shape != tuple(shape):
        raise ShapeError(f"{owner}: {name} must have shape {tuple(shape)}, "
                         f"got {tuple(value.shape)}")
    if value.dtype != like.dtype:
        raise DTypeError(f"{owner}: {name} must have dtype {like.dtype} like the input, "
                         f"got {value.dtype}")
    if not (value.is_cpu and like.is_cpu) and value.device != like.device:
        raise ValueError(f"{owner}: {name} must be on device {like.device} like the input, "
                         f"got {value.device}")


def _module_params(module, attributes):
    """``{name: module.<attribute>}`` for ``attributes = {name: attribute}``, read from
    ``module._parameters`` (getattr on a Module costs ~1 us per parameter), falling back to
    getattr for a parametrized or replaced weight that is not a registered parameter."""
    try:
        registered = module._parameters
        return {name: registered[attr] for name, attr in attributes.items()}
    except KeyError:
        return {name: getattr(module, attr) for name, attr in attributes.items()}


def _exposed_states(family):
    """How a family's layer shows its state: "both" (LSTM's (h, c)), or the index of the
    one state hx and h_n are (0: h; SRU and QRNN carry (h, c) and expose c)."""
    info = FAMILIES[family]
    if info.public_state is not None:
        return info.public_state
    return "both" if info.states == 2 else 0


def _parse_hx(owner, family, hx, shapes, like):
    """The user's hx as a tuple of all state tensors, each checked against its shape; a
    state the layer does not expose starts at zeros."""
    exposed = _exposed_states(family)
    if exposed == "both":
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError(f"{owner}: hx must be a tuple (h_0, c_0), got {type(hx).__name__}")
        states, names = tuple(hx), ("hx[0] (h_0)", "hx[1] (c_0)")
        for value, name, shape in zip(states, names, shapes):
            _check_state(owner, name, value, shape, like)
        return states
    _check_state(owner, "hx", hx, shapes[exposed], like)
    return tuple(hx if i == exposed else like.new_zeros(shape) for i, shape in enumerate(shapes))


def _exposed(family, state):
    """The state a layer returns: (h, c) for LSTM, else the one exposed tensor."""
    exposed = _exposed_states(family)
    return state if exposed == "both" else state[exposed]


class RNNBase(nn.Module):
    """Multi-layer, optionally bidirectional recurrent layer over any cell family."""

    family = "rnn"
    window = 1  # inputs per step the cell sees: x_t, or [x_{t-1}; x_t] (QRNN window 2)

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, *, activation=None,
                 forget_bias=0.0, peephole=False, layer_norm=False, reset_after=True,
                 recurrent_dropout=0.0, weight_drop=0.0, zoneout=0.0, checkpoint_steps=0,
                 residual=False, device=None, dtype=None):
        super().__init__()
        owner = type(self).__name__
        _check_size(owner, "checkpoint_steps", checkpoint_steps, minimum=0)
        _check_flag(owner, "residual", residual)
        self.checkpoint_steps, self.residual = checkpoint_steps, residual
        _check_size(owner, "num_layers", num_layers)
        _check_flag(owner, "bias", bias)
        _check_flag(owner, "batch_first", batch_first)
        _check_rate(owner, "dropout", dropout, closed=True)
        for name, rate in (("recurrent_dropout", recurrent_dropout),
                           ("weight_drop", weight_drop), ("zoneout", zoneout)):
            _check_rate(owner, name, rate)
        if dropout > 0 and num_layers == 1:
            warnings.warn(f"{owner}: dropout={dropout} acts between layers, so it does "
                          f"nothing with num_layers=1", UserWarning, stacklevel=2)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.proj_size = bool(bidirectional), proj_size
        self.forget_bias, self.peephole, self.layer_norm = forget_bias, peephole, layer_norm
        self.reset_after, self.activation = reset_after, activation
        self.recurrent_dropout, self.weight_drop = float(recurrent_dropout), float(weight_drop)
        self.zoneout = float(zoneout)
        directions = 2 if bidirectional else 1
        output_size = proj_size if proj_size > 0 else hidden_size
        options = dict(activation=activation, proj_size=proj_size, forget_bias=forget_bias,
                       peephole=peephole, layer_norm=layer_norm, reset_after=reset_after)
        family_info = FAMILIES.get(self.family)
        if family_info is not None and recurrent_dropout and not family_info.recurrent_dropout:
            raise ValueError(f"{owner}: recurrent_dropout needs a recurrence through h_(t-1), "
                             f"which {owner} does not have; got recurrent_dropout="
                             f"{recurrent_dropout}")
        self._specs = []
        self._param_names = []  # per (layer, direction): {cell name: attribute name}
        factory = {"device": device, "dtype": dtype}
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else output_size * directions
            spec = _make_spec(owner, self.family, layer_input * self.window, hidden_size, bias,
                              **options)
            self._specs.append(spec)
            for direction in range(directions):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                names = {}
                for name, shape in spec.param_shapes().items():
                    self.register_parameter(name + suffix,
                                            nn.Parameter(torch.empty(shape, **factory)))
                    names[name] = name + suffix
                self._param_names.append(names)
        self.reset_parameters()

    def reset_parameters(self):
        """torch.nn's initialisation, then the forget bias and layer-norm gains."""
        for index, names in enumerate(self._param_names):
            spec = self._specs[index // self.num_directions]
            _init_cell_parameters(self, names, spec, self.forget_bias)

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        return self.proj_size if self.proj_size > 0 else self.hidden_size

    def flatten_parameters(self):
        """No-op, for code written against torch.nn (there is no cuDNN weight buffer)."""

    def forward(self, input, hx=None):
        """Run over a (L, N, H_in) / (N, L, H_in) / (L, H_in) tensor or a PackedSequence.

        Returns ``(output, h_n)`` for RNN/GRU and ``(output, (h_n, c_n))`` for LSTM, with
        torch.nn's shapes: output (L, N, D*H_out), h_n (D*num_layers, N, H_out),
        c_n (D*num_layers, N, H_cell).
        """
        x, lengths, packed, batched = self._sequence_input(input)
        state0 = self._initial_state(hx, x, batched)
        output, state, _ = self._run_layers(x, state0, lengths)
        output, state = self._shaped_result(output, state, packed, batched)
        return output, _exposed(self.family, state)

    def _sequence_input(self, input):
        """``(x (T, N, H_in) time-major, lengths or None, the PackedSequence or None,
        batched)`` from what forward was given, validated."""
        owner = type(self).__name__
        lengths = None
        if isinstance(input, PackedSequence):
            packed = input
            x, lengths = pad_packed_sequence(packed)  # (T, N, H_in), original batch order
            batched = True
        else:
            packed = None
            _check_input(owner, input, self.input_size, self._first_weight())
            if input.dim() not in (2, 3):
                raise ValueError(f"{owner}: input must be 2-D (unbatched) or 3-D (batched), "
                                 f"got {input.dim()}-D with shape {tuple(input.shape)}")
            batched = input.dim() == 3
            x = input if batched else input.unsqueeze(1)
            if batched and self.batch_first:
                x = x.transpose(0, 1)
        _check_input(owner, x, self.input_size, self._first_weight())
        if x.size(0) == 0:
            raise RuntimeError(f"{owner}: expected sequence length to be larger than 0, got "
                               f"input of shape {tuple(input.shape)}")
        return x, lengths, packed, batched

    def _shaped_result(self, output, state, packed, batched):
        """The (T, N, *) output and the states in the layout of the input."""
        if packed is not None:
            output = _repack(output, packed)
        elif not batched:
            output = output.squeeze(1)
            state = tuple(s.squeeze(1) for s in state)
        elif self.batch_first:
            output = output.transpose(0, 1)
        return output, state

    def _initial_state(self, hx, x, batched):
        """hx validated and brought to (D*num_layers, N, S) per state tensor; zeros if None."""
        owner = type(self).__name__
        batch, depth = x.size(1), self.num_layers * self.num_directions
        sizes = self._specs[0].state_sizes
        if hx is None:
            return tuple(x.new_zeros(depth, batch, size) for size in sizes)
        shapes = [(depth, batch, size) if batched else (depth, size) for size in sizes]
        states = _parse_hx(owner, self.family, hx, shapes, x)
        return states if batched else tuple(s.unsqueeze(1) for s in states)

    def _run_layers(self, x, state0, lengths, carried=None):
        """Every layer and direction through ``dispatch.run``; dropout between layers.

        Returns ``(output, final states, last inputs)``: with a window of 2 the cell sees
        [x_{t-1}; x_t] (see :func:`_windowed`), ``carried`` holds each layer's input from
        before the first step (None: zeros) and the last inputs are each layer's input at
        its last step, for the next chunk; with window 1 they are None."""
        layer_input = x
        finals, last_inputs = [], None if self.window == 1 else []
        for layer in range(self.num_layers):
            spec = self._specs[layer]
            outputs = []
            for direction in range(self.num_directions):
                index = layer * self.num_directions + direction
                batch = x.size(1)
                cell_input = layer_input
                if self.window > 1:
                    before = None if carried is None or direction else carried[layer]
                    cell_input = _windowed(layer_input, before, direction == 1, lengths)
                out, state = self._run_direction(
                    spec, cell_input, tuple(s[index] for s in state0),
                    self._cell_params(index), reverse=direction == 1, lengths=lengths,
                    h_mask=self._recurrent_mask(batch, layer_input),
                    zoneout=self._zoneout(spec, layer_input))
                outputs.append(out)
                finals.append(state)
            if last_inputs is not None:
                last_inputs.append(_last_steps(layer_input, lengths))
            layer_output = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)
            if self.residual and layer_output.size(-1) == layer_input.size(-1):
                layer_output = layer_output + layer_input  # a skip connection around the layer
            layer_input = layer_output
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, training=True)
        final_state = tuple(torch.stack(parts) for parts in zip(*finals))
        return layer_input, final_state, last_inputs

    def _run_direction(self, spec, x, state0, params, **sequence):
        """One layer and direction: ``dispatch.run``, or with ``checkpoint_steps`` = K and a
        graph to build, chunk by chunk of K steps under activation checkpointing: each
        chunk keeps only its input and carried state, and its forward runs again during
        backward. The gradients are the plain backward's (the recomputation is the same
        deterministic kernel with the same masks); memory for activations goes from T to
        K steps per layer, at the cost of a second forward."""
        steps = self.checkpoint_steps
        if not steps or x.size(0) <= steps or not torch.is_grad_enabled():
            return dispatch.run(spec, x, state0, params, **sequence)
        return _checkpointed_run(spec, x, state0, params, steps, **sequence)

    def _first_weight(self):
        """weight_ih_l0 (the dtype the input must have), parametrized or not."""
        return getattr(self, self._param_names[0]["weight_ih"])

    @property
    def _flat_weights_names(self):
        """Parameter names in torch.nn's order: per layer and direction, the cell's."""
        return [attr for names in self._param_names for attr in names.values()]

    @property
    def _flat_weights(self):
        """The parameters in ``_flat_weights_names`` order (read each time, so a
        parametrized or replaced weight is the current one)."""
        return [getattr(self, name) for name in self._flat_weights_names]

    @property
    def all_weights(self):
        """Per layer and direction, the list of its parameters, as torch.nn's."""
        return [[getattr(self, attr) for attr in names.values()]
                for names in self._param_names]

    def _cell_params(self, index):
        params = _module_params(self, self._param_names[index])
        if self.weight_drop > 0 and self.training:
            params["weight_hh"] = F.dropout(params["weight_hh"], self.weight_drop, training=True)
        return params

    def _recurrent_mask(self, batch, like):
        """One variational-dropout mask per sequence, kept for all steps (Gal & Ghahramani)."""
        if self.recurrent_dropout == 0 or not self.training:
            return None
        keep = 1 - self.recurrent_dropout
        mask = like.new_empty(batch, self.output_size).bernoulli_(keep)
        return mask / keep

    def _zoneout(self, spec, like):
        """Zoneout masks (1 = keep the previous value) in training, the rate in eval."""
        if self.zoneout == 0:
            return None
        if not self.training:
            return tuple(like.new_tensor(self.zoneout) for _ in spec.state_sizes)
        steps, batch = like.size(0), like.size(1)
        return tuple(like.new_empty(steps, batch, size).bernoulli_(self.zoneout)
                     for size in spec.state_sizes)

    def extra_repr(self) -> str:
        parts = [f"{self.input_size}, {self.hidden_size}"]
        defaults = dict(proj_size=0, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                        bidirectional=False, activation=None, forget_bias=0.0,  # torch's order
                        peephole=False, layer_norm=False, reset_after=True,
                        recurrent_dropout=0.0, weight_drop=0.0, zoneout=0.0,
                        checkpoint_steps=0, residual=False)
        for name, default in defaults.items():
            value = getattr(self, name)
            if value != default:
                parts.append(f"{name}={value!r}")
        return ", ".join(parts)


def _checkpointed_run(spec, x, state0, params, steps, *, reverse, lengths, h_mask, zoneout):
    """dispatch.run over chunks of ``steps`` steps, each under torch.utils.checkpoint; the
    chunks run in the direction's order and carry the state."""
    from torch.utils.checkpoint import checkpoint

    T = x.size(0)
    starts = list(range(0, T, steps))
    names = list(params)
    outputs = [None] * len(starts)
    state = tuple(state0)
    for index in (reversed(range(len(starts))) if reverse else range(len(starts))):
        t0 = starts[index]
        t1 = min(T, t0 + steps)
        chunk_lengths = None if lengths is None else (lengths - t0).clamp(0, t1 - t0)
        chunk_zoneout = None if zoneout is None else tuple(
            z[t0:t1] if z.dim() == 3 else z for z in zoneout)

        def run_chunk(x_chunk, *tensors, chunk_lengths=chunk_lengths, zone=chunk_zoneout):
            chunk_state = tensors[:len(state0)]
            chunk_params = dict(zip(names, tensors[len(state0):]))
            out, final = dispatch.run(spec, x_chunk, chunk_state, chunk_params,
                                      reverse=reverse, lengths=chunk_lengths, h_mask=h_mask,
                                      zoneout=zone)
            return (out, *final)

        out, *state = checkpoint(run_chunk, x[t0:t1], *state, *params.values(),
                                 use_reentrant=False)
        outputs[index] = out
        state = tuple(state)
    return torch.cat(outputs), state


def _windowed(x, before, reverse, lengths):
    """[x_prev; x_t] for every step t of a (T, N, W) layer input: x_prev is the input one
    step earlier in the direction of processing (x_{t-1}, or x_{t+1} in reverse), the
    older one first. Before the first step it is ``before`` (N, W) or zeros; in reverse,
    past each sequence's last valid step (``lengths``), zeros."""
    if not reverse:
        first = x.new_zeros(1, *x.shape[1:]) if before is None else before.unsqueeze(0)
        previous = torch.cat([first, x[:-1]], dim=0)
    else:
        previous = torch.cat([x[1:], x.new_zeros(1, *x.shape[1:])], dim=0)
        if lengths is not None:  # x_{t+1} is padding at t = length - 1
            steps = torch.arange(x.size(0), device=x.device).unsqueeze(1)
            valid = steps + 1 < lengths.to(x.device).unsqueeze(0)  # (T, N)
            previous = previous.masked_fill(~valid.unsqueeze(-1), 0)
    return torch.cat([previous, x], dim=-1)


def _last_steps(x, lengths):
    """x at each sequence's last valid step: (N, W) from (T, N, W)."""
    if lengths is None:
        return x[-1]
    index = (lengths.to(x.device) - 1).view(1, -1, 1).expand(1, x.size(1), x.size(2))
    return x.gather(0, index).squeeze(0)


def _repack(output, packed):
    """Padded (T, N, *) output in original batch order -> PackedSequence like ``packed``."""
    sorted_output = output
    if packed.sorted_indices is not None:
        sorted_output = output.index_select(1, packed.sorted_indices.to(output.device))
    batch_sizes = packed.batch_sizes
    # in sorted order the sequences alive at step t are exactly the first batch_sizes[t]
    alive = torch.arange(sorted_output.size(1)).unsqueeze(0) < batch_sizes.unsqueeze(1)
    data = sorted_output[alive.to(output.device)]  # (sum of lengths, *), time-major
    return PackedSequence(data, batch_sizes, packed.sorted_indices, packed.unsorted_indices)


class RNN(RNNBase):
    r"""Multi-layer Elman RNN, a drop-in for :class:`torch.nn.RNN`.

    .. math::
        h_t = φ(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})

    Args:
        input_size: H_in. hidden_size: H. num_layers: stacked layers (default 1).
        nonlinearity: ``'tanh'`` (default) or ``'relu'``, as torch; ``activation`` also
            takes ``'sigmoid'`` or a ``(function, derivative)`` pair.
        bias, batch_first, dropout, bidirectional: as torch.nn.RNN.
        recurrent_dropout, weight_drop, zoneout: see :mod:`rnnkit.layers`.

    Shapes: input (L, N, H_in) (or (N, L, H_in) with batch_first, or (L, H_in)),
    h_0 (D*num_layers, N, H); output (L, N, D*H), h_n (D*num_layers, N, H).

    Example::

        >>> rnn = rnnkit.RNN(10, 20, num_layers=2, activation="sigmoid")
        >>> output, h_n = rnn(torch.randn(5, 3, 10))
    """

    family = "rnn"

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, **options):
        activation = options.pop("activation", None)
        if activation is not None and nonlinearity != "tanh" and activation != nonlinearity:
            raise ValueError(f"RNN: give either nonlinearity or activation, got "
                             f"nonlinearity={nonlinearity!r} and activation={activation!r}")
        if activation is None:
            if nonlinearity not in ("tanh", "relu"):
                raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu' (use activation= "
                                 f"for others), got {nonlinearity!r}")
            activation = nonlinearity
        self.nonlinearity = activation if isinstance(activation, str) else "custom"
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, activation=activation, **options)
        if self.activation in ("tanh", "relu"):
            self.activation = None  # torch's nonlinearity: extra_repr as torch.nn.RNN's


class LSTM(RNNBase):
    r"""Multi-layer LSTM, a drop-in for :class:`torch.nn.LSTM` (equations in
    :mod:`rnnkit.cells.lstm`; gate order i|f|g|o).

    Args:
        input_size: H_in. hidden_size: H (cell size). num_layers: default 1.
        bias, batch_first, dropout, bidirectional, proj_size: as torch.nn.LSTM.
        forget_bias: added to the forget block of ``bias_ih`` at init (default 0.0;
            1.0 is the recommendation of Jozefowicz et al. 2015).
        peephole: diagonal peephole weights ``weight_ci/cf/co_l{k}`` (default False).
        layer_norm: LN-LSTM with ``ln_{ih,hh,c}_{weight,bias}_l{k}`` (default False).
        recurrent_dropout, weight_drop, zoneout: see :mod:`rnnkit.layers` (default 0).

    Shapes: output (L, N, D*H_out), h_n (D*num_layers, N, H_out), c_n (D*num_layers, N, H),
    H_out = proj_size or H.

    Example::

        >>> lstm = rnnkit.LSTM(10, 20, num_layers=2, peephole=True, forget_bias=1.0)
        >>> output, (h_n, c_n) = lstm(torch.randn(5, 3, 10))
    """

    family = "lstm"


class GRU(RNNBase):
    r"""Multi-layer GRU, a drop-in for :class:`torch.nn.GRU` (equations in
    :mod:`rnnkit.cells.gru`; gate order r|z|n).

    Args:
        input_size: H_in. hidden_size: H. num_layers: default 1.
        bias, batch_first, dropout, bidirectional: as torch.nn.GRU.
        reset_after: True (default, torch/cuDNN: r multiplies W_hn h + b_hn) or False
            (Cho et al. 2014: r multiplies h before W_hn).
        recurrent_dropout, weight_drop, zoneout: see :mod:`rnnkit.layers` (default 0).

    Example::

        >>> gru = rnnkit.GRU(10, 20, bidirectional=True, reset_after=False)
        >>> output, h_n = gru(torch.randn(5, 3, 10))
    """

    family = "gru"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, **options):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, **options)


class _CellBase(nn.Module):
    """One step of a cell family, a drop-in for torch.nn.RNNCell / LSTMCell / GRUCell."""

    family = "rnn"

    def __init__(self, input_size, hidden_size, bias=True, *, activation=None,
                 forget_bias=0.0, peephole=False, layer_norm=False, reset_after=True,
                 device=None, dtype=None):
        super().__init__()
        owner = type(self).__name__
        self._spec = _make_spec(owner, self.family, input_size, hidden_size, bias,
                                activation=activation, proj_size=0, forget_bias=forget_bias,
                                peephole=peephole, layer_norm=layer_norm,
                                reset_after=reset_after, minimum=0)
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.forget_bias = forget_bias
        for name, shape in self._spec.param_shapes().items():
            self.register_parameter(name, nn.Parameter(torch.empty(shape, device=device,
                                                                   dtype=dtype)))
        self._names = {name: name for name in self._spec.param_names()}  # {name: attribute}
        self._state_sizes = self._spec.state_sizes
        self.reset_parameters()

    def reset_parameters(self):
        _init_cell_parameters(self, self._names, self._spec, self.forget_bias)

    def forward(self, input, hx=None):
        """input (N, H_in) or (H_in,); hx as torch. Returns h' (or (h', c') for LSTM)."""
        if hx is not None and not torch.is_grad_enabled():
            state = self._decoding_step(input, hx)
            if state is not None:
                return _exposed(self.family, state)
        owner = type(self).__name__
        _check_input(owner, input, self.input_size, self._first_weight())
        if input.dim() not in (1, 2):
            raise ValueError(f"{owner}: input must be 1-D (unbatched) or 2-D (batched), "
                             f"got {input.dim()}-D with shape {tuple(input.shape)}")
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)
        state0 = self._initial_state(hx, x, batched)
        params = _module_params(self, self._names)
        fused = dispatch.fused_run(x)  # (skips dispatch.run's general path: ~3 us a step)
        run = fused if fused is not None else dispatch.run
        _, state = run(self._spec, x.unsqueeze(0), state0, params)
        if not batched:
            state = tuple(s.squeeze(0) for s in state)
        return _exposed(self.family, state)

    def _decoding_step(self, x, hx):
        """A decoding loop's step (sampling, beam search), (B, H_in) with a given state and no
        gradient, through the fused kernel's step entry: the general path's checks cost
        as much as the kernel at B=1 (a third of a 256-unit LSTM step). Returns None
        when anything is not the plain case; the general path then runs (and raises its
        errors)."""
        if type(x) is not torch.Tensor or torch.compiler.is_compiling():
            return None
        shape = x.shape
        if len(shape) != 2 or shape[1] != self.input_size:
            return None
        states = hx if self.family == "lstm" else (hx,)
        sizes = self._state_sizes
        if type(states) not in (tuple, list) or len(states) != len(sizes):
            return None
        dtype, batch = x.dtype, shape[0]
        for value, size in zip(states, sizes):
            if type(value) is not torch.Tensor or value.shape != (batch, size) \
                    or value.dtype != dtype or not value.is_cpu:
                return None
        step = dispatch.fused_step(x)
        if step is None:
            return None
        registered = self._parameters
        try:
            param_list = [registered[attr] for attr in self._names.values()]
        except KeyError:  # a parametrized or replaced weight: the general path reads it
            return None
        return step(self._spec, x, tuple(states), param_list)

    def _first_weight(self):
        return getattr(self, self._names["weight_ih"])

    def _initial_state(self, hx, x, batched):
        sizes = self._state_sizes
        if hx is None:
            return tuple(x.new_zeros(x.size(0), size) for size in sizes)
        shapes = [(x.size(0), size) if batched else (size,) for size in sizes]
        states = _parse_hx(type(self).__name__, self.family, hx, shapes, x)
        return states if batched else tuple(s.unsqueeze(0) for s in states)

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            text += ", bias=False"
        return text


class RNNCell(_CellBase):
    """One Elman RNN step; ``nonlinearity`` 'tanh' | 'relu' as torch, ``activation`` more."""

    family = "rnn"

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", **options):
        options.setdefault("activation", nonlinearity)
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, **options)

    def extra_repr(self) -> str:
        text = super().extra_repr()
        if self.nonlinearity != "tanh":
            text += f", nonlinearity={self.nonlinearity}"  # as torch.nn.RNNCell prints it
        return text


class LSTMCell(_CellBase):
    """One LSTM step, with the ``forget_bias``, ``peephole`` and ``layer_norm`` options."""

    family = "lstm"


class GRUCell(_CellBase):
    """One GRU step, with the ``reset_after`` option."""

    family = "gru"


class IndRNN(RNNBase):
    r"""Multi-layer IndRNN (Li et al. 2018; equations in :mod:`rnnkit.cells.indrnn`):
    h_t = φ(W_ih x_t + b_ih + w_hh ⊙ h_{t-1} + b_hh) with a vector w_hh.

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional: as
            torch.nn.RNN. activation: ``'relu'`` (default) or ``'tanh'``.
        recurrent_max: if set, |w_hh| is clamped to it before every forward (in training:
            after each optimiser step, as the paper does for long sequences), and the
            recurrent weights start in U(0, min(1, recurrent_max)); otherwise U(0, 1).
        recurrent_dropout, weight_drop, zoneout: see :mod:`rnnkit.layers`.

    Example::

        >>> layer = rnnkit.IndRNN(10, 20, num_layers=2, recurrent_max=2 ** (1 / 100))
        >>> output, h_n = layer(torch.randn(100, 3, 10))
    """

    family = "indrnn"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, *, recurrent_max=None, **options):
        if recurrent_max is not None and not (isinstance(recurrent_max, (int, float))
                                              and recurrent_max > 0):
            raise ValueError(f"IndRNN: recurrent_max must be a positive number or None, "
                             f"got {recurrent_max!r}")
        self.recurrent_max = recurrent_max
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, **options)

    def reset_parameters(self):
        super().reset_parameters()
        with torch.no_grad():
            for names in self._param_names:
                getattr(self, names["weight_hh"]).uniform_(
                    0.0, 1.0 if self.recurrent_max is None else min(1.0, self.recurrent_max))

    def forward(self, input, hx=None):
        if self.recurrent_max is not None and self.training:
            with torch.no_grad():
                for names in self._param_names:
                    getattr(self, names["weight_hh"]).clamp_(-self.recurrent_max,
                                                             self.recurrent_max)
        return super().forward(input, hx)


def _simple_layer(name, family, equations, state_note):
    """A layer class of one of the parallel recurrences (every product on the input)."""
    doc = (f"Multi-layer {name} ({equations}; :mod:`rnnkit.cells.{family}`).\n\n"
           f"    Same arguments as torch.nn.GRU (input_size, hidden_size, num_layers, bias,\n"
           f"    batch_first, dropout, bidirectional) plus zoneout and weight_drop where they\n"
           f"    apply; returns ``(output, h_n)``{state_note}.\n")
    return type(name, (RNNBase,), {"family": family, "__doc__": doc, "__module__": __name__})


SRU = _simple_layer("SRU", "sru", "Lei et al. 2018", " where h_n is the final cell state c")


class QRNN(RNNBase):
    r"""Multi-layer QRNN with fo-pooling (Bradbury et al. 2016; equations in
    :mod:`rnnkit.cells.qrnn`), with a window of k = 1 or 2 inputs per step:
    [z_t | f_t | o_t] = W [x_{t-k+1}; ...; x_t] + b, c_t = f_t ⊙ c_{t-1} + (1 - f_t) ⊙ z_t,
    h_t = o_t ⊙ c_t.

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional: as
            torch.nn.GRU. zoneout, weight_drop: see :mod:`rnnkit.layers`.
        window: k, the inputs each step sees (a convolution of width k over time).
            ``weight_ih_l{l}`` is (3H, k * H_in) with the oldest input's columns first.
            Default: 1.

    Returns ``(output, h_n)`` where h_n is the final cell state c. With ``window=2`` the
    first step's x_{t-1} is zeros, or the previous chunk's last input when carried: then
    ``h_n`` is the tuple ``(c_n, x_last_0, ..., x_last_{L-1})`` with each layer's input at
    its last step ((N, H_in of that layer); with a PackedSequence, each sequence's last
    valid step), and ``hx`` may be either c_0 alone or such a tuple, so truncated BPTT
    carries it like any state. In the reverse direction (``bidirectional``) the step
    before t is t + 1 and nothing is carried (it lies in the next chunk).

    Example::

        >>> layer = rnnkit.QRNN(10, 20, num_layers=2, window=2)
        >>> output, state = layer(torch.randn(35, 3, 10))      # state: (c_n, x_0, x_1)
        >>> output, state = layer(torch.randn(35, 3, 10), state)  # the next chunk
    """

    family = "qrnn"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, *, window=1, **options):
        if isinstance(window, bool) or window not in (1, 2):
            raise ValueError(f"QRNN: window must be 1 or 2, got {window!r}")
        self.window = int(window)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, **options)

    def forward(self, input, hx=None):
        if self.window == 1:
            return super().forward(input, hx)
        x, lengths, packed, batched = self._sequence_input(input)
        c0, carried = self._split_hx(hx, x, batched)
        state0 = self._initial_state(c0, x, batched)
        output, state, last = self._run_layers(x, state0, lengths, carried)
        output, state = self._shaped_result(output, state, packed, batched)
        if not batched:
            last = [x_last.squeeze(0) for x_last in last]
        return output, (_exposed(self.family, state), *last)

    def extra_repr(self) -> str:
        text = super().extra_repr()
        return text + (f", window={self.window}" if self.window != 1 else "")

    def _layer_input_size(self, layer):
        return self.input_size if layer == 0 else self.output_size * self.num_directions

    def _split_hx(self, hx, x, batched):
        """``(c_0 or None, carried inputs (N, W) per layer or None)`` from hx."""
        if hx is None or torch.is_tensor(hx):
            return hx, None
        owner = type(self).__name__
        if not isinstance(hx, (tuple, list)) or len(hx) != 1 + self.num_layers:
            names = ", ".join(["c_0"] + [f"x_{layer}" for layer in range(self.num_layers)])
            raise TypeError(f"{owner}: with window=2, hx must be c_0 or a tuple ({names}) as "
                            f"returned for the previous chunk, got "
                            f"{type(hx).__name__}" + (f" of length {len(hx)}" if
                                                      isinstance(hx, (tuple, list)) else ""))
        carried = []
        for layer, value in enumerate(hx[1:]):
            width = self._layer_input_size(layer)
            shape = (x.size(1), width) if batched else (width,)
            _check_state(owner, f"hx[{layer + 1}] (the layer {layer} input before the first "
                         f"step)", value, shape, x)
            carried.append(value if batched else value.unsqueeze(0))
        return hx[0], carried

MinGRU = _simple_layer("MinGRU", "mingru", "Feng et al. 2024", "")
MinLSTM = _simple_layer("MinLSTM", "minlstm", "Feng et al. 2024", "")

LAYERS = {"rnn": RNN, "lstm": LSTM, "gru": GRU, "indrnn": IndRNN, "sru": SRU, "qrnn": QRNN,
          "mingru": MinGRU, "minlstm": MinLSTM}


def layer_class(cell: str) -> type:
    """The layer class of a registered family: RNN, LSTM, GRU, or for a family registered
    later (:func:`rnnkit.cells.register_family`) a subclass of the general layer, made
    once."""
    if cell not in LAYERS:
        family = FAMILIES.get(cell)
        if family is None:
            raise ValueError(f"cell must be one of {sorted(FAMILIES)}, got {cell!r}")
        name = family.layer or cell.upper()
        LAYERS[cell] = type(name, (RNNBase,), {"family": cell, "__module__": __name__,
                                               "__doc__": f"Multi-layer {name} (family "
                                                          f"{cell!r})."})
    return LAYERS[cell]


def make_layer(cell: str, *args, **kwargs) -> RNNBase:
    """``make_layer('gru', 10, 20, num_layers=2)``: a layer chosen by its family name."""
    return layer_class(cell)(*args, **kwargs)

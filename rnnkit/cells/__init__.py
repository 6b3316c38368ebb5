"""Cells written from their equations: one family per module, each with a hand-derived
backward step. ``CellSpec`` binds a family to its sizes and options; ``register_family``
makes a family known to the kernels, the layers and the CLI (the built-in ones below)."""
from rnnkit.cells import gru, indrnn, lstm, mingru, minlstm, qrnn, rnn, sru
from rnnkit.cells.activations import ACTIVATIONS, Activation, get_activation
from rnnkit.cells.base import (FAMILIES, CellFamily, CellSpec, FusedKernel, register_family)

__all__ = ["ACTIVATIONS", "Activation", "CellFamily", "CellSpec", "FAMILIES", "FusedKernel",
           "get_activation", "register_family"]

register_family(CellFamily("rnn", rnn, gates=1, options=frozenset({"activation"}),
                           fused=FusedKernel(2, rnn.fused_saved_shapes)))
register_family(CellFamily("lstm", lstm, gates=4, states=2, options=frozenset(
    {"proj_size", "peephole", "layer_norm", "forget_bias"}),
    fused=FusedKernel(0, lstm.fused_saved_shapes)))
register_family(CellFamily("gru", gru, gates=3, options=frozenset({"reset_after"}),
                           fused=FusedKernel(1, gru.fused_saved_shapes)))

# the parallel recurrences: every matrix product on the input, an element-wise recurrence
register_family(CellFamily("indrnn", indrnn, fused=FusedKernel(3, indrnn.fused_saved_shapes),
                           gates=1, options=frozenset({"activation"}),
                           param_shapes=indrnn.param_shapes, layer="IndRNN",
                           default_activation="relu"))
register_family(CellFamily("sru", sru, fused=FusedKernel(7, sru.fused_saved_shapes),
                           gates=4, states=2, public_state=1,
                           param_shapes=sru.param_shapes, project_input=sru.project_input,
                           project_input_backward=sru.project_input_backward,
                           recurrent_dropout=False))
register_family(CellFamily("qrnn", qrnn, fused=FusedKernel(6, qrnn.fused_saved_shapes),
                           gates=3, states=2, public_state=1,
                           param_shapes=qrnn.param_shapes, recurrent_dropout=False))
register_family(CellFamily("mingru", mingru, fused=FusedKernel(4, mingru.fused_saved_shapes),
                           gates=2, param_shapes=mingru.param_shapes,
                           layer="MinGRU", recurrent_dropout=False, scan=mingru.scan))
register_family(CellFamily("minlstm", minlstm, fused=FusedKernel(5, minlstm.fused_saved_shapes),
                           gates=3, param_shapes=minlstm.param_shapes,
                           layer="MinLSTM", recurrent_dropout=False, scan=minlstm.scan))

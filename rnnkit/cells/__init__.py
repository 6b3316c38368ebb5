"""Cells written from their equations: one family per module, each with a hand-derived
backward step. ``CellSpec`` binds a family to its sizes and options; ``register_family``
makes a family known to the kernels, the layers and the CLI (the built-in ones below)."""
from rnnkit.cells import gru, lstm, rnn
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

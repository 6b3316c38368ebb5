"""Cells written from their equations: one family per module, each with a hand-derived
backward step. ``CellSpec`` binds a family to its sizes and options."""
from rnnkit.cells.base import ACTIVATIONS, Activation, CellSpec, get_activation

__all__ = ["ACTIVATIONS", "Activation", "CellSpec", "get_activation"]

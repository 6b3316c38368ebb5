"""Exception types that are catchable the way torch.nn's are.

rnnkit's layers follow the project's rule (ValueError for bad values and shapes, TypeError
for bad types) with messages that name the class, the argument and what came. torch.nn's
recurrent layers raise RuntimeError for a shape mismatch, ValueError for an input whose
dtype differs from the weights' and RuntimeError for a state whose dtype differs from the
input's. Code written against torch catches those; each class below derives from both
families, so ``except RuntimeError`` and ``except ValueError`` both work.
"""
from __future__ import annotations

__all__ = ["ShapeError", "DTypeError"]


class ShapeError(ValueError, RuntimeError):
    """A tensor's shape does not fit the layer (torch.nn raises RuntimeError here)."""


class DTypeError(TypeError, ValueError, RuntimeError):
    """A tensor's dtype does not fit the layer or the input (torch.nn raises ValueError for
    the input against the weights, RuntimeError for a state against the input)."""
